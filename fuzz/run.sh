#!/usr/bin/env bash
# Builds every fuzz target and runs each for SECONDS seconds (default 20) with libFuzzer's
# -max_total_time, one after the other.
#
#   fuzz/run.sh [SECONDS]
#
# Exit status: 0 when every target ran without a crash, or when the tools are missing (a message
# says what to install; this is not a failure so that the script can run in any gate);
# 1 when the build fails or a target crashes (reproducers are left in fuzz/artifacts/TARGET/,
# logs in fuzz/target/run-logs/TARGET.log). Corpora grow in fuzz/corpus/TARGET/ across runs.
set -u

secs="${1:-20}"
if ! [[ "$secs" =~ ^[1-9][0-9]*$ ]]; then
    echo "usage: $0 [SECONDS]   (a positive whole number, default 20)" >&2
    exit 2
fi
cd "$(dirname "$0")" || exit 1

if ! command -v cargo >/dev/null 2>&1 || ! cargo +nightly --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: no nightly Rust toolchain (install one with: rustup toolchain install nightly)"
    exit 0
fi
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "fuzz: SKIPPED: cargo-fuzz is not installed (install it with: cargo install cargo-fuzz --locked)"
    exit 0
fi

echo "fuzz: building all targets"
if ! cargo +nightly fuzz build; then
    echo "fuzz: FAILED: the targets do not build" >&2
    exit 1
fi

mapfile -t targets < <(cargo +nightly fuzz list)
mkdir -p target/run-logs
failed=()
for t in "${targets[@]}"; do
    mkdir -p "corpus/$t"
    log="target/run-logs/$t.log"
    echo "fuzz: running $t for ${secs}s"
    if cargo +nightly fuzz run "$t" "corpus/$t" -- -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1; then
        grep -E '^(Done|stat::number_of_executed_units|stat::peak_rss_mb)' "$log" | sed "s/^/  /"
    else
        echo "fuzz: CRASH in $t; last lines of $log:" >&2
        tail -n 40 "$log" >&2
        failed+=("$t")
    fi
done

if ((${#failed[@]})); then
    echo "fuzz: FAILED: ${failed[*]} (reproducers in fuzz/artifacts/; replay with: cargo +nightly fuzz run TARGET ARTIFACT)" >&2
    exit 1
fi
echo "fuzz: OK: ${#targets[@]} targets ran ${secs}s each without a crash"
