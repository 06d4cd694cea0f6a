# shellcheck shell=bash
# Library for the real-network tests: namespaces, daemons, WireGuard peers, assertions, cleanup.
#
# Sourced by run.sh (the runner) and, once per scenario, by a fresh `bash run.sh --one ...`
# process. Everything a scenario creates is named after the run (NT_RUN_ID, the runner's PID) and
# the scenario number (NT_SCN), and is recorded under the scenario's directory so that the runner
# can remove it even if the scenario process was killed:
#   namespaces   vpnt-<run>-<scn><side>          (file $SCN_DIR/netns)
#   interfaces   wt<run>x<scn><side>  (<= 15 characters; /var/run/wireguard is shared)
#   processes    "<pid> <starttime>"             (file $SCN_DIR/pids)
# Only addresses inside the test namespaces are ever used:
#   outer (veth)  192.168.241.0/24 and fd00:241::/64
#   inner (wg)    10.241.0.0/24 and fd10:241::/64

NT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
NT_ROOT=$(cd "$NT_DIR/.." && pwd)
WG_RUN_DIR=/var/run/wireguard

# Longest life of any daemon we start (a safety net; cleanup normally stops them much earlier).
NT_DAEMON_MAX=${NT_DAEMON_MAX:-300}

# ---------------------------------------------------------------------------------------------
# Binaries

# Sets VPN, VPND, WIREGUARD_GO, BORINGTUN to absolute paths where they can be found (an absent
# binary keeps its name or stays empty; the scenarios that need it say so).
nt_resolve_binaries() {
    local p
    if [[ -z ${VPN:-} || -z ${VPND:-} ]]; then
        # Test what is in the tree: build it (a no-op when up to date) rather than trusting a
        # binary that may be older than the sources.
        if ! (cd "$NT_ROOT" && cargo build --release --locked --quiet --bin vpn --bin vpnd); then
            echo "netns-tests: cannot build vpn (cargo build --release --bin vpn --bin vpnd)" >&2
            return 1
        fi
        : "${VPN:=$NT_ROOT/target/release/vpn}" "${VPND:=$NT_ROOT/target/release/vpnd}"
    fi
    export VPN VPND
    : "${WIREGUARD_GO:=wireguard-go}"
    if [[ -z ${BORINGTUN:-} ]]; then
        if p=$(command -v boringtun-cli); then BORINGTUN=$p
        elif [[ -x ${HOME:-/root}/.cargo/bin/boringtun-cli ]]; then BORINGTUN=${HOME:-/root}/.cargo/bin/boringtun-cli
        else BORINGTUN=boringtun-cli; fi
    fi
    for v in VPN VPND WIREGUARD_GO BORINGTUN; do
        if [[ ${!v} != */* ]] && p=$(command -v "${!v}"); then printf -v "$v" %s "$p"; fi
    done
    # UNDER_TEST=wireguard-go puts wireguard-go in the place of vpn (and vpnd): that validates
    # the harness itself.
    : "${UNDER_TEST:=vpn}"
    export VPN VPND WIREGUARD_GO BORINGTUN UNDER_TEST
}

# The binary behind an implementation name; implementations are
#   vpn        the implementation under test (`vpn daemon`), or wireguard-go if UNDER_TEST=wireguard-go
#   vpnd       the same through the vpnd binary
#   wggo       wireguard-go, the reference peer
#   boringtun  boringtun-cli, another peer
impl_binary() {
    case $1 in
        vpn) if [[ $UNDER_TEST == wireguard-go ]]; then echo "$WIREGUARD_GO"; else echo "$VPN"; fi ;;
        vpnd) if [[ $UNDER_TEST == wireguard-go ]]; then echo "$WIREGUARD_GO"; else echo "$VPND"; fi ;;
        wggo) echo "$WIREGUARD_GO" ;;
        boringtun) echo "$BORINGTUN" ;;
        *) echo "unknown-implementation-$1" ;;
    esac
}

# Human name of an implementation, for scenario names.
impl_label() {
    case $1 in
        wggo) echo wireguard-go ;;
        boringtun) echo boringtun ;;
        *) echo "$1" ;;
    esac
}

# Skips the scenario (exit 77) when a peer's binary is absent; fails it when the implementation
# under test is absent (that is not a reason to skip).
require_impl() {
    local impl b
    for impl in "$@"; do
        b=$(impl_binary "$impl")
        if [[ $b != */* || ! -x $b ]]; then
            case $impl in
                vpn | vpnd) fail "binary for '$impl' not found: '$b' (build it: cargo build --release --bin vpn --bin vpnd, or set VPN/VPND)" ;;
                *) skip "$(impl_label "$impl") not installed ('$b' not found; set $( [[ $impl == wggo ]] && echo WIREGUARD_GO || echo BORINGTUN ))" ;;
            esac
        fi
    done
}

require_cmd() {
    local c
    for c in "$@"; do command -v "$c" >/dev/null || fail "command '$c' not found (see netns-tests/README.md)"; done
}

# ---------------------------------------------------------------------------------------------
# Reporting (inside a scenario process)

log() { printf '%s %s\n' "$(date +%T.%3N)" "$*" >&2; }
# A note is printed under the scenario's PASS/FAIL line (e.g. throughput).
note() { log "NOTE $*"; printf '%s\n' "$*" >>"$SCN_DIR/notes"; }
fail() { log "FAIL: $*"; printf '%s\n' "$*" >>"$SCN_DIR/reason"; exit 1; }
skip() { log "SKIP: $*"; printf '%s\n' "$*" >>"$SCN_DIR/reason"; exit 77; }

# Runs a command, logging it and its output; returns its status.
run() {
    local out rc
    log "+ $*"
    out=$("$@" 2>&1); rc=$?
    [[ -n $out ]] && printf '%s\n' "$out" | sed 's/^/    /' >&2
    [[ $rc -eq 0 ]] || log "  (exit $rc)"
    return $rc
}

# Runs a command that must succeed.
must() { run "$@" || fail "command failed: $*"; }

# Runs a command that must fail.
must_not() { if run "$@"; then fail "command unexpectedly succeeded: $*"; fi; }

# wait_until SECONDS CMD...: polls CMD every 0.1 s until it succeeds; false on timeout.
wait_until() {
    local deadline=$(( $(date +%s%N) + ${1%.*} * 1000000000 )); shift
    while :; do
        "$@" >/dev/null 2>&1 && return 0
        (( $(date +%s%N) >= deadline )) && return 1
        sleep 0.1
    done
}

now() { date +%s.%N; }

# ---------------------------------------------------------------------------------------------
# Resource registry and cleanup

register_pid() {
    local st
    st=$(awk '{print $22}' "/proc/$1/stat" 2>/dev/null) || st=0
    echo "$1 $st" >>"$SCN_DIR/pids"
}

# Registers every process now running inside namespace $1 (daemons that detached, e.g. through
# wg-quick): they are processes this scenario started.
register_ns_pids() {
    local p
    for p in $(ip netns pids "$1" 2>/dev/null); do register_pid "$p"; done
}

_pid_matches() { # pid starttime
    local st
    [[ -r /proc/$1/stat ]] || return 1
    st=$(awk '{print $22}' "/proc/$1/stat" 2>/dev/null) || return 1
    [[ $2 == 0 || $st == "$2" ]]
}

# _children PID -> "pid:starttime" of its children
_children() {
    local k
    for k in $(pgrep -P "$1" 2>/dev/null); do echo "$k:$(awk '{print $22}' "/proc/$k/stat" 2>/dev/null)"; done
}
_is_zombie() { [[ $(awk '{print $3}' "/proc/$1/stat" 2>/dev/null) == Z ]]; }

# stop_pid PID [STARTTIME] [GRACE_SECONDS]: SIGTERM, then SIGKILL (with its children) after GRACE.
# A process is only signalled while its start time still matches (no PID reuse accidents).
stop_pid() {
    local pid=$1 st=${2:-0} grace=${3:-5} i kids k
    _pid_matches "$pid" "$st" || return 0
    kids=$(_children "$pid")
    kill -TERM "$pid" 2>/dev/null
    for ((i = 0; i < grace * 10; i++)); do
        _pid_matches "$pid" "$st" || break
        _is_zombie "$pid" && break # exited; its parent has not reaped it yet
        sleep 0.1
    done
    if _pid_matches "$pid" "$st" && ! _is_zombie "$pid"; then
        echo "process $pid did not exit on SIGTERM within ${grace}s: SIGKILL" >&2
        kids="$kids $(_children "$pid")"
        kill -KILL "$pid" 2>/dev/null
    fi
    # Children (the daemon under `timeout`) got the SIGTERM forwarded: give them the same grace.
    for k in $kids; do
        for ((i = 0; i < grace * 10; i++)); do
            _pid_matches "${k%%:*}" "${k#*:}" && ! _is_zombie "${k%%:*}" || continue 2
            sleep 0.1
        done
        echo "process ${k%%:*} did not exit within ${grace}s: SIGKILL" >&2
        kill -KILL "${k%%:*}" 2>/dev/null
    done
    return 0
}

# Removes everything scenario directory $1 recorded. Safe to call more than once.
cleanup_scenario_dir() {
    local dir=$1 pid st ns p
    [[ -d $dir ]] || return 0
    if [[ -f $dir/netns ]]; then
        # Processes still inside our namespaces were started by us (directly or detached).
        while read -r ns; do
            for p in $(ip netns pids "$ns" 2>/dev/null); do register_pid_in "$dir" "$p"; done
        done <"$dir/netns"
    fi
    if [[ -f $dir/pids ]]; then
        while read -r pid st; do stop_pid "$pid" "$st" 5; done < <(tac "$dir/pids")
        : >"$dir/pids"
    fi
    if [[ -f $dir/netns ]]; then
        while read -r ns; do ip netns del "$ns" 2>/dev/null; done <"$dir/netns"
        : >"$dir/netns"
    fi
    if [[ -f $dir/sockets ]]; then
        while read -r s; do [[ -S $s ]] && rm -f "$s"; done <"$dir/sockets"
    fi
}

register_pid_in() { local s; s=$(awk '{print $22}' "/proc/$2/stat" 2>/dev/null) || s=0; echo "$2 $s" >>"$1/pids"; }

# ---------------------------------------------------------------------------------------------
# Names

# ns_name SIDE / if_name SIDE: names unique to this run and scenario.
ns_name() { echo "vpnt-$NT_RUN_ID-$NT_SCN$1"; }
if_name() { echo "wt${NT_RUN_ID}x$NT_SCN$1"; }

new_ns() {
    local ns
    ns=$(ns_name "$1")
    echo "$ns" >>"$SCN_DIR/netns"
    ip netns add "$ns" || fail "cannot create namespace $ns"
    ip -n "$ns" link set lo up
    # No IPv6 autoconfiguration noise on the test links.
    ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.accept_ra=0 net.ipv6.conf.default.accept_ra=0 2>/dev/null
    echo "$ns"
}

# link_ns NS_A NS_B: a veth pair, outer addresses .1/::1 in A and .2/::2 in B.
link_ns() {
    local a=$1 b=$2 va vb
    va=$(if_name va); vb=$(if_name vb)
    ip link add "$va" netns "$a" type veth peer name "$vb" netns "$b" || fail "cannot create veth pair"
    ip -n "$a" addr add 192.168.241.1/24 dev "$va"
    ip -n "$b" addr add 192.168.241.2/24 dev "$vb"
    ip -n "$a" addr add fd00:241::1/64 dev "$va" nodad
    ip -n "$b" addr add fd00:241::2/64 dev "$vb" nodad
    ip -n "$a" link set "$va" up
    ip -n "$b" link set "$vb" up
    # shellcheck disable=SC2034 # used by the scenarios
    VETH_A=$va VETH_B=$vb
}

# ---------------------------------------------------------------------------------------------
# Daemons

# offloads_off FUNCTION [ARGS...]: runs a scenario with every vpn offload turned off (TUN
# TSO/USO, UDP GSO and GRO; the environment reaches vpn and vpnd alike).
offloads_off() {
    export VPN_TUN_OFFLOAD=off VPN_UDP_GSO=off VPN_UDP_GRO=off
    log "offloads off: VPN_TUN_OFFLOAD=off VPN_UDP_GSO=off VPN_UDP_GRO=off"
    "$@"
}

# start_daemon NS IMPL IFNAME: starts IMPL in the foreground (under `timeout`) inside NS and waits
# until the interface and the UAPI socket exist. Sets DAEMON_PID.
start_daemon() {
    local ns=$1 impl=$2 ifname=$3 bin log
    log="$SCN_DIR/$ifname.log"
    bin=$(impl_binary "$impl")
    local -a cmd
    case $impl in
        vpn | vpnd)
            if [[ $UNDER_TEST == wireguard-go ]]; then
                cmd=(env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=verbose "$bin" -f "$ifname")
            elif [[ $impl == vpn ]]; then
                cmd=(env LOG_LEVEL="${NT_LOG_LEVEL:-info}" "$bin" daemon -f "$ifname")
            else
                cmd=(env LOG_LEVEL="${NT_LOG_LEVEL:-info}" "$bin" -f "$ifname")
            fi ;;
        wggo) cmd=(env WG_PROCESS_FOREGROUND=1 LOG_LEVEL=verbose "$bin" -f "$ifname") ;;
        boringtun) cmd=(env WG_SUDO=1 "$bin" -f --disable-drop-privileges -v info -l "$SCN_DIR/$ifname.boringtun.log" "$ifname") ;;
        *) fail "unknown implementation $impl" ;;
    esac
    echo "$WG_RUN_DIR/$ifname.sock" >>"$SCN_DIR/sockets"
    log "+ ip netns exec $ns ${cmd[*]}  (log: $log)"
    ip netns exec "$ns" timeout -k 3 "$NT_DAEMON_MAX" "${cmd[@]}" >"$log" 2>&1 </dev/null &
    DAEMON_PID=$!
    register_pid "$DAEMON_PID"
    if ! wait_until 10 test -S "$WG_RUN_DIR/$ifname.sock" || ! wait_until 5 ip -n "$ns" link show "$ifname"; then
        log "daemon log:"; sed 's/^/    /' "$log" | tail -20 >&2
        fail "$(impl_label "$impl") did not create interface $ifname and its UAPI socket within 10 s"
    fi
    # The socket may appear a moment before the daemon answers on it.
    wait_until 5 wg show "$ifname" || fail "$(impl_label "$impl") on $ifname does not answer on its UAPI socket"
}

# Dumps the daemon logs of this scenario (called on failure).
dump_logs() {
    local f
    for f in "$SCN_DIR"/*.log; do
        [[ -f $f ]] || continue
        echo "---- $(basename "$f") (last 30 lines)"
        tail -30 "$f" | sed 's/^/    /'
    done
}

# ---------------------------------------------------------------------------------------------
# WireGuard pairs

genkey() { wg genkey; }
pubkey() { wg pubkey <<<"$1"; }

# keyfile NAME KEY: writes KEY to a private file, prints its path.
keyfile() { local f="$SCN_DIR/$1.key"; (umask 077; printf '%s\n' "$2" >"$f"); echo "$f"; }

# setup_pair IMPL_A IMPL_B: namespaces A and B linked by a veth, a WireGuard interface in each
# (not configured yet). Sets NS_A NS_B IF_A IF_B KEY_A KEY_B PUB_A PUB_B PORT_A PORT_B.
setup_pair() {
    IMPL_A=$1 IMPL_B=$2
    require_impl "$IMPL_A" "$IMPL_B"
    NS_A=$(new_ns a) || exit 1
    NS_B=$(new_ns b) || exit 1
    link_ns "$NS_A" "$NS_B"
    IF_A=$(if_name a); IF_B=$(if_name b)
    start_daemon "$NS_A" "$IMPL_A" "$IF_A"
    start_daemon "$NS_B" "$IMPL_B" "$IF_B"
    KEY_A=$(genkey); KEY_B=$(genkey)
    PUB_A=$(pubkey "$KEY_A"); PUB_B=$(pubkey "$KEY_B")
    PORT_A=41001 PORT_B=41002
}

# Outer endpoint of side a/b for family 4/6.
outer_ep() {
    local side=$1 fam=$2 port
    [[ $side == a ]] && port=$PORT_A || port=$PORT_B
    local n; [[ $side == a ]] && n=1 || n=2
    if [[ $fam == 6 ]]; then echo "[fd00:241::$n]:$port"; else echo "192.168.241.$n:$port"; fi
}
outer_ip() { local n; [[ $1 == a ]] && n=1 || n=2; if [[ $2 == 6 ]]; then echo "fd00:241::$n"; else echo "192.168.241.$n"; fi; }
INNER4_A=10.241.0.1 INNER4_B=10.241.0.2 INNER6_A=fd10:241::1 INNER6_B=fd10:241::2

# configure_pair WHO_HAS_ENDPOINT(a|b|both|none) FAMILY(4|6) [EXTRA_A [EXTRA_B]]: keys, ports,
# peers with allowed IPs; only the named side(s) know the other's endpoint, so only they can
# initiate. Then inner addresses and links up.
configure_pair() {
    local who=$1 fam=$2 extra_a=${3:-} extra_b=${4:-} ep_a=() ep_b=()
    [[ $who == a || $who == both ]] && ep_a=(endpoint "$(outer_ep b "$fam")")
    [[ $who == b || $who == both ]] && ep_b=(endpoint "$(outer_ep a "$fam")")
    # shellcheck disable=SC2086
    must wg set "$IF_A" private-key "$(keyfile a "$KEY_A")" listen-port "$PORT_A" \
        peer "$PUB_B" allowed-ips "$INNER4_B/32,$INNER6_B/128" "${ep_a[@]}" $extra_a
    # shellcheck disable=SC2086
    must wg set "$IF_B" private-key "$(keyfile b "$KEY_B")" listen-port "$PORT_B" \
        peer "$PUB_A" allowed-ips "$INNER4_A/32,$INNER6_A/128" "${ep_b[@]}" $extra_b
    inner_up
}

# Inner addresses on both interfaces, links up.
inner_up() {
    must ip -n "$NS_A" addr add "$INNER4_A/24" dev "$IF_A"
    must ip -n "$NS_A" addr add "$INNER6_A/64" dev "$IF_A" nodad
    must ip -n "$NS_B" addr add "$INNER4_B/24" dev "$IF_B"
    must ip -n "$NS_B" addr add "$INNER6_B/64" dev "$IF_B" nodad
    must ip -n "$NS_A" link set "$IF_A" up
    must ip -n "$NS_B" link set "$IF_B" up
}

# ---------------------------------------------------------------------------------------------
# Traffic

# ping_ok NS DST [ping options]: 3 pings, all must be answered.
ping_ok() {
    local ns=$1 dst=$2; shift 2
    local out
    log "+ ip netns exec $ns ping -c 3 -i 0.2 -W 2 $* $dst"
    out=$(ip netns exec "$ns" ping -c 3 -i 0.2 -W 2 "$@" "$dst" 2>&1)
    printf '%s\n' "$out" | tail -3 | sed 's/^/    /' >&2
    grep -q ' 3 received' <<<"$out"
}

# ping_unreachable NS DST [options]: 2 pings to a numeric address; the answer must be an ICMP
# destination unreachable from that address (IPv4 host unreachable, IPv6 address unreachable).
ping_unreachable() {
    local ns=$1 dst=$2; shift 2
    local out
    log "+ ip netns exec $ns ping -n -c 2 -i 0.2 -W 2 $* $dst   (expected: destination unreachable)"
    out=$(ip netns exec "$ns" ping -n -c 2 -i 0.2 -W 2 "$@" "$dst" 2>&1)
    printf '%s\n' "$out" | tail -4 | sed 's/^/    /' >&2
    grep -Eq "^From $dst .*Destination (Host Unreachable|unreachable: Address unreachable)" <<<"$out"
}

# ping_fails NS DST [options]: 3 pings, none may be answered.
ping_fails() {
    local ns=$1 dst=$2; shift 2
    local out
    log "+ ip netns exec $ns ping -c 3 -i 0.2 -W 1 $* $dst   (expected: no reply)"
    out=$(ip netns exec "$ns" ping -c 3 -i 0.2 -W 1 "$@" "$dst" 2>&1)
    printf '%s\n' "$out" | tail -3 | sed 's/^/    /' >&2
    ! grep -q 'bytes from' <<<"$out"
}

# warm_up NS DST [ping options]: the first ping after configuration may wait for a handshake
# (or, after an MTU change, for a daemon to resize its buffers); allow a few tries.
warm_up() {
    local ns=$1 dst=$2 i
    shift 2
    for i in 1 2 3; do
        if ip netns exec "$ns" ping -c 1 -W 3 "$@" "$dst" >/dev/null 2>&1; then log "warm-up ping $* $dst from $ns: ok (try $i)"; return 0; fi
    done
    log "warm-up ping $* $dst from $ns: no reply in 3 tries"
    return 1
}

# transfer IF -> "rx tx" of the first (only) peer
transfer() { wg show "$1" transfer | awk 'NR==1 {print $2, $3}'; }
# transfer_of IF PUB -> "rx tx" of that peer
transfer_of() { wg show "$1" transfer | awk -v p="$2" '$1==p {print $2, $3}'; }
# endpoint_of IF PUB
endpoint_of() { wg show "$1" endpoints | awk -v p="$2" '$1==p {print $2}'; }
# handshake_of IF PUB -> unix time of latest handshake (0 = never)
handshake_of() { wg show "$1" latest-handshakes | awk -v p="$2" '$1==p {print $2}'; }
handshake_nonzero() { local h; h=$(handshake_of "$1" "$2"); [[ -n $h && $h != 0 ]]; }
endpoint_is() { [[ $(endpoint_of "$1" "$2") == "$3" ]]; }

# Background ping with timestamps (-D) into a file; sets BG_PING_PID.
bg_ping() {
    local ns=$1 dst=$2 file=$3
    ip netns exec "$ns" timeout -k 2 120 ping -D -i 0.2 -W 1 "$dst" >"$file" 2>&1 &
    BG_PING_PID=$!
    register_pid "$BG_PING_PID"
}

# replies_between FILE T0 T1: replies received in [T0, T1] (unix times with fractions).
replies_between() {
    awk -v a="$2" -v b="$3" '/bytes from/ { t = substr($1, 2, length($1) - 2) + 0; if (t >= a && t <= b) n++ } END { print n + 0 }' "$1"
}
# reply_after FILE T0: true when some reply came at or after T0.
reply_after() { (( $(replies_between "$1" "$2" 9999999999) > 0 )); }

# Padded size of an inner packet of N bytes, as WireGuard sends it (multiple of 16, capped at MTU).
padded() { local n=$1 mtu=${2:-1420} p; p=$(( (n + 15) / 16 * 16 )); (( p > mtu )) && p=$mtu; echo "$p"; }
