# shellcheck shell=bash
# Roaming: while the client pings the server every 0.2 s, the client
#  1. changes its listen port (`wg set IF listen-port P`),
#  2. moves to another outer address and port at once (192.168.241.1 -> 192.168.241.3 on its
#     veth, and a new listen port), as behind a NAT that rebinds,
#  3. switches to the IPv6 outer path (its endpoint for the server becomes [fd00:241::2]:port),
#  4. (vpn clients) moves to another address keeping its port, which needs the client to notice
#     that its cached source address vanished, as the kernel does;
# after each change traffic continues and `wg show` on the server reports the client's new
# endpoint, learnt from authenticated packets alone (the server never knew the client's endpoint).

register_roaming() {
    scenario "roaming: vpn client -> vpn server" roaming vpn vpn
    scenario "roaming: wireguard-go client -> vpn server" roaming wggo vpn
    scenario "roaming: vpn client -> wireguard-go server" roaming vpn wggo
}

# roam_check STEP WANT_ENDPOINT T_CHANGE
roam_check() {
    local step=$1 want=$2 t=$3 ep
    wait_until 8 endpoint_is "$IF_B" "$PUB_A" "$want" ||
        fail "$step: the server reports endpoint '$(endpoint_of "$IF_B" "$PUB_A")' for the client 8 s later, expected '$want'"
    wait_until 8 reply_after "$PINGS" "$t" || fail "$step: no ping answered within 8 s"
    # Keep going for a second: traffic is steady on the new path.
    sleep 1
    local n
    n=$(replies_between "$PINGS" "$(awk -v t="$(now)" 'BEGIN { printf "%.6f", t - 1 }')" "$(now)")
    ep=$(endpoint_of "$IF_B" "$PUB_A")
    log "$step: server sees the client at $ep; $n replies in the last second"
    ((n >= 2)) || fail "$step: only $n pings answered in the last second"
    [[ $ep == "$want" ]] || fail "$step: the server's endpoint for the client went back to '$ep', expected '$want'"
}

roaming() {
    local client=$1 server=$2 t port2 port3
    # Side A is the client, side B the server; only the client knows the other's endpoint.
    setup_pair "$client" "$server"
    configure_pair a 4
    warm_up "$NS_A" "$INNER4_B" || fail "no reply over the tunnel"
    PINGS=$SCN_DIR/ping.txt
    bg_ping "$NS_A" "$INNER4_B" "$PINGS"
    sleep 1
    roam_check "start" "192.168.241.1:$PORT_A" 0

    port2=$((PORT_A + 100))
    t=$(now)
    must wg set "$IF_A" listen-port "$port2"
    roam_check "client listen-port $PORT_A -> $port2" "192.168.241.1:$port2" "$t"

    # The new address must survive the removal of the old (primary) one.
    must ip netns exec "$NS_A" sysctl -qw "net.ipv4.conf.$VETH_A.promote_secondaries=1"
    port3=$((PORT_A + 200))
    t=$(now)
    must ip -n "$NS_A" addr add 192.168.241.3/24 dev "$VETH_A"
    must ip -n "$NS_A" addr del 192.168.241.1/24 dev "$VETH_A"
    must wg set "$IF_A" listen-port "$port3"
    roam_check "client address and port 192.168.241.1:$port2 -> 192.168.241.3:$port3" "192.168.241.3:$port3" "$t"

    t=$(now)
    must wg set "$IF_A" peer "$PUB_B" endpoint "$(outer_ep b 6)"
    roam_check "client moves to the IPv6 outer path" "[fd00:241::1]:$port3" "$t"

    # The address alone changes (same port), as when a host moves to another network. The kernel
    # notices that the source address it was using is gone and picks a new one; wireguard-go does
    # not (it keeps sending from the vanished address and gets ENETUNREACH), so this step is for a
    # vpn client only.
    must wg set "$IF_A" peer "$PUB_B" endpoint "$(outer_ep b 4)"
    roam_check "client back on the IPv4 outer path" "192.168.241.3:$port3" "$(now)"
    if [[ $client == vpn && $UNDER_TEST == vpn ]]; then
        t=$(now)
        must ip -n "$NS_A" addr add 192.168.241.4/24 dev "$VETH_A"
        must ip -n "$NS_A" addr del 192.168.241.3/24 dev "$VETH_A"
        roam_check "client address only 192.168.241.3 -> 192.168.241.4 (port $port3 kept)" "192.168.241.4:$port3" "$t"
    else
        log "(address-only move not checked: the client is wireguard-go, which keeps a vanished source address)"
    fi

    stop_pid "$BG_PING_PID" 0 3
    must wg show "$IF_B"
}
