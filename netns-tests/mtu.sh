# shellcheck shell=bash
# MTU and padding: the tunnel interface has MTU 1420; 1420-byte inner packets (IPv4 and IPv6) pass
# with DF set in both directions, 1421 bytes do not; every data message carries the inner packet
# padded with zeros to a multiple of 16 bytes, never beyond the MTU, which the exact growth of the
# `wg show transfer` counters for one ping of each size shows (32 bytes of header and tag + padded
# packet, for the request sent and for the reply received).

register_mtu() {
    scenario "MTU 1420 and padding: vpn<->wireguard-go" mtu_padding wggo
    scenario "MTU 1420 and padding: vpn<->vpn" mtu_padding vpn
    scenario "MTU 1420 and padding: vpn<->vpn, offloads off" offloads_off mtu_padding vpn
}

# one_ping_delta NS DST SIZE INNER_LEN: one ping, checks the counters of A grow by one padded
# message each way.
one_ping_delta() {
    local ns=$1 dst=$2 size=$3 len=$4 rx0 tx0 rx1 tx1 want out
    read -r rx0 tx0 < <(transfer_of "$IF_A" "$PUB_B")
    out=$(ip netns exec "$ns" ping -c 1 -W 2 -s "$size" "$dst" 2>&1)
    grep -q ' 1 received' <<<"$out" || { printf '%s\n' "$out" | sed 's/^/    /' >&2; fail "ping -s $size $dst got no reply"; }
    # A daemon may count a message just after handling it: let that finish.
    sleep 0.05
    read -r rx1 tx1 < <(transfer_of "$IF_A" "$PUB_B")
    want=$((32 + $(padded "$len")))
    log "ping -s $size $dst: inner $len bytes, sent +$((tx1 - tx0)) received +$((rx1 - rx0)) (expected +$want each)"
    ((tx1 - tx0 == want)) || fail "ping -s $size ($len-byte inner packet): tx grew by $((tx1 - tx0)), expected $want = 32 + $len padded to $(padded "$len")"
    ((rx1 - rx0 == want)) || fail "ping -s $size ($len-byte inner packet): rx grew by $((rx1 - rx0)), expected $want = 32 + $len padded to $(padded "$len")"
}

mtu_padding() {
    local peer=$1 mtu s
    setup_pair vpn "$peer"
    configure_pair a 4
    mtu=$(ip -n "$NS_A" -o link show "$IF_A" | grep -o 'mtu [0-9]*' | awk '{print $2}')
    log "MTU of $IF_A: $mtu"
    [[ $mtu == 1420 ]] || fail "vpn's interface MTU is $mtu, expected 1420"
    warm_up "$NS_A" "$INNER4_B" || fail "no reply over the tunnel"

    # 1420-byte packets with DF, both directions, both inner families.
    ping_ok "$NS_A" "$INNER4_B" -M "do" -s 1392 || fail "1420-byte IPv4 packets (ping -M do -s 1392) vpn -> peer do not pass"
    ping_ok "$NS_B" "$INNER4_A" -M "do" -s 1392 || fail "1420-byte IPv4 packets (ping -M do -s 1392) peer -> vpn do not pass"
    ping_ok "$NS_A" "$INNER6_B" -M "do" -s 1372 || fail "1420-byte IPv6 packets (ping -M do -s 1372) vpn -> peer do not pass"
    ping_ok "$NS_B" "$INNER6_A" -M "do" -s 1372 || fail "1420-byte IPv6 packets (ping -M do -s 1372) peer -> vpn do not pass"
    # One byte more does not fit the MTU.
    ping_fails "$NS_A" "$INNER4_B" -M "do" -s 1393 || fail "a 1421-byte IPv4 packet with DF passed an MTU of 1420"
    ping_fails "$NS_A" "$INNER6_B" -M "do" -s 1373 || fail "a 1421-byte IPv6 packet passed an MTU of 1420"

    # Padding: sizes that need it and sizes that do not, up to the MTU (1383: 1411 bytes, which
    # 16-byte padding would take to 1424, past the MTU: it is padded to 1420 only).
    for s in 0 1 4 5 11 20 56 100 1000 1367 1376 1383 1391 1392; do
        one_ping_delta "$NS_A" "$INNER4_B" "$s" $((28 + s))
    done
    for s in 0 1 8 57 1000 1371 1372; do
        one_ping_delta "$NS_A" "$INNER6_B" "$s" $((48 + s))
    done
    # And padded packets from the peer arrive intact at vpn (ping checks the payload).
    for s in 1 5 11 1383; do
        ping_ok "$NS_B" "$INNER4_A" -M "do" -s "$s" || fail "ping -s $s peer -> vpn failed"
    done
}
