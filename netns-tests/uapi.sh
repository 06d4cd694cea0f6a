# shellcheck shell=bash
# `wg` output identical to wireguard-go's: a vpn interface and a wireguard-go interface get the
# same configuration through `wg setconf` (several peers, PSKs, keepalives, IPv4 and IPv6
# endpoints, many allowed IPs including ones with host bits set, a prefix moved between peers, a
# peer with the interface's own public key, a low-order public key, an unclamped private key), then
# a series of `wg set` / `wg addconf` changes; after each step `wg showconf IF`, `wg show IF dump`
# and `wg show IF` must be the same text (interface name normalized; peers sorted, since
# wireguard-go lists its peers in random order). Both interfaces stay down in namespaces without
# any outer link, so no handshake happens and no packet can leave.

register_uapi() {
    scenario "wg show / showconf / dump identical to wireguard-go's" uapi_same_as_wggo
}

# Normalizes `wg showconf` / `wg show IF` output: the interface name, then peer blocks sorted.
norm_blocks() {
    sed "s/$1/IFNAME/g" | awk 'BEGIN { RS = ""; FS = "\n" } { gsub(/\n/, "\001"); print }' |
        { IFS= read -r first; printf '%s\n' "$first"; sort; } | sed 's/$/\x01/' | tr '\001' '\n'
}
# Normalizes `wg show IF dump`: the interface line, then peer lines sorted.
norm_dump() { { IFS= read -r first; printf '%s\n' "$first"; sort; }; }

# compare_wg STEP: compares the three views of IF_V (vpn) and IF_G (wireguard-go).
compare_wg() {
    local step=$1 what v g bad=0
    for what in showconf dump show; do
        case $what in
            showconf) v=$(wg showconf "$IF_V" 2>&1 | norm_blocks "$IF_V"); g=$(wg showconf "$IF_G" 2>&1 | norm_blocks "$IF_G") ;;
            dump) v=$(wg show "$IF_V" dump 2>&1 | norm_dump); g=$(wg show "$IF_G" dump 2>&1 | norm_dump) ;;
            show) v=$(wg show "$IF_V" 2>&1 | norm_blocks "$IF_V"); g=$(wg show "$IF_G" 2>&1 | norm_blocks "$IF_G") ;;
        esac
        printf '%s\n' "$v" >"$SCN_DIR/$step.$what.vpn"
        printf '%s\n' "$g" >"$SCN_DIR/$step.$what.wireguard-go"
        if [[ $v == "$g" ]]; then
            log "$step: wg $what identical ($(wc -l <<<"$v") lines)"
        else
            log "$step: wg $what differs (- wireguard-go, + vpn):"
            diff -u "$SCN_DIR/$step.$what.wireguard-go" "$SCN_DIR/$step.$what.vpn" | sed 's/^/    /' >&2
            # Say whether only the order of allowed IPs differs.
            if [[ $what == dump ]] && [[ $(tr '\t,' '\n\n' <"$SCN_DIR/$step.$what.vpn" | sort) == "$(tr '\t,' '\n\n' <"$SCN_DIR/$step.$what.wireguard-go" | sort)" ]]; then
                log "$step: (the dumps hold the same items: only their order differs)"
            fi
            bad=1
        fi
    done
    # Keep going: later steps may show more differences.
    ((bad == 0)) || UAPI_BAD+=("$step")
    [[ $step != setconf ]] || must wg showconf "$IF_V"
}

uapi_same_as_wggo() {
    local ns_v ns_g priv pub p1 p2 p3 p4 p5 psk1 psk2 zero i conf add
    UAPI_BAD=()
    require_impl vpn wggo
    ns_v=$(new_ns v) || exit 1
    ns_g=$(new_ns g) || exit 1
    IF_V=$(if_name v) IF_G=$(if_name g)
    start_daemon "$ns_v" vpn "$IF_V"
    start_daemon "$ns_g" wggo "$IF_G"

    # An unclamped private key: both must show it clamped.
    priv=$(head -c 32 /dev/urandom | base64)
    pub=$(pubkey "$priv")
    p1=$(pubkey "$(genkey)") p2=$(pubkey "$(genkey)") p3=$(pubkey "$(genkey)") p4=$(pubkey "$(genkey)") p5=$(pubkey "$(genkey)")
    psk1=$(wg genpsk) psk2=$(wg genpsk)
    zero=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=
    conf=$SCN_DIR/setconf.conf
    {
        printf '[Interface]\nPrivateKey = %s\nListenPort = 41234\nFwMark = 0x2a41\n\n' "$priv"
        printf '[Peer]\nPublicKey = %s\nPresharedKey = %s\nEndpoint = 192.168.241.50:51820\nPersistentKeepalive = 25\n' "$p1" "$psk1"
        printf 'AllowedIPs = 10.241.1.0/24, 10.241.7.77/26, fd10:241:1::/48, 10.241.9.7/32, fd10:241:1:0:abcd::1/72\n\n'
        printf '[Peer]\nPublicKey = %s\nEndpoint = [fd00:241::50]:12345\n' "$p2"
        printf 'AllowedIPs = fd10:241:2::1/128, 10.241.2.0/25, 10.241.2.128/25, ::ffff:10.241.3.0/120, 0.0.0.0/0\n\n'
        printf '[Peer]\nPublicKey = %s\n\n' "$p3"
        printf '[Peer]\nPublicKey = %s\nPresharedKey = %s\nPersistentKeepalive = 65535\nEndpoint = 192.168.241.51:1\n' "$p4" "$psk2"
        printf 'AllowedIPs = 10.241.1.0/24'
        for i in $(seq 100 119); do printf ', 10.241.%d.0/24' "$i"; done
        for i in $(seq 1 12); do printf ', fd10:241:%x::/64' $((0x100 + i)); done
        printf ', ::/0\n\n'
        # The interface's own public key: ignored.
        printf '[Peer]\nPublicKey = %s\nAllowedIPs = 10.241.250.0/24\n\n' "$pub"
        # A low-order public key (all zeros): accepted, never makes a handshake.
        printf '[Peer]\nPublicKey = %s\nPresharedKey = %s\nAllowedIPs = 10.241.251.0/24\n' "$zero" "$zero"
    } >"$conf"
    chmod 600 "$conf"
    sed 's/^/    /' "$conf" >&2
    must wg setconf "$IF_V" "$conf"
    must wg setconf "$IF_G" "$conf"
    compare_wg setconf

    # Changes: remove a peer, drop a PSK, replace allowed IPs, change endpoint and keepalive,
    # add a peer taking prefixes from others, fwmark off.
    must wg set "$IF_V" peer "$p2" remove
    must wg set "$IF_G" peer "$p2" remove
    for ifn in "$IF_V" "$IF_G"; do
        must wg set "$ifn" fwmark off peer "$p1" preshared-key /dev/null allowed-ips 10.241.5.0/24,fd10:241:5::/64 \
            peer "$p4" persistent-keepalive off endpoint "[fd00:241::51]:2" \
            peer "$p3" allowed-ips 10.241.3.3/32,fd10:241:3::/64 endpoint 192.168.241.52:3 persistent-keepalive 7
    done
    add=$SCN_DIR/addconf.conf
    printf '[Peer]\nPublicKey = %s\nAllowedIPs = 10.241.100.0/24, 10.241.3.3/32, 10.241.200.0/24\nEndpoint = [fd00:241::53]:4\n' "$p5" >"$add"
    must wg addconf "$IF_V" "$add"
    must wg addconf "$IF_G" "$add"
    compare_wg changes

    # Replace everything.
    printf '[Interface]\nPrivateKey = %s\nListenPort = 41235\n\n[Peer]\nPublicKey = %s\nAllowedIPs = 10.241.9.0/24\n' "$(genkey)" "$p3" >"$conf"
    must wg setconf "$IF_V" "$conf"
    must wg setconf "$IF_G" "$conf"
    compare_wg replace
    ((${#UAPI_BAD[@]} == 0)) || fail "wg output of vpn differs from wireguard-go's after: ${UAPI_BAD[*]} (see the diffs above)"
}
