# shellcheck shell=bash
# Key rotation with a running server (docs/operator-guide.md, "Key rotation"): `vpn up` in a
# server namespace, stock `wg-quick` clients with wireguard-go in client namespaces.
#   - device rotation: the old config keeps working (even for a new handshake) until the client
#     connects with its new config, whose first packet passes; then the server completes the
#     rotation within seconds (no
#     longer `rotating`, the old public key gone from the interface) and the old config no
#     longer gets a handshake;
#   - grace expiry: a device that never takes its new config loses the old one at the deadline,
#     with no help from the CLI (the server's own upkeep), and the new config still works;
#   - server rotation: `vpn keys rotate --server` reaches the running server; a client with the
#     old config still completes a new handshake (to the retiring key) while a client with the
#     new config works too; after the retiring key's deadline the old config no longer gets a
#     handshake and the new one still does.
#
# Topology (all inside namespaces this scenario creates): a bridge in S (192.168.248.1/24,
# fd00:248::1/64) with one veth per client (192.168.248.1+N, fd00:248::1+N); the VPN pool is
# 10.248.0.0/24 (server 10.248.0.1, devices from 10.248.0.2), no IPv6 pool.

register_rotation() {
    scenario "rotation: device key, old config until the new one connects, then refused" rotation_device
    scenario "rotation: device key, grace period ends without the new config" rotation_device_grace
    scenario "rotation: server key, old and new configs during the grace period, old refused after" rotation_server
}

ROT_SERVER_IP=10.248.0.1

# rot_setup NCLIENTS: namespaces S and C1..CN on S's bridge, `vpn init` and `vpn up` in S.
# Sets ROT_NS_S, ROT_NS_C[1..N], ROT_IF_S, ROT_CFG, ROT_QDIR, ROT_UP_PID.
rot_setup() {
    local n=$1 i br va vb
    require_impl vpn wggo
    # Only the passphrase file `vpn init` makes: never one from the caller's environment.
    unset VPN_PASSPHRASE VPN_PASSPHRASE_FILE CREDENTIALS_DIRECTORY
    ROT_NS_S=$(new_ns s) || exit 1
    br=$(if_name br)
    must ip -n "$ROT_NS_S" link add "$br" type bridge
    must ip -n "$ROT_NS_S" addr add 192.168.248.1/24 dev "$br"
    must ip -n "$ROT_NS_S" addr add fd00:248::1/64 dev "$br" nodad
    must ip -n "$ROT_NS_S" link set "$br" up
    ROT_NS_C=()
    for ((i = 1; i <= n; i++)); do
        ROT_NS_C[i]=$(new_ns "c$i") || exit 1
        va=$(if_name "s$i"); vb=$(if_name "p$i")
        ip link add "$va" netns "$ROT_NS_S" type veth peer name "$vb" netns "${ROT_NS_C[i]}" || fail "cannot create veth pair"
        must ip -n "$ROT_NS_S" link set "$va" master "$br"
        must ip -n "$ROT_NS_S" link set "$va" up
        must ip -n "${ROT_NS_C[i]}" addr add "192.168.248.$((1 + i))/24" dev "$vb"
        must ip -n "${ROT_NS_C[i]}" addr add "fd00:248::$((1 + i))/64" dev "$vb" nodad
        must ip -n "${ROT_NS_C[i]}" link set "$vb" up
    done

    ROT_IF_S=$(if_name v)
    ROT_CFG=$SCN_DIR/etc/vpn.toml
    echo "/run/vpn/$ROT_IF_S.sock" >>"$SCN_DIR/sockets"
    echo "$WG_RUN_DIR/$ROT_IF_S.sock" >>"$SCN_DIR/sockets"
    rvpn init --yes --endpoint 192.168.248.1 --port 51820 --ipv4-pool 10.248.0.0/24 --ipv6-pool none \
        --dns none --egress "$br" --interface "$ROT_IF_S" --store "$SCN_DIR/store/vpn.db" || fail "vpn init failed"
    [[ $(stat -c %a "$SCN_DIR/etc/passphrase") == 600 ]] || fail "vpn init did not make a 0600 passphrase file beside the config"

    log "+ ip netns exec $ROT_NS_S vpn -c $ROT_CFG up"
    ip netns exec "$ROT_NS_S" timeout -k 3 "$NT_DAEMON_MAX" env LOG_LEVEL="${NT_LOG_LEVEL:-info}" "$VPN" -c "$ROT_CFG" up >"$SCN_DIR/up.log" 2>&1 </dev/null &
    ROT_UP_PID=$!
    register_pid "$ROT_UP_PID"
    wait_until 10 wg show "$ROT_IF_S" || { sed 's/^/    /' "$SCN_DIR/up.log" >&2; fail "vpn up did not bring $ROT_IF_S up within 10 s"; }
    ROT_QDIR=$SCN_DIR/clients
    mkdir -m 700 "$ROT_QDIR"
}

# rvpn ARGS...: the vpn CLI on this scenario's configuration, logged with its output.
rvpn() {
    run "$VPN" -c "$ROT_CFG" "$@"
}

# The client interface (and config file name) of client N.
rot_if_c() { if_name "c$1"; }
rot_conf() { echo "$ROT_QDIR/$(rot_if_c "$1").conf"; }

# rot_client_up N SRC: client N runs wg-quick with a copy of config SRC.
rot_client_up() {
    local n=$1 src=$2 conf rc
    conf=$(rot_conf "$n")
    install -m 600 "$src" "$conf"
    echo "$WG_RUN_DIR/$(rot_if_c "$n").sock" >>"$SCN_DIR/sockets"
    log "+ ip netns exec ${ROT_NS_C[n]} wg-quick up $conf   ($(basename "$src"))"
    ip netns exec "${ROT_NS_C[n]}" env WG_QUICK_USERSPACE_IMPLEMENTATION="$WIREGUARD_GO" timeout -k 2 30 wg-quick up "$conf" >"$SCN_DIR/wg-quick.log" 2>&1
    rc=$?
    sed 's/^/    /' "$SCN_DIR/wg-quick.log" >&2
    register_ns_pids "${ROT_NS_C[n]}"
    ((rc == 0)) || fail "wg-quick up $(basename "$src") in client $n failed (exit $rc)"
}

# rot_client_down N: wg-quick down in client N; waits until wireguard-go is gone.
rot_client_down() {
    local n=$1 conf rc
    conf=$(rot_conf "$n")
    log "+ ip netns exec ${ROT_NS_C[n]} wg-quick down $conf"
    ip netns exec "${ROT_NS_C[n]}" timeout -k 2 30 wg-quick down "$conf" >"$SCN_DIR/wg-quick.log" 2>&1
    rc=$?
    sed 's/^/    /' "$SCN_DIR/wg-quick.log" >&2
    ((rc == 0)) || fail "wg-quick down in client $n failed (exit $rc)"
    wait_until 5 bash -c "! test -S $WG_RUN_DIR/$(rot_if_c "$n").sock" || fail "client $n's wireguard-go did not exit"
    wait_until 5 bash -c "[[ -z \$(ip netns pids ${ROT_NS_C[n]}) ]]" || fail "client $n's namespace still has processes"
}

# rot_client_switch N SRC: restarts client N with config SRC (a fresh handshake).
rot_client_switch() {
    rot_client_down "$1"
    rot_client_up "$1" "$2"
}

# rot_field FILE KEY: a value of a WireGuard config file.
rot_field() { awk -v k="$2" '$1 == k { print $3; exit }' "$1"; }
rot_pub_of() { "$VPN" pubkey <<<"$(rot_field "$1" PrivateKey)"; }

rot_not_rotating() { ! "$VPN" -c "$ROT_CFG" device list 2>/dev/null | grep -q rotating; }
rot_has_peer() { wg show "$ROT_IF_S" peers | grep -qxF -- "$1"; }
rot_lacks_peer() { ! rot_has_peer "$1"; }
# rot_utc_in SECONDS: the UTC time that many seconds from now, as `--grace` takes it.
rot_utc_in() { date -u -d "@$(($(date +%s) + $1))" +%Y-%m-%dT%H:%M:%SZ; }

# rot_handshake_fails N: client N (just restarted) gets no handshake and no reply.
rot_handshake_fails() {
    local n=$1 h
    ping_fails "${ROT_NS_C[n]}" "$ROT_SERVER_IP" || return 1
    # A few more seconds for a retried handshake (wireguard-go retries every 5 s).
    ip netns exec "${ROT_NS_C[n]}" ping -c 2 -W 3 "$ROT_SERVER_IP" >/dev/null 2>&1 && return 1
    h=$(wg show "$(rot_if_c "$n")" latest-handshakes | awk '{ print $2 }')
    log "client $n latest handshake: ${h:-none}"
    [[ -z $h || $h == 0 ]]
}

# rot_audit_reason ACTION: the reason of the newest audit entry ACTION.
rot_audit_reason() {
    "$VPN" -c "$ROT_CFG" audit --action "$1" --json --limit 1 2>/dev/null | awk -F'"' '$2 == "reason" { print $4; exit }'
}

rotation_device() {
    rot_setup 1
    local old=$ROT_QDIR/old.conf new=$ROT_QDIR/new.conf old_pub new_pub
    rvpn user add alice || fail "user add alice"
    rvpn device add alice phone --no-qr -o "$old" || fail "device add alice phone"
    old_pub=$(rot_pub_of "$old")
    rot_client_up 1 "$old"
    warm_up "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the client gets no reply over the tunnel"
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "ping over the tunnel lost packets"

    rvpn device rotate alice phone --no-qr -o "$new" || fail "device rotate"
    new_pub=$(rot_pub_of "$new")
    [[ $new_pub != "$old_pub" ]] || fail "the rotation kept the public key"
    [[ $(rot_field "$new" Address) == "$(rot_field "$old" Address)" ]] || fail "the new config has other addresses"
    rvpn device list
    "$VPN" -c "$ROT_CFG" device list | grep -q rotating || fail "device list does not show the rotation"
    run wg show "$ROT_IF_S"
    { rot_has_peer "$old_pub" && rot_has_peer "$new_pub"; } || fail "the running server does not have both keys during the rotation"

    # The old config keeps working: the session, and a new handshake.
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the old config's session stopped at the rotation"
    rot_client_switch 1 "$old"
    warm_up "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the old config gets no new handshake during the rotation"
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the old config lost packets during the rotation"
    sleep 2
    rot_has_peer "$old_pub" || fail "the old key was dropped although the client still uses it"
    "$VPN" -c "$ROT_CFG" device list | grep -q rotating || fail "the rotation completed without the new key"

    # The new config: its very first packet passes (the server's engine gives the new key the
    # device's address at its first handshake: no drop), and the server completes the rotation
    # within seconds.
    rot_client_switch 1 "$new"
    local t0; t0=$(now)
    log "+ ip netns exec ${ROT_NS_C[1]} ping -c 1 -W 3 $ROT_SERVER_IP   (the new config's first packet)"
    ip netns exec "${ROT_NS_C[1]}" ping -c 1 -W 3 "$ROT_SERVER_IP" >/dev/null 2>&1 || fail "the new config's first packet got no reply (dropped until the rotation completed?)"
    "$VPN" -c "$ROT_CFG" status --json >"$SCN_DIR/status.json" || fail "vpn status --json failed"
    if grep -q '"disallowed_source"' "$SCN_DIR/status.json"; then fail "the server dropped packets of the new key as disallowed_source"; fi
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the new config lost packets"
    wait_until 5 rot_not_rotating || fail "device list still shows the rotation 5 s after the new key connected"
    wait_until 3 rot_lacks_peer "$old_pub" || fail "the running server still has the old public key"
    note "rotation completed $(awk -v a="$t0" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }') s after the client switched (including its pings)"
    run wg show "$ROT_IF_S"
    rot_has_peer "$new_pub" || fail "the new key is not a peer"
    wg show "$ROT_IF_S" allowed-ips | grep -F -- "$new_pub" | grep -q '10.248.0.2/32' || fail "the new key did not get the device's address"
    [[ $(wg show "$ROT_IF_S" peers | wc -l) == 1 ]] || fail "the server has other peers than the new key"
    rvpn device list
    "$VPN" -c "$ROT_CFG" device list | grep -F -- "$new_pub" | grep -q enabled || fail "device list does not show the new key, enabled"
    [[ $(rot_audit_reason device.rotate.complete) == "the device connected with its new key" ]] || fail "no audit entry for the completed rotation"
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the new config stopped working after the rotation completed"

    # The old config is refused now.
    rot_client_switch 1 "$old"
    rot_handshake_fails 1 || fail "the old config still gets a handshake after the rotation completed"
    rot_client_switch 1 "$new"
    warm_up "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the new config no longer works"
}

rotation_device_grace() {
    rot_setup 1
    local old=$ROT_QDIR/old.conf new=$ROT_QDIR/new.conf old_pub new_pub deadline secs=12
    rvpn user add alice || fail "user add alice"
    rvpn device add alice phone --no-qr -o "$old" || fail "device add alice phone"
    old_pub=$(rot_pub_of "$old")
    rot_client_up 1 "$old"
    warm_up "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the client gets no reply over the tunnel"

    # `--grace` takes a span of minutes at least, or a UTC time: one some seconds ahead.
    deadline=$(rot_utc_in "$secs")
    rvpn device rotate alice phone --grace "$deadline" --no-qr -o "$new" || fail "device rotate --grace $deadline"
    new_pub=$(rot_pub_of "$new")
    rvpn keys status
    "$VPN" -c "$ROT_CFG" keys status | grep -q "rotating .*alice/phone.*$deadline" || fail "keys status does not show the deadline $deadline"
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the old config stopped at the rotation"
    rot_has_peer "$old_pub" || fail "the running server dropped the old key before the deadline"

    # The deadline passes; no CLI command runs meanwhile: the server's upkeep completes it.
    local f=$SCN_DIR/bg-ping.txt end
    bg_ping "${ROT_NS_C[1]}" "$ROT_SERVER_IP" "$f"
    end=$(date -d "$deadline" +%s)
    log "waiting for the deadline $deadline"
    while (($(date +%s) < end - 2)); do sleep 0.5; done
    rot_has_peer "$old_pub" || fail "the old key was dropped before its deadline"
    wait_until 7 rot_lacks_peer "$old_pub" || fail "the running server still has the old key 5 s after the deadline"
    local gone; gone=$(now)
    wait_until 3 rot_not_rotating || fail "device list still shows the rotation after the deadline"
    sleep 2
    stop_pid "$BG_PING_PID" 0 2
    # Replies until the deadline, none from a second after the old key was dropped.
    (($(replies_between "$f" "$((end - 5))" "$((end - 2))") > 0)) || fail "the old config stopped working before the deadline"
    reply_after "$f" "$(awk -v t="$gone" 'BEGIN { printf "%.3f", t + 1 }')" && fail "the old config still got replies after the deadline"
    [[ $(rot_audit_reason device.rotate.complete) == "grace period over" ]] || fail "no audit entry for the expired rotation"
    wg show "$ROT_IF_S" allowed-ips | grep -F -- "$new_pub" | grep -q '10.248.0.2/32' || fail "the new key did not get the device's address"

    rot_client_switch 1 "$old"
    rot_handshake_fails 1 || fail "the old config still gets a handshake after the deadline"
    rot_client_switch 1 "$new"
    warm_up "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the new config does not work after the deadline"
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the new config lost packets"
}

rotation_server() {
    rot_setup 2
    local c1=$ROT_QDIR/c1-old.conf c2old=$ROT_QDIR/c2-old.conf c2=$ROT_QDIR/c2-new.conf old_srv new_srv deadline secs=25 end
    rvpn user add alice || fail "user add alice"
    rvpn user add bob || fail "user add bob"
    rvpn device add alice phone --no-qr -o "$c1" || fail "device add alice phone"
    rvpn device add bob laptop --no-qr -o "$c2old" || fail "device add bob laptop"
    old_srv=$(wg show "$ROT_IF_S" public-key)
    [[ $(rot_field "$c1" PublicKey) == "$old_srv" ]] || fail "the config's server key is not the interface's"
    rot_client_up 1 "$c1"
    warm_up "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "client 1 gets no reply over the tunnel"

    deadline=$(rot_utc_in "$secs")
    end=$(date -d "$deadline" +%s)
    rvpn keys rotate --server --grace "$deadline" || fail "keys rotate --server"
    wait_until 3 bash -c "[[ \$(wg show $ROT_IF_S public-key) != $old_srv ]]" || fail "the running server did not take its new key"
    new_srv=$(wg show "$ROT_IF_S" public-key)
    rvpn keys status
    "$VPN" -c "$ROT_CFG" keys status | grep -q "previous server key accepted until $deadline" || fail "keys status does not show the deadline"
    if rvpn keys rotate --server; then fail "a second server rotation was accepted while one is under way"; fi

    # The old config: its session, then a new handshake (to the retiring key).
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "client 1's session stopped at the server rotation"
    rot_client_switch 1 "$c1"
    warm_up "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the old config gets no new handshake after the server rotation"
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the old config lost packets after the server rotation"
    handshake_nonzero "$(rot_if_c 1)" "$old_srv" || fail "client 1 has no handshake with the old server key"

    # The new config (device show --client after the rotation).
    rvpn device show bob laptop --client --no-qr -o "$c2" || fail "device show --client"
    [[ $(rot_field "$c2" PublicKey) == "$new_srv" ]] || fail "the new config does not have the server's new key"
    [[ $(rot_field "$c2" PrivateKey) == "$(rot_field "$c2old" PrivateKey)" ]] || fail "the device's key changed with the server's"
    rot_client_up 2 "$c2"
    warm_up "${ROT_NS_C[2]}" "$ROT_SERVER_IP" || fail "the new config gets no reply"
    ping_ok "${ROT_NS_C[2]}" "$ROT_SERVER_IP" || fail "the new config lost packets"
    ping_ok "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the old config stopped when a new one connected"
    ping_ok "${ROT_NS_C[1]}" 10.248.0.3 || fail "the old-config client cannot reach the new-config client"

    # The retiring key's deadline: the server forgets it by itself (upkeep every 30 s at most
    # when no device rotation waits).
    log "waiting for the deadline $deadline"
    while (($(date +%s) < end)); do sleep 0.5; done
    wait_until 35 bash -c "! '$VPN' -c '$ROT_CFG' keys status 2>/dev/null | grep -q 'previous server key'" ||
        fail "the server still keeps its previous key 35 s after the deadline"
    note "previous server key forgotten $(($(date +%s) - end)) s after its deadline"
    [[ $(rot_audit_reason server.key.retire) == "grace period over" ]] || fail "no audit entry for the retired server key"
    # The session made with the old key ends with it (after the moment the server applies it).
    sleep 1
    ping_fails "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "the old config's session outlived the server key's deadline"
    rot_client_switch 1 "$c1"
    rot_handshake_fails 1 || fail "the old config still gets a handshake after the server key's deadline"
    ping_ok "${ROT_NS_C[2]}" "$ROT_SERVER_IP" || fail "the new config stopped working after the deadline"
    # Client 1 with its new config works again.
    rvpn device show alice phone --client --no-qr -o "$ROT_QDIR/c1-new.conf" || fail "device show --client"
    rot_client_switch 1 "$ROT_QDIR/c1-new.conf"
    warm_up "${ROT_NS_C[1]}" "$ROT_SERVER_IP" || fail "client 1's new config gets no reply"
}
