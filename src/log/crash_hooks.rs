//! Crash hooks for tests: make recovery, or the writer's first write after it, stop after a
//! given step, as a crash there would. Outside tests `hit` does nothing.

use crate::error::Error;

/// The steps of recovery (and of the cut before the first write) after which a crash leaves
/// something changed on disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Crash {
    TempFilesRemoved,
    ConsumedSegmentsDeleted,
    TailCut,
    TailReserved,
}

#[cfg(test)]
pub(crate) const ALL: [Crash; 4] = [
    Crash::TempFilesRemoved,
    Crash::ConsumedSegmentsDeleted,
    Crash::TailCut,
    Crash::TailReserved,
];

#[cfg(test)]
thread_local! {
    static STOP_AT: std::cell::Cell<Option<Crash>> = const { std::cell::Cell::new(None) };
}

#[cfg(test)]
pub(crate) fn arm(step: Option<Crash>) {
    STOP_AT.with(|s| s.set(step));
}

#[cfg(test)]
pub(crate) fn hit(step: Crash) -> Result<(), Error> {
    if STOP_AT.with(|s| s.get()) == Some(step) {
        return Err(Error::io(
            "crash point",
            std::io::Error::other(format!("simulated crash {step:?}")),
        ));
    }
    Ok(())
}

#[cfg(not(test))]
#[inline]
pub(crate) fn hit(_step: Crash) -> Result<(), Error> {
    Ok(())
}
