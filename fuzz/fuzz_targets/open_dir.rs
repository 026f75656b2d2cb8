//! Opening a queue directory whose files were damaged in arbitrary ways: never a panic, a hang
//! or a runaway allocation; what comes out is an in-order subsequence of what went in.

#![no_main]

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use serde_bytes::ByteBuf;
use spillq::Queue;
use std::path::{Path, PathBuf};

#[derive(Arbitrary, Debug)]
enum Damage {
    Flip { file: u8, at: u32, bits: u8 },
    Zero { file: u8, at: u32, len: u16 },
    Truncate { file: u8, at: u32 },
    Delete { file: u8 },
    Write { file: u8, at: u32, bytes: Vec<u8> },
}

#[derive(Arbitrary, Debug)]
struct Input {
    records: Vec<Vec<u8>>,
    removed: u8,
    segment_size: u16,
    damage: Vec<Damage>,
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.is_file() && !p.ends_with("lock"));
    files.sort();
    files
}

fn pick(dir: &Path, file: u8) -> Option<PathBuf> {
    let files = files(dir);
    (!files.is_empty()).then(|| files[file as usize % files.len()].clone())
}

fn damage(dir: &Path, damage: &Damage) {
    let file = match damage {
        Damage::Flip { file, .. }
        | Damage::Zero { file, .. }
        | Damage::Truncate { file, .. }
        | Damage::Delete { file }
        | Damage::Write { file, .. } => *file,
    };
    let Some(path) = pick(dir, file) else { return };
    let Ok(mut bytes) = std::fs::read(&path) else {
        return;
    };
    let len = bytes.len().max(1);
    match damage {
        Damage::Flip { at, bits, .. } => {
            if let Some(b) = bytes.get_mut(*at as usize % len) {
                *b ^= bits | 1;
            }
        }
        Damage::Zero { at, len: n, .. } => {
            let start = *at as usize % len;
            let end = (start + *n as usize).min(bytes.len());
            bytes.get_mut(start..end).map(|s| s.fill(0));
        }
        Damage::Truncate { at, .. } => bytes.truncate(*at as usize % len),
        Damage::Delete { .. } => {
            let _ = std::fs::remove_file(&path);
            return;
        }
        Damage::Write { at, bytes: new, .. } => {
            let start = *at as usize % len;
            for (i, b) in new.iter().enumerate() {
                if let Some(slot) = bytes.get_mut(start + i) {
                    *slot = *b;
                }
            }
        }
    }
    let _ = std::fs::write(&path, bytes);
}

fuzz_target!(|input: Input| {
    if input.records.len() > 200 || input.damage.len() > 16 {
        return;
    }
    let base = Path::new("/dev/shm");
    let dir = if base.is_dir() {
        tempfile::tempdir_in(base)
    } else {
        tempfile::tempdir()
    }
    .expect("a temporary directory");
    let segment_size = u64::from(input.segment_size).max(256);
    let open = || {
        Queue::<ByteBuf>::builder(dir.path())
            .cache_size(0)
            .segment_size(segment_size)
            .open()
    };
    {
        let queue = open().expect("a fresh queue opens");
        for record in &input.records {
            queue.put(ByteBuf::from(record.clone())).expect("put");
        }
        queue.delete(input.removed as usize).expect("delete");
        queue.close().expect("close");
    }
    for d in &input.damage {
        damage(dir.path(), d);
    }
    // Inspecting never panics either.
    if let Ok(inspection) = spillq::inspect::Inspection::open(dir.path()) {
        let _ = inspection.scan(|_| std::ops::ControlFlow::Continue(()));
    }
    let Ok(queue) = open() else { return };
    let mut expected = input.records.iter();
    let mut taken = 0;
    loop {
        match queue.try_get() {
            Ok(Some(item)) => {
                // In order: each item is a later original record (a damaged checkpoint may
                // bring removed ones back, so search from where the last match was).
                assert!(
                    expected.any(|r| r.as_slice() == item.as_slice()),
                    "an item that was never put, or out of order"
                );
            }
            Ok(None) => break,
            Err(spillq::Error::Codec { .. }) => {}
            Err(_) => break,
        }
        taken += 1;
        assert!(taken <= input.records.len() + 1, "more items than were put");
    }
});
