# shellcheck shell=bash
# Migration from wg-quick: a WireGuard server's wg0.conf and a client's configuration are written
# exactly as a wg-quick user has them (keys from `wg genkey`/`wg genpsk`, the client's PrivateKey
# only in the client's file, a hook in the server's); `vpn import wg-quick` takes the server's
# file into a fresh `vpn init` setup; `vpn up` then runs the server with the file's key, port and
# subnets, and the client, brought up by the stock `wg-quick` (through vpnd) with its file
# unchanged (checked byte for byte), reaches the server over IPv4 and IPv6 and is reached by it.
# `vpn device show --client` says the imported device's private key is not in the store.
#
# Topology (all inside namespaces this scenario creates):
#   C 192.168.247.2 fd00:247::2 --- 192.168.247.1 fd00:247::1 S
# Tunnel: 10.247.0.0/24 and fd10:247::/64, server .1 / ::1, client .2 / ::2.

register_migrate() {
    scenario "migrate from wg-quick: vpn import wg-quick, clients unchanged" migrate_wgquick
}

# migrate_vpn ARGS...: the vpn CLI on this scenario's configuration, logged.
migrate_vpn() {
    log "+ vpn -c $MIGRATE_CFG $*"
    "$VPN" -c "$MIGRATE_CFG" "$@"
}

migrate_wgquick() {
    require_impl vpn vpnd
    local ns_s ns_c va vb if_s if_c port=51847 sdir cdir conf_s conf_c sum_before out up_pid
    ns_s=$(new_ns s) || exit 1
    ns_c=$(new_ns c) || exit 1
    va=$(if_name vs); vb=$(if_name vc)
    ip link add "$va" netns "$ns_s" type veth peer name "$vb" netns "$ns_c" || fail "cannot create veth pair"
    must ip -n "$ns_s" addr add 192.168.247.1/24 dev "$va"
    must ip -n "$ns_c" addr add 192.168.247.2/24 dev "$vb"
    must ip -n "$ns_s" addr add fd00:247::1/64 dev "$va" nodad
    must ip -n "$ns_c" addr add fd00:247::2/64 dev "$vb" nodad
    must ip -n "$ns_s" link set "$va" up
    must ip -n "$ns_c" link set "$vb" up

    # What the old server and its client had, as a wg-quick user writes it.
    local key_s key_c pub_s pub_c psk
    key_s=$(wg genkey); key_c=$(wg genkey); psk=$(wg genpsk)
    pub_s=$(wg pubkey <<<"$key_s"); pub_c=$(wg pubkey <<<"$key_c")
    if_s=$(if_name v); if_c=$(if_name c)
    sdir=$SCN_DIR/old-server; cdir=$SCN_DIR/client
    mkdir -m 700 "$sdir" "$cdir"
    conf_s=$sdir/wg0.conf
    conf_c=$cdir/$if_c.conf
    (umask 077; cat >"$conf_s" <<EOF
[Interface]
Address = 10.247.0.1/24,fd10:247::1/64
ListenPort = $port
PrivateKey = $key_s
PostUp = iptables -t nat -A POSTROUTING -o eth0 -j MASQUERADE
PostDown = iptables -t nat -D POSTROUTING -o eth0 -j MASQUERADE

### Client alice
[Peer]
PublicKey = $pub_c
PresharedKey = $psk
AllowedIPs = 10.247.0.2/32,fd10:247::2/128
EOF
    cat >"$conf_c" <<EOF
[Interface]
PrivateKey = $key_c
Address = 10.247.0.2/32,fd10:247::2/128

[Peer]
PublicKey = $pub_s
PresharedKey = $psk
Endpoint = 192.168.247.1:$port
AllowedIPs = 10.247.0.0/24,fd10:247::/64
PersistentKeepalive = 25
EOF
    )
    sum_before=$(sha256sum "$conf_c")

    # The new server: a fresh setup, then the import.
    MIGRATE_CFG=$SCN_DIR/etc/vpn.toml
    echo "/run/vpn/$if_s.sock" >>"$SCN_DIR/sockets"
    echo "$WG_RUN_DIR/$if_s.sock" >>"$SCN_DIR/sockets"
    migrate_vpn init --yes --endpoint 192.168.247.1 --dns none --egress "$va" --interface "$if_s" \
        --store "$SCN_DIR/store/vpn.db" || fail "vpn init failed"
    migrate_vpn import wg-quick "$conf_s" --dry-run >"$SCN_DIR/plan.txt" 2>&1 || { sed 's/^/    /' "$SCN_DIR/plan.txt" >&2; fail "vpn import --dry-run failed"; }
    sed 's/^/    /' "$SCN_DIR/plan.txt" >&2
    grep -q 'line 5: PostUp' "$SCN_DIR/plan.txt" || fail "the plan does not report the PostUp hook"
    migrate_vpn import wg-quick "$conf_s" --yes || fail "vpn import wg-quick failed"
    out=$(migrate_vpn device list) || fail "vpn device list failed"
    log "$out"
    grep -q "^alice .*10\.247\.0\.2 .*fd10:247::2 .*$pub_c" <<<"$out" || fail "the imported device alice/device1 with its key and addresses is not listed"
    grep -q "^listen_port = $port\$" "$MIGRATE_CFG" || fail "the configuration did not take the file's ListenPort"
    if migrate_vpn device show alice device1 --client --no-qr >"$SCN_DIR/show.txt" 2>&1; then fail "vpn device show --client wrote a config for a device without its private key"; fi
    grep -q 'rotate' "$SCN_DIR/show.txt" || fail "vpn device show --client does not suggest vpn device rotate"

    log "+ ip netns exec $ns_s vpn -c $MIGRATE_CFG up"
    ip netns exec "$ns_s" timeout -k 3 "$NT_DAEMON_MAX" "$VPN" -c "$MIGRATE_CFG" up >"$SCN_DIR/up.log" 2>&1 &
    up_pid=$!
    register_pid "$up_pid"
    wait_until 10 wg show "$if_s" || { sed 's/^/    /' "$SCN_DIR/up.log" >&2; fail "vpn up did not bring $if_s up within 10 s"; }
    [[ $(wg show "$if_s" public-key) == "$pub_s" ]] || fail "the server does not run with the imported key"
    [[ $(wg show "$if_s" listen-port) == "$port" ]] || fail "the server does not listen on the imported port"
    wg show "$if_s" preshared-keys | grep -q "^$pub_c[[:space:]]$psk\$" || fail "the imported peer lacks its pre-shared key"

    # The client comes up with its file as it was.
    local impl_bin rc; impl_bin=$(impl_binary vpnd)
    echo "$WG_RUN_DIR/$if_c.sock" >>"$SCN_DIR/sockets"
    log "+ ip netns exec $ns_c env WG_QUICK_USERSPACE_IMPLEMENTATION=$impl_bin wg-quick up $conf_c"
    ip netns exec "$ns_c" env WG_QUICK_USERSPACE_IMPLEMENTATION="$impl_bin" timeout -k 2 30 wg-quick up "$conf_c" >"$SCN_DIR/wg-quick-up.log" 2>&1
    rc=$?
    sed 's/^/    /' "$SCN_DIR/wg-quick-up.log" >&2
    register_ns_pids "$ns_c"
    ((rc == 0)) || fail "wg-quick up of the unchanged client config failed (exit $rc)"
    [[ $(sha256sum "$conf_c") == "$sum_before" ]] || fail "the client's config changed"

    warm_up "$ns_c" 10.247.0.1 || fail "the client gets no reply from the migrated server"
    ping_ok "$ns_c" 10.247.0.1 || fail "IPv4 ping client -> server lost packets"
    ping_ok "$ns_c" fd10:247::1 || fail "IPv6 ping client -> server lost packets"
    ping_ok "$ns_s" 10.247.0.2 || fail "IPv4 ping server -> client lost packets"
    ping_ok "$ns_s" fd10:247::2 || fail "IPv6 ping server -> client lost packets"
    handshake_nonzero "$if_s" "$pub_c" || fail "wg show on the server shows no handshake with the imported peer"

    log "+ ip netns exec $ns_c wg-quick down $conf_c"
    ip netns exec "$ns_c" timeout -k 2 30 wg-quick down "$conf_c" >"$SCN_DIR/wg-quick-down.log" 2>&1 || fail "wg-quick down failed"
    migrate_vpn down || fail "vpn down failed"
    wait_until 10 bash -c "! kill -0 $up_pid 2>/dev/null" || fail "vpn up still runs after vpn down"
    if ip -n "$ns_s" link show "$if_s" >/dev/null 2>&1; then fail "interface $if_s still exists after vpn down"; fi
    log "migrated server up and down; the unchanged client connected"
}
