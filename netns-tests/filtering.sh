# shellcheck shell=bash
# Allowed-IPs source filtering: a packet that arrives authenticated from a peer but whose inner
# source address is outside that peer's allowed IPs is dropped. The sender (side B) gets a second
# address on its tunnel interface and pings vpn (side A) from it with -I; an nftables counter in
# vpn's namespace, at the earliest hook on vpn's tunnel interface, shows whether such packets ever
# reached the network stack (the missing reply alone would prove nothing: vpn would not route a
# reply to an address of no peer anyway). Packets from the allowed source are counted as a control.

register_filtering() {
    scenario "allowed-IPs source filter: vpn drops spoofed sources from wireguard-go" allowed_ips_filter wggo
    scenario "allowed-IPs source filter: vpn drops spoofed sources from vpn" allowed_ips_filter vpn
}

# nft_count NAME -> packets counted by named counter NAME in table inet vpnt of NS_A
nft_count() {
    ip netns exec "$NS_A" nft list counter inet vpnt "$1" | awk '/packets/ { for (i = 1; i <= NF; i++) if ($i == "packets") print $(i+1) }'
}

allowed_ips_filter() {
    local peer=$1 n tx0 tx1
    setup_pair vpn "$peer"
    configure_pair b 4
    require_cmd nft
    cat >"$SCN_DIR/filter.nft" <<EOF
table inet vpnt {
    counter bad4 { }
    counter good4 { }
    counter bad6 { }
    counter good6 { }
    chain pre {
        type filter hook prerouting priority -400; policy accept;
        iifname "$IF_A" ip saddr 10.241.0.99 counter name "bad4"
        iifname "$IF_A" ip saddr $INNER4_B counter name "good4"
        iifname "$IF_A" ip6 saddr fd10:241::99 counter name "bad6"
        iifname "$IF_A" ip6 saddr $INNER6_B counter name "good6"
    }
}
EOF
    must ip netns exec "$NS_A" nft -f "$SCN_DIR/filter.nft"
    # Second addresses on the sender's tunnel interface, outside its allowed IPs at vpn.
    must ip -n "$NS_B" addr add 10.241.0.99/24 dev "$IF_B"
    must ip -n "$NS_B" addr add fd10:241::99/64 dev "$IF_B" nodad

    warm_up "$NS_B" "$INNER4_A" || fail "no reply over the tunnel"
    ping_ok "$NS_B" "$INNER4_A" -I "$INNER4_B" || fail "ping from the allowed IPv4 source failed"
    ping_ok "$NS_B" "$INNER6_A" -I "$INNER6_B" || fail "ping from the allowed IPv6 source failed"
    n=$(nft_count good4); log "nft: $n IPv4 packets from the allowed source reached vpn's stack"
    ((n >= 3)) || fail "the nft control counter for the allowed IPv4 source counted $n packets (expected >= 3): the counting is broken"
    n=$(nft_count good6); ((n >= 3)) || fail "the nft control counter for the allowed IPv6 source counted $n packets (expected >= 3)"

    read -r _ tx0 < <(transfer_of "$IF_B" "$PUB_A")
    ping_fails "$NS_B" "$INNER4_A" -I 10.241.0.99 || fail "vpn answered a ping from 10.241.0.99, outside the peer's allowed IPs"
    ping_fails "$NS_B" "$INNER6_A" -I fd10:241::99 || fail "vpn answered a ping from fd10:241::99, outside the peer's allowed IPs"
    read -r _ tx1 < <(transfer_of "$IF_B" "$PUB_A")
    log "the sender sent $((tx1 - tx0)) bytes to vpn during the spoofed pings"
    ((tx1 - tx0 >= 6 * 32)) || fail "the sender did not send the spoofed pings through the tunnel (tx grew by $((tx1 - tx0))): the test proves nothing"
    n=$(nft_count bad4); log "nft: $n IPv4 packets from 10.241.0.99 reached vpn's stack (expected 0)"
    ((n == 0)) || fail "$n packets with source 10.241.0.99 (not in the peer's allowed IPs) were delivered to vpn's interface"
    n=$(nft_count bad6); log "nft: $n IPv6 packets from fd10:241::99 reached vpn's stack (expected 0)"
    ((n == 0)) || fail "$n packets with source fd10:241::99 (not in the peer's allowed IPs) were delivered to vpn's interface"
    # The session survived the dropped packets.
    ping_ok "$NS_B" "$INNER4_A" || fail "ping from the allowed source failed after the spoofed ones"
    must ip netns exec "$NS_A" nft list table inet vpnt
}
