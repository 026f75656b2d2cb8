//! The whole queue on the fault-injecting storage layer (`log/fault.rs`): power cuts at any
//! call, a single failing call anywhere, and a failing fsync.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use crate::log::fault::{Faulty, Tear};
use crate::{Durability, Error, Queue};
use proptest::prelude::*;
use std::path::Path;
use std::sync::Arc;

#[derive(Debug, Clone)]
enum Step {
    Put(u64),
    PutAll(u64),
    Get(u64),
    GetAck(u64),
    Sync,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        3 => (1u64..20).prop_map(Step::Put),
        2 => (1u64..40).prop_map(Step::PutAll),
        2 => (1u64..20).prop_map(Step::Get),
        1 => (1u64..10).prop_map(Step::GetAck),
        2 => Just(Step::Sync),
    ]
}

fn durability() -> impl Strategy<Value = Durability> {
    prop_oneof![Just(Durability::OnSync), Just(Durability::EveryPut)]
}

/// What the run promised. Ids are put in order from 0, one thread, so removals are a prefix.
#[derive(Debug, Default)]
struct Promised {
    /// Ids below this were put.
    put_end: u64,
    /// Ids below this were handed to a `put`, even one that failed: a failed `put` may still
    /// store its items (when a write fails for lack of space the spill thread tries again).
    tried_end: u64,
    /// Ids below this are durable: a `sync` returned after they were put, or (`EveryPut`) their
    /// `put` returned.
    durable_put_end: u64,
    /// Ids below this were removed.
    removed_end: u64,
    /// Ids below this were removed before a `sync` that returned: never delivered again.
    synced_removed_end: u64,
}

fn open(
    dir: &Path,
    cache: usize,
    durability: Durability,
    storage: Arc<Faulty>,
) -> Result<Queue<u64>, Error> {
    Queue::builder(dir)
        .cache_size(cache)
        .segment_size(512)
        .durability(durability)
        .checkpoint_every_removals(5)
        .storage(storage)
        .open()
}

/// Runs `steps` until a call fails. Returns what was promised.
fn run(queue: &Queue<u64>, durability: Durability, steps: &[Step]) -> Promised {
    let mut p = Promised::default();
    for step in steps {
        let alive = match *step {
            Step::Put(n) => (0..n).all(|_| {
                p.tried_end = p.put_end + 1;
                let ok = queue.put(p.put_end).is_ok();
                if ok {
                    p.put_end += 1;
                }
                ok
            }),
            Step::PutAll(n) => {
                p.tried_end = p.put_end + n;
                let ok = queue.put_all(p.put_end..p.put_end + n).is_ok();
                if ok {
                    p.put_end += n;
                }
                ok
            }
            Step::Get(n) => (0..n).all(|_| match queue.try_get() {
                Ok(Some(id)) => {
                    assert_eq!(id, p.removed_end, "out of order before any fault");
                    p.removed_end += 1;
                    true
                }
                Ok(None) => true,
                Err(_) => false,
            }),
            Step::GetAck(n) => (0..n).all(|_| match queue.try_get_ack() {
                Ok(Some(delivery)) => {
                    assert_eq!(*delivery, p.removed_end, "out of order before any fault");
                    let ok = delivery.ack().is_ok();
                    p.removed_end += 1;
                    ok
                }
                Ok(None) => true,
                Err(_) => false,
            }),
            Step::Sync => {
                let (put_end, removed_end) = (p.put_end, p.removed_end);
                let ok = queue.sync().is_ok();
                if ok {
                    p.durable_put_end = put_end;
                    p.synced_removed_end = removed_end;
                }
                ok
            }
        };
        if durability == Durability::EveryPut {
            p.durable_put_end = p.put_end;
        }
        if !alive {
            break;
        }
    }
    p
}

/// Reopens `dir` on the real file system and checks what comes out against the promises.
fn check(dir: &Path, p: &Promised) -> Result<(), TestCaseError> {
    let queue: Queue<u64> =
        Queue::open(dir).map_err(|e| TestCaseError::fail(format!("reopen failed: {e}")))?;
    let items: Vec<u64> = queue.try_iter().map(Result::unwrap).collect();
    prop_assert!(
        items.windows(2).all(|w| w[0] < w[1]),
        "out of order or duplicated: {items:?}"
    );
    prop_assert!(
        items
            .iter()
            .all(|&id| id >= p.synced_removed_end && id < p.tried_end),
        "an id that was removed before a sync, or never put: {items:?}, {p:?}"
    );
    for id in p.removed_end..p.durable_put_end {
        prop_assert!(
            items.binary_search(&id).is_ok(),
            "lost {id}: {items:?}, {p:?}"
        );
    }
    queue.close().unwrap();
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(
        std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(64)
    ))]

    /// A power cut at any call of a running queue (spill thread, checkpoints, group commit and
    /// all) loses nothing a `sync` or an `EveryPut` put promised, and brings back nothing whose
    /// removal a `sync` covered.
    #[test]
    fn a_queue_power_cut_keeps_what_was_promised(
        cache in prop_oneof![Just(0usize), Just(3), Just(50)],
        durability in durability(),
        steps in proptest::collection::vec(step(), 1..40),
        cut_at in 0u64..250,
        tear in prop_oneof![
            Just(Tear::DropAll),
            (0usize..4, prop_oneof![Just(1u64), Just(512), Just(4096)])
                .prop_map(|(kept, boundary)| Tear::Prefix { kept, boundary }),
            any::<u64>().prop_map(|seed| Tear::Random { seed }),
        ],
    ) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("running");
        let storage = Arc::new(Faulty::default().fail_from(cut_at));
        // The open itself may meet the cut.
        let queue = open(&dir, cache, durability, Arc::clone(&storage));
        let promised = queue.as_ref().map(|q| run(q, durability, &steps)).unwrap_or_default();
        // The power goes: whatever the queue does from here on (closing) reaches no disk.
        storage.cut_now();
        drop(queue);
        let image = root.path().join("after-cut");
        std::fs::create_dir(&image).unwrap();
        storage.power_cut_image(&image, tear);
        check(&image, &promised)?;
    }

    /// One failing call anywhere (EIO from a write, a reservation, a rename, an fsync) is an
    /// error, never a panic, and what was promised before it is there after a reopen.
    #[test]
    fn one_failing_call_is_an_error_and_loses_nothing_promised(
        cache in prop_oneof![Just(0usize), Just(3), Just(50)],
        durability in durability(),
        steps in proptest::collection::vec(step(), 1..40),
        fail_at in 0u64..200,
    ) {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("running");
        let storage = Arc::new(Faulty::default().fail_once(fail_at));
        let queue = open(&dir, cache, durability, Arc::clone(&storage));
        let promised = queue.as_ref().map(|q| run(q, durability, &steps)).unwrap_or_default();
        // Closing may report the failure; the process goes on, so the page cache keeps all.
        if let Ok(queue) = queue {
            let _ = queue.close();
        }
        check(&dir, &promised)?;
    }
}

#[test]
fn a_failed_fsync_refuses_writes_until_the_queue_is_reopened() {
    let dir = tempfile::tempdir().unwrap();
    let storage = Arc::new(Faulty::default());
    let queue = open(dir.path(), 4, Durability::OnSync, Arc::clone(&storage)).unwrap();
    queue.put_all(0..10).unwrap();
    queue.sync().unwrap();
    queue.put_all(10..20).unwrap();
    storage.fail_next_sync();
    let failed = queue.sync();
    assert!(
        matches!(failed, Err(Error::Io { .. } | Error::Poisoned { .. })),
        "{failed:?}"
    );
    assert_eq!(storage.failed(), 1);
    // Every write is refused now, into memory as well as to disk, and so is sync.
    assert!(matches!(queue.put(20), Err(Error::Poisoned { .. })));
    assert!(matches!(
        queue.put_all([20, 21]),
        Err(Error::Poisoned { .. })
    ));
    assert!(matches!(queue.sync(), Err(Error::Poisoned { .. })));
    // Reads go on: everything put is still there, in order.
    assert_eq!(queue.peek().unwrap(), Some(0));
    assert_eq!(queue.len(), 20);
    assert!(queue.close().is_err());
    drop(queue);

    // Reopened, the queue works again, with everything the sync before the failure covered.
    let queue = open(
        dir.path(),
        4,
        Durability::OnSync,
        Arc::new(Faulty::over(dir.path())),
    )
    .unwrap();
    let items: Vec<u64> = queue.try_iter().map(Result::unwrap).collect();
    assert_eq!(items.get(..10), Some(&(0..10).collect::<Vec<_>>()[..]));
    assert!(items.windows(2).all(|w| w[0] < w[1]));
    queue.put(20).unwrap();
    queue.sync().unwrap();
    assert_eq!(queue.try_get().unwrap(), Some(20));
    queue.close().unwrap();
}

/// A checkpoint created by `open` (a new queue, or one whose checkpoint was lost) must have its
/// directory entry fsynced: else a power cut after a `sync` keeps the segments but loses the
/// checkpoint's name, and the items whose removal that `sync` covered come back.
#[test]
fn a_power_cut_keeps_a_checkpoint_that_open_created() {
    let root = tempfile::tempdir().unwrap();
    let dir = root.path().join("running");
    let queue = open(&dir, 0, Durability::OnSync, Arc::new(Faulty::default())).unwrap();
    queue.put_all(0..20).unwrap();
    queue.close().unwrap();
    drop(queue);
    std::fs::remove_file(dir.join("checkpoint")).unwrap();

    let storage = Arc::new(Faulty::over(&dir));
    let queue = open(&dir, 0, Durability::OnSync, Arc::clone(&storage)).unwrap();
    for id in 0..7 {
        assert_eq!(queue.try_get().unwrap(), Some(id));
    }
    queue.sync().unwrap();
    storage.cut_now();
    drop(queue);
    let image = root.path().join("after-cut");
    std::fs::create_dir(&image).unwrap();
    storage.power_cut_image(&image, Tear::DropAll);
    let queue: Queue<u64> = Queue::open(&image).unwrap();
    let items: Vec<u64> = queue.try_iter().map(Result::unwrap).collect();
    assert_eq!(items, (7..20).collect::<Vec<_>>());
}
