//! The directory lock: one open queue per directory, in this process and across processes.
//! A `flock` on the `lock` file keeps other processes out; a list of the directories this
//! process has open refuses a second open here at once (a `flock` would not: it is per open
//! file description, and the second open would take it again).

use crate::error::Error;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Name of the lock file in a queue directory.
pub(crate) const LOCK_FILE: &str = "lock";

/// Directories this process has open, so a second open here is refused at once.
static OPEN_DIRECTORIES: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// How long an open waits for a lock that no queue of this process holds. A child process
/// forked by another thread keeps a copy of the lock file's descriptor until it calls exec;
/// that can outlast the queue that closed it by a moment, and must not fail a reopen.
const LOCK_GRACE: std::time::Duration = std::time::Duration::from_millis(200);

/// The exclusive lock on a queue directory: an entry in this process's list, and a `flock`
/// on the `lock` file for other processes. Released on drop.
pub(crate) struct DirectoryLock {
    path: PathBuf,
    _file: File,
}

impl DirectoryLock {
    pub(crate) fn acquire(dir: &Path) -> Result<Self, Error> {
        let path = dir.canonicalize().map_err(|e| Error::io(dir, e))?;
        let locked = || Error::Locked {
            path: dir.to_owned(),
        };
        {
            let mut open = OPEN_DIRECTORIES.lock().unwrap_or_else(|e| e.into_inner());
            if open.contains(&path) {
                return Err(locked());
            }
            open.push(path.clone());
        }
        let file = match Self::open_file(dir) {
            Ok(file) => file,
            Err(e) => {
                // Take the entry out again, or this process could never open the directory.
                let mut open = OPEN_DIRECTORIES.lock().unwrap_or_else(|e| e.into_inner());
                open.retain(|p| *p != path);
                return Err(e);
            }
        };
        // From here on, dropping `guard` takes the entry out again.
        let guard = Self { path, _file: file };
        let deadline = std::time::Instant::now() + LOCK_GRACE;
        loop {
            match guard._file.try_lock() {
                Ok(()) => return Ok(guard),
                Err(std::fs::TryLockError::WouldBlock) if std::time::Instant::now() < deadline => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                Err(std::fs::TryLockError::WouldBlock) => return Err(locked()),
                Err(std::fs::TryLockError::Error(e)) => {
                    return Err(Error::io(dir.join(LOCK_FILE), e));
                }
            }
        }
    }

    fn open_file(dir: &Path) -> Result<File, Error> {
        let lock_path = dir.join(LOCK_FILE);
        File::options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&lock_path)
            .map_err(|e| Error::io(&lock_path, e))
    }
}

impl Drop for DirectoryLock {
    fn drop(&mut self) {
        let mut open = OPEN_DIRECTORIES.lock().unwrap_or_else(|e| e.into_inner());
        open.retain(|p| *p != self.path);
    }
}
