# shellcheck shell=bash
# Reconfiguration under traffic: while vpn pings the peer every 0.2 s,
#  1. `wg set IF peer X remove` on vpn stops the traffic at once (the peer and its sessions are
#     gone); re-adding the peer restores it (a new handshake);
#  2. `wg set IF private-key NEW` on vpn breaks the tunnel (old sessions destroyed, the peer does
#     not know the new public key) until the peer is told the new public key; then it resumes.
# Replies are attributed to phases by their timestamps (ping -D).

register_reconfig() {
    scenario "peer removal and private-key change under traffic: vpn<->wireguard-go" reconfig_under_traffic wggo
    scenario "peer removal and private-key change under traffic: vpn<->vpn" reconfig_under_traffic vpn
}

reconfig_under_traffic() {
    local peer=$1 pings t0 t_rm t_add t_key t_upd n key2 pub2 f2
    setup_pair vpn "$peer"
    configure_pair both 4
    warm_up "$NS_A" "$INNER4_B" || fail "no reply over the tunnel"
    pings=$SCN_DIR/ping.txt
    t0=$(now)
    bg_ping "$NS_A" "$INNER4_B" "$pings"
    sleep 1.5
    n=$(replies_between "$pings" "$t0" "$(now)")
    log "baseline: $n replies in 1.5 s"
    ((n >= 3)) || fail "baseline: only $n replies in 1.5 s at 5 pings/s"

    # 1. Peer removal.
    t_rm=$(now)
    must wg set "$IF_A" peer "$PUB_B" remove
    [[ -z $(wg show "$IF_A" peers) ]] || fail "wg show $IF_A peers still lists a peer after removal"
    sleep 2.5
    n=$(replies_between "$pings" "$(awk -v t="$t_rm" 'BEGIN { printf "%.6f", t + 0.5 }')" "$(now)")
    log "after removing the peer: $n replies (expected 0)"
    ((n == 0)) || fail "$n pings were answered 0.5-2.5 s after the peer was removed"
    t_add=$(now)
    must wg set "$IF_A" peer "$PUB_B" allowed-ips "$INNER4_B/32,$INNER6_B/128" endpoint "$(outer_ep b 4)"
    wait_until 8 reply_after "$pings" "$t_add" || fail "traffic did not resume within 8 s after re-adding the peer"
    log "traffic resumed $(awk -v a="$t_add" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s after re-adding the peer"
    sleep 1

    # 2. Private-key change on vpn.
    key2=$(genkey); pub2=$(pubkey "$key2"); f2=$(keyfile a2 "$key2")
    t_key=$(now)
    must wg set "$IF_A" private-key "$f2"
    [[ $(wg show "$IF_A" public-key) == "$pub2" ]] || fail "wg show $IF_A public-key is not the new key's"
    sleep 4
    n=$(replies_between "$pings" "$(awk -v t="$t_key" 'BEGIN { printf "%.6f", t + 0.5 }')" "$(now)")
    log "after changing vpn's private key: $n replies (expected 0)"
    ((n == 0)) || fail "$n pings were answered 0.5-4 s after vpn's private key changed (old sessions not destroyed?)"
    t_upd=$(now)
    must wg set "$IF_B" peer "$PUB_A" remove peer "$pub2" allowed-ips "$INNER4_A/32,$INNER6_A/128" endpoint "$(outer_ep a 4)"
    wait_until 12 reply_after "$pings" "$t_upd" || fail "traffic did not resume within 12 s after the peer learnt vpn's new public key"
    log "traffic resumed $(awk -v a="$t_upd" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s after updating the peer"
    handshake_nonzero "$IF_B" "$pub2" || fail "the peer reports no handshake with vpn's new key"
    stop_pid "$BG_PING_PID" 0 3
    log "ping log tail:"; tail -5 "$pings" | sed 's/^/    /' >&2
    must wg show "$IF_A"
}
