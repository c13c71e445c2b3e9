#!/usr/bin/env bash
# Runs every fuzz target for SECS seconds, JOBS at a time, from the committed seeds plus
# what earlier runs found (target/fuzz-corpus/NAME), and prints one line per target:
# executions, coverage (edges `cov`, features `ft`), corpus size, CPU seconds, and whether
# it crashed. Logs: target/fuzz-logs/NAME.log; crashes: fuzz/artifacts/NAME/.
# Usage: fuzz/run-all.sh [SECS] [JOBS] [TARGET...]   (from the repository root)
set -euo pipefail
secs=${1:-600}
jobs=${2:-2}
shift $(( $# > 2 ? 2 : $# ))
targets=("$@")
if [ ${#targets[@]} -eq 0 ]; then
    mapfile -t targets < <(sed -n 's/^name = "\(.*\)"$/\1/p' fuzz/Cargo.toml | grep -v '^outpost-fuzz$')
fi
export CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16
cargo +nightly fuzz build --fuzz-dir fuzz --features libfuzzer >/dev/null 2>&1
mkdir -p target/fuzz-logs
run_one() {
    local t=$1
    mkdir -p "target/fuzz-corpus/$t"
    local status=ok
    /usr/bin/time -f '%U %S' -o "target/fuzz-logs/$t.cpu" \
        cargo +nightly fuzz run "$t" --fuzz-dir fuzz --features libfuzzer \
        "target/fuzz-corpus/$t" "fuzz/corpus/$t" -- -max_total_time="$secs" -print_final_stats=1 \
        >"target/fuzz-logs/$t.log" 2>&1 || status=CRASH
    local done_line cpu
    done_line=$(grep -E '^#[0-9]+[[:space:]]+DONE' "target/fuzz-logs/$t.log" | tail -1 || true)
    [ -n "$done_line" ] || done_line=$(grep -E '^#[0-9]+' "target/fuzz-logs/$t.log" | tail -1 || true)
    cpu=$(awk '{printf "%.0f", $1 + $2}' "target/fuzz-logs/$t.cpu" 2>/dev/null || echo '?')
    printf '%-16s %-6s cpu_s=%-5s %s\n' "$t" "$status" "$cpu" \
        "$(echo "$done_line" | sed -E 's/^#([0-9]+).*cov: ([0-9]+) ft: ([0-9]+) corp: ([0-9]+).*/execs=\1 cov=\2 ft=\3 corpus=\4/')"
}
export -f run_one
export secs
printf '%s\n' "${targets[@]}" | xargs -P "$jobs" -I{} bash -c 'run_one {}'
