//! Items the codec cannot handle never block the queue.

mod common;

use serde::{Deserialize, Serialize, Serializer};
use spillq::{Error, Queue};

/// Serializes as a number, except 13, which refuses.
#[derive(Debug, PartialEq, Deserialize)]
struct Picky(u32);

impl Serialize for Picky {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 {
            return Err(serde::ser::Error::custom("13 is unlucky"));
        }
        serializer.serialize_u32(self.0)
    }
}

fn picky(dir: &std::path::Path, cache: usize) -> Queue<Picky> {
    Queue::builder(dir).cache_size(cache).open().unwrap()
}

#[test]
fn put_refuses_an_item_it_must_encode_and_the_queue_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let queue = picky(dir.path(), 0);
    queue.put(Picky(12)).unwrap();
    assert!(matches!(
        queue.put(Picky(13)),
        Err(Error::Codec { sequence: None, .. })
    ));
    let refused = queue.try_put(Picky(13)).unwrap_err();
    assert_eq!(refused.into_inner(), Picky(13));
    queue.put(Picky(14)).unwrap();
    assert_eq!(queue.get().unwrap(), Picky(12));
    assert_eq!(queue.get().unwrap(), Picky(14));
}

#[test]
fn sync_reports_an_item_in_memory_that_will_not_encode_and_writes_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = picky(dir.path(), 10);
        queue.put_all([Picky(12), Picky(13), Picky(14)]).unwrap();
        let error = queue.sync().unwrap_err();
        assert!(matches!(error, Error::Codec { .. }), "{error}");
        assert!(error.to_string().contains("13 is unlucky"), "{error}");
        assert!(
            error.to_string().contains("at position 1 of the queue"),
            "{error}"
        );
        // The queue goes on: a later sync succeeds, and in memory the item is still there.
        queue.put(Picky(15)).unwrap();
        queue.sync().unwrap();
        assert_eq!(queue.len(), 4);
        std::mem::forget(queue.clone()); // no close: what is on disk is what the syncs wrote
    }
    let copy = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), copy.path().join(entry.file_name())).unwrap();
    }
    let queue = picky(copy.path(), 10);
    let items: Vec<Picky> = queue.try_iter().map(Result::unwrap).collect();
    assert_eq!(items, [Picky(12), Picky(14), Picky(15)]);
}

#[test]
fn a_queue_opened_with_the_wrong_type_names_the_record_and_moves_past_it() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = Queue::<u64>::open(dir.path()).unwrap();
        queue.put(1).unwrap();
    }
    {
        let queue = Queue::<String>::open(dir.path()).unwrap();
        queue.put("not a number".into()).unwrap();
    }
    {
        let queue = Queue::<u64>::open(dir.path()).unwrap();
        queue.put(3).unwrap();
    }
    let queue = Queue::<u64>::open(dir.path()).unwrap();
    assert_eq!(queue.len(), 3);
    assert_eq!(queue.get().unwrap(), 1);
    assert!(matches!(
        queue.peek(),
        Err(Error::Codec {
            sequence: Some(1),
            ..
        })
    ));
    let Err(Error::Codec {
        sequence,
        moved_to: Some(moved_to),
        ..
    }) = queue.get()
    else {
        panic!("expected a codec error");
    };
    assert_eq!(sequence, Some(1));
    let saved: String = rmp_serde::from_slice(&std::fs::read(&moved_to).unwrap()).unwrap();
    assert_eq!(saved, "not a number");
    assert_eq!(queue.get().unwrap(), 3);
    assert_eq!(queue.stats().undecodable, 1);
    queue.close().unwrap();
    // The undecodable record does not come back.
    let queue = Queue::<u64>::open(dir.path()).unwrap();
    assert!(queue.is_empty());
}

/// A batch ends before a record that does not decode; the next call reports it, and the one
/// after goes on from the record after it.
#[test]
fn get_batch_stops_before_a_record_that_does_not_decode() {
    let dir = tempfile::tempdir().unwrap();
    {
        let queue = Queue::<u64>::open(dir.path()).unwrap();
        queue.put_all([1, 2]).unwrap();
    }
    {
        let queue = Queue::<String>::open(dir.path()).unwrap();
        queue.put("not a number".into()).unwrap();
    }
    {
        let queue = Queue::<u64>::open(dir.path()).unwrap();
        queue.put_all([4, 5]).unwrap();
    }
    let queue = Queue::<u64>::open(dir.path()).unwrap();
    let wait = std::time::Duration::ZERO;
    assert_eq!(queue.get_batch(10, wait).unwrap(), [1, 2]);
    assert!(matches!(
        queue.get_batch(10, wait),
        Err(Error::Codec {
            sequence: Some(2),
            ..
        })
    ));
    assert_eq!(queue.get_batch(10, wait).unwrap(), [4, 5]);
    assert!(queue.is_empty());
}

#[test]
fn an_item_larger_than_a_segment_gets_one_of_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<serde_bytes::ByteBuf>::builder(dir.path())
        .cache_size(0)
        .segment_size(4096)
        .open()
        .unwrap();
    let big = serde_bytes::ByteBuf::from(vec![7u8; 100_000]);
    queue
        .put(serde_bytes::ByteBuf::from(vec![1u8; 10]))
        .unwrap();
    queue.put(big.clone()).unwrap();
    queue
        .put(serde_bytes::ByteBuf::from(vec![2u8; 10]))
        .unwrap();
    queue.close().unwrap();
    let queue = Queue::<serde_bytes::ByteBuf>::builder(dir.path())
        .cache_size(0)
        .segment_size(4096)
        .open()
        .unwrap();
    assert_eq!(queue.get().unwrap().len(), 10);
    assert_eq!(queue.get().unwrap(), big);
    assert_eq!(queue.get().unwrap().as_slice(), &[2u8; 10]);
}

/// `put_all` encodes a batch in chunks: a refusal deep inside a batch of many chunks puts none
/// of it, and leaves nothing behind that the next batch would carry.
#[test]
fn a_refused_put_all_leaves_nothing_behind_for_the_next_batch() {
    let dir = tempfile::tempdir().unwrap();
    let queue = picky(dir.path(), 0);
    let refused = (0..20_000).map(|n| Picky(if n == 15_000 { 13 } else { 100 + n }));
    assert!(matches!(
        queue.put_all(refused),
        Err(Error::Codec { sequence: None, .. })
    ));
    assert!(queue.is_empty());
    let accepted: Vec<u32> = (0..20_000).map(|n| 200_000 + n).collect();
    queue.put_all(accepted.iter().map(|&n| Picky(n))).unwrap();
    queue.close().unwrap();
    let queue = picky(dir.path(), 0);
    let got: Vec<u32> = queue.try_iter().map(|item| item.unwrap().0).collect();
    assert_eq!(got, accepted);
}

/// Serializes as a number, putting two numbers into another queue on the way.
#[derive(Debug, PartialEq, Deserialize)]
struct Chatty(u32);

static ASIDE: std::sync::OnceLock<Queue<u32>> = std::sync::OnceLock::new();

impl Serialize for Chatty {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if let Some(aside) = ASIDE.get() {
            aside
                .put_all([self.0, self.0 + 1000])
                .map_err(serde::ser::Error::custom)?;
        }
        serializer.serialize_u32(self.0)
    }
}

/// A codec that itself calls `put_all` (here, from a `Serialize` impl) while its own
/// `put_all` is being encoded: both batches arrive whole and in order.
#[test]
fn put_all_from_inside_an_items_encoding_keeps_both_batches_whole() {
    let dir = tempfile::tempdir().unwrap();
    let aside_dir = tempfile::tempdir().unwrap();
    let aside = Queue::builder(aside_dir.path())
        .cache_size(0)
        .open()
        .unwrap();
    assert!(ASIDE.set(aside).is_ok());
    let queue = Queue::<Chatty>::builder(dir.path())
        .cache_size(0)
        .open()
        .unwrap();
    queue.put_all((1..=3).map(Chatty)).unwrap();
    let aside = ASIDE.get().unwrap();
    let wait = std::time::Duration::ZERO;
    assert_eq!(
        queue.get_batch(10, wait).unwrap(),
        [Chatty(1), Chatty(2), Chatty(3)]
    );
    assert_eq!(
        aside.get_batch(10, wait).unwrap(),
        [1, 1001, 2, 1002, 3, 1003]
    );
}

/// Serializes as a number, except 13, whose encoding panics.
#[derive(Debug, PartialEq, Deserialize)]
struct Touchy(u32);

impl Serialize for Touchy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        assert_ne!(self.0, 13, "13 panics");
        serializer.serialize_u32(self.0)
    }
}

#[test]
fn a_codec_that_panics_inside_put_all_leaves_no_record_of_that_batch() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        Queue::<Touchy>::builder(dir.path())
            .cache_size(0)
            .open()
            .unwrap()
    };
    let queue = open();
    queue.put_all((1..=5).map(Touchy)).unwrap();
    // The batch fits in the segment: its first records are framed before the panic.
    let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        queue.put_all([10, 11, 12, 13, 14].map(Touchy))
    }));
    assert!(panicked.is_err());
    queue.put_all((20..=22).map(Touchy)).unwrap();
    let got = |queue: &Queue<Touchy>| -> Vec<u32> {
        queue.try_iter().map(|item| item.unwrap().0).collect()
    };
    let expected = vec![1, 2, 3, 4, 5, 20, 21, 22];
    assert_eq!(queue.len(), expected.len());
    queue.close().unwrap();
    let queue = open();
    assert_eq!(got(&queue), expected);
}

/// Serializes as a number; the first 13 to be encoded panics, later ones do not.
#[derive(Debug, PartialEq, Deserialize)]
struct OnceTouchy(u32);

static ONCE_ARMED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(true);

impl Serialize for OnceTouchy {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if self.0 == 13 && ONCE_ARMED.swap(false, std::sync::atomic::Ordering::SeqCst) {
            panic!("13 panics, once");
        }
        serializer.serialize_u32(self.0)
    }
}

#[test]
fn a_codec_that_panics_in_the_spill_thread_fails_the_queue_instead_of_hanging_it() {
    let dir = tempfile::tempdir().unwrap();
    let queue = Queue::<OnceTouchy>::builder(dir.path())
        .cache_size(100_000)
        .durability(spillq::Durability::Interval(
            std::time::Duration::from_millis(1),
        ))
        .open()
        .unwrap();
    queue.put(OnceTouchy(13)).unwrap();
    // The next tick encodes it on the spill thread, which panics: from then on the queue
    // refuses writes, as after an I/O error, instead of accepting puts no thread will write.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let mut n = 100;
    while queue.try_put(OnceTouchy(n)).is_ok() {
        assert!(
            std::time::Instant::now() < deadline,
            "the queue never failed"
        );
        n += 1;
        std::thread::yield_now();
    }
    assert!(queue.sync().is_err());
    assert!(queue.close().is_err());
}
