//! `spillq.Queue`: a `spillq::Queue<Vec<u8>>` of serialized items, with the methods of
//! `queue.Queue` and of the two Python libraries spillq replaces.
//!
//! The GIL: an item is serialized before the GIL is released and deserialized after it is taken
//! back; every call into the queue runs with the GIL released. A call that waits does so in
//! slices of [`SLICE`], checking for signals between them, so that Ctrl-C interrupts a `get`
//! that waits forever, as it does with `queue.Queue`.
//!
//! `task_done()`/`join()` count as `queue.Queue` does: a `put` adds a task, `task_done` ends
//! one. An item removed without a `get` (`delete`, `clear`) ends its task too, and a reopened
//! queue starts with one task per item in it.

use crate::codec::Identity;
use crate::errors;
use crate::serializer::ItemCodec;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyType};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError, Weak};
use std::time::{Duration, Instant};

/// The longest a call waits with the GIL released before it checks for signals (Ctrl-C).
/// Waking costs nothing measurable; an item or room still wakes the call at once.
const SLICE: Duration = Duration::from_millis(50);

/// `os.fork()` calls seen in this process: a queue opened before a fork belongs to the parent
/// (its spill thread did not cross the fork), so the child must neither use nor close it.
static FORKS: AtomicU64 = AtomicU64::new(0);

/// Every queue opened in this process, synced at interpreter exit if still open.
static OPEN: Mutex<Vec<Weak<Handle>>> = Mutex::new(Vec::new());

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // No critical section here can panic halfway; a poisoned lock holds consistent data.
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

#[pyfunction]
fn after_fork_in_child() {
    FORKS.fetch_add(1, Ordering::Relaxed);
}

/// Syncs, at interpreter exit, the queues that are still open, so that the items held in
/// memory reach disk. A sync, not a close: daemon threads still waiting in `get` stay asleep
/// until the process ends, as with `queue.Queue`, instead of waking with `ClosedError`.
#[pyfunction]
fn sync_open_queues(py: Python<'_>) {
    let open: Vec<Arc<Handle>> = lock(&OPEN).iter().filter_map(Weak::upgrade).collect();
    for handle in open {
        if !handle.forked() && !handle.closed.load(Ordering::Relaxed) {
            // Nobody is left to see an error at exit; `sync()` reports them to those who call it.
            let _ = py.detach(|| handle.queue.sync());
        }
    }
}

/// Installs the hooks at fork and at exit; called once, when the module is imported.
pub(crate) fn install_hooks(module: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = module.py();
    let on_fork = PyDict::new(py);
    on_fork.set_item(
        "after_in_child",
        wrap_pyfunction!(after_fork_in_child, module)?,
    )?;
    py.import("os")?
        .getattr("register_at_fork")?
        .call((), Some(&on_fork))?;
    py.import("atexit")?
        .getattr("register")?
        .call1((wrap_pyfunction!(sync_open_queues, module)?,))?;
    Ok(())
}

/// How long a call may wait, from its `block` and `timeout` arguments.
#[derive(Clone, Copy)]
enum Wait {
    Now,
    Until(Instant),
    Forever,
}

impl Wait {
    /// As `queue.Queue`: `block=False` ignores `timeout`; `timeout=None` waits forever.
    fn new(block: bool, timeout: Option<f64>) -> PyResult<Self> {
        if !block {
            return Ok(Self::Now);
        }
        let Some(seconds) = timeout else {
            return Ok(Self::Forever);
        };
        if seconds.is_nan() || seconds < 0.0 {
            return Err(PyValueError::new_err(
                "'timeout' must be a non-negative number",
            ));
        }
        // A timeout too large for an `Instant` is forever.
        Ok(Duration::try_from_secs_f64(seconds)
            .ok()
            .and_then(|timeout| Instant::now().checked_add(timeout))
            .map_or(Self::Forever, Self::Until))
    }

    /// How long the next attempt may wait: zero means "try once, now".
    fn next_slice(self) -> Duration {
        match self {
            Self::Now => Duration::ZERO,
            Self::Until(deadline) => deadline
                .saturating_duration_since(Instant::now())
                .min(SLICE),
            Self::Forever => SLICE,
        }
    }

    fn is_over(self) -> bool {
        match self {
            Self::Now => true,
            Self::Until(deadline) => Instant::now() >= deadline,
            Self::Forever => false,
        }
    }
}

/// Runs `attempt` with the GIL released, each time allowed to wait one slice, until it gives an
/// answer (`Some`) or `wait` runs out (`None`). Between slices a signal handler may raise.
fn wait_in_slices<T: Send>(
    py: Python<'_>,
    wait: Wait,
    mut attempt: impl FnMut(Duration) -> Option<T> + Send,
) -> PyResult<Option<T>> {
    loop {
        let slice = wait.next_slice();
        if let Some(answer) = py.detach(|| attempt(slice)) {
            return Ok(Some(answer));
        }
        if wait.is_over() {
            return Ok(None);
        }
        py.check_signals()?;
    }
}

/// The `task_done()`/`join()` count.
struct Tasks {
    count: Mutex<TaskCount>,
    all_done: Condvar,
}

struct TaskCount {
    unfinished: u64,
    closed: bool,
}

impl Tasks {
    fn new(unfinished: u64) -> Self {
        Self {
            count: Mutex::new(TaskCount {
                unfinished,
                closed: false,
            }),
            all_done: Condvar::new(),
        }
    }

    fn unfinished(&self) -> u64 {
        lock(&self.count).unfinished
    }

    /// A put is about to happen. Counted before the item is in the queue, so that `join` never
    /// sees an item without its task.
    fn add(&self) {
        lock(&self.count).unfinished += 1;
    }

    /// `finished` tasks ended; `Err` if fewer were open (then nothing changes).
    fn finish(&self, finished: u64) -> Result<(), ()> {
        let mut count = lock(&self.count);
        count.unfinished = count.unfinished.checked_sub(finished).ok_or(())?;
        if count.unfinished == 0 {
            self.all_done.notify_all();
        }
        Ok(())
    }

    /// Ends tasks whose items left without a `get`; never below zero, even if the caller also
    /// called `task_done` for them.
    fn finish_removed(&self, removed: u64) {
        let mut count = lock(&self.count);
        count.unfinished = count.unfinished.saturating_sub(removed);
        if count.unfinished == 0 {
            self.all_done.notify_all();
        }
    }

    /// Waits up to `timeout` for every task to end: `Some(true)` when they have, `Some(false)`
    /// when the queue was closed first, `None` when the time ran out.
    fn wait_all_done(&self, timeout: Duration) -> Option<bool> {
        let count = lock(&self.count);
        let (count, _) = self
            .all_done
            .wait_timeout_while(count, timeout, |count| {
                count.unfinished > 0 && !count.closed
            })
            .unwrap_or_else(PoisonError::into_inner);
        if count.unfinished == 0 {
            Some(true)
        } else if count.closed {
            Some(false)
        } else {
            None
        }
    }

    fn close(&self) {
        lock(&self.count).closed = true;
        self.all_done.notify_all();
    }
}

/// One open queue. Shared by the Python object and, weakly, by the exit hook.
struct Handle {
    queue: spillq::Queue<Vec<u8>>,
    codec: ItemCodec,
    path: PathBuf,
    /// `queue.Queue`'s `maxsize`: 0 is unbounded.
    maxsize: usize,
    tasks: Tasks,
    closed: AtomicBool,
    /// [`FORKS`] when the queue was opened.
    forks: u64,
}

impl Handle {
    fn forked(&self) -> bool {
        FORKS.load(Ordering::Relaxed) != self.forks
    }

    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let outcome = py.detach(|| self.queue.close());
        self.closed.store(true, Ordering::Relaxed);
        self.tasks.close();
        match outcome {
            // Closing twice is harmless, as for a file.
            Ok(()) | Err(spillq::Error::Closed) => Ok(()),
            Err(error) => Err(errors::from_spillq(py, error)),
        }
    }
}

impl Drop for Handle {
    fn drop(&mut self) {
        if self.forked() {
            // Closing would wait for the parent's spill thread, which is not in this process.
            // A handle that is never dropped keeps the queue from closing; the memory is the
            // parent's copy and goes with this process.
            std::mem::forget(self.queue.clone());
        }
    }
}

/// A refused put, whichever call refused it; `Full` gives the item back.
enum Refused {
    Full(Vec<u8>),
    Failed(spillq::Error),
}

impl From<spillq::TryPutError<Vec<u8>>> for Refused {
    fn from(error: spillq::TryPutError<Vec<u8>>) -> Self {
        match error {
            spillq::TryPutError::Full(item) => Self::Full(item),
            spillq::TryPutError::Closed(_) => Self::Failed(spillq::Error::Closed),
            spillq::TryPutError::Failed(_, error) => Self::Failed(error),
        }
    }
}

impl From<spillq::PutTimeoutError<Vec<u8>>> for Refused {
    fn from(error: spillq::PutTimeoutError<Vec<u8>>) -> Self {
        match error {
            spillq::PutTimeoutError::Full(item) => Self::Full(item),
            spillq::PutTimeoutError::Closed(_) => Self::Failed(spillq::Error::Closed),
            spillq::PutTimeoutError::Failed(_, error) => Self::Failed(error),
        }
    }
}

/// `durability="on_sync"`, `"every_put"`, or an interval: seconds as a number, or a
/// `datetime.timedelta`.
fn durability(argument: Option<&Bound<'_, PyAny>>) -> PyResult<spillq::Durability> {
    const EXPECTED: &str = "durability must be \"on_sync\", \"every_put\", or an interval: a \
                            number of seconds or a datetime.timedelta, greater than 0";
    let Some(argument) = argument else {
        return Ok(spillq::Durability::OnSync);
    };
    if let Ok(mode) = argument.extract::<String>() {
        return match mode.as_str() {
            "on_sync" => Ok(spillq::Durability::OnSync),
            "every_put" => Ok(spillq::Durability::EveryPut),
            _ => Err(PyValueError::new_err(format!("{EXPECTED}, not {mode:?}"))),
        };
    }
    let seconds = if argument.hasattr("total_seconds")? {
        argument.call_method0("total_seconds")?.extract::<f64>()?
    } else if argument.is_instance_of::<pyo3::types::PyBool>() {
        return Err(PyTypeError::new_err(EXPECTED));
    } else {
        argument
            .extract::<f64>()
            .map_err(|_| PyTypeError::new_err(EXPECTED))?
    };
    match Duration::try_from_secs_f64(seconds) {
        Ok(interval) if !interval.is_zero() => Ok(spillq::Durability::Interval(interval)),
        _ => Err(PyValueError::new_err(format!("{EXPECTED}, not {seconds}"))),
    }
}

fn non_negative(name: &str, value: i64) -> PyResult<u64> {
    u64::try_from(value).map_err(|_| PyValueError::new_err(format!("{name} must be >= 0")))
}

fn to_usize(value: u64) -> usize {
    // A count beyond the address space is as good as unbounded.
    usize::try_from(value).unwrap_or(usize::MAX)
}

/// A persistent, thread-safe FIFO queue in directory `path`: `queue.Queue`'s methods, plus
/// `peek`, `delete`, `sync`, `clear` and `close`.
///
/// Up to `cache_size` items stay in memory (default 4096; 0 sends every item through disk); the
/// rest spill to segment files of `segment_size` bytes (default 64 MiB). `maxsize` bounds the
/// items (0: unbounded). `durability` is "on_sync" (the default: items reach stable storage at
/// `sync()` and `close()`), "every_put" (`put` returns once the item is fsynced), or an interval
/// in seconds (or a `datetime.timedelta`): at most that much is lost to a power cut.
/// `serializer` is `spillq.PICKLE` (the default), `spillq.MSGPACK` (readable by Rust queues of
/// the same items), or any object with `dumps` and `loads`. `max_disk_bytes` caps the bytes of
/// the queue's files (unbounded by default): at the cap, a `put` that needs disk waits or
/// raises `queue.Full` as at `maxsize`; a cap too small for one segment raises `ValueError`.
#[pyclass(frozen, subclass, weakref, module = "spillq")]
pub struct Queue {
    handle: Arc<Handle>,
}

impl Queue {
    /// The open queue, or why it cannot be used from this process.
    fn handle(&self, py: Python<'_>) -> PyResult<&Handle> {
        if self.handle.forked() {
            return Err(errors::error(
                py,
                "Error",
                "this queue was opened before os.fork(), in the parent process; open the \
                 queue in this process instead (once the parent has closed it)",
            ));
        }
        Ok(&self.handle)
    }

    /// Takes the head (`remove`) or looks at it, waiting as `wait` says; `None` if nothing came.
    fn head(&self, py: Python<'_>, wait: Wait, remove: bool) -> PyResult<Option<Vec<u8>>> {
        let queue = &self.handle(py)?.queue;
        let answer = wait_in_slices(py, wait, |slice| {
            let found = match (remove, slice.is_zero()) {
                (true, true) => queue.try_get(),
                (true, false) => queue.get_timeout(slice),
                (false, true) => queue.peek(),
                (false, false) => queue.peek_timeout(slice),
            };
            found.transpose()
        })?;
        answer
            .transpose()
            .map_err(|error| errors::from_spillq(py, error))
    }
}

#[pymethods]
impl Queue {
    #[new]
    #[pyo3(
        signature = (path, cache_size=None, maxsize=0, segment_size=None, durability=None, serializer=None, max_disk_bytes=None),
        text_signature = "(path, cache_size=4096, maxsize=0, segment_size=67108864, durability='on_sync', serializer=spillq.PICKLE, max_disk_bytes=None)"
    )]
    // One parameter per keyword argument of the Python constructor.
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        path: PathBuf,
        cache_size: Option<i64>,
        maxsize: i64,
        segment_size: Option<i64>,
        durability: Option<&Bound<'_, PyAny>>,
        serializer: Option<&Bound<'_, PyAny>>,
        max_disk_bytes: Option<i64>,
    ) -> PyResult<Self> {
        let codec = ItemCodec::from_argument(serializer)?;
        let mut builder = spillq::Queue::<Vec<u8>>::builder(&path)
            .codec(Identity)
            .durability(self::durability(durability)?);
        if let Some(items) = cache_size {
            builder = builder.cache_size(to_usize(non_negative("cache_size", items)?));
        }
        if let Some(bytes) = segment_size {
            builder = builder.segment_size(non_negative("segment_size", bytes)?);
        }
        if let Some(bytes) = max_disk_bytes {
            builder = builder.max_disk_bytes(non_negative("max_disk_bytes", bytes)?);
        }
        // As `queue.Queue`: a maxsize of 0 or less is unbounded.
        let maxsize = to_usize(u64::try_from(maxsize).unwrap_or(0));
        if maxsize > 0 {
            builder = builder.max_len(maxsize);
        }
        let queue = py
            .detach(|| builder.open())
            .map_err(|error| errors::from_spillq(py, error))?;
        let handle = Arc::new(Handle {
            tasks: Tasks::new(queue.len() as u64),
            queue,
            codec,
            path,
            maxsize,
            closed: AtomicBool::new(false),
            forks: FORKS.load(Ordering::Relaxed),
        });
        let mut open = lock(&OPEN);
        open.retain(|handle| handle.strong_count() > 0);
        open.push(Arc::downgrade(&handle));
        Ok(Self { handle })
    }

    /// Puts `item` at the tail. With `block` (the default) waits, up to `timeout` seconds if
    /// given, while the queue holds `maxsize` items, then raises `queue.Full`; without, raises
    /// `queue.Full` at once. Raises `spillq.CodecError` if `item` cannot be serialized (the
    /// queue goes on).
    #[pyo3(signature = (item, block=true, timeout=None))]
    fn put(
        &self,
        py: Python<'_>,
        item: &Bound<'_, PyAny>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let handle = self.handle(py)?;
        let wait = Wait::new(block, timeout)?;
        let mut bytes = handle.codec.dumps(item)?;
        handle.tasks.add();
        let answer = wait_in_slices(py, wait, |slice| {
            let item = std::mem::take(&mut bytes);
            let refused = if slice.is_zero() {
                handle.queue.try_put(item).map_err(Refused::from)
            } else {
                handle.queue.put_timeout(item, slice).map_err(Refused::from)
            };
            match refused {
                Ok(()) => Some(Ok(())),
                Err(Refused::Full(item)) => {
                    bytes = item;
                    None
                }
                Err(Refused::Failed(error)) => Some(Err(error)),
            }
        });
        let error = match answer {
            Ok(Some(Ok(()))) => return Ok(()),
            Ok(Some(Err(error))) => errors::from_spillq(py, error),
            Ok(None) => errors::full(py),
            Err(interrupted) => interrupted,
        };
        handle.tasks.finish_removed(1);
        Err(error)
    }

    /// `put(item, block=False)`.
    fn put_nowait(&self, py: Python<'_>, item: &Bound<'_, PyAny>) -> PyResult<()> {
        self.put(py, item, false, None)
    }

    /// Removes and returns the head item. With `block` (the default) waits for one, up to
    /// `timeout` seconds if given, then raises `queue.Empty`; without, raises `queue.Empty` at
    /// once. If the item cannot be deserialized it is gone from the queue and
    /// `spillq.CodecError` carries its bytes as `payload`.
    #[pyo3(signature = (block=true, timeout=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = Wait::new(block, timeout)?;
        let Some(bytes) = self.head(py, wait, true)? else {
            return Err(errors::empty(py));
        };
        self.handle.codec.loads(py, &bytes).inspect_err(|_| {
            // Nobody will call task_done() for an item that never reached them.
            self.handle.tasks.finish_removed(1);
        })
    }

    /// `get(block=False)`.
    fn get_nowait<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.get(py, false, None)
    }

    /// Returns the head item without removing it; waits as `get` does and raises `queue.Empty`
    /// as it does. With `delete()` after the work succeeded, this is the loop that never loses
    /// an item. If the head cannot be deserialized, `spillq.CodecError` (with `payload`) is
    /// raised and the item stays: `delete()` removes it.
    #[pyo3(signature = (block=true, timeout=None))]
    fn peek<'py>(
        &self,
        py: Python<'py>,
        block: bool,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let wait = Wait::new(block, timeout)?;
        match self.head(py, wait, false)? {
            Some(bytes) => self.handle.codec.loads(py, &bytes),
            None => Err(errors::empty(py)),
        }
    }

    /// Removes up to `n` items from the head without deserializing them, and returns how many.
    /// Their tasks count as done for `join()`.
    #[pyo3(signature = (n=1))]
    fn delete(&self, py: Python<'_>, n: i64) -> PyResult<usize> {
        let handle = self.handle(py)?;
        let wanted = to_usize(non_negative("n", n)?);
        let removed = py
            .detach(|| handle.queue.delete(wanted))
            .map_err(|error| errors::from_spillq(py, error))?;
        handle.tasks.finish_removed(removed as u64);
        Ok(removed)
    }

    /// The number of items in the queue, memory and disk together. Exact when no call is in
    /// flight (unlike `queue.Queue`, this holds across a crash and reopen).
    fn qsize(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.handle(py)?.queue.len())
    }

    fn __len__(&self, py: Python<'_>) -> PyResult<usize> {
        self.qsize(py)
    }

    /// Whether the queue holds no item.
    fn empty(&self, py: Python<'_>) -> PyResult<bool> {
        Ok(self.handle(py)?.queue.is_empty())
    }

    /// Whether the queue holds `maxsize` items (never, when unbounded).
    fn full(&self, py: Python<'_>) -> PyResult<bool> {
        let handle = self.handle(py)?;
        Ok(handle.maxsize > 0 && handle.queue.len() >= handle.maxsize)
    }

    /// The bound on items given when the queue was opened; 0 is unbounded.
    #[getter]
    fn maxsize(&self) -> usize {
        self.handle.maxsize
    }

    /// The queue's directory.
    #[getter]
    fn path(&self) -> PathBuf {
        self.handle.path.clone()
    }

    /// Whether `close()` was called.
    #[getter]
    fn closed(&self) -> bool {
        self.handle.closed.load(Ordering::Relaxed)
    }

    /// Tasks not yet done: items put (or found at open) and neither `task_done()` nor deleted.
    #[getter]
    fn unfinished_tasks(&self) -> u64 {
        self.handle.tasks.unfinished()
    }

    /// Marks one task done: call it once per item that `get` returned, when the work on it is
    /// finished. Raises `ValueError` if called more times than there were items.
    fn task_done(&self) -> PyResult<()> {
        self.handle
            .tasks
            .finish(1)
            .map_err(|()| PyValueError::new_err("task_done() called too many times"))
    }

    /// Waits until every task is done (see `task_done()`). Raises `spillq.ClosedError` if the
    /// queue is closed while tasks remain.
    fn join(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle(py)?;
        match wait_in_slices(py, Wait::Forever, |slice| handle.tasks.wait_all_done(slice))? {
            Some(false) => Err(errors::from_spillq(py, spillq::Error::Closed)),
            _ => Ok(()),
        }
    }

    /// Returns once every item put before the call, and the read position, are on stable
    /// storage (fsynced).
    fn sync(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle(py)?;
        py.detach(|| handle.queue.sync())
            .map_err(|error| errors::from_spillq(py, error))
    }

    /// Does nothing: spillq deletes a segment file once every item in it is consumed. Kept
    /// for code written for python-persistent-queue; use `sync()` for durability.
    fn flush(&self) {}

    /// Removes every item, durably. Their tasks count as done for `join()`.
    fn clear(&self, py: Python<'_>) -> PyResult<()> {
        let handle = self.handle(py)?;
        // `delete` says how many items left, which `join()` needs; `sync` makes it durable.
        let removed = py
            .detach(|| {
                let removed = handle.queue.delete(usize::MAX)?;
                handle.queue.sync().map(|()| removed)
            })
            .map_err(|error| errors::from_spillq(py, error))?;
        handle.tasks.finish_removed(removed as u64);
        Ok(())
    }

    /// Syncs, stops the queue's background thread and releases the directory. Threads waiting
    /// in `get`, `put`, `peek` or `join` raise `spillq.ClosedError`, as does any later call.
    /// Closing twice does nothing. (A queue still open at interpreter exit is synced.)
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        self.handle(py)?.close(py)
    }

    /// Counts and sizes: items in memory and on disk, segment files and their bytes, records
    /// skipped as damaged, fsyncs, and the log's sequence numbers.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let stats = self.handle(py)?.queue.stats();
        let dict = PyDict::new(py);
        dict.set_item("len", stats.len)?;
        dict.set_item("in_memory", stats.in_memory)?;
        dict.set_item("on_disk", stats.on_disk)?;
        dict.set_item("segments", stats.segments)?;
        dict.set_item("disk_bytes", stats.disk_bytes)?;
        dict.set_item("skipped", stats.skipped)?;
        dict.set_item("fsyncs", stats.fsyncs)?;
        dict.set_item("next_sequence", stats.next_sequence)?;
        dict.set_item("read_sequence", stats.read_sequence)?;
        Ok(dict)
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    /// Closes the queue (an error closing it is raised, chained to any exception in flight).
    fn __exit__(
        &self,
        py: Python<'_>,
        _exc_type: Option<&Bound<'_, PyAny>>,
        _exc_value: Option<&Bound<'_, PyAny>>,
        _traceback: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<bool> {
        self.close(py)?;
        Ok(false)
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let class = slf.get_type();
        let name = class.cast::<PyType>()?.name()?;
        let queue = slf.get();
        let path = queue.handle.path.display();
        Ok(if queue.closed() || queue.handle.forked() {
            format!("<spillq.{name} path='{path}' closed>")
        } else {
            format!(
                "<spillq.{name} path='{path}' qsize={}>",
                queue.handle.queue.len()
            )
        })
    }
}
