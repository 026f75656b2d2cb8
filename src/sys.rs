//! Thin wrappers over the system calls std does not offer: `fallocate` and directory fsync.
//! With `log/segment.rs`, the only place with `unsafe`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Reserves `len` bytes of `file` from offset 0, so later writes through a map cannot fail for
/// lack of space (a failure there would be SIGBUS). On a filesystem without `fallocate`, writes
/// zeros instead, which reserves the blocks just the same.
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<()> {
    let Ok(len_off) = libc::off_t::try_from(len) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "segment size does not fit in off_t",
        ));
    };
    loop {
        // SAFETY: `fallocate` only reads its integer arguments; the descriptor is owned by `file`,
        // which outlives the call.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len_off) };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            Some(libc::EINTR) => {}
            Some(libc::EOPNOTSUPP) => return reserve_by_writing(file, len),
            _ => return Err(error),
        }
    }
}

fn reserve_by_writing(file: &File, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK_BYTES: usize = 64 * 1024;
    let zeros = [0u8; CHUNK_BYTES];
    let current = file.metadata()?.len();
    let mut offset = current;
    while offset < len {
        let n = usize::try_from(len - offset).map_or(CHUNK_BYTES, |n| n.min(CHUNK_BYTES));
        file.write_all_at(zeros.get(..n).unwrap_or(&zeros), offset)?;
        offset += n as u64;
    }
    Ok(())
}

/// Makes the directory's entries (created, renamed and deleted files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}
