#!/usr/bin/env bash
# Real-network tests of the vpn userspace WireGuard daemon against itself, wireguard-go and
# boringtun, in throw-away network namespaces. See netns-tests/README.md.
#
#   sudo netns-tests/run.sh                 # every scenario
#   sudo netns-tests/run.sh ping counters   # scenarios whose name matches any of these regexes
#   netns-tests/run.sh --list               # scenario names
#   UNDER_TEST=wireguard-go netns-tests/run.sh   # wireguard-go in vpn's place: checks the harness
#
# Environment: VPN, VPND, WIREGUARD_GO, BORINGTUN (binaries), UNDER_TEST (vpn | wireguard-go),
# NT_SCENARIO_TIMEOUT (seconds per scenario, default 150), NT_KEEP=1 (keep logs even when all
# pass), NT_LOG_LEVEL (LOG_LEVEL for vpn, default info), NT_VERBOSE=1 (print every log).

NT_SELF=$(readlink -f "${BASH_SOURCE[0]}")
# shellcheck source=lib.sh
source "$(dirname "$NT_SELF")/lib.sh"
NT_GROUPS=(basic lifecycle uapi counters mtu filtering keepalive reconfig roaming wgquick server migrate rotation)
for g in "${NT_GROUPS[@]}"; do
    # shellcheck disable=SC1090
    source "$NT_DIR/$g.sh"
done

SC_NAMES=() SC_CMDS=()
# scenario NAME FUNCTION [ARGS...]: registers a scenario.
scenario() {
    local name=$1; shift
    SC_NAMES+=("$name")
    SC_CMDS+=("$*")
}

# ---------------------------------------------------------------------------------------------
# One scenario, in its own process: run.sh --one SCN DIR FUNCTION [ARGS...]
if [[ ${1:-} == --one ]]; then
    NT_SCN=$2 SCN_DIR=$3
    shift 3
    nt_resolve_binaries
    _one_exit() {
        local rc=$?
        trap - EXIT INT TERM
        if [[ $rc -ne 0 && $rc -ne 77 ]]; then dump_logs; fi
        log "cleanup"
        cleanup_scenario_dir "$SCN_DIR"
        exit "$rc"
    }
    trap _one_exit EXIT
    trap 'log "interrupted"; exit 143' TERM
    trap 'log "interrupted"; exit 130' INT
    log "scenario $NT_SCN: $*  (UNDER_TEST=$UNDER_TEST)"
    "$@"
    exit 0
fi

# ---------------------------------------------------------------------------------------------
# The runner

for g in "${NT_GROUPS[@]}"; do "register_$g"; done

if [[ ${1:-} == --list || ${1:-} == -l ]]; then
    printf '%s\n' "${SC_NAMES[@]}"
    exit 0
fi
if [[ ${1:-} == --help || ${1:-} == -h ]]; then
    sed -n '2,14p' "$NT_SELF" | sed 's/^# \{0,1\}//'
    exit 0
fi

if [[ $(id -u) != 0 ]]; then
    echo "netns-tests need root (network namespaces, TUN devices): run with sudo" >&2
    exit 2
fi
missing=()
for c in ip wg wg-quick ping timeout iperf3 nft awk pgrep; do command -v "$c" >/dev/null || missing+=("$c"); done
if ((${#missing[@]})); then
    echo "missing commands: ${missing[*]}" >&2
    echo "install: apt-get install -y iproute2 wireguard-tools iputils-ping iperf3 nftables procps" >&2
    exit 2
fi
[[ -c /dev/net/tun ]] || { echo "/dev/net/tun is missing: TUN devices are needed" >&2; exit 2; }

nt_resolve_binaries
export NT_RUN_ID=$$
NT_TMP=$(mktemp -d "/tmp/vpnt-$NT_RUN_ID.XXXXXX")
NT_SCENARIO_TIMEOUT=${NT_SCENARIO_TIMEOUT:-150}
mkdir -p "$WG_RUN_DIR"

CURRENT_PID=
_runner_cleanup() {
    local d
    trap - EXIT INT TERM
    if [[ -n $CURRENT_PID ]]; then stop_pid "$CURRENT_PID" 0 15; fi
    for d in "$NT_TMP"/s*; do [[ -d $d ]] && cleanup_scenario_dir "$d"; done
    # Anything of this run that escaped the registry.
    for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^vpnt-$NT_RUN_ID-"); do
        for p in $(ip netns pids "$ns" 2>/dev/null); do stop_pid "$p" 0 5; done
        ip netns del "$ns" 2>/dev/null
    done
    rm -f "$WG_RUN_DIR/wt${NT_RUN_ID}x"*.sock 2>/dev/null
}
trap '_runner_cleanup' EXIT
trap 'echo; echo "interrupted: cleaning up"; _runner_cleanup; exit 130' INT
trap 'echo "terminated: cleaning up"; _runner_cleanup; exit 143' TERM

version_of() { # binary
    local b=$1
    [[ $b == */* && -x $b ]] || { echo "not found ($b)"; return; }
    case $(basename "$b") in
        wireguard-go) echo "$b ($("$b" --version 2>/dev/null | head -1))" ;;
        boringtun-cli) echo "$b ($("$b" --version 2>/dev/null | head -1))" ;;
        *) echo "$b (built $(date -r "$b" '+%F %T'))" ;;
    esac
}
echo "netns-tests: implementation under test: $UNDER_TEST"
if [[ $UNDER_TEST == wireguard-go ]]; then
    echo "  vpn, vpnd    -> $(version_of "$WIREGUARD_GO")   (harness check: wireguard-go plays vpn)"
else
    echo "  vpn          $(version_of "$VPN")"
    echo "  vpnd         $(version_of "$VPND")"
fi
echo "  wireguard-go $(version_of "$WIREGUARD_GO")"
echo "  boringtun    $(version_of "$BORINGTUN")"
echo "  logs         $NT_TMP"
echo

selected=0
for name in "${SC_NAMES[@]}"; do
    if (($# == 0)); then selected=1; break; fi
    for re in "$@"; do grep -qE -- "$re" <<<"$name" && selected=1; done
done
((selected)) || { echo "no scenario matches: $*  (see --list)" >&2; exit 2; }

passed=0 failed=0 skipped=0 failed_names=()
start_all=$(date +%s)
for i in "${!SC_NAMES[@]}"; do
    name=${SC_NAMES[$i]}
    if (($# > 0)); then
        match=0
        for re in "$@"; do grep -qE -- "$re" <<<"$name" && match=1; done
        ((match)) || continue
    fi
    scn=$((i + 1))
    dir=$NT_TMP/s$scn
    mkdir -p "$dir"
    t0=$(date +%s)
    # shellcheck disable=SC2086
    if [[ ${NT_VERBOSE:-0} == 1 ]]; then
        timeout -k 5 "$NT_SCENARIO_TIMEOUT" bash "$NT_SELF" --one "$scn" "$dir" ${SC_CMDS[$i]} > >(tee "$dir/log") 2>&1 &
    else
        timeout -k 5 "$NT_SCENARIO_TIMEOUT" bash "$NT_SELF" --one "$scn" "$dir" ${SC_CMDS[$i]} >"$dir/log" 2>&1 &
    fi
    CURRENT_PID=$!
    wait "$CURRENT_PID"
    rc=$?
    CURRENT_PID=
    cleanup_scenario_dir "$dir"
    secs=$(($(date +%s) - t0))
    reason=$(head -c 600 "$dir/reason" 2>/dev/null | tr '\n' ' ')
    case $rc in
        0) passed=$((passed + 1)); printf 'PASS  %s  (%ss)\n' "$name" "$secs" ;;
        77) skipped=$((skipped + 1)); printf 'SKIP  %s: %s\n' "$name" "$reason" ;;
        *)
            failed=$((failed + 1)); failed_names+=("$name")
            [[ $rc == 124 || $rc == 137 ]] && reason="timed out after ${NT_SCENARIO_TIMEOUT}s. $reason"
            printf 'FAIL  %s  (%ss): %s\n' "$name" "$secs" "$reason"
            if [[ ${NT_VERBOSE:-0} != 1 ]]; then tail -60 "$dir/log" | sed 's/^/      | /'; fi
            echo "      full log: $dir/log"
            ;;
    esac
    [[ -f $dir/notes ]] && sed 's/^/      /' "$dir/notes"
done

echo
echo "total time: $(($(date +%s) - start_all))s"
if ((failed)); then
    echo "failed:"; printf '  %s\n' "${failed_names[@]}"
    echo "logs kept in $NT_TMP"
elif [[ ${NT_KEEP:-0} != 1 ]]; then
    rm -rf "$NT_TMP"
fi
summary="$passed passed, $failed failed"
((skipped)) && summary+=", $skipped skipped"
echo "$summary"
((failed == 0))
