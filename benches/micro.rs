//! Micro-benchmarks of the hot paths: record framing, the memory ring and lane hand-offs, and
//! appending through the spill thread. `cargo bench --bench micro`.

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use serde::{Deserialize, Serialize};
use serde_bytes::ByteBuf;
use spillq::{Codec, MsgPack, Queue};
use std::hint::black_box;

/// The benchmark record: an id and 92 bytes of payload (100 bytes of data).
#[derive(Serialize, Deserialize)]
struct Record {
    id: u64,
    payload: ByteBuf,
}

fn record(id: u64) -> Record {
    Record {
        id,
        payload: ByteBuf::from(vec![(id % 251) as u8; 92]),
    }
}

fn framing(c: &mut Criterion) {
    let mut group = c.benchmark_group("record");
    group.throughput(Throughput::Elements(1));
    let mut buf = Vec::new();
    group.bench_function("msgpack encode", |b| {
        b.iter(|| {
            buf.clear();
            MsgPack.encode(black_box(&record(7)), &mut buf).unwrap();
        })
    });
    MsgPack.encode(&record(7), &mut buf).unwrap();
    group.bench_function("msgpack decode", |b| {
        b.iter(|| {
            let decoded: Record = MsgPack.decode(black_box(&buf)).unwrap();
            decoded
        })
    });
    let framed = spillq::__fuzz::encode_record(7, &buf);
    group.bench_function("frame", |b| {
        b.iter(|| spillq::__fuzz::encode_record(black_box(7), black_box(&buf)))
    });
    group.bench_function("parse", |b| {
        b.iter(|| spillq::__fuzz::parse_record(black_box(&framed), 0))
    });
    group.finish();
}

fn queue(c: &mut Criterion) {
    let mut group = c.benchmark_group("queue");
    const ITEMS: u64 = 10_000;
    group.throughput(Throughput::Elements(ITEMS));
    let dir = tempfile::tempdir().unwrap();
    let memory = Queue::<Record>::builder(dir.path().join("memory"))
        .cache_size(ITEMS as usize)
        .open()
        .unwrap();
    group.bench_function("ring hand-off (put then get, in memory)", |b| {
        b.iter(|| {
            for id in 0..ITEMS {
                memory.put(record(id)).unwrap();
            }
            for _ in 0..ITEMS {
                black_box(memory.get().unwrap());
            }
        })
    });
    // One item at a time: every put goes through the lock-free lane, every get takes it
    // from there (the ring stays empty).
    let lane = Queue::<u64>::builder(dir.path().join("lane"))
        .cache_size(4096)
        .open()
        .unwrap();
    group.bench_function("lane hand-off (put, get, put, get, ...)", |b| {
        b.iter(|| {
            for id in 0..ITEMS {
                lane.put(id).unwrap();
                black_box(lane.get().unwrap());
            }
        })
    });
    let disk = Queue::<Record>::builder(dir.path().join("disk"))
        .cache_size(0)
        .segment_size(64 << 20)
        .open()
        .unwrap();
    group.bench_function("log append and read back (cache_size 0)", |b| {
        b.iter_batched(
            || (),
            |()| {
                for id in 0..ITEMS {
                    disk.put(record(id)).unwrap();
                }
                for _ in 0..ITEMS {
                    black_box(disk.get().unwrap());
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, framing, queue);
criterion_main!(benches);
