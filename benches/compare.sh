#!/usr/bin/env bash
# Every figure of docs/PERFORMANCE.md's main table in one run, beside NATS JetStream with
# the same record count, size and window (benches/peers/nats/run.sh).
# Usage: benches/compare.sh [RECORDS] [SIZE] [WINDOW]   (from the repository root)
set -euo pipefail
N=${1:-1000000}; SIZE=${2:-100}; WINDOW=${3:-1024}
peers=${PEERS:-benches/peers}
cargo build --release -q -p outpost -p outpost-bench -p outpost-sim
echo "== machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores, $(uname -r)"
python3 "$peers/limits.py"
echo "== the core on one thread over real files with fdatasync (bench-ingest, CPU 0)"
taskset -c 0 target/release/bench-ingest "$N" "$SIZE" "$WINDOW"
echo "== the edge daemon pinned to CPU 0, 4 producers on CPU 1: ingest with the gateway away, then the drain"
taskset -c 1 target/release/bench-e2e --records "$N" --size "$SIZE" --window "$WINDOW" --producers 4 \
    --mode offline --pin-edge 0 --pin-gateway 1
echo "== the same with the edge-lite shell"
taskset -c 1 target/release/bench-e2e --records "$N" --size "$SIZE" --window "$WINDOW" --producers 4 \
    --mode offline --pin-edge 0 --pin-gateway 1 --shell lite
echo "== the edge pinned to CPU 0, batches of 256 records per request (ProduceBatch), tokio then edge-lite"
taskset -c 1 target/release/bench-e2e --records "$N" --size "$SIZE" --window "$WINDOW" --producers 4 \
    --mode offline --pin-edge 0 --pin-gateway 1 --batch 256
taskset -c 1 target/release/bench-e2e --records "$N" --size "$SIZE" --window "$WINDOW" --producers 4 \
    --mode offline --pin-edge 0 --pin-gateway 1 --batch 256 --shell lite
echo "== the edge pinned to CPU 0, HTTP JSON batches of 256 records, one request at a time per producer"
taskset -c 1 target/release/bench-e2e --records "$N" --size "$SIZE" --producers 4 \
    --mode offline --pin-edge 0 --pin-gateway 1 --batch 256 --protocol http
echo "== live, one producer with a window of $WINDOW (as the NATS publisher), nothing pinned"
target/release/bench-e2e --records "$N" --size "$SIZE" --window "$WINDOW" --producers 1
echo "== the same, in batches of 256 records per request"
target/release/bench-e2e --records "$N" --size "$SIZE" --window "$WINDOW" --producers 1 --batch 256
echo "== NATS JetStream, file storage, one async publisher with a window of $WINDOW"
# run.sh ends with the status of stopping its server; its figures are printed before.
"$peers/nats/run.sh" "$N" "$SIZE" "$WINDOW" || true
echo "== simulator speed (vehicle-offline, seed 1)"
target/release/outpost-sim run scenarios/vehicle-offline.toml --seed 1 | grep -iE 'speed|x real|wall' || true
