# shellcheck shell=bash
# Daemon life cycle, wireguard-go's contract (`vpn daemon [-f] IFNAME`, `vpnd [-f] IFNAME`):
#  - without -f it returns (exit 0) once the interface and the UAPI socket are ready, even when
#    its output goes to a pipe that the caller reads to the end, and the daemon keeps running;
#  - a second daemon for the same interface fails and leaves the first one working;
#  - it exits, removing its socket and interface, on SIGTERM, when the interface is deleted and
#    when the socket file is removed;
#  - the TUN transmit queue is 4000 packets, or VPN_TUN_QUEUE_LEN.

register_lifecycle() {
    scenario "daemon life cycle: vpn daemon (detach, SIGTERM, interface or socket removed)" lifecycle vpn
    scenario "daemon life cycle: vpnd (detach, SIGTERM, interface or socket removed)" lifecycle vpnd
}

# detached_cmd IMPL IFNAME -> prints the command (words) that starts a detached daemon
detached_cmd() {
    local bin; bin=$(impl_binary "$1")
    if [[ $UNDER_TEST == wireguard-go ]]; then echo "$bin $2"
    elif [[ $1 == vpn ]]; then echo "$bin daemon $2"
    else echo "$bin $2"; fi
}

# start_detached IMPL NS IFNAME: starts it detached with output through a pipe; checks it
# returns, succeeds, and that everything is ready at once. Sets DPID (the daemon's pid).
start_detached() {
    local impl=$1 ns=$2 ifn=$3 rc rc_cat
    echo "$WG_RUN_DIR/$ifn.sock" >>"$SCN_DIR/sockets"
    log "+ ip netns exec $ns $(detached_cmd "$impl" "$ifn") 2>&1 | cat"
    # shellcheck disable=SC2046
    ip netns exec "$ns" env -u LOG_LEVEL timeout -k 2 15 $(detached_cmd "$impl" "$ifn") 2>&1 </dev/null |
        timeout 15 cat >"$SCN_DIR/detach-$ifn.out"
    rc=${PIPESTATUS[0]} rc_cat=${PIPESTATUS[1]}
    register_ns_pids "$ns"
    sed 's/^/    /' "$SCN_DIR/detach-$ifn.out" >&2
    ((rc == 0)) || fail "'$(detached_cmd "$impl" "$ifn")' exited with $rc"
    ((rc_cat == 0)) || fail "the detached daemon kept its caller's output pipe open: a reader waited until killed ($rc_cat)"
    [[ -S $WG_RUN_DIR/$ifn.sock ]] || fail "no UAPI socket right after '$(detached_cmd "$impl" "$ifn")' returned"
    ip -n "$ns" link show "$ifn" >/dev/null 2>&1 || fail "no interface $ifn right after '$(detached_cmd "$impl" "$ifn")' returned"
    wg show "$ifn" >/dev/null 2>&1 || fail "wg show $ifn fails right after the daemon detached"
    DPID=$(ip netns pids "$ns" | head -1)
    [[ -n $DPID ]] || fail "no daemon process runs in $ns after detaching"
    log "detached daemon: pid $DPID ($(tr '\0' ' ' <"/proc/$DPID/cmdline"))"
}

# gone NS IFNAME PID: the daemon exited and took its socket and interface with it.
expect_gone() {
    local ns=$1 ifn=$2 pid=$3 why=$4
    wait_until 5 bash -c "! kill -0 $pid 2>/dev/null || [[ \$(awk '{print \$3}' /proc/$pid/stat 2>/dev/null) == Z ]]" ||
        fail "the daemon (pid $pid) still runs 5 s after $why"
    wait_until 3 test ! -e "$WG_RUN_DIR/$ifn.sock" || fail "the UAPI socket still exists after the daemon exited ($why)"
    wait_until 3 bash -c "! ip -n $ns link show $ifn >/dev/null 2>&1" || fail "interface $ifn still exists after the daemon exited ($why)"
    log "after $why: daemon, socket and interface are gone"
}

lifecycle() {
    local impl=$1 ns ifn out rc
    require_impl "$impl"
    ns=$(new_ns l) || exit 1

    # 1. Detach; a second daemon for the same interface fails; SIGTERM.
    ifn=$(if_name 1)
    start_detached "$impl" "$ns" "$ifn"
    if [[ $UNDER_TEST == vpn ]]; then
        # The TUN transmit queue: 4000 packets unless told otherwise (step 2).
        ip -n "$ns" link show "$ifn" | grep -q "qlen 4000" || fail "$ifn does not have the default transmit queue of 4000 packets"
    fi
    must wg set "$ifn" listen-port 41001 private-key "$(keyfile l "$(genkey)")"
    log "+ a second daemon for $ifn (must fail)"
    # shellcheck disable=SC2046
    out=$(ip netns exec "$ns" timeout -k 2 10 $(detached_cmd "$impl" "$ifn") 2>&1 </dev/null)
    rc=$?
    printf '%s\n' "$out" | sed 's/^/    /' >&2
    register_ns_pids "$ns"
    ((rc != 0 && rc != 124)) || fail "a second daemon for the running interface $ifn did not fail (exit $rc)"
    kill -0 "$DPID" 2>/dev/null || fail "the first daemon died when a second one was started"
    [[ $(wg show "$ifn" listen-port 2>/dev/null) == 41001 ]] || fail "the first daemon no longer answers on its socket after a second one was started"
    log "+ kill -TERM $DPID"
    kill -TERM "$DPID"
    expect_gone "$ns" "$ifn" "$DPID" "SIGTERM"

    # 2. The interface is deleted (and the queue length comes from VPN_TUN_QUEUE_LEN).
    ifn=$(if_name 2)
    VPN_TUN_QUEUE_LEN=321 start_detached "$impl" "$ns" "$ifn"
    if [[ $UNDER_TEST == vpn ]]; then
        ip -n "$ns" link show "$ifn" | grep -q "qlen 321" || fail "VPN_TUN_QUEUE_LEN=321 did not set $ifn's transmit queue"
    fi
    must ip -n "$ns" link del "$ifn"
    expect_gone "$ns" "$ifn" "$DPID" "ip link del $ifn"

    # 3. The socket is removed (a foreground daemon this time).
    ifn=$(if_name 3)
    start_daemon "$ns" "$impl" "$ifn"
    local fpid; fpid=$(pgrep -P "$DAEMON_PID" | head -1)
    [[ -n $fpid ]] || fpid=$DAEMON_PID
    must rm "$WG_RUN_DIR/$ifn.sock"
    expect_gone "$ns" "$ifn" "$fpid" "rm $WG_RUN_DIR/$ifn.sock"
}
