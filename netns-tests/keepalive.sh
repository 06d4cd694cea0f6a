# shellcheck shell=bash
# Persistent keepalive: with `persistent-keepalive 1` and no traffic at all (no inner addresses),
# the side configured with it makes a handshake by itself and then sends a 32-byte keepalive
# message every second; the other side answers the handshake and nothing else (keepalives are not
# data, so they call for no keepalive in return). Checked on vpn as the sender and as the receiver,
# through `latest-handshake` and the exact `transfer` counters.

register_keepalive() {
    scenario "persistent keepalive: vpn<->wireguard-go, each side sending" keepalive_both wggo
    scenario "persistent keepalive: vpn<->vpn" keepalive_both vpn
}

# keepalive_one SENDER_SIDE(a|b): in a fresh pair, the SENDER side has endpoint + keepalive 1.
keepalive_one() {
    local sender=$1 if_s if_r pub_s pub_r rx1 tx1 rx2 tx2 rrx rtx
    setup_pair vpn "$PEER_IMPL"
    if [[ $sender == a ]]; then
        configure_keepalive_pair a
        if_s=$IF_A if_r=$IF_B pub_s=$PUB_A pub_r=$PUB_B
    else
        configure_keepalive_pair b
        if_s=$IF_B if_r=$IF_A pub_s=$PUB_B pub_r=$PUB_A
    fi
    local who_s who_r
    who_s=$(impl_label "$([[ $sender == a ]] && echo vpn || echo "$PEER_IMPL")")
    who_r=$(impl_label "$([[ $sender == a ]] && echo "$PEER_IMPL" || echo vpn)")
    wait_until 6 handshake_nonzero "$if_s" "$pub_r" || fail "$who_s with persistent-keepalive 1 made no handshake within 6 s"
    wait_until 3 handshake_nonzero "$if_r" "$pub_s" || fail "$who_r reports no handshake from the keepalive sender"
    sleep 1.5
    read -r rx1 tx1 < <(transfer_of "$if_s" "$pub_r")
    sleep 3.5
    read -r rx2 tx2 < <(transfer_of "$if_s" "$pub_r")
    read -r rrx rtx < <(transfer_of "$if_r" "$pub_s")
    log "keepalive sender $who_s: rx $rx1 -> $rx2, tx $tx1 -> $tx2; receiver $who_r: rx $rrx tx $rtx"
    note "sender $who_s: tx $tx1 -> $tx2 in 3.5 s; receiver $who_r: rx $rrx tx $rtx"
    ((tx2 - tx1 >= 64)) || fail "$who_s sent $((tx2 - tx1)) bytes in 3.5 s with persistent-keepalive 1 (expected >= 2 keepalives of 32 bytes)"
    (((tx2 - tx1) % 32 == 0)) || fail "$who_s sent $((tx2 - tx1)) bytes in 3.5 s: not a whole number of 32-byte keepalives"
    (((tx2 - 148) % 32 == 0)) || fail "$who_s tx total $tx2 is not one initiation (148) plus 32-byte keepalives"
    [[ $rx1 == 92 && $rx2 == 92 ]] || fail "$who_s received rx $rx1 then $rx2 bytes, expected exactly one handshake response (92): the other side answered keepalives"
    [[ $rtx == 92 ]] || fail "$who_r sent $rtx bytes, expected only the handshake response (92): it answered keepalives"
    ((rrx >= 148 + 3 * 32 && (rrx - 148) % 32 == 0)) || fail "$who_r received $rrx bytes, expected the initiation (148) plus >= 3 keepalives of 32"
    cleanup_scenario_dir "$SCN_DIR"
}

configure_keepalive_pair() {
    local who=$1
    if [[ $who == a ]]; then
        must wg set "$IF_B" private-key "$(keyfile b "$KEY_B")" listen-port "$PORT_B" peer "$PUB_A" allowed-ips "$INNER4_A/32"
        must ip -n "$NS_B" link set "$IF_B" up
        must wg set "$IF_A" private-key "$(keyfile a "$KEY_A")" listen-port "$PORT_A" peer "$PUB_B" allowed-ips "$INNER4_B/32" \
            endpoint "$(outer_ep b 4)" persistent-keepalive 1
        must ip -n "$NS_A" link set "$IF_A" up
    else
        must wg set "$IF_A" private-key "$(keyfile a "$KEY_A")" listen-port "$PORT_A" peer "$PUB_B" allowed-ips "$INNER4_B/32"
        must ip -n "$NS_A" link set "$IF_A" up
        must wg set "$IF_B" private-key "$(keyfile b "$KEY_B")" listen-port "$PORT_B" peer "$PUB_A" allowed-ips "$INNER4_A/32" \
            endpoint "$(outer_ep a 4)" persistent-keepalive 1
        must ip -n "$NS_B" link set "$IF_B" up
    fi
    must wg show "$IF_A"
}

keepalive_both() {
    PEER_IMPL=$1
    log "== vpn sends keepalives"
    keepalive_one a
    if [[ $PEER_IMPL != vpn ]]; then
        log "== vpn receives keepalives"
        NT_SCN=${NT_SCN}k
        keepalive_one b
    fi
}
