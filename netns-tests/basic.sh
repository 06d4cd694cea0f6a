# shellcheck shell=bash
# Interoperability: ping over IPv4 and IPv6 inside the tunnel, over IPv4 and IPv6 outer endpoints,
# with either side initiating; iperf3 TCP in both directions.

register_basic() {
    local peer init fam
    for peer in vpn wggo boringtun; do
        for init in vpn peer; do
            # vpn<->vpn is symmetric: one initiator is enough.
            [[ $peer == vpn && $init == peer ]] && continue
            for fam in 4 6; do
                local who="vpn initiates"
                [[ $init == peer ]] && who="$(impl_label "$peer") initiates"
                scenario "ping vpn<->$(impl_label "$peer"), $who, outer IPv$fam" basic_ping "$peer" "$init" "$fam"
            done
        done
    done
    for peer in vpn wggo boringtun; do
        scenario "iperf3 TCP vpn<->$(impl_label "$peer") both directions, UDP in order" basic_iperf "$peer"
        scenario "iperf3 TCP vpn<->$(impl_label "$peer") both directions, UDP in order, offloads off" offloads_off basic_iperf "$peer"
    done
}

# udp_out_of_order NS_CLIENT SERVER_IP: runs a UDP stream from the server to the client (-R:
# the client receives and counts) and prints how many datagrams arrived out of order.
udp_out_of_order() {
    local ns=$1 dst=$2 out
    log "+ ip netns exec $ns iperf3 -c $dst -u -b 300M -l 1392 -w 4M -t 2 -R -J"
    out=$(ip netns exec "$ns" timeout -k 2 20 iperf3 -c "$dst" -u -b 300M -l 1392 -w 4M -t 2 -R -J --connect-timeout 3000 2>/dev/null) || return 1
    awk -F: '/"packets":/ { gsub(/[ \t,]/, "", $2); p += $2 } /"out_of_order":/ { gsub(/[ \t,]/, "", $2); o += $2 }
             END { if (p == 0) exit 1; print o }' <<<"$out"
}

# basic_ping PEER INITIATOR(vpn|peer) FAMILY: side A runs vpn, side B runs PEER. Only the
# initiator knows the other's endpoint, so it necessarily makes the handshake.
basic_ping() {
    local peer=$1 init=$2 fam=$3 ns_i ns_r if_r pub_i side_i
    setup_pair vpn "$peer"
    if [[ $init == vpn ]]; then
        configure_pair a "$fam"
        ns_i=$NS_A ns_r=$NS_B if_r=$IF_B pub_i=$PUB_A side_i=a
    else
        configure_pair b "$fam"
        ns_i=$NS_B ns_r=$NS_A if_r=$IF_A pub_i=$PUB_B side_i=b
    fi
    local -A inner4=([a]=$INNER4_A [b]=$INNER4_B) inner6=([a]=$INNER6_A [b]=$INNER6_B)
    local side_r; [[ $side_i == a ]] && side_r=b || side_r=a

    warm_up "$ns_i" "${inner4[$side_r]}" || fail "initiator $ns_i gets no reply over the tunnel (IPv4 inner)"
    ping_ok "$ns_i" "${inner4[$side_r]}" || fail "IPv4 inner ping from the initiator lost packets"
    ping_ok "$ns_i" "${inner6[$side_r]}" || fail "IPv6 inner ping from the initiator lost packets"
    ping_ok "$ns_r" "${inner4[$side_i]}" || fail "IPv4 inner ping from the responder lost packets"
    ping_ok "$ns_r" "${inner6[$side_i]}" || fail "IPv6 inner ping from the responder lost packets"
    # The responder learnt the initiator's endpoint from the handshake, in the outer family used.
    local want ep
    want=$(outer_ep "$side_i" "$fam")
    ep=$(endpoint_of "$if_r" "$pub_i")
    log "responder's endpoint for the initiator: $ep (expected $want)"
    [[ $ep == "$want" ]] || fail "responder reports endpoint '$ep' for the initiator, expected '$want'"
    handshake_nonzero "$IF_A" "$PUB_B" || fail "wg show $IF_A latest-handshakes is 0 after traffic"
    must wg show "$IF_A"
}

# iperf_run NS_CLIENT SERVER_IP [-R]: prints the receiver's rate in Gbit/s; fails on error.
iperf_run() {
    local ns=$1 dst=$2; shift 2
    local out rate
    log "+ ip netns exec $ns iperf3 -c $dst -t 3 -f g $*"
    out=$(ip netns exec "$ns" timeout -k 2 20 iperf3 -c "$dst" -t 3 -f g --connect-timeout 3000 "$@" 2>&1)
    local rc=$?
    printf '%s\n' "$out" | tail -6 | sed 's/^/    /' >&2
    ((rc == 0)) || return 1
    rate=$(awk '/receiver/ { for (i = 1; i <= NF; i++) if ($i ~ /bits\/sec/) print $(i-1) }' <<<"$out" | tail -1)
    [[ -n $rate ]] || return 1
    # Some bytes must have been transferred.
    awk -v r="$rate" 'BEGIN { exit !(r > 0) }' || return 1
    echo "$rate"
}

basic_iperf() {
    local peer=$1 fwd rev spid
    setup_pair vpn "$peer"
    configure_pair a 4
    warm_up "$NS_A" "$INNER4_B" || fail "no reply over the tunnel"
    log "+ iperf3 server in $NS_B on $INNER4_B"
    ip netns exec "$NS_B" timeout -k 2 60 iperf3 -s -B "$INNER4_B" -p 5201 >"$SCN_DIR/iperf3-server.log" 2>&1 &
    spid=$!
    register_pid "$spid"
    wait_until 5 bash -c "ip netns exec '$NS_B' ss -Hltn 'sport = :5201' | grep -q LISTEN" || fail "iperf3 server did not start"
    fwd=$(iperf_run "$NS_A" "$INNER4_B") || fail "iperf3 vpn -> $(impl_label "$peer") failed"
    rev=$(iperf_run "$NS_A" "$INNER4_B" -R) || fail "iperf3 $(impl_label "$peer") -> vpn failed"
    local pl; pl=$(impl_label "$peer"); [[ $peer == vpn ]] && pl="vpn (peer)"
    note "vpn -> $pl: $fwd Gbit/s; $pl -> vpn: $rev Gbit/s (TCP, 3 s, IPv4)"
    # TCP over inner IPv6 too: the segmentation offloads and the TUN write coalescing have their
    # own IPv6 paths (TCPV6 super-packets).
    log "+ iperf3 server in $NS_B on $INNER6_B"
    ip netns exec "$NS_B" timeout -k 2 60 iperf3 -s -B "$INNER6_B" -p 5202 >"$SCN_DIR/iperf3-server6.log" 2>&1 &
    register_pid "$!"
    wait_until 5 bash -c "ip netns exec '$NS_B' ss -Hltn 'sport = :5202' | grep -q LISTEN" || fail "iperf3 IPv6 server did not start"
    fwd=$(iperf_run "$NS_A" "$INNER6_B" -p 5202) || fail "iperf3 over IPv6 vpn -> $(impl_label "$peer") failed"
    rev=$(iperf_run "$NS_A" "$INNER6_B" -p 5202 -R) || fail "iperf3 over IPv6 $(impl_label "$peer") -> vpn failed"
    note "vpn -> $pl: $fwd Gbit/s; $pl -> vpn: $rev Gbit/s (TCP, 3 s, IPv6)"
    # Packets of one flow stay in order through the tunnel (iperf3 numbers its datagrams).
    local ooo
    ooo=$(udp_out_of_order "$NS_A" "$INNER4_B") || fail "UDP iperf3 $(impl_label "$peer") -> vpn failed"
    log "UDP datagrams out of order: $ooo"
    [[ $ooo == 0 ]] || fail "$ooo UDP datagrams arrived out of order"
    # The tunnel still works after the load.
    ping_ok "$NS_A" "$INNER6_B" || fail "ping after iperf3 lost packets"
}
