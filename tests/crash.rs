//! SIGKILL at random moments: a child process (this test binary, re-run) puts and gets with
//! `OnSync`, prints what each `sync()` covered, and is killed. Reopened, the queue must hold
//! everything the last sync covered, in order, with no duplicates beyond at-least-once.

mod common;

use common::{Rng, read_then_kill, spawn_child};
use spillq::Queue;
use std::path::Path;

/// Kills in the default run; `SPILLQ_CRASH_KILLS` asks for more.
fn kills() -> u64 {
    std::env::var("SPILLQ_CRASH_KILLS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(60)
}

fn open_child_queue(dir: &Path, cache: usize, segment: u64) -> Queue<u64> {
    Queue::builder(dir)
        .cache_size(cache)
        .segment_size(segment)
        .checkpoint_every_removals(7)
        .open()
        .unwrap()
}

/// The child. Ids start at `SPILLQ_BASE`. It prints:
/// - `PUT n`: ids below n were put;
/// - `GOT id`: it removed `id` (printed after every get, before the next call);
/// - `SYNC n g`: a `sync()` returned that began after ids below n were put and every id up to
///   g (or none, if g is `-`) was removed.
#[test]
#[ignore = "run as a child process by the crash test"]
fn crash_child() {
    let Ok(dir) = std::env::var("SPILLQ_CRASH_DIR") else {
        return;
    };
    let var = |name: &str| std::env::var(name).unwrap().parse::<u64>().unwrap();
    let queue = open_child_queue(
        Path::new(&dir),
        var("SPILLQ_CACHE") as usize,
        var("SPILLQ_SEGMENT"),
    );
    let mut rng = Rng(var("SPILLQ_SEED"));
    let mut next = var("SPILLQ_BASE");
    let mut got: Option<u64> = None;
    loop {
        let n = 1 + rng.below(40);
        if rng.below(2) == 0 {
            queue.put_all(next..next + n).unwrap();
        } else {
            for id in next..next + n {
                queue.put(id).unwrap();
            }
        }
        next += n;
        println!("PUT {next}");
        for _ in 0..rng.below(40) {
            match queue.try_get().unwrap() {
                Some(id) => {
                    assert!(got.is_none_or(|g| id > g));
                    got = Some(id);
                    println!("GOT {id}");
                }
                None => break,
            }
        }
        if rng.below(3) == 0 {
            queue.sync().unwrap();
            let g = got.map_or("-".to_string(), |g| g.to_string());
            println!("SYNC {next} {g}");
        }
    }
}

#[test]
fn sigkill_loses_nothing_that_sync_covered() {
    let kills = kills();
    let mut rng = Rng(0xC8A5);
    let configs: [(usize, u64); 4] = [(0, 1024), (4, 4096), (64, 1024), (1000, 65536)];
    let mut base = 0;
    let mut dir = tempfile::tempdir().unwrap();
    let (mut redelivered, mut unsynced_kept) = (0u64, 0u64);
    for kill in 0..kills {
        // A fresh directory every ten kills; in between, each child reopens what the last left.
        if kill % 10 == 0 {
            dir = tempfile::tempdir().unwrap();
        }
        let (cache, segment) = configs[(kill / 10) as usize % configs.len()];
        let seed = rng.next();
        let child = spawn_child(
            "crash_child",
            &[
                ("SPILLQ_CRASH_DIR", dir.path().display().to_string()),
                ("SPILLQ_CACHE", cache.to_string()),
                ("SPILLQ_SEGMENT", segment.to_string()),
                ("SPILLQ_SEED", seed.to_string()),
                ("SPILLQ_BASE", base.to_string()),
            ],
        );
        let lines_before_kill = 1 + rng.below(300);
        let mut lines = 0;
        let mut put_end = base;
        let mut got_last: Option<u64> = None;
        let mut synced: Option<(u64, Option<u64>)> = None;
        read_then_kill(child, |line| {
            let mut words = line.split_whitespace();
            match (words.next(), words.next(), words.next()) {
                (Some("PUT"), Some(n), _) => put_end = n.parse().unwrap(),
                (Some("GOT"), Some(id), _) => got_last = Some(id.parse().unwrap()),
                (Some("SYNC"), Some(n), Some(g)) => {
                    synced = Some((n.parse().unwrap(), g.parse().ok()));
                }
                _ => return true,
            }
            lines += 1;
            lines < lines_before_kill
        });

        let queue = open_child_queue(dir.path(), cache, segment);
        let len = queue.len();
        let items: Vec<u64> = queue.try_iter().map(Result::unwrap).collect();
        let context = format!("kill {kill} (seed {seed}, cache {cache}, segment {segment})");
        assert_eq!(
            items.len(),
            len,
            "{context}: len disagrees with what came out"
        );
        assert!(
            items.windows(2).all(|w| w[0] < w[1]),
            "{context}: out of order or duplicated: {items:?}"
        );
        assert!(
            items.iter().all(|&id| id >= base),
            "{context}: an id from an earlier round"
        );
        if let Some((sync_put_end, sync_got)) = synced {
            // Removed before the sync: never again.
            if let Some(g) = sync_got {
                assert!(items.iter().all(|&id| id > g), "{context}: {g} came back");
            }
            // Put before the sync and not removed: all there. The child may have removed one
            // more item than it reported before the kill.
            let must_from = got_last.map_or(base, |g| g + 2);
            for id in must_from..sync_put_end {
                assert!(
                    items.binary_search(&id).is_ok(),
                    "{context}: lost {id}; synced {synced:?}, last got {got_last:?}, put {put_end}, items {items:?}"
                );
            }
            let removed_since = sync_got.map_or(base, |g| g + 1)..got_last.map_or(base, |g| g + 1);
            redelivered += items.iter().filter(|id| removed_since.contains(id)).count() as u64;
            unsynced_kept += items.iter().filter(|&&id| id >= sync_put_end).count() as u64;
        }
        queue.close().unwrap();
        // The next child starts with an empty queue and new ids.
        base = put_end + 100;
    }
    println!(
        "{kills} kills: 0 lost, 0 out of order; {redelivered} redelivered (removed after the \
         last sync), {unsynced_kept} unsynced items kept"
    );
}
