# Outpost tasks. `just --list` shows them all.

# Run one scenario with a seed and print its report (add json=true for JSON).
sim scenario="vehicle-offline" seed="1" json="false":
    cargo run --release -p outpost-sim -- run {{scenario}} --seed {{seed}} {{ if json == "true" { "--json" } else { "" } }}

# Sweep seeds: swarm worlds by default; name a scenario to sweep its seeds instead.
sweep seeds="2000" scenario="":
    cargo run --release -p outpost-sim -- sweep {{scenario}} --seeds {{seeds}} {{ if scenario == "" { "--swarm" } else { "" } }}

# Every scenario in scenarios/ for seeds 1..=seeds.
scenarios seeds="20":
    for s in scenarios/*.toml; do cargo run --release -q -p outpost-sim -- sweep "$s" --seeds {{seeds}} || exit 1; done

# Raft alone (no Node yet): seeds of the cluster world; e.g. `just raft 300 "--members 5 --initial-voters 3 --membership-changes"`.
raft seeds="200" args="":
    cargo run --release -p outpost-sim -- raft --seeds {{seeds}} {{args}}

# The test suite (what CI runs).
test:
    cargo test --workspace

# Formatting and lints, as CI would have them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Cross-build the release `outpost` for a 64-bit Raspberry Pi (`just build-aarch64 edge-lite`: the small build).
build-aarch64 features="":
    cargo build --release -p outpost --target aarch64-unknown-linux-gnu {{ if features == "" { "" } else { "--no-default-features --features " + features } }}
    @ls -l "${CARGO_TARGET_DIR:-target}/aarch64-unknown-linux-gnu/release/outpost"

# The outpost package's tests for aarch64 under qemu-aarch64, then an aarch64 edge and gateway.
test-aarch64 port="27400":
    #!/usr/bin/env bash
    set -euo pipefail
    triple=aarch64-unknown-linux-gnu
    T="${CARGO_TARGET_DIR:-target}"
    # Dynamic aarch64 binaries find their loader and libc here, also when started through binfmt_misc.
    export QEMU_LD_PREFIX=/usr/aarch64-linux-gnu
    # The integration tests in tests/ exec the aarch64 `outpost` themselves: that needs
    # binfmt_misc to hand aarch64 ELF files to qemu (qemu-user-binfmt or qemu-user-static).
    tests=ok
    if grep -qs '^enabled' /proc/sys/fs/binfmt_misc/qemu-aarch64; then
        echo "== cargo test -p outpost --target $triple (binfmt_misc runs aarch64 binaries: all tests)"
        cargo test -p outpost --target $triple --no-fail-fast || tests=failed
    else
        echo "== binfmt_misc has no qemu-aarch64 entry: the tests that exec the binary (crash, hostile, store_and_forward, torn_tail) cannot run here"
        echo "== cargo test -p outpost --target $triple --lib --bins --test config"
        cargo test -p outpost --target $triple --lib --bins --test config --no-fail-fast || tests=failed
    fi
    # The aarch64 `outpost` that cargo test built for the integration tests (CARGO_BIN_EXE_outpost).
    bin="$T/$triple/debug/outpost"
    echo "== an edge and a gateway under qemu-aarch64: $bin"
    file "$bin" | cut -d, -f1-2 || true
    dir=$(mktemp -d)
    pids=()
    cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$dir"; }
    trap cleanup EXIT
    p={{port}}
    printf '[node]\nname = "gateway"\ndata_dir = "%s/gw"\n[api]\nhttp = "127.0.0.1:%s"\nbinary = "127.0.0.1:%s"\n[gateway]\nlisten = "127.0.0.1:%s"\n[gateway.tokens]\n"pi-smoke" = "t0ken"\n' \
        "$dir" $((p + 90)) $((p + 91)) $p > "$dir/gateway.toml"
    printf '[node]\nname = "pi-smoke"\ndata_dir = "%s/edge"\n[api]\nhttp = "127.0.0.1:%s"\nbinary = "127.0.0.1:%s"\n[cloud]\ngateway = "127.0.0.1:%s"\ntoken = "t0ken"\n[sync]\nbackoff_min = "100ms"\nbackoff_max = "1s"\n' \
        "$dir" $((p + 80)) $((p + 81)) $p > "$dir/edge.toml"
    qemu-aarch64 "$bin" gateway --config "$dir/gateway.toml" 2> "$dir/gateway.log" & pids+=($!)
    qemu-aarch64 "$bin" run --config "$dir/edge.toml" 2> "$dir/edge.log" & pids+=($!)
    edge=http://127.0.0.1:$((p + 80)); gw=http://127.0.0.1:$((p + 90))
    for i in $(seq 600); do
        curl -sf "$edge/health" >/dev/null && curl -sf "$gw/health" >/dev/null && break
        [ "$i" = 600 ] && { echo "the daemons did not answer in 60 s"; cat "$dir"/*.log; exit 1; }
        sleep 0.1
    done
    echo "\$ curl -s -X POST --data-binary 'hello from aarch64' $edge/v1/topics/events/records"
    curl -s -X POST --data-binary 'hello from aarch64' "$edge/v1/topics/events/records"; echo
    for i in $(seq 300); do
        out=$(curl -s "$gw/v1/topics/events/records?from=0")
        case "$out" in *'hello from aarch64'*) break ;; esac
        [ "$i" = 300 ] && { echo "the record did not reach the gateway in 30 s: $out"; cat "$dir"/*.log; exit 1; }
        sleep 0.1
    done
    echo "\$ curl -s '$gw/v1/topics/events/records?from=0'"
    echo "$out"
    echo "\$ qemu-aarch64 outpost health --addr 127.0.0.1:$((p + 80))"
    qemu-aarch64 "$bin" health --addr 127.0.0.1:$((p + 80)) || echo "(exit $?)"
    echo "== aarch64 edge and gateway under qemu: the record produced at the edge was fetched at the gateway"
    [ $tests = ok ] || { echo "== but some of the tests above failed"; exit 1; }

# Binary sizes as shipped, stripped copies in target/size/ (`just size aarch64`: the Pi's): the
# default build (release profile) and edge-lite (its own profile: release, panics abort).
size target="host":
    #!/usr/bin/env bash
    set -euo pipefail
    T="${CARGO_TARGET_DIR:-target}"
    mkdir -p "$T/size"
    if [ "{{target}}" = host ]; then
        triple=$(rustc -vV | sed -n 's/^host: //p'); flag=""; dir="$T"; strip=strip
    else
        triple="{{target}}-unknown-linux-gnu"; flag=" --target $triple"; dir="$T/$triple"; strip="{{target}}-linux-gnu-strip"
    fi
    report=()
    for variant in default edge-lite; do
        features=""; profile="release"
        [ $variant = edge-lite ] && features=" --no-default-features --features edge-lite" && profile="edge-lite"
        cmd="cargo build --profile $profile -p outpost$flag$features"
        out="$dir/$profile/outpost"
        echo "== $cmd"
        $cmd
        copy="$T/size/outpost-$variant-$triple"
        cp "$out" "$copy.unstripped"
        $strip -o "$copy" "$out"
        for f in "$copy.unstripped" "$copy"; do
            b=$(stat -c %s "$f")
            how="$cmd"; [ "$f" = "$copy" ] && how="$cmd && $strip"
            report+=("$(printf '%-54s %10d bytes %7.2f MiB   %s' "$(basename "$f")" "$b" "$(echo "$b / 1048576" | bc -l)" "$how")")
        done
    done
    echo
    printf '%s\n' "${report[@]}"

# VmRSS and VmHWM of `outpost run`, default config, after 5 s idle (`just rss edge-lite`: the small build).
rss features="" http="127.0.0.1:7480" binary="127.0.0.1:7481":
    #!/usr/bin/env bash
    set -euo pipefail
    T="${CARGO_TARGET_DIR:-target}"
    flags=""; [ -n "{{features}}" ] && flags=" --no-default-features --features {{features}}"
    echo "== cargo build --release -p outpost$flags"
    cargo build -q --release -p outpost$flags
    bin=$(realpath "$T/release/outpost")
    dir=$(mktemp -d)
    cd "$dir"
    # The default config; only the ports move when asked to (another daemon on 7480/7481).
    if [ "{{http}}" != 127.0.0.1:7480 ] || [ "{{binary}}" != 127.0.0.1:7481 ]; then
        printf '[api]\nhttp = "%s"\nbinary = "%s"\n' "{{http}}" "{{binary}}" > outpost.toml
        echo "== outpost.toml: $(tr '\n' ' ' < outpost.toml)"
    fi
    "$bin" run 2> outpost.log & pid=$!
    trap 'kill $pid 2>/dev/null || true; wait $pid 2>/dev/null || true; rm -rf "$dir"' EXIT
    for i in $(seq 300); do
        curl -s "{{http}}/health" >/dev/null && break
        kill -0 $pid 2>/dev/null || { echo "outpost run exited:"; cat outpost.log; exit 1; }
        [ "$i" = 300 ] && { echo "no answer on {{http}}/health in 30 s"; cat outpost.log; exit 1; }
        sleep 0.1
    done
    echo "== outpost run (pid $pid, in $dir) answers: $(curl -s {{http}}/health)"
    sleep 5
    echo "== after 5 s idle, /proc/$pid/status:"
    grep -E '^(VmRSS|VmHWM)' /proc/$pid/status

# The README quickstart: an edge and a gateway on localhost, a record produced and read back.
demo:
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -q --release -p outpost
    bin=$(realpath "${CARGO_TARGET_DIR:-target}/release/outpost")
    dir=$(mktemp -d)
    cd "$dir"
    # Both read this file: `events` goes up, `config` comes down, `orders` goes both ways.
    printf '[[topics]]\nname = "events"\n\n[[topics]]\nname = "config"\nsync = "down"\n\n[[topics]]\nname = "orders"\nsync = "both"\n' > outpost.toml
    "$bin" gateway --open 2> gateway.log & gw=$!
    "$bin" run 2> edge.log & edge=$!
    trap 'kill $gw $edge 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
    for i in $(seq 100); do
        curl -sf 127.0.0.1:7480/health >/dev/null && curl -sf 127.0.0.1:7490/health >/dev/null && break
        [ "$i" = 100 ] && { echo "the daemons did not start; their logs:"; cat "$dir"/*.log; exit 1; }
        sleep 0.1
    done
    echo "\$ curl -X POST --data-binary 'door opened' http://127.0.0.1:7480/v1/topics/events/records"
    curl -s -X POST --data-binary 'door opened' http://127.0.0.1:7480/v1/topics/events/records
    for i in $(seq 100); do
        out=$(curl -s 'http://127.0.0.1:7490/v1/topics/events/records?from=0')
        case "$out" in *'door opened'*) break ;; esac
        sleep 0.1
    done
    echo "\$ curl 'http://127.0.0.1:7490/v1/topics/events/records?from=0'"
    echo "$out"
    echo "\$ curl -X POST --data-binary 'speed_limit=80' http://127.0.0.1:7490/v1/topics/config/records"
    curl -s -X POST --data-binary 'speed_limit=80' http://127.0.0.1:7490/v1/topics/config/records
    for i in $(seq 100); do
        out=$(curl -s 'http://127.0.0.1:7480/v1/topics/config/records?from=0')
        case "$out" in *'speed_limit=80'*) break ;; esac
        sleep 0.1
    done
    echo "\$ curl 'http://127.0.0.1:7480/v1/topics/config/records?from=0'"
    echo "$out"
    echo "\$ curl -X POST --data-binary 'order 17: 3 crates' http://127.0.0.1:7480/v1/topics/orders/records"
    curl -s -X POST --data-binary 'order 17: 3 crates' http://127.0.0.1:7480/v1/topics/orders/records
    echo "\$ curl -X POST --data-binary 'order 17: 2 in stock' http://127.0.0.1:7490/v1/topics/orders/records"
    curl -s -X POST --data-binary 'order 17: 2 in stock' http://127.0.0.1:7490/v1/topics/orders/records
    for way in "7490 up 3 crates" "7480 down in stock"; do
        set -- $way
        for i in $(seq 100); do
            out=$(curl -s "http://127.0.0.1:$1/v1/topics/orders/records?from=0&direction=$2")
            case "$out" in *"$3 $4"*) break ;; esac
            sleep 0.1
        done
        echo "\$ curl 'http://127.0.0.1:$1/v1/topics/orders/records?from=0&direction=$2'"
        echo "$out"
    done
    echo "\$ outpost queue"
    "$bin" queue

# Peak RSS of an edge under write load (`just rss-load lite 16MiB`: the edge-lite shell at 16 MiB).
rss-load shell="tokio" memory="64MiB":
    #!/usr/bin/env bash
    set -euo pipefail
    cargo build -q --release -p outpost --example produce_load
    T="${CARGO_TARGET_DIR:-target}"
    bin=$(realpath "$T/release/outpost"); load=$(realpath "$T/release/examples/produce_load")
    dir=$(mktemp -d)
    cd "$dir"
    printf '[node]\nname = "load-edge"\n[api]\nhttp = "127.0.0.1:17480"\nbinary = "127.0.0.1:17481"\n[cloud]\ngateway = "127.0.0.1:17400"\n[resources]\nmax_memory = "%s"\n' "{{memory}}" > edge.toml
    printf '[node]\nname = "gateway"\n[api]\nhttp = "127.0.0.1:17490"\nbinary = "127.0.0.1:17491"\n[gateway]\nlisten = "127.0.0.1:17400"\n' > gateway.toml
    "$bin" gateway --config gateway.toml --open 2> gateway.log & gw=$!
    "$bin" run --config edge.toml --shell {{shell}} 2> edge.log & edge=$!
    trap 'kill $gw $edge 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$dir"' EXIT
    for i in $(seq 100); do curl -sf 127.0.0.1:17480/health >/dev/null && break; sleep 0.1; done
    "$load" 127.0.0.1:17481 events 500000 100 1024
    "$load" 127.0.0.1:17481 events 20000 100000 256
    echo "== {{shell}} shell, max_memory {{memory}}: /proc/$edge/status"
    grep -E '^(VmRSS|VmHWM)' /proc/$edge/status

# Fuzz one target (fuzz/fuzz_targets/NAME.rs) for `secs` seconds (cargo-fuzz, nightly), from the seeds in fuzz/corpus/NAME.
fuzz target secs="60":
    mkdir -p target/fuzz-corpus/{{target}}
    # Without LTO: fat LTO drops the sanitizer-coverage symbols ASan's module destructors use.
    CARGO_PROFILE_RELEASE_LTO=false CARGO_PROFILE_RELEASE_CODEGEN_UNITS=16 cargo +nightly fuzz run {{target}} --fuzz-dir fuzz --features libfuzzer target/fuzz-corpus/{{target}} fuzz/corpus/{{target}} -- -max_total_time={{secs}}

# Fuzz every target (or those named) for `secs` seconds each, `jobs` at a time; one summary line per target (docs/FUZZING.md).
fuzz-all secs="600" jobs="2" *targets:
    fuzz/run-all.sh {{secs}} {{jobs}} {{targets}}

# The criterion suite over the core (codec, log, sync, whole pipeline); reports in target/criterion.
bench *args:
    cargo bench -p outpost-bench --bench core -- {{args}}

# Durable ingest through the core on one thread to real files with fdatasync (RECORDS SIZE WINDOW); pin it: taskset -c 0
bench-ingest *args:
    cargo build --release -p outpost-bench
    ./target/release/bench-ingest {{args}}

# A real edge and gateway on loopback under load from K producers (`bench-e2e --help`); e.g. just bench-e2e --pin-edge 0 --mode offline
bench-e2e *args:
    cargo build --release -p outpost -p outpost-bench
    ./target/release/bench-e2e {{args}}
