# shellcheck shell=bash
# MTU and padding: the tunnel interface has MTU 1420; 1420-byte inner packets (IPv4 and IPv6) pass
# with DF set in both directions, 1421 bytes do not; every data message carries the inner packet
# padded with zeros to a multiple of 16 bytes, never beyond the MTU, which the exact growth of the
# `wg show transfer` counters for one ping of each size shows (32 bytes of header and tag + padded
# packet, for the request sent and for the reply received).
#
# The MTU of the running interfaces can change: raised to jumbo sizes (9000, 16000) and lowered
# again, packets of exactly the MTU pass with DF, TCP runs both ways, and the padding follows the
# MTU in force.

register_mtu() {
    scenario "MTU 1420 and padding: vpn<->wireguard-go" mtu_padding wggo
    scenario "MTU 1420 and padding: vpn<->vpn" mtu_padding vpn
    scenario "MTU 1420 and padding: vpn<->vpn, offloads off" offloads_off mtu_padding vpn
    scenario "MTU raised to 9000 and 16000 at run time, then lowered: vpn<->vpn" mtu_runtime vpn
    scenario "MTU raised to 9000 and 16000 at run time, then lowered: vpn<->vpn, offloads off" offloads_off mtu_runtime vpn
    scenario "MTU raised to 9000 and 16000 at run time, then lowered: vpn<->wireguard-go" mtu_runtime wggo
}

# one_ping_delta NS DST SIZE INNER_LEN [MTU]: one ping, checks the counters of A grow by one
# padded message each way (padding capped at MTU, default 1420).
one_ping_delta() {
    local ns=$1 dst=$2 size=$3 len=$4 mtu=${5:-1420} rx0 tx0 rx1 tx1 want out
    read -r rx0 tx0 < <(transfer_of "$IF_A" "$PUB_B")
    out=$(ip netns exec "$ns" ping -c 1 -W 2 -s "$size" "$dst" 2>&1)
    grep -q ' 1 received' <<<"$out" || { printf '%s\n' "$out" | sed 's/^/    /' >&2; fail "ping -s $size $dst got no reply"; }
    # A daemon may count a message just after handling it: let that finish.
    sleep 0.05
    read -r rx1 tx1 < <(transfer_of "$IF_A" "$PUB_B")
    want=$((32 + $(padded "$len" "$mtu")))
    log "ping -s $size $dst: inner $len bytes, sent +$((tx1 - tx0)) received +$((rx1 - rx0)) (expected +$want each)"
    ((tx1 - tx0 == want)) || fail "ping -s $size ($len-byte inner packet, MTU $mtu): tx grew by $((tx1 - tx0)), expected $want = 32 + $len padded to $(padded "$len" "$mtu")"
    ((rx1 - rx0 == want)) || fail "ping -s $size ($len-byte inner packet, MTU $mtu): rx grew by $((rx1 - rx0)), expected $want = 32 + $len padded to $(padded "$len" "$mtu")"
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

# set_mtu MTU: sets the MTU of both tunnel interfaces, as an operator would on running ones.
set_mtu() {
    must ip -n "$NS_A" link set "$IF_A" mtu "$1"
    must ip -n "$NS_B" link set "$IF_B" mtu "$1"
}

mtu_runtime() {
    local peer=$1 mtu fwd rev
    setup_pair vpn "$peer"
    # Room on the outer link for the largest data message (16000 + 32 + UDP and IP headers).
    must ip -n "$NS_A" link set "$VETH_A" mtu 16100
    must ip -n "$NS_B" link set "$VETH_B" mtu 16100
    configure_pair a 4
    warm_up "$NS_A" "$INNER4_B" || fail "no reply over the tunnel"
    log "+ iperf3 server in $NS_B on $INNER4_B"
    ip netns exec "$NS_B" timeout -k 2 90 iperf3 -s -B "$INNER4_B" -p 5201 >"$SCN_DIR/iperf3-server.log" 2>&1 &
    register_pid "$!"
    wait_until 5 bash -c "ip netns exec '$NS_B' ss -Hltn 'sport = :5201' | grep -q LISTEN" || fail "iperf3 server did not start"
    for mtu in 9000 16000; do
        set_mtu "$mtu"
        log "MTU of both interfaces: $mtu"
        warm_up "$NS_A" "$INNER4_B" -M "do" -s $((mtu - 28)) || fail "no $mtu-byte IPv4 packet vpn -> peer passes after the MTU was raised to $mtu"
        warm_up "$NS_B" "$INNER4_A" -M "do" -s $((mtu - 28)) || fail "no $mtu-byte IPv4 packet peer -> vpn passes after the MTU was raised to $mtu"
        ping_ok "$NS_A" "$INNER4_B" -M "do" -s $((mtu - 28)) || fail "$mtu-byte IPv4 packets vpn -> peer lost at MTU $mtu"
        ping_ok "$NS_B" "$INNER4_A" -M "do" -s $((mtu - 28)) || fail "$mtu-byte IPv4 packets peer -> vpn lost at MTU $mtu"
        ping_ok "$NS_A" "$INNER6_B" -M "do" -s $((mtu - 48)) || fail "$mtu-byte IPv6 packets vpn -> peer lost at MTU $mtu"
        ping_ok "$NS_B" "$INNER6_A" -M "do" -s $((mtu - 48)) || fail "$mtu-byte IPv6 packets peer -> vpn lost at MTU $mtu"
        # TCP: with offloads, super-packets of MTU-sized segments both ways.
        fwd=$(iperf_run "$NS_A" "$INNER4_B") || fail "iperf3 vpn -> $(impl_label "$peer") failed at MTU $mtu"
        rev=$(iperf_run "$NS_A" "$INNER4_B" -R) || fail "iperf3 $(impl_label "$peer") -> vpn failed at MTU $mtu"
        note "MTU $mtu: vpn -> $(impl_label "$peer") $fwd Gbit/s, back $rev Gbit/s (TCP, 3 s)"
    done
    # Padding follows the MTU in force: a 1501-byte packet is padded to 1504 at MTU 16000.
    one_ping_delta "$NS_A" "$INNER4_B" 1473 1501 16000
    one_ping_delta "$NS_A" "$INNER4_B" 8972 9000 16000
    # Lowered to 1412: packets of the new MTU pass, one byte more does not, and the padding is
    # capped by it (1411 bytes are padded to 1412, not to 1424).
    set_mtu 1412
    ping_ok "$NS_A" "$INNER4_B" -M "do" -s 1384 || fail "1412-byte packets vpn -> peer lost after the MTU was lowered to 1412"
    ping_ok "$NS_B" "$INNER4_A" -M "do" -s 1384 || fail "1412-byte packets peer -> vpn lost after the MTU was lowered to 1412"
    ping_fails "$NS_A" "$INNER4_B" -M "do" -s 1385 || fail "a 1413-byte packet with DF passed an MTU of 1412"
    # The daemons ask for the MTU about once a second: give them that long.
    sleep 1.5
    one_ping_delta "$NS_A" "$INNER4_B" 1383 1411 1412
}
