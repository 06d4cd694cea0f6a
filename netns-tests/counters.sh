# shellcheck shell=bash
# The kernel selftest's (tools/testing/selftests/wireguard/netns.sh) exact byte counters: on a
# fresh pair, ten 84-byte pings from the initiator give, on the initiator, `wg show IF transfer`
# rx 1372 and tx 1428 (1460 with one keepalive):
#   tx = 148 (initiation) + 10 x (32 + 96)     rx = 92 (response) + 10 x (32 + 96)
# (84-byte ICMP packets padded to 96). Both sides must pad, as vpn and wireguard-go do.

register_counters() {
    scenario "byte counters: vpn initiates to vpn, 10 pings = rx 1372 / tx 1428" counters_selftest vpn vpn
    scenario "byte counters: vpn initiates to vpn, 10 pings = rx 1372 / tx 1428, offloads off" offloads_off counters_selftest vpn vpn
    scenario "byte counters: vpn initiates to wireguard-go, 10 pings = rx 1372 / tx 1428" counters_selftest vpn wggo
    scenario "byte counters: wireguard-go initiates to vpn, 10 pings = rx 1372 / tx 1428" counters_selftest wggo vpn
}

# counters_selftest INITIATOR RESPONDER
counters_selftest() {
    local init=$1 resp=$2 out rx tx rrx rtx hs
    setup_pair "$init" "$resp"
    configure_pair a 4
    log "+ ip netns exec $NS_A ping -c 10 -i 0.2 -W 1 -s 56 $INNER4_B"
    out=$(ip netns exec "$NS_A" ping -c 10 -i 0.2 -W 1 -s 56 "$INNER4_B" 2>&1)
    printf '%s\n' "$out" | tail -3 | sed 's/^/    /' >&2
    grep -q ' 10 received' <<<"$out" || fail "not all 10 pings were answered"
    sleep 0.1
    read -r rx tx < <(transfer_of "$IF_A" "$PUB_B")
    log "initiator ($(impl_label "$init")) wg show $IF_A transfer: rx $rx tx $tx"
    note "initiator $(impl_label "$init"): rx $rx tx $tx"
    [[ $rx == 1372 ]] || fail "initiator rx_bytes = $rx, expected 1372 (92 + 10 x 128)"
    [[ $tx == 1428 || $tx == 1460 ]] || fail "initiator tx_bytes = $tx, expected 1428 (148 + 10 x 128) or 1460 (with one keepalive)"
    # The responder saw the same messages the other way round.
    sleep 0.2
    read -r rrx rtx < <(transfer_of "$IF_B" "$PUB_A")
    log "responder ($(impl_label "$resp")) wg show $IF_B transfer: rx $rrx tx $rtx"
    [[ $rrx == "$tx" && $rtx == "$rx" ]] || fail "responder counters rx $rrx tx $rtx do not mirror the initiator's rx $rx tx $tx"
    hs=$(handshake_of "$IF_B" "$PUB_A")
    [[ -n $hs && $hs != 0 ]] || fail "responder's latest-handshake is '$hs' after the pings"
    hs=$(handshake_of "$IF_A" "$PUB_B")
    [[ -n $hs && $hs != 0 ]] || fail "initiator's latest-handshake is '$hs' after the pings"
    # An epoch time, not an elapsed time (boringtun's flaw): within a minute of now.
    (( hs > $(date +%s) - 60 && hs <= $(date +%s) + 1 )) || fail "initiator's latest-handshake $hs is not a recent UNIX time"
}
