//! The criterion suite: the codec, the log through the core alone, sync, and the whole core
//! pipeline, over the zero-latency storage and link of `outpost_bench`. Figures and how to
//! read them: docs/PERFORMANCE.md. Run with `cargo bench -p outpost-bench`.

use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use outpost_bench::{telemetry_value as value, telemetry_values, Site};
use outpost_core::codec::{encode_batch, BatchDecoder, Compression, DecodedBatch, RecordRef};
use outpost_core::hlc::Hlc;
use outpost_core::io::{Control, Input};
use outpost_core::keyed::{Dot, KeyedLimits, KeyedOp, KeyedState, OpKind, Strategy, VersionVector, Write};
use outpost_core::types::NodeId;
use std::hint::black_box;

/// Records per batch in the codec benchmarks.
const BATCH: usize = 100;
/// Records per run in the node benchmarks.
const RECORDS: u64 = 20_000;
/// Produces in flight at once, as from a client with a window of requests.
const WINDOW: u64 = 1024;

fn codec(c: &mut Criterion) {
    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(BATCH as u64));
    for len in [100, 1024] {
        let values: Vec<Vec<u8>> = (0..BATCH).map(|i| value(i, len)).collect();
        let records: Vec<RecordRef<'_>> = values
            .iter()
            .enumerate()
            .map(|(i, v)| RecordRef { hlc: Hlc((1_767_225_600_000 << 16) + i as u64), key: None, value: v })
            .collect();
        for (name, compression) in [("raw", Compression::None), ("zstd", Compression::Zstd)] {
            let id = format!("{len}B/{name}");
            let mut out = Vec::with_capacity(BATCH * (len + 16));
            group.bench_function(BenchmarkId::new("encode", &id), |b| {
                b.iter(|| {
                    out.clear();
                    encode_batch(NodeId(7), 0, black_box(&records), compression, &mut out);
                })
            });
            let mut encoded = Vec::new();
            encode_batch(NodeId(7), 0, &records, compression, &mut encoded);
            let mut decoder = BatchDecoder::new();
            group.bench_function(BenchmarkId::new("decode", &id), |b| {
                b.iter(|| {
                    let batch = DecodedBatch::decode_with(black_box(&encoded), &mut decoder).expect("valid");
                    batch.records().map(|r| r.value.len()).sum::<usize>()
                })
            });
        }
    }
    group.finish();
}

fn node(c: &mut Criterion) {
    let mut group = c.benchmark_group("node");
    group.throughput(Throughput::Elements(RECORDS));
    group.sample_size(20);
    let v100 = telemetry_values(1024, 100);
    // Produce → group commit → durable acknowledgement, through the core alone.
    group.bench_function("log_append/100B", |b| {
        b.iter_batched(
            Site::edge_only,
            |mut site| site.produce_durably(RECORDS, &v100, WINDOW),
            BatchSize::PerIteration,
        )
    });
    // Records already durable at the edge: sync reads them, builds batches, the gateway
    // applies them and acknowledges.
    group.bench_function("sync_build_apply/100B", |b| {
        b.iter_batched(
            || {
                let mut site = Site::with_gateway();
                site.edge.node.handle(site.now, Input::Control(Control::PauseSync));
                site.produce_durably(RECORDS, &v100, WINDOW);
                site.edge.node.handle(site.now, Input::Control(Control::ResumeSync));
                site
            },
            |mut site| site.sync_all(),
            BatchSize::PerIteration,
        )
    });
    // The whole core: produce → durable at the edge → synced → acknowledged by the gateway.
    group.bench_function("pipeline/100B", |b| {
        b.iter_batched(
            Site::with_gateway,
            |mut site| {
                site.produce_durably(RECORDS, &v100, WINDOW);
                site.sync_all();
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

/// Updates per run of the keyed benchmarks.
const UPDATES: usize = 100_000;
/// Keys they spread over.
const KEYED_KEYS: usize = 10_000;

/// `UPDATES` keyed records from four origins, as they reach a replica (key, dot, HLC and
/// encoded operation): each names the key's previous write as seen, except every tenth,
/// which saw nothing and so conflicts with the version it meets.
fn keyed_updates(strategy: Strategy) -> Vec<(Vec<u8>, Dot, Hlc, Vec<u8>)> {
    let mut last: Vec<Option<Dot>> = vec![None; KEYED_KEYS];
    (0..UPDATES)
        .map(|i| {
            let k = (i * 7919) % KEYED_KEYS;
            let dot = Dot { origin: NodeId(1 + (i % 4) as u64), seq: (i / 4) as u64 };
            let context: VersionVector = last[k].filter(|_| i % 10 != 0).into_iter().collect();
            last[k] = Some(dot);
            let element = [b'e', (i % 16) as u8];
            let kind = match strategy {
                Strategy::Counter => OpKind::Increment(if i % 3 == 0 { -1 } else { 2 }),
                Strategy::AddWinsSet => OpKind::Add(&element),
                _ => OpKind::Put(b"price=4.20 currency=EUR vat=0.20"),
            };
            let mut op = Vec::new();
            KeyedOp { context, cloud: i % 4 == 0, relayed: None, kind }.encode(&mut op);
            (format!("sku-{k:05}").into_bytes(), dot, Hlc((1_767_225_600_000 << 16) + i as u64), op)
        })
        .collect()
}

/// Keyed apply: decode each record's operation, detect what it overwrites or meets
/// concurrently, resolve by the strategy, record conflicts.
fn keyed(c: &mut Criterion) {
    let mut group = c.benchmark_group("keyed");
    group.throughput(Throughput::Elements(UPDATES as u64));
    group.sample_size(20);
    let limits = KeyedLimits { state_bytes_max: 1 << 30, conflict_log_bytes_max: 1 << 20 };
    for strategy in [Strategy::LastWriteWins, Strategy::KeepBoth, Strategy::Counter, Strategy::AddWinsSet] {
        let updates = keyed_updates(strategy);
        group.bench_function(BenchmarkId::new("apply", strategy.name()), |b| {
            b.iter_batched(
                || KeyedState::new(strategy, limits),
                |mut state| {
                    for (key, dot, hlc, op) in &updates {
                        let op = KeyedOp::decode(op).expect("encoded above");
                        state.apply(Write { key, dot: *dot, hlc: *hlc, op }).expect("within limits");
                    }
                    state
                },
                BatchSize::LargeInput,
            )
        });
    }
    group.finish();
}

criterion_group!(benches, codec, node, keyed);
criterion_main!(benches);
