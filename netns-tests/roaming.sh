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
    scenario "roaming: vpn server answers on the client's new path at once (30 switches)" roaming_first_reply wggo vpn
    scenario "roaming: vpn client uses a new endpoint at once (30 switches)" roaming_first_reply vpn wggo
}

# roam_check STEP WANT_ENDPOINT T_CHANGE
roam_check() {
    local step=$1 want=$2 t=$3 ep
    log "$step: server's UDP packets before: $(server_counters)"
    wait_until 8 endpoint_is "$IF_B" "$PUB_A" "$want" ||
        fail "$step: the server reports endpoint '$(endpoint_of "$IF_B" "$PUB_A")' for the client 8 s later, expected '$want'"
    wait_until 8 reply_after "$PINGS" "$t" || fail "$step: no ping answered within 8 s"
    # Keep going for a second: traffic is steady on the new path.
    sleep 1
    local n
    n=$(replies_between "$PINGS" "$(awk -v t="$(now)" 'BEGIN { printf "%.6f", t - 1 }')" "$(now)")
    ep=$(endpoint_of "$IF_B" "$PUB_A")
    log "$step: server sees the client at $ep; the client sends to $(endpoint_of "$IF_A" "$PUB_B"); $n replies in the last second"
    log "$step: server's UDP packets so far: $(server_counters)"
    ((n >= 2)) || fail "$step: only $n pings answered in the last second"
    [[ $ep == "$want" ]] || fail "$step: the server's endpoint for the client went back to '$ep', expected '$want'"
}

# Diagnostics: the server's WireGuard packets by direction and outer family (nftables counters).
server_counters_setup() {
    cat >"$SCN_DIR/roam.nft" <<EOF
table inet vpnt {
    counter in4 { }
    counter in6 { }
    counter out4 { }
    counter out6 { }
    chain in {
        type filter hook input priority 0; policy accept;
        udp dport $PORT_B meta nfproto ipv4 counter name "in4"
        udp dport $PORT_B meta nfproto ipv6 counter name "in6"
    }
    chain out {
        type filter hook output priority 0; policy accept;
        udp sport $PORT_B meta nfproto ipv4 counter name "out4"
        udp sport $PORT_B meta nfproto ipv6 counter name "out6"
    }
}
EOF
    ip netns exec "$NS_B" nft -f "$SCN_DIR/roam.nft" || log "(nft counters unavailable)"
}
server_counter() {
    ip netns exec "$NS_B" nft list counter inet vpnt "$1" 2>/dev/null | awk '/packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") print $(i+1) }'
}
server_counters() {
    local c out=""
    for c in in4 in6 out4 out6; do
        out+="$c=$(server_counter "$c") "
    done
    echo "$out(received/sent over IPv4/IPv6)"
}

# right_after_reply: returns just after the background ping got a reply, so that no reply is in
# flight while the client changes its address (a reply still on its way to the old address could
# legitimately pull the client back to the old path).
right_after_reply() {
    local n0 i
    n0=$(grep -c 'bytes from' "$PINGS")
    for ((i = 0; i < 100; i++)); do
        (( $(grep -c 'bytes from' "$PINGS") > n0 )) && return 0
        sleep 0.01
    done
    return 0
}

roaming() {
    local client=$1 server=$2 t port2 port3
    # Side A is the client, side B the server; only the client knows the other's endpoint.
    setup_pair "$client" "$server"
    configure_pair a 4
    warm_up "$NS_A" "$INNER4_B" || fail "no reply over the tunnel"
    server_counters_setup
    PINGS=$SCN_DIR/ping.txt
    bg_ping "$NS_A" "$INNER4_B" "$PINGS"
    sleep 1
    roam_check "start" "192.168.241.1:$PORT_A" 0

    port2=$((PORT_A + 100))
    right_after_reply
    t=$(now)
    must wg set "$IF_A" listen-port "$port2"
    roam_check "client listen-port $PORT_A -> $port2" "192.168.241.1:$port2" "$t"

    # The new address must survive the removal of the old (primary) one.
    must ip netns exec "$NS_A" sysctl -qw "net.ipv4.conf.$VETH_A.promote_secondaries=1"
    port3=$((PORT_A + 200))
    right_after_reply
    t=$(now)
    must ip -n "$NS_A" addr add 192.168.241.3/24 dev "$VETH_A"
    must ip -n "$NS_A" addr del 192.168.241.1/24 dev "$VETH_A"
    must wg set "$IF_A" listen-port "$port3"
    roam_check "client address and port 192.168.241.1:$port2 -> 192.168.241.3:$port3" "192.168.241.3:$port3" "$t"

    right_after_reply
    t=$(now)
    must wg set "$IF_A" peer "$PUB_B" endpoint "$(outer_ep b 6)"
    roam_check "client moves to the IPv6 outer path" "[fd00:241::1]:$port3" "$t"

    # The address alone changes (same port), as when a host moves to another network. The kernel
    # notices that the source address it was using is gone and picks a new one; wireguard-go does
    # not (it keeps sending from the vanished address and gets ENETUNREACH), so this step is for a
    # vpn client only.
    right_after_reply
    must wg set "$IF_A" peer "$PUB_B" endpoint "$(outer_ep b 4)"
    roam_check "client back on the IPv4 outer path" "192.168.241.3:$port3" "$(now)"
    if [[ $client == vpn && $UNDER_TEST == vpn ]]; then
        right_after_reply
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

# roaming_first_reply CLIENT SERVER: the client switches between the IPv4 and the IPv6 outer path
# 30 times, one ping each time (no other traffic). A server must update the client's endpoint
# from an authenticated packet before it hands the packet on (the kernel and wireguard-go do), so
# the reply to the first packet on the new path goes back on the new path; if it went to the old
# address the client would roam back to the old path. nftables counters on the server show which
# path each reply took.
roaming_first_reply() {
    local client=$1 server=$2 i fam old c0 c1 out in_new in_old out_new out_old bad_client=0 bad_server=0
    setup_pair "$client" "$server"
    configure_pair a 4
    warm_up "$NS_A" "$INNER4_B" || fail "no reply over the tunnel"
    # Make sure both paths have resolved neighbours before counting.
    ping_ok "$NS_A" "$(outer_ip b 6)" || fail "no IPv6 connectivity on the outer link"
    server_counters_setup
    for ((i = 1; i <= 30; i++)); do
        if ((i % 2)); then fam=6 old=4; else fam=4 old=6; fi
        must wg set "$IF_A" peer "$PUB_B" endpoint "$(outer_ep b "$fam")"
        c0=("$(server_counter in4)" "$(server_counter in6)" "$(server_counter out4)" "$(server_counter out6)")
        out=$(ip netns exec "$NS_A" ping -c 1 -W 2 "$INNER4_B" 2>&1)
        grep -q ' 1 received' <<<"$out" || fail "switch $i (to IPv$fam): the ping got no reply"
        sleep 0.05
        c1=("$(server_counter in4)" "$(server_counter in6)" "$(server_counter out4)" "$(server_counter out6)")
        # Indexes: 0 in4, 1 in6, 2 out4, 3 out6.
        if [[ $fam == 6 ]]; then
            in_new=$((c1[1] - c0[1])) in_old=$((c1[0] - c0[0])) out_new=$((c1[3] - c0[3])) out_old=$((c1[2] - c0[2]))
        else
            in_new=$((c1[0] - c0[0])) in_old=$((c1[1] - c0[1])) out_new=$((c1[2] - c0[2])) out_old=$((c1[3] - c0[3]))
        fi
        log "switch $i to IPv$fam: server received $in_new on the new path, $in_old on the old; sent $out_new on the new path, $out_old on the old; endpoints now: server's $(endpoint_of "$IF_B" "$PUB_A"), client's $(endpoint_of "$IF_A" "$PUB_B")"
        if ((in_old > 0)); then
            bad_client=$((bad_client + 1)); log "  -> the client sent on its old IPv$old path after wg set endpoint"
        elif ((out_old > 0)); then
            bad_server=$((bad_server + 1)); log "  -> the server answered the first packet on the new path by sending to the client's old IPv$old address"
        fi
    done
    ((bad_client == 0)) || fail "in $bad_client of 30 path switches the client ($(impl_label "$client")) still sent on the old path after 'wg set IF peer P endpoint NEW'"
    ((bad_server == 0)) || fail "in $bad_server of 30 path switches the server ($(impl_label "$server")) answered the first packet that came on the new path by sending to the client's old address (it must update the endpoint before handing the packet on)"
    # The client's own endpoint was not pulled back either.
    [[ $(endpoint_of "$IF_A" "$PUB_B") == "$(outer_ep b 4)" ]] || fail "the client's endpoint for the server is $(endpoint_of "$IF_A" "$PUB_B"), expected $(outer_ep b 4)"
}
