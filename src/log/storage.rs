//! The storage layer: every call through which the log changes a file or a directory, behind one
//! trait, so tests can put a fault-injecting implementation in the place of the real one
//! (`log/fault.rs`: simulated power cuts and failing calls).
//!
//! Reads are not here: they go straight to the files (a map, or `read_at`), and the
//! fault-injecting layer keeps the real files equal to what a running system would show.

use crate::sys;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

/// The calls that change files and directories. `path` always names the file a handle belongs
/// to, so an implementation can follow files by name.
pub(crate) trait Storage: Debug + Send + Sync {
    /// Opens `path` for reading and writing; `create` makes it (empty) if it is missing, and
    /// `truncate` empties it.
    fn open(&self, path: &Path, create: bool, truncate: bool) -> io::Result<File>;
    /// Writes all of `bytes` at `offset`.
    fn write_at(&self, file: &File, path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()>;
    /// Reserves the file's blocks up to `len` bytes (growing it with zeros if shorter).
    fn reserve(&self, file: &File, path: &Path, len: u64) -> io::Result<()>;
    /// Makes `len` bytes from `offset` read as zeros, keeping the file's length (and, where the
    /// file system allows, its blocks).
    fn zero_range(&self, file: &File, path: &Path, offset: u64, len: u64) -> io::Result<()>;
    /// fdatasync (`metadata: false`) or fsync (`metadata: true`) of the file.
    fn sync(&self, file: &File, path: &Path, metadata: bool) -> io::Result<()>;
    /// Renames a file within the directory.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Deletes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// fsync of a directory: its entries (created, renamed and deleted files) become durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// The shared handle the log passes around.
pub(crate) type SharedStorage = Arc<dyn Storage>;

/// The real file system.
#[derive(Debug, Default)]
pub(crate) struct Real;

impl Real {
    pub(crate) fn shared() -> SharedStorage {
        Arc::new(Self)
    }
}

impl Storage for Real {
    fn open(&self, path: &Path, create: bool, truncate: bool) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .truncate(truncate)
            .open(path)
    }

    fn write_at(&self, file: &File, _path: &Path, offset: u64, bytes: &[u8]) -> io::Result<()> {
        file.write_all_at(bytes, offset)
    }

    fn reserve(&self, file: &File, _path: &Path, len: u64) -> io::Result<()> {
        sys::reserve(file, len)
    }

    fn zero_range(&self, file: &File, _path: &Path, offset: u64, len: u64) -> io::Result<()> {
        sys::zero_range(file, offset, len)
    }

    fn sync(&self, file: &File, _path: &Path, metadata: bool) -> io::Result<()> {
        if metadata {
            file.sync_all()
        } else {
            file.sync_data()
        }
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        sys::sync_dir(dir)
    }
}
