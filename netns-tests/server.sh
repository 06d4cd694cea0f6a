# shellcheck shell=bash
# The server manager end to end: `vpn init` and `vpn up` in a server namespace; two clients in
# their own namespaces run the stock `wg-quick` with wireguard-go on the configurations exported by
# `vpn device add`; a host behind the server (with no route back to the VPN pool) is reached
# through the server's NAT; adding a device while traffic flows does not interrupt the other
# client; removing a device cuts exactly that client, whose packets `vpn status` then shows as
# dropped; `vpn down` removes the interface and the nftables table.
#
# Topology (all inside namespaces this scenario creates):
#   C1 192.168.244.2 --- 192.168.244.1 S 192.168.246.1 --- 192.168.246.2 H
#   C2 192.168.245.2 --- 192.168.245.1 S
# Clients reach the server's endpoint 192.168.244.1 (C2 through S as its router).

register_server() {
    scenario "server manager: vpn up, wg-quick clients, NAT, live add and remove" server_manager
    scenario "server manager: the README's plain \`vpn up\` on a fresh machine, and again after a restart" server_defaults
}

# veth NS1 ADDR1 NS2 ADDR2 SUFFIX: a veth pair with IPv4 /24 addresses; prints the NS1-side name.
veth() {
    local a=$1 aa=$2 b=$3 ba=$4 sfx=$5 va vb
    va=$(if_name "s$sfx"); vb=$(if_name "p$sfx")
    ip link add "$va" netns "$a" type veth peer name "$vb" netns "$b" || fail "cannot create veth pair"
    ip -n "$a" addr add "$aa/24" dev "$va"
    ip -n "$b" addr add "$ba/24" dev "$vb"
    ip -n "$a" link set "$va" up
    ip -n "$b" link set "$vb" up
    echo "$va"
}

# client_up NS CONF: wg-quick up with wireguard-go inside NS.
client_up() {
    local ns=$1 conf=$2 rc
    log "+ ip netns exec $ns env WG_QUICK_USERSPACE_IMPLEMENTATION=$WIREGUARD_GO wg-quick up $conf"
    echo "$WG_RUN_DIR/$(basename "$conf" .conf).sock" >>"$SCN_DIR/sockets"
    ip netns exec "$ns" env WG_QUICK_USERSPACE_IMPLEMENTATION="$WIREGUARD_GO" timeout -k 2 30 wg-quick up "$conf" >"$SCN_DIR/$(basename "$conf").up.log" 2>&1
    rc=$?
    sed 's/^/    /' "$SCN_DIR/$(basename "$conf").up.log" >&2
    register_ns_pids "$ns"
    ((rc == 0)) || fail "wg-quick up $conf failed (exit $rc)"
}

# vpnc ARGS...: the vpn CLI on this scenario's configuration, logged.
vpnc() {
    log "+ vpn -c $SERVER_CFG $*"
    "$VPN" -c "$SERVER_CFG" "$@"
}

server_manager() {
    require_impl vpn wggo
    local ns_s ns_c1 ns_c2 ns_h egress if_s if_c1 if_c2 qdir h=192.168.246.2
    ns_s=$(new_ns s) || exit 1
    ns_c1=$(new_ns c1) || exit 1
    ns_c2=$(new_ns c2) || exit 1
    ns_h=$(new_ns h) || exit 1
    veth "$ns_s" 192.168.244.1 "$ns_c1" 192.168.244.2 1 >/dev/null
    veth "$ns_s" 192.168.245.1 "$ns_c2" 192.168.245.2 2 >/dev/null
    egress=$(veth "$ns_s" 192.168.246.1 "$ns_h" "$h" 3)
    must ip -n "$ns_c2" route add default via 192.168.245.1
    must ip -n "$ns_c1" route add default via 192.168.244.1
    # H knows nothing of the VPN pool: only NAT brings its replies back.
    if ip -n "$ns_h" route get 10.77.0.2 >/dev/null 2>&1; then fail "H unexpectedly has a route to the VPN pool"; fi

    if_s=$(if_name v); if_c1=$(if_name c1); if_c2=$(if_name c2)
    SERVER_CFG=$SCN_DIR/etc/vpn.toml
    echo "/run/vpn/$if_s.sock" >>"$SCN_DIR/sockets"
    echo "$WG_RUN_DIR/$if_s.sock" >>"$SCN_DIR/sockets"
    vpnc init --yes --endpoint 192.168.244.1 --port 51820 --ipv4-pool 10.77.0.0/24 --ipv6-pool fd77:1::/64 \
        --dns none --egress "$egress" --interface "$if_s" --store "$SCN_DIR/store/vpn.db" || fail "vpn init failed"
    if vpnc init --yes >/dev/null 2>&1; then fail "a second vpn init did not refuse"; fi
    [[ $(stat -c %a "$SCN_DIR/store/vpn.db") == 600 ]] || fail "the store is not mode 0600"

    log "+ ip netns exec $ns_s vpn -c $SERVER_CFG up"
    ip netns exec "$ns_s" timeout -k 3 "$NT_DAEMON_MAX" "$VPN" -c "$SERVER_CFG" up >"$SCN_DIR/up.log" 2>&1 &
    local up_pid=$!
    register_pid "$up_pid"
    wait_until 10 wg show "$if_s" || { sed 's/^/    /' "$SCN_DIR/up.log" >&2; fail "vpn up did not bring $if_s up within 10 s"; }
    ip netns exec "$ns_s" nft list table inet vpn >"$SCN_DIR/nft.txt" 2>&1 || fail "no nftables table inet vpn after vpn up"
    grep -q masquerade "$SCN_DIR/nft.txt" || fail "the nftables table has no masquerade rule"
    [[ $(ip netns exec "$ns_s" cat /proc/sys/net/ipv4/ip_forward) == 1 ]] || fail "vpn up did not enable IPv4 forwarding"

    vpnc user add alice || fail "user add alice"
    vpnc user add bob || fail "user add bob"
    qdir=$SCN_DIR/clients
    mkdir -m 700 "$qdir"
    vpnc device add alice phone --no-qr -o "$qdir/$if_c1.conf" || fail "device add alice phone"
    vpnc device add bob laptop --no-qr -o "$qdir/$if_c2.conf" || fail "device add bob laptop"
    [[ $(stat -c %a "$qdir/$if_c1.conf") == 600 ]] || fail "the exported client config is not mode 0600"
    grep -q '^Endpoint = 192.168.244.1:51820$' "$qdir/$if_c1.conf" || fail "client config lacks the endpoint"
    [[ $(wg show "$if_s" peers | wc -l) == 2 ]] || fail "the running server did not get both devices live"

    client_up "$ns_c1" "$qdir/$if_c1.conf"
    client_up "$ns_c2" "$qdir/$if_c2.conf"
    warm_up "$ns_c1" 10.77.0.1 || fail "client 1 gets no reply from the server over the tunnel"
    warm_up "$ns_c2" 10.77.0.1 || fail "client 2 gets no reply from the server over the tunnel"
    ping_ok "$ns_c1" fd77:1::1 || fail "IPv6 ping client 1 -> server lost packets"
    ping_ok "$ns_c1" "$h" || fail "client 1 cannot reach the host behind the server (NAT)"
    ping_ok "$ns_c2" "$h" || fail "client 2 cannot reach the host behind the server (NAT)"
    ping_ok "$ns_c1" 10.77.0.3 || fail "client 1 cannot reach client 2 through the server"
    # A free address of the pool: the server answers at once (as the kernel's WireGuard does)
    # instead of leaving the client to time out, and counts the packets as no_route.
    ping_unreachable "$ns_c1" 10.77.0.200 || fail "a ping to a free pool address got no ICMP host unreachable"
    ping_unreachable "$ns_c1" fd77:1::c8 || fail "a ping to a free IPv6 pool address got no ICMPv6 address unreachable"

    # A device added while client 2's traffic flows must not interrupt it.
    local f=$SCN_DIR/bg-ping.txt t0 t1 n
    bg_ping "$ns_c2" "$h" "$f"
    sleep 1.5
    t0=$(now)
    vpnc user add carol || fail "user add carol"
    vpnc device add carol tablet --no-qr -o "$qdir/carol.conf" || fail "device add carol tablet"
    vpnc device disable carol tablet || fail "device disable"
    vpnc device enable carol tablet || fail "device enable"
    t1=$(now)
    sleep 1.5
    stop_pid "$BG_PING_PID" 0 2
    n=$(replies_between "$f" "$(awk -v t="$t0" 'BEGIN { printf "%.3f", t - 1 }')" "$(awk -v t="$t1" 'BEGIN { printf "%.3f", t + 1 }')")
    local want; want=$(awk -v a="$t0" -v b="$t1" 'BEGIN { print int((b - a + 2) / 0.2) - 2 }')
    log "replies around the changes: $n (at least $want expected)"
    ((n >= want)) || fail "client 2's pings were interrupted while devices were added and toggled ($n replies, expected >= $want)"
    [[ $(wg show "$if_s" peers | wc -l) == 3 ]] || fail "carol's device is not live"

    # Removing alice's device cuts exactly her client.
    vpnc device remove alice phone || fail "device remove"
    ping_fails "$ns_c1" 10.77.0.1 || fail "client 1 still reaches the server after its device was removed"
    ping_ok "$ns_c2" "$h" || fail "client 2 lost the tunnel when client 1's device was removed"

    vpnc status >"$SCN_DIR/status.txt" || fail "vpn status failed"
    sed 's/^/    /' "$SCN_DIR/status.txt" >&2
    # Client 1 still sends on the session its removed device had: the server drops and counts it.
    grep -q '^dropped since start: .*[1-9][0-9]* unknown_index' "$SCN_DIR/status.txt" || fail "vpn status does not show the packets of the removed device as dropped (unknown_index)"
    vpnc status --json >"$SCN_DIR/status.json" || fail "vpn status --json failed"
    grep -q '"unknown_index": [1-9]' "$SCN_DIR/status.json" || fail "vpn status --json lacks the unknown_index drop counter"
    grep -q '"no_route": [1-9]' "$SCN_DIR/status.json" || fail "vpn status --json does not count the pings to free pool addresses (no_route)"
    grep -q '"running": true' "$SCN_DIR/status.json" || fail "vpn status --json does not say running"
    grep -q '"device": "laptop"' "$SCN_DIR/status.json" || fail "vpn status --json lacks bob's laptop"
    grep -q '"endpoint": "192.168.245.2:' "$SCN_DIR/status.json" || fail "vpn status --json lacks client 2's endpoint"
    vpnc user list || fail "vpn user list failed"
    vpnc user list --json >"$SCN_DIR/users.json" || fail "vpn user list --json failed"
    grep -q '"last_handshake": [1-9]' "$SCN_DIR/users.json" || fail "vpn user list --json shows no user's last handshake"

    vpnc down || fail "vpn down failed"
    wait_until 10 bash -c "! kill -0 $up_pid 2>/dev/null" || fail "vpn up still runs after vpn down"
    if ip -n "$ns_s" link show "$if_s" >/dev/null 2>&1; then fail "interface $if_s still exists after vpn down"; fi
    if ip netns exec "$ns_s" nft list table inet vpn >/dev/null 2>&1; then fail "nftables table inet vpn still exists after vpn down"; fi
    log "server down; interface and firewall table removed"
}

# The README's first command, `vpn up` with nothing configured, on the paths it uses by default
# (/etc/vpn, /var/lib/vpn, /run; private to this scenario through sandbox.sh and a mount namespace
# of its own): it creates the configuration, the passphrase, the store and the server key with
# working defaults (wg0, UDP 51820, NAT out of the default route's interface, the endpoint that
# interface's address); a device added with the commands it prints connects with the stock
# wg-quick and reaches a host behind the server through NAT; a reload (SIGHUP) takes a new port and
# MTU from the file. Then `vpn down` and a second `vpn up`, which finds everything it created: the same server key, unlocked with the passphrase it
# generated, and the client connects again with the configuration it already has.
#
# Topology: C 192.168.247.2 --- 192.168.247.1 S 192.168.248.1 --- 192.168.248.2 H (S's default
# route), so the endpoint is 192.168.248.1, reached by C through S.
server_defaults() {
    require_impl vpn wggo
    require_cmd unshare nsenter
    local ns_s ns_c ns_h egress if_c conf sandbox=$SCN_DIR/sandbox h=192.168.248.2 up_pid
    ns_s=$(new_ns s) || exit 1
    ns_c=$(new_ns c) || exit 1
    ns_h=$(new_ns h) || exit 1
    veth "$ns_s" 192.168.247.1 "$ns_c" 192.168.247.2 1 >/dev/null
    egress=$(veth "$ns_s" 192.168.248.1 "$ns_h" "$h" 2)
    must ip -n "$ns_s" route add default via "$h"
    must ip -n "$ns_c" route add default via 192.168.247.1
    if ip netns exec "$ns_s" unshare -m --propagation private bash "$NT_DIR/sandbox.sh" "$sandbox" true 2>"$SCN_DIR/sandbox.err"; then :; else
        sed 's/^/    /' "$SCN_DIR/sandbox.err" >&2
        skip "cannot make the default paths private to the test (overlay and bind mounts in a mount namespace)"
    fi

    # up_start: `vpn up` with no options and none of vpn's variables, in the sandbox, in S.
    up_start() {
        log "+ ip netns exec $ns_s unshare -m (sandbox) vpn up"
        ip netns exec "$ns_s" unshare -m --propagation private bash "$NT_DIR/sandbox.sh" "$sandbox" \
            env -u VPN_CONFIG -u VPN_PASSPHRASE -u VPN_PASSPHRASE_FILE -u CREDENTIALS_DIRECTORY \
            timeout -k 3 "$NT_DAEMON_MAX" "$VPN" up >>"$SCN_DIR/up.log" 2>&1 </dev/null &
        up_pid=$!
        register_pid "$up_pid"
        wait_until 10 in_s wg show wg0 || { sed 's/^/    /' "$SCN_DIR/up.log" >&2; fail "vpn up did not bring wg0 up within 10 s"; }
    }
    # in_s COMMAND...: COMMAND in the running server's network and mount namespaces.
    in_s() { nsenter -t "$up_pid" -m -n env -u VPN_CONFIG -u VPN_PASSPHRASE -u VPN_PASSPHRASE_FILE "$@"; }
    up_stop() {
        log "+ vpn down"
        in_s "$VPN" down || fail "vpn down failed"
        wait_until 10 bash -c "! kill -0 $up_pid 2>/dev/null" || fail "vpn up still runs after vpn down"
        if ip -n "$ns_s" link show wg0 >/dev/null 2>&1; then fail "wg0 still exists after vpn down"; fi
        if ip netns exec "$ns_s" nft list table inet vpn >/dev/null 2>&1; then fail "nftables table inet vpn still exists after vpn down"; fi
    }

    up_start
    sed 's/^/    /' "$SCN_DIR/up.log" >&2
    grep -q 'no configuration at /etc/vpn/vpn.toml; created one' "$SCN_DIR/up.log" || fail "the first vpn up did not say it created the configuration"
    grep -q "clients connect to 192.168.248.1" "$SCN_DIR/up.log" || fail "the default endpoint is not the egress interface's address 192.168.248.1"
    grep -q "NAT out of $egress" "$SCN_DIR/up.log" || fail "the default egress is not the default route's interface $egress"
    local f
    for f in /etc/vpn/vpn.toml /etc/vpn/passphrase /var/lib/vpn/vpn.db; do
        in_s test -f "$f" || fail "the first vpn up did not create $f"
        [[ $(in_s stat -c %a "$f") == 600 ]] || fail "$f is not mode 0600"
    done
    [[ $(in_s wg show wg0 listen-port) == 51820 ]] || fail "wg0 does not listen on UDP 51820"
    local server_key
    server_key=$(in_s wg show wg0 public-key) || fail "no public key on wg0"
    in_s nft list table inet vpn >"$SCN_DIR/nft.txt" 2>&1 || fail "no nftables table inet vpn"
    grep masquerade "$SCN_DIR/nft.txt" | grep -q "\"$egress\"" || { sed 's/^/    /' "$SCN_DIR/nft.txt" >&2; fail "no masquerade out of $egress"; }

    # What the first run told the operator to do next.
    in_s "$VPN" user add alice || fail "vpn user add alice"
    if_c=$(if_name c)
    conf=$SCN_DIR/clients/$if_c.conf
    mkdir -m 700 "$SCN_DIR/clients"
    in_s "$VPN" device add alice laptop --no-qr -o "$conf" || fail "vpn device add alice laptop"
    grep -q '^Endpoint = 192.168.248.1:51820$' "$conf" || fail "the client configuration's endpoint is not 192.168.248.1:51820"
    grep -q "^PublicKey = $server_key\$" "$conf" || fail "the client configuration does not name wg0's public key"
    # wg-quick would hand the DNS line to resolvconf, which is the host's, not the namespace's.
    sed -i '/^DNS = /d' "$conf"
    client_up "$ns_c" "$conf"
    warm_up "$ns_c" "$h" || fail "the client gets no reply from the host behind the server (tunnel and NAT)"
    ping_ok "$ns_c" "$h" || fail "pings from the client through the tunnel and NAT were lost"
    handshake_nonzero "$if_c" "$server_key" || fail "the client shows no handshake with the server"

    # A reload (SIGHUP, what `systemctl reload vpn` sends): a new listen port and MTU in the
    # generated file take effect on the running server; the client follows the port.
    local cfg=$sandbox/etc-vpn/vpn.toml vpn_pid
    sed -i -e 's/^listen_port = 51820$/listen_port = 51821/' -e 's/^mtu = 1420$/mtu = 1380/' "$cfg"
    { grep -q '^listen_port = 51821$' "$cfg" && grep -q '^mtu = 1380$' "$cfg"; } || fail "cannot find listen_port and mtu in the generated configuration"
    vpn_pid=$(pgrep -P "$up_pid" -x vpn) || fail "no vpn process under $up_pid"
    log "+ kill -HUP $vpn_pid   (listen_port 51821, mtu 1380)"
    kill -HUP "$vpn_pid"
    listens_on() { [[ $(in_s wg show wg0 listen-port) == "$1" ]]; }
    wait_until 5 listens_on 51821 || fail "after the reload wg0 does not listen on 51821"
    wait_until 5 bash -c "ip -n $ns_s link show wg0 | grep -q 'mtu 1380 '" || fail "after the reload wg0's MTU is not 1380"
    in_s nft list table inet vpn | grep -q 'udp dport 51821' || fail "after the reload the firewall does not open UDP 51821"
    must ip netns exec "$ns_c" wg set "$if_c" peer "$server_key" endpoint 192.168.248.1:51821
    sed -i 's/^Endpoint = 192.168.248.1:51820$/Endpoint = 192.168.248.1:51821/' "$conf"
    warm_up "$ns_c" "$h" || fail "the client gets no reply on the new port after the reload"
    ping_ok "$ns_c" "$h" || fail "pings on the new port after the reload were lost"
    grep -q 'MTU changed' "$SCN_DIR/up.log" || fail "the server did not log the MTU change"
    if grep -q 'takes effect after' "$SCN_DIR/up.log"; then fail "the reload reported a setting as needing a restart"; fi
    up_stop

    # Second run: nothing is created again; the same key, the store unlocked with the generated
    # passphrase; the client (re-started, its configuration unchanged) connects again.
    : >"$SCN_DIR/up.log"
    up_start
    sed 's/^/    /' "$SCN_DIR/up.log" >&2
    if grep -q 'created one' "$SCN_DIR/up.log"; then fail "the second vpn up created a configuration again"; fi
    [[ $(in_s wg show wg0 public-key) == "$server_key" ]] || fail "the server key changed across a restart"
    listens_on 51821 || fail "the restarted server does not listen on the reloaded port 51821"
    [[ $(in_s wg show wg0 peers | wc -l) == 1 ]] || fail "the device is not back on wg0 after the restart"
    ip netns exec "$ns_c" wg-quick down "$conf" >/dev/null 2>&1 || fail "wg-quick down on the client"
    client_up "$ns_c" "$conf"
    warm_up "$ns_c" "$h" || fail "the client does not connect again after the server's restart"
    ping_ok "$ns_c" "$h" || fail "pings through the restarted server were lost"
    up_stop
}
