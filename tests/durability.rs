//! The durability modes: `EveryPut` with group commit, `Interval` ticks, and what a SIGKILL
//! leaves under each.

mod common;

use common::{drain, open_with, read_then_kill, spawn_child};
use spillq::{Durability, Queue};
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

fn every_put(dir: &Path) -> Queue<u64> {
    Queue::builder(dir)
        .segment_size(16 << 20)
        .durability(Durability::EveryPut)
        .open()
        .unwrap()
}

#[test]
fn one_producer_under_every_put_pays_one_fsync_per_put() {
    let dir = tempfile::tempdir().unwrap();
    let queue = every_put(dir.path());
    // The first put also makes the first segment (its header's fsync, the directory's).
    queue.put(0).unwrap();
    let before = queue.stats().fsyncs;
    for i in 1..=20 {
        queue.put(i).unwrap();
    }
    assert_eq!(queue.stats().fsyncs - before, 20);
}

#[test]
fn concurrent_puts_under_every_put_share_fsyncs() {
    let dir = tempfile::tempdir().unwrap();
    let queue = every_put(dir.path());
    let before = queue.stats().fsyncs;
    let threads = 8;
    let per_thread = 200;
    let producers: Vec<_> = (0..threads)
        .map(|t| {
            let queue = queue.clone();
            thread::spawn(move || {
                for i in 0..per_thread {
                    queue.put(t * 1000 + i).unwrap();
                }
            })
        })
        .collect();
    for producer in producers {
        producer.join().unwrap();
    }
    let puts = threads * per_thread;
    let fsyncs = queue.stats().fsyncs - before;
    println!("{puts} puts from {threads} threads: {fsyncs} fsyncs");
    assert!(
        fsyncs * 2 < puts,
        "{fsyncs} fsyncs for {puts} puts: not shared"
    );
    assert_eq!(queue.len() as u64, puts);
}

#[test]
fn put_all_under_every_put_costs_one_fsync() {
    let dir = tempfile::tempdir().unwrap();
    let queue = every_put(dir.path());
    // The first put also makes the first segment (its header's fsync, the directory's).
    queue.put(0).unwrap();
    let before = queue.stats().fsyncs;
    queue.put_all(1..1000).unwrap();
    assert_eq!(queue.stats().fsyncs - before, 1);
    assert_eq!(drain(&queue), (0..1000).collect::<Vec<_>>());
}

/// The child: puts ids under the mode named by `SPILLQ_MODE`, printing each id once `put`
/// returned (`EveryPut`), or waits for an `Interval` tick after putting 100 items.
#[test]
#[ignore = "run as a child process by the durability tests"]
fn durability_child() {
    let Ok(dir) = std::env::var("SPILLQ_DURABILITY_DIR") else {
        return;
    };
    match std::env::var("SPILLQ_MODE").unwrap().as_str() {
        "every-put" => {
            let queue = open_with(Path::new(&dir), 1000, Durability::EveryPut);
            for id in 0.. {
                queue.put(id).unwrap();
                println!("PUT {id}");
            }
        }
        "spill-then-idle" => {
            let queue = open_with(Path::new(&dir), 10, Durability::OnSync);
            for id in 0..500 {
                queue.put(id).unwrap();
            }
            println!("PUT 500");
            loop {
                thread::park();
            }
        }
        _ => {
            let queue = open_with(
                Path::new(&dir),
                1000,
                Durability::Interval(Duration::from_millis(20)),
            );
            queue.put_all(0..100).unwrap();
            // All 100 sit in memory; wait (polling, not sleeping a fixed time) for a tick to
            // have written and fsynced them.
            let deadline = Instant::now() + Duration::from_secs(30);
            while queue.stats().synced_sequence < 100 && Instant::now() < deadline {
                thread::yield_now();
            }
            println!("TICKED {}", queue.stats().synced_sequence);
            loop {
                thread::park();
            }
        }
    }
}

/// Runs `durability_child` in `mode` on `dir`, handing its lines to `each` until it returns
/// false; then kills it.
fn run_child(dir: &Path, mode: &str, each: impl FnMut(&str) -> bool) {
    let child = spawn_child(
        "durability_child",
        &[
            ("SPILLQ_DURABILITY_DIR", dir.display().to_string()),
            ("SPILLQ_MODE", mode.to_string()),
        ],
    );
    read_then_kill(child, each);
}

/// Items that spilled reach the segment file soon after the producer stops, without a sync, so
/// a kill then loses none of them (`OnSync`: a kill keeps what reached the file).
#[test]
fn spilled_items_reach_the_file_once_the_producer_stops_and_survive_a_kill() {
    let dir = tempfile::tempdir().unwrap();
    let mut seen = 0;
    run_child(dir.path(), "spill-then-idle", |line| {
        if line != "PUT 500" {
            return true;
        }
        // Wait (polling, with a deadline) for the records to show in the file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while seen < 500 && Instant::now() < deadline {
            let inspection = spillq::inspect::Inspection::open(dir.path()).unwrap();
            seen = inspection
                .scan(|_| std::ops::ControlFlow::Continue(()))
                .unwrap()
                .next_sequence;
            thread::yield_now();
        }
        false
    });
    assert_eq!(seen, 500, "records framed were left only in memory");
    let queue = open_with(dir.path(), 10, Durability::OnSync);
    assert_eq!(drain(&queue), (0..500).collect::<Vec<_>>());
}

#[test]
fn every_put_keeps_every_put_that_returned_across_sigkill() {
    for round in 0..5 {
        let dir = tempfile::tempdir().unwrap();
        let mut returned = None;
        run_child(dir.path(), "every-put", |line| {
            if let Some(id) = line.strip_prefix("PUT ") {
                returned = Some(id.parse::<u64>().unwrap());
            }
            returned.is_none_or(|id| id < 50 + round * 40)
        });
        let returned = returned.unwrap();
        let queue = open_with(dir.path(), 1000, Durability::EveryPut);
        let items = drain(&queue);
        // Every put that returned is there; one more may be, if it was written but not
        // yet reported.
        assert!(
            items.len() as u64 > returned,
            "{} < {}",
            items.len(),
            returned + 1
        );
        assert_eq!(items, (0..items.len() as u64).collect::<Vec<_>>());
    }
}

#[test]
fn an_interval_tick_writes_what_sat_in_memory() {
    let dir = tempfile::tempdir().unwrap();
    let mut ticked = None;
    run_child(dir.path(), "interval", |line| {
        if let Some(n) = line.strip_prefix("TICKED ") {
            ticked = Some(n.parse::<u64>().unwrap());
        }
        ticked.is_none()
    });
    assert!(ticked.unwrap() > 0, "no tick within 30 s");
    let queue = open_with(dir.path(), 1000, Durability::OnSync);
    assert_eq!(drain(&queue), (0..100).collect::<Vec<_>>());
}
