//! Thin wrappers over the system calls std does not offer: `fallocate` and directory fsync.
//! Every `unsafe` block states its invariant (`// SAFETY:`); the others are in `log/segment.rs`,
//! `log/record.rs` and `spill/lane.rs`.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// Reserves `len` bytes of `file` from offset 0, so later writes through a map cannot fail for
/// lack of space (a failure there would be SIGBUS). On a filesystem without `fallocate`, writes
/// zeros instead, which reserves the blocks just the same.
pub(crate) fn reserve(file: &File, len: u64) -> io::Result<()> {
    within_file_size_limit(len)?;
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

/// Fails with `EFBIG` ("File too large") if a file of `len` bytes would pass this process's
/// `RLIMIT_FSIZE`, as a write past it would, but without the `SIGXFSZ` that write raises (whose
/// default action ends the process).
pub(crate) fn within_file_size_limit(len: u64) -> io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: `limit` is a valid, writable `rlimit` that outlives the call, which only fills it.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) };
    if rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY && len > limit.rlim_cur {
        return Err(io::Error::from_raw_os_error(libc::EFBIG));
    }
    Ok(())
}

fn reserve_by_writing(file: &File, len: u64) -> io::Result<()> {
    let current = file.metadata()?.len();
    write_zeros(file, current, len)
}

/// Makes the directory's entries (created, renamed and deleted files) durable.
pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes `len` bytes of `file` from `offset` read as zeros, without changing the file's length
/// (a mapped file must never shrink) and, where the file system allows, without needing new
/// space: `FALLOC_FL_ZERO_RANGE` (ext4, xfs), else a punched hole (tmpfs, btrfs), else zeros
/// written over the range.
pub(crate) fn zero_range(file: &File, offset: u64, len: u64) -> io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    let (Ok(offset_off), Ok(len_off)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len))
    else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "range does not fit in off_t",
        ));
    };
    for mode in [
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
    ] {
        loop {
            // SAFETY: `fallocate` only reads its integer arguments; the descriptor is owned by
            // `file`, which outlives the call.
            let rc = unsafe { libc::fallocate(file.as_raw_fd(), mode, offset_off, len_off) };
            if rc == 0 {
                return Ok(());
            }
            let error = io::Error::last_os_error();
            match error.raw_os_error() {
                Some(libc::EINTR) => {}
                Some(libc::EOPNOTSUPP) => break,
                _ => return Err(error),
            }
        }
    }
    write_zeros(file, offset, offset.saturating_add(len))
}

/// Writes zeros over `[from, to)` of `file`.
fn write_zeros(file: &File, from: u64, to: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    const CHUNK_BYTES: usize = 64 * 1024;
    let zeros = [0u8; CHUNK_BYTES];
    let mut offset = from;
    while offset < to {
        let n = usize::try_from(to - offset).map_or(CHUNK_BYTES, |n| n.min(CHUNK_BYTES));
        file.write_all_at(zeros.get(..n).unwrap_or(&zeros), offset)?;
        offset += n as u64;
    }
    Ok(())
}

/// Fills `bytes` from the kernel's random source (`getrandom`).
pub(crate) fn random(bytes: &mut [u8]) -> io::Result<()> {
    let mut filled = 0;
    while filled < bytes.len() {
        let Some(rest) = bytes.get_mut(filled..) else {
            break;
        };
        // SAFETY: the pointer and length describe `rest`, a live, writable slice that the call
        // writes at most `rest.len()` bytes into.
        let rc = unsafe { libc::getrandom(rest.as_mut_ptr().cast(), rest.len(), 0) };
        if rc < 0 {
            let error = io::Error::last_os_error();
            if error.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(error);
        }
        filled += usize::try_from(rc).unwrap_or(0);
    }
    Ok(())
}
