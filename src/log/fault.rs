//! A fault-injecting storage layer for tests: it passes every call on to the real file system
//! (so the running log sees what it would see on a real machine) and keeps a model of what a
//! power cut would leave: per file, the bytes its last fsync made durable and the writes since;
//! per directory, the entries its last fsync made durable.
//!
//! [`Faulty::power_cut_image`] writes what survives a power cut into another directory: only
//! entries whose directory was fsynced, only data that was fsynced, and, depending on the
//! [`Tear`], some of the writes since (the last one torn at a byte, 512-byte or 4 KiB
//! boundary, or pages kept at random, as write-back order allows). [`Faulty::fail_from`] makes
//! calls fail from the N-th one on (the machine is gone: nothing after the cut happens), and
//! [`Faulty::fail_once`] makes just the N-th call fail (a transient error, such as EIO from fsync).
//!
//! The real fsyncs are skipped: durability is the model's business, and tests stay fast.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use super::storage::{Real, Storage};
use std::collections::BTreeMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// What happens, at the power cut, to the writes made after a file's last fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Tear {
    /// All are lost.
    DropAll,
    /// The first `kept` reach the disk; the next one is torn: its bytes up to a multiple of
    /// `boundary` (counted from the start of the file) reach the disk, the rest do not.
    Prefix { kept: usize, boundary: u64 },
    /// Each write reaches the disk or not, as decided by `seed` (write-back order is free).
    Random { seed: u64 },
}

#[derive(Debug, Clone)]
enum Change {
    Write { offset: u64, bytes: Vec<u8> },
    Len(u64),
    Zero { offset: u64, len: u64 },
}

#[derive(Debug, Default, Clone)]
struct Inode {
    durable: Vec<u8>,
    pending: Vec<Change>,
}

fn apply(content: &mut Vec<u8>, change: &Change) {
    match change {
        Change::Write { offset, bytes } => {
            let start = *offset as usize;
            let end = start + bytes.len();
            if content.len() < end {
                content.resize(end, 0);
            }
            content[start..end].copy_from_slice(bytes);
        }
        Change::Len(len) => content.resize(*len as usize, 0),
        Change::Zero { offset, len } => {
            let start = (*offset as usize).min(content.len());
            let end = (offset + len).min(content.len() as u64) as usize;
            content[start..end].fill(0);
        }
    }
}

#[derive(Debug, Default)]
struct Model {
    next_inode: u64,
    inodes: BTreeMap<u64, Inode>,
    /// Directory entries as the running system sees them.
    names: BTreeMap<PathBuf, u64>,
    /// Directory entries as a power cut would leave them.
    durable_names: BTreeMap<PathBuf, u64>,
    /// Calls made so far (successful or not).
    calls: u64,
    fail_from: Option<u64>,
    fail_once: Option<u64>,
    /// The next fsync (of a file or a directory) fails.
    fail_next_sync: bool,
    failed: u64,
}

impl Model {
    fn inode(&mut self, path: &Path) -> Option<&mut Inode> {
        let id = *self.names.get(path)?;
        self.inodes.get_mut(&id)
    }

    fn record(&mut self, path: &Path, change: Change) {
        if let Some(inode) = self.inode(path) {
            inode.pending.push(change);
        }
    }
}

/// The fault-injecting storage layer. See the module docs.
#[derive(Debug, Default)]
pub(crate) struct Faulty {
    model: Mutex<Model>,
}

impl Faulty {
    /// A layer over `dir` as it is now: every file in it counts as durable.
    pub(crate) fn over(dir: &Path) -> Self {
        let mut model = Model::default();
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries {
                let entry = entry.unwrap();
                if !entry.file_type().unwrap().is_file() {
                    continue;
                }
                let id = model.next_inode;
                model.next_inode += 1;
                let durable = std::fs::read(entry.path()).unwrap();
                model.inodes.insert(
                    id,
                    Inode {
                        durable,
                        pending: Vec::new(),
                    },
                );
                model.names.insert(entry.path(), id);
                model.durable_names.insert(entry.path(), id);
            }
        }
        Self {
            model: Mutex::new(model),
        }
    }

    /// Calls from the `n`-th on (counting from 0) fail, and change nothing.
    pub(crate) fn fail_from(self, n: u64) -> Self {
        self.model.lock().unwrap().fail_from = Some(n);
        self
    }

    /// The power goes now: every call from here on fails, and changes nothing.
    pub(crate) fn cut_now(&self) {
        let mut model = self.model.lock().unwrap();
        model.fail_from = Some(model.fail_from.map_or(model.calls, |f| f.min(model.calls)));
    }

    /// Only the `n`-th call (counting from 0) fails, and changes nothing.
    pub(crate) fn fail_once(self, n: u64) -> Self {
        self.model.lock().unwrap().fail_once = Some(n);
        self
    }

    /// Makes the next fsync (of a file or a directory) fail, as EIO from a failing disk would.
    pub(crate) fn fail_next_sync(&self) {
        self.model.lock().unwrap().fail_next_sync = true;
    }

    /// Calls that were made to fail.
    pub(crate) fn failed(&self) -> u64 {
        self.model.lock().unwrap().failed
    }

    /// Counts a call; the error says it is one that must fail.
    fn call(&self, model: &mut Model) -> io::Result<()> {
        let n = model.calls;
        model.calls += 1;
        if model.fail_from.is_some_and(|from| n >= from) || model.fail_once == Some(n) {
            model.failed += 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    fn sync_may_fail(model: &mut Model) -> io::Result<()> {
        if std::mem::take(&mut model.fail_next_sync) {
            model.failed += 1;
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }

    /// Writes what a power cut now would leave into `to` (an empty directory), file by file,
    /// under the names as they were last made durable.
    pub(crate) fn power_cut_image(&self, to: &Path, tear: Tear) {
        let model = self.model.lock().unwrap();
        for (path, id) in &model.durable_names {
            let inode = &model.inodes[id];
            let mut content = inode.durable.clone();
            match tear {
                Tear::DropAll => {}
                Tear::Prefix { kept, boundary } => {
                    for change in inode.pending.iter().take(kept) {
                        apply(&mut content, change);
                    }
                    if let Some(Change::Write { offset, bytes }) = inode.pending.get(kept) {
                        let end = offset + bytes.len() as u64;
                        let cut = (end - 1) / boundary * boundary;
                        if cut > *offset {
                            let torn = Change::Write {
                                offset: *offset,
                                bytes: bytes[..(cut - offset) as usize].to_vec(),
                            };
                            apply(&mut content, &torn);
                        }
                    }
                }
                Tear::Random { seed } => {
                    let mut state = seed ^ id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
                    for change in &inode.pending {
                        state = state
                            .wrapping_mul(6_364_136_223_846_793_005)
                            .wrapping_add(1_442_695_040_888_963_407);
                        if state >> 63 == 1 {
                            apply(&mut content, change);
                        }
                    }
                }
            }
            let name = path.file_name().unwrap();
            std::fs::write(to.join(name), content).unwrap();
        }
    }
}

impl Storage for Faulty {
    fn open(&self, path: &Path, create: bool, truncate: bool) -> io::Result<File> {
        let mut model = self.model.lock().unwrap();
        self.call(&mut model)?;
        let file = Real.open(path, create, truncate)?;
        if !model.names.contains_key(path) {
            let id = model.next_inode;
            model.next_inode += 1;
            model.inodes.insert(id, Inode::default());
            model.names.insert(path.to_owned(), id);
        } else if truncate {
            model.record(path, Change::Len(0));
        }
        Ok(file)
    }

    fn write_at(&self, file: &File, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        self.call(&mut model)?;
        Real.write_at(file, path, offset, bytes)?;
        model.record(
            path,
            Change::Write {
                offset,
                bytes: bytes.to_vec(),
            },
        );
        Ok(())
    }

    fn reserve(&self, file: &File, path: &Path, len: u64) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        self.call(&mut model)?;
        let before = file.metadata()?.len();
        Real.reserve(file, path, len)?;
        if len > before {
            model.record(path, Change::Len(len));
        }
        Ok(())
    }

    fn zero_range(&self, file: &File, path: &Path, offset: u64, len: u64) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        self.call(&mut model)?;
        Real.zero_range(file, path, offset, len)?;
        model.record(path, Change::Zero { offset, len });
        Ok(())
    }

    fn sync(&self, _file: &File, path: &Path, _metadata: bool) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        self.call(&mut model)?;
        Self::sync_may_fail(&mut model)?;
        if let Some(inode) = model.inode(path) {
            let pending = std::mem::take(&mut inode.pending);
            for change in &pending {
                apply(&mut inode.durable, change);
            }
        }
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        self.call(&mut model)?;
        Real.rename(from, to)?;
        if let Some(id) = model.names.remove(from) {
            model.names.insert(to.to_owned(), id);
        }
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        self.call(&mut model)?;
        Real.remove(path)?;
        model.names.remove(path);
        Ok(())
    }

    fn sync_dir(&self, _dir: &Path) -> io::Result<()> {
        let mut model = self.model.lock().unwrap();
        self.call(&mut model)?;
        Self::sync_may_fail(&mut model)?;
        model.durable_names = model.names.clone();
        Ok(())
    }
}
