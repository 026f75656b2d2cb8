//! Queues written by earlier versions of spillq open and give back what they held.

use spillq::Queue;
use std::path::Path;

fn copy_of(fixture: &str) -> tempfile::TempDir {
    let from = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data")
        .join(fixture);
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(&from).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.path().join(entry.file_name())).unwrap();
    }
    dir
}

#[test]
fn a_format_v1_queue_from_the_first_edition_opens_with_its_items_and_its_unacknowledged_one() {
    let dir = copy_of("format-v1-queue");
    let queue = Queue::<(u64, String)>::builder(dir.path())
        .cache_size(4)
        .segment_size(1024)
        .open()
        .unwrap();
    assert_eq!(queue.stats().skipped, 0);
    // The item out with a consumer when it closed comes first, then the rest in order.
    let items: Vec<(u64, String)> = queue.try_iter().map(Result::unwrap).collect();
    let expected: Vec<(u64, String)> = (100..300).map(|id| (id, format!("item {id}"))).collect();
    assert_eq!(items, expected);
    // It goes on: new items after the old ones, through a reopen.
    queue
        .put_all((300..310).map(|id| (id, format!("item {id}"))))
        .unwrap();
    queue.close().unwrap();
    let queue = Queue::<(u64, String)>::open(dir.path()).unwrap();
    let items: Vec<u64> = queue.try_iter().map(|item| item.unwrap().0).collect();
    assert_eq!(items, (300..310).collect::<Vec<_>>());
}
