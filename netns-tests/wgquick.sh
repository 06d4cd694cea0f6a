# shellcheck shell=bash
# wg-quick through vpnd: `WG_QUICK_USERSPACE_IMPLEMENTATION=vpnd wg-quick up CONF` inside a
# namespace starts vpnd (wireguard-go's command-line contract: it detaches once the interface and
# its UAPI socket are ready), configures it with `wg setconf`, addresses, MTU and routes; traffic
# flows to a wireguard-go peer; `wg-quick down CONF` deletes the interface, after which vpnd exits
# and its socket is gone. The configuration has no DNS and no default route, so wg-quick touches
# neither resolvconf nor the firewall.

register_wgquick() {
    scenario "wg-quick up/down through vpnd" wgquick_updown
}

# ns_empty NS: no process runs inside NS.
ns_empty() { [[ -z $(ip netns pids "$1") ]]; }

wgquick_updown() {
    local ifq qdir conf pids mtu
    require_impl vpnd wggo
    NS_A=$(new_ns a) || exit 1
    NS_B=$(new_ns b) || exit 1
    link_ns "$NS_A" "$NS_B"
    ifq=$(if_name q)
    IF_B=$(if_name b)
    start_daemon "$NS_B" wggo "$IF_B"
    KEY_A=$(genkey); KEY_B=$(genkey); PUB_A=$(pubkey "$KEY_A"); PUB_B=$(pubkey "$KEY_B")
    PORT_A=41001 PORT_B=41002
    must wg set "$IF_B" private-key "$(keyfile b "$KEY_B")" listen-port "$PORT_B" peer "$PUB_A" allowed-ips "$INNER4_A/32,$INNER6_A/128"
    must ip -n "$NS_B" addr add "$INNER4_B/24" dev "$IF_B"
    must ip -n "$NS_B" addr add "$INNER6_B/64" dev "$IF_B" nodad
    must ip -n "$NS_B" link set "$IF_B" up

    qdir=$SCN_DIR/wg-quick
    mkdir -m 700 "$qdir"
    conf=$qdir/$ifq.conf
    (umask 077; cat >"$conf" <<EOF
[Interface]
Address = $INNER4_A/24, $INNER6_A/64
ListenPort = $PORT_A
PrivateKey = $KEY_A

[Peer]
PublicKey = $PUB_B
AllowedIPs = $INNER4_B/32, $INNER6_B/128
Endpoint = $(outer_ep b 4)
EOF
    )
    echo "$WG_RUN_DIR/$ifq.sock" >>"$SCN_DIR/sockets"
    local impl_bin; impl_bin=$(impl_binary vpnd)
    log "+ ip netns exec $NS_A env WG_QUICK_USERSPACE_IMPLEMENTATION=$impl_bin wg-quick up $conf"
    # Output to a file, not a pipe: the detached daemon may keep inherited descriptors.
    ip netns exec "$NS_A" env WG_QUICK_USERSPACE_IMPLEMENTATION="$impl_bin" timeout -k 2 30 wg-quick up "$conf" >"$SCN_DIR/wg-quick-up.log" 2>&1
    local rc=$?
    sed 's/^/    /' "$SCN_DIR/wg-quick-up.log" >&2
    register_ns_pids "$NS_A"
    ((rc == 0)) || fail "wg-quick up failed (exit $rc)"
    pids=$(ip netns pids "$NS_A" | tr '\n' ' ')
    log "processes in $NS_A after wg-quick up: $pids"
    [[ -n $pids ]] || fail "no daemon runs in $NS_A after wg-quick up"
    [[ -S $WG_RUN_DIR/$ifq.sock ]] || fail "no UAPI socket $WG_RUN_DIR/$ifq.sock after wg-quick up"
    must wg show "$ifq"
    [[ $(wg show "$ifq" listen-port) == "$PORT_A" ]] || fail "wg show $ifq listen-port is not $PORT_A"
    mtu=$(ip -n "$NS_A" -o link show "$ifq" | grep -o 'mtu [0-9]*' | awk '{print $2}')
    log "MTU set by wg-quick: $mtu"

    warm_up "$NS_A" "$INNER4_B" || fail "no reply over the tunnel"
    ping_ok "$NS_A" "$INNER4_B" || fail "IPv4 ping vpnd -> peer lost packets"
    ping_ok "$NS_A" "$INNER6_B" || fail "IPv6 ping vpnd -> peer lost packets"
    ping_ok "$NS_B" "$INNER4_A" || fail "IPv4 ping peer -> vpnd lost packets"
    ping_ok "$NS_B" "$INNER6_A" || fail "IPv6 ping peer -> vpnd lost packets"

    log "+ ip netns exec $NS_A wg-quick down $conf"
    ip netns exec "$NS_A" timeout -k 2 30 wg-quick down "$conf" >"$SCN_DIR/wg-quick-down.log" 2>&1
    rc=$?
    sed 's/^/    /' "$SCN_DIR/wg-quick-down.log" >&2
    ((rc == 0)) || fail "wg-quick down failed (exit $rc)"
    if ip -n "$NS_A" link show "$ifq" >/dev/null 2>&1; then fail "interface $ifq still exists after wg-quick down"; fi
    wait_until 5 test ! -e "$WG_RUN_DIR/$ifq.sock" || fail "UAPI socket $WG_RUN_DIR/$ifq.sock still exists 5 s after wg-quick down"
    wait_until 5 ns_empty "$NS_A" || fail "the daemon still runs 5 s after wg-quick down (pids: $(ip netns pids "$NS_A" | tr '\n' ' '))"
    if wg show "$ifq" >/dev/null 2>&1; then fail "wg show $ifq still answers after wg-quick down"; fi
    log "interface, socket and daemon are gone"
}
