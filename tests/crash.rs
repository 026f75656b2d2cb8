//! SIGKILL at random moments. A child process (this test binary, re-run) runs producers and
//! consumers on a queue, with `put`, `put_all`, `try_get`, `try_get_ack` + `ack` or `nack`,
//! and `sync`,
//! and prints what each call did once it returned; the parent kills it after a random number
//! of lines, reopens the queue, and checks it against what the child printed:
//! - lost: an item put before a `sync()` began (or, under `EveryPut`, whose `put` returned),
//!   not removed, and missing (must be 0);
//! - out of order: one producer's items in another order than it put them (must be 0);
//! - a removal that a `sync()` covered undone (must be 0); removals after the last sync may
//!   be undone (at least once), and are counted as redelivered.
//!
//! The configurations cycle through cache sizes, segment sizes, the three durability modes,
//! and one producer with one consumer or four with four. `SPILLQ_CRASH_KILLS` sets the number
//! of kills (default 200).

mod common;

use common::{Rng, read_then_kill, spawn_child};
use spillq::{Durability, Queue};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Ids are `base + producer * PRODUCER_STRIDE + k`, k counting that producer's puts.
const PRODUCER_STRIDE: u64 = 1 << 32;

fn kills() -> u64 {
    std::env::var("SPILLQ_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}

#[derive(Debug, Clone, Copy)]
struct Config {
    threads: u64,
    cache: usize,
    segment: u64,
    mode: &'static str,
}

const CONFIGS: [Config; 8] = [
    Config {
        threads: 1,
        cache: 0,
        segment: 1024,
        mode: "on-sync",
    },
    Config {
        threads: 4,
        cache: 4,
        segment: 4096,
        mode: "on-sync",
    },
    Config {
        threads: 1,
        cache: 64,
        segment: 1024,
        mode: "every-put",
    },
    Config {
        threads: 4,
        cache: 0,
        segment: 65536,
        mode: "every-put",
    },
    Config {
        threads: 1,
        cache: 1000,
        segment: 65536,
        mode: "interval",
    },
    Config {
        threads: 4,
        cache: 64,
        segment: 1024,
        mode: "interval",
    },
    Config {
        threads: 4,
        cache: 1000,
        segment: 4096,
        mode: "on-sync",
    },
    Config {
        threads: 1,
        cache: 4,
        segment: 4096,
        mode: "on-sync",
    },
];

fn open_child_queue(dir: &Path, config: Config) -> Queue<u64> {
    let durability = match config.mode {
        "every-put" => Durability::EveryPut,
        "interval" => Durability::Interval(Duration::from_millis(5)),
        _ => Durability::OnSync,
    };
    Queue::builder(dir)
        .cache_size(config.cache)
        .segment_size(config.segment)
        .durability(durability)
        .checkpoint_every_removals(7)
        .open()
        .unwrap()
}

fn env_u64(name: &str) -> u64 {
    std::env::var(name).unwrap().parse().unwrap()
}

/// The child. It prints, each line after the call returned:
/// - `PUT p k`: producer p's first k items were put;
/// - `GETTING c`: consumer c calls `try_get`; `ACK c id` or `EMPTY c` says what it got;
/// - `TAKING c`: consumer c calls `try_get_ack`; `OUT c id` or `NONE c` says what it got;
/// - `BACK c id`: consumer c handed `id` back (`nack`);
/// - `ACKING id`: `ack` of `id` (from `try_get_ack`) is called; it may be removed from now on;
/// - `ACK c id`: `id` was removed for good by consumer c (by `try_get`, or by `ack`);
/// - `START s` and `SYNCED s`: sync number s began, and returned.
#[test]
#[ignore = "run as a child process by the crash test"]
fn crash_child() {
    let Ok(dir) = std::env::var("SPILLQ_CRASH_DIR") else {
        return;
    };
    let config = CONFIGS[env_u64("SPILLQ_CONFIG") as usize];
    let queue = Arc::new(open_child_queue(Path::new(&dir), config));
    let (base, seed) = (env_u64("SPILLQ_BASE"), env_u64("SPILLQ_SEED"));
    let mut threads = Vec::new();
    for p in 0..config.threads {
        let queue = Arc::clone(&queue);
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(seed ^ (p + 1).wrapping_mul(0x9E37_79B9));
            let first = base + p * PRODUCER_STRIDE;
            let mut k = 0;
            loop {
                let n = 1 + rng.below(30);
                if rng.below(2) == 0 {
                    queue.put_all(first + k..first + k + n).unwrap();
                } else {
                    for id in first + k..first + k + n {
                        queue.put(id).unwrap();
                    }
                }
                k += n;
                println!("PUT {p} {k}");
            }
        }));
    }
    for c in 0..config.threads {
        let queue = Arc::clone(&queue);
        threads.push(std::thread::spawn(move || {
            let mut rng = Rng(seed ^ (c + 100).wrapping_mul(0x9E37_79B9));
            loop {
                if rng.below(2) == 0 {
                    // The removal happens inside `try_get`: a kill before `ACK` leaves the
                    // parent one removal it cannot know of, and `GETTING` tells it so.
                    println!("GETTING {c}");
                    match queue.try_get().unwrap() {
                        Some(id) => println!("ACK {c} {id}"),
                        None => println!("EMPTY {c}"),
                    }
                } else if let Some(delivery) = {
                    println!("TAKING {c}");
                    queue.try_get_ack().unwrap()
                } {
                    let id = *delivery;
                    println!("OUT {c} {id}");
                    // Held for a while (a sync may checkpoint it as out), then acknowledged,
                    // or now and then handed back.
                    for _ in 0..rng.below(200) {
                        std::thread::yield_now();
                    }
                    if rng.below(10) == 0 {
                        delivery.nack().unwrap();
                        println!("BACK {c} {id}");
                    } else {
                        println!("ACKING {id}");
                        delivery.ack().unwrap();
                        println!("ACK {c} {id}");
                    }
                } else {
                    println!("NONE {c}");
                }
                // Consumers are slower than producers, so a backlog builds up and spills.
                for _ in 0..rng.below(40) {
                    std::thread::yield_now();
                }
            }
        }));
    }
    let syncs = AtomicU64::new(0);
    let mut rng = Rng(seed);
    loop {
        for _ in 0..rng.below(300) {
            std::thread::yield_now();
        }
        let s = syncs.fetch_add(1, Ordering::Relaxed);
        println!("START {s}");
        queue.sync().unwrap();
        println!("SYNCED {s}");
    }
}

/// What the parent learned from one child.
#[derive(Debug, Default)]
struct Oracle {
    /// Per producer: items put so far.
    put: BTreeMap<u64, u64>,
    /// Items removed for good.
    acked: BTreeSet<u64>,
    /// Items whose `ack` was called: maybe removed.
    acking: BTreeSet<u64>,
    /// Consumers inside `try_get`: each may have removed an item the parent does not know of.
    getting: BTreeSet<u64>,
    /// Consumers inside `try_get_ack`: each may hold an item the parent does not know is out.
    taking: BTreeSet<u64>,
    /// Items out with a consumer (from `try_get_ack`), not yet acknowledged or handed back:
    /// after a kill they come back, at the head.
    out: BTreeSet<u64>,
    /// Snapshots (put, acked) taken at each `START`.
    started: BTreeMap<u64, (BTreeMap<u64, u64>, BTreeSet<u64>)>,
    /// The snapshot of the last sync that returned.
    synced: Option<(BTreeMap<u64, u64>, BTreeSet<u64>)>,
}

/// Totals over all kills.
#[derive(Debug, Default)]
struct Totals {
    kills: u64,
    promised: u64,
    lost: u64,
    out_of_order: u64,
    undone_removals: u64,
    redelivered: u64,
    in_flight_removals: u64,
}

fn check(
    items: &[u64],
    oracle: &Oracle,
    config: Config,
    base: u64,
    totals: &mut Totals,
) -> Result<(), String> {
    let producer = |id: u64| (id - base) / PRODUCER_STRIDE;
    let k_of = |id: u64| (id - base) % PRODUCER_STRIDE;
    let present: BTreeSet<u64> = items.iter().copied().collect();
    if present.len() != items.len() {
        return Err("an item is in the queue twice".into());
    }
    if let Some(&id) = items.iter().find(|&&id| id < base) {
        return Err(format!("{id} is from an earlier round"));
    }
    // One producer's items in the order it put them.
    let mut last_k: BTreeMap<u64, u64> = BTreeMap::new();
    for &id in items {
        if let Some(&k) = last_k.get(&producer(id))
            && k_of(id) <= k
        {
            totals.out_of_order += 1;
        }
        last_k.insert(producer(id), k_of(id));
    }
    let (synced_put, synced_acked) = oracle.synced.clone().unwrap_or_default();
    let undone = synced_acked.intersection(&present).count() as u64;
    totals.undone_removals += undone;
    totals.redelivered += oracle.acked.intersection(&present).count() as u64 - undone;
    // What must be there: put before the last completed sync began (every put that returned,
    // under EveryPut), and not removed for good.
    let promised_put = if config.mode == "every-put" {
        &oracle.put
    } else {
        &synced_put
    };
    let mut missing = Vec::new();
    for (&p, &k) in promised_put {
        let first = base + p * PRODUCER_STRIDE;
        for id in first..first + k {
            if !oracle.acked.contains(&id) && !oracle.acking.contains(&id) {
                totals.promised += 1;
                if !present.contains(&id) {
                    missing.push(id);
                }
            }
        }
    }
    // A consumer killed inside `try_get` may have removed an item the oracle does not know of:
    // at most one per such consumer, and (the queue being FIFO) older than everything of its
    // producer still in the queue, except items that were out for acknowledgement when it was
    // taken (they come back after the kill): those the oracle saw go out, and at most one
    // unseen per consumer that was inside `try_get_ack`.
    let explained = missing.len() <= oracle.getting.len()
        && missing.iter().all(|&id| {
            let older_not_out = items
                .iter()
                .filter(|&&other| {
                    producer(other) == producer(id) && other < id && !oracle.out.contains(&other)
                })
                .count();
            older_not_out <= oracle.taking.len()
        });
    if explained {
        totals.in_flight_removals += missing.len() as u64;
    } else {
        totals.lost += missing.len() as u64;
    }
    if totals.lost > 0 || totals.out_of_order > 0 || totals.undone_removals > 0 {
        return Err(format!(
            "missing {missing:?}; undone removals {undone}; totals {totals:?}"
        ));
    }
    Ok(())
}

#[test]
fn sigkill_loses_nothing_that_was_promised() {
    let kills = kills();
    let mut rng = Rng(0xC8A5);
    let mut base = 0;
    let mut dir = tempfile::tempdir().unwrap();
    let mut totals = Totals::default();
    for kill in 0..kills {
        // A fresh directory every ten kills; in between, each child reopens what the last left.
        if kill % 10 == 0 {
            dir = tempfile::tempdir().unwrap();
        }
        let config_index = (kill / 10) as usize % CONFIGS.len();
        let config = CONFIGS[config_index];
        let seed = rng.next();
        let child = spawn_child(
            "crash_child",
            &[
                ("SPILLQ_CRASH_DIR", dir.path().display().to_string()),
                ("SPILLQ_CONFIG", config_index.to_string()),
                ("SPILLQ_SEED", seed.to_string()),
                ("SPILLQ_BASE", base.to_string()),
            ],
        );
        let lines_before_kill = 1 + rng.below(400);
        let mut lines = 0;
        let mut oracle = Oracle::default();
        read_then_kill(child, |line| {
            let mut words = line.split_whitespace();
            let word = words.next();
            let numbers: Vec<u64> = words.filter_map(|w| w.parse().ok()).collect();
            match (word, numbers.as_slice()) {
                (Some("PUT"), &[p, k]) => {
                    oracle.put.insert(p, k);
                }
                (Some("GETTING"), &[c]) => {
                    oracle.getting.insert(c);
                }
                (Some("EMPTY"), &[c]) => {
                    oracle.getting.remove(&c);
                }
                (Some("TAKING"), &[c]) => {
                    oracle.taking.insert(c);
                }
                (Some("NONE"), &[c]) => {
                    oracle.taking.remove(&c);
                }
                (Some("OUT"), &[c, id]) => {
                    oracle.taking.remove(&c);
                    oracle.out.insert(id);
                }
                (Some("BACK"), &[_, id]) => {
                    oracle.out.remove(&id);
                }
                (Some("ACKING"), &[id]) => {
                    oracle.acking.insert(id);
                }
                (Some("ACK"), &[c, id]) => {
                    oracle.getting.remove(&c);
                    oracle.out.remove(&id);
                    oracle.acked.insert(id);
                }
                (Some("START"), &[s]) => {
                    let snapshot = (oracle.put.clone(), oracle.acked.clone());
                    oracle.started.insert(s, snapshot);
                }
                (Some("SYNCED"), &[s]) => {
                    oracle.synced = oracle.started.remove(&s);
                }
                _ => return true,
            }
            lines += 1;
            lines < lines_before_kill
        });
        let queue = open_child_queue(dir.path(), config);
        let len = queue.len();
        let items: Vec<u64> = queue.try_iter().map(Result::unwrap).collect();
        assert_eq!(
            items.len(),
            len,
            "kill {kill}: len disagrees with what came out"
        );
        totals.kills += 1;
        if let Err(problem) = check(&items, &oracle, config, base, &mut totals) {
            panic!("kill {kill} (seed {seed}, {config:?}): {problem}");
        }
        queue.close().unwrap();
        // The next child starts with an empty queue and new ids.
        base += PRODUCER_STRIDE * 8;
    }
    println!(
        "{} kills: {} promised items checked, {} lost, {} out of order, {} removals a sync \
         covered undone; {} redelivered (removed after the last sync), {} removals in flight",
        totals.kills,
        totals.promised,
        totals.lost,
        totals.out_of_order,
        totals.undone_removals,
        totals.redelivered,
        totals.in_flight_removals
    );
}
