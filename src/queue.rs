//! [`Queue`]: the public handle. Every operation is a delegation to the engine
//! (`engine/`); this file holds the API and its documentation.

use crate::builder::Builder;
use crate::delivery::Delivery;
use crate::engine::{Engine, Many, Refused, Stats, Wait};
use crate::error::{Error, PutTimeoutError, TryPutError};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::fmt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// A persistent, thread-safe FIFO queue of `T`. Cheap to clone: all clones share one queue.
///
/// See the [crate docs](crate) for how it works and what survives a crash.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::open(dir.path())?;
/// queue.put("a".to_string())?;
/// queue.put("b".to_string())?;
/// assert_eq!(queue.get()?, "a");
/// queue.sync()?; // "b" is on stable storage
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Queue<T: Send + 'static> {
    engine: Arc<Engine<T>>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Queue<T> {
    /// Opens, or creates, the queue kept in directory `dir`, with the default options.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another open queue holds `dir`; [`Error::Io`], [`Error::Corrupt`]
    /// or [`Error::UnsupportedVersion`] if it cannot be used.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u32>::open(dir.path())?;
    /// assert!(matches!(spillq::Queue::<u32>::open(dir.path()), Err(spillq::Error::Locked { .. })));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(dir: impl AsRef<Path>) -> Result<Self, Error> {
        Builder::new(dir.as_ref()).open()
    }

    /// A [`Builder`] to open the queue in `dir` with other options.
    ///
    /// ```
    /// let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u32>::builder(dir.path()).cache_size(10).open()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn builder(dir: impl AsRef<Path>) -> Builder<T> {
        Builder::new(dir.as_ref())
    }
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Builder<T> {
    /// Opens, or creates, the queue.
    ///
    /// # Errors
    ///
    /// [`Error::Locked`] if another open queue holds the directory; [`Error::Io`],
    /// [`Error::Corrupt`] or [`Error::UnsupportedVersion`] if the directory cannot be used.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::builder(dir.path()).open()?;
    /// assert!(queue.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn open(self) -> Result<Queue<T>, Error> {
        let (dir, config, codec, storage) = self.into_parts();
        let engine = Engine::open(&dir, config, codec, storage)?;
        Ok(Queue { engine })
    }
}

impl<T: Send + 'static> Queue<T> {
    pub(crate) fn engine(&self) -> &Engine<T> {
        &self.engine
    }

    pub(crate) fn engine_arc(&self) -> &Arc<Engine<T>> {
        &self.engine
    }

    fn get_ack_with(&self, wait: Wait) -> Result<Option<Delivery<T>>, Error> {
        let handed = self.engine.get_ack(wait)?;
        Ok(handed.map(|handed| Delivery::new(Arc::clone(&self.engine), handed)))
    }

    /// Appends `item`. Blocks while the queue holds `max_len` items, and under
    /// [`Durability::EveryPut`](crate::Durability::EveryPut) until the item is fsynced.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Codec`] or [`Error::TooLarge`] if the item must be encoded now
    /// and cannot be (the queue goes on); [`Error::Io`] or [`Error::Poisoned`] if the disk failed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(vec![1, 2, 3])?;
    /// assert_eq!(queue.get()?, vec![1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put(&self, item: T) -> Result<(), Error> {
        self.engine
            .put(item, Wait::forever())
            .map_err(Refused::into_error)
    }

    /// Appends `item` if the queue has room now; never waits for room.
    ///
    /// It may still wait briefly for the spill thread: for the next segment file to be made
    /// (when the spare made ahead is not ready), and, under `Durability::EveryPut`, for the
    /// fsync of its record, which it was accepted into.
    ///
    /// # Errors
    ///
    /// The item comes back in the error: [`TryPutError::Full`] at `max_len`,
    /// [`TryPutError::Closed`], or [`TryPutError::Failed`] with the reason.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::builder(dir.path()).max_len(1).open()?;
    /// queue.try_put(1)?;
    /// let refused = queue.try_put(2).unwrap_err();
    /// assert!(refused.is_full());
    /// assert_eq!(refused.into_inner(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_put(&self, item: T) -> Result<(), TryPutError<T>> {
        self.engine
            .put(item, Wait::No)
            .map_err(|refused| match refused {
                Refused::Full(item) => TryPutError::Full(item),
                Refused::Closed(item) => TryPutError::Closed(item),
                Refused::Failed(item, error) => TryPutError::Failed(item, error),
            })
    }

    /// Appends `item`, waiting up to `timeout` for room.
    ///
    /// Under `Durability::EveryPut` an accepted item's fsync is waited for past `timeout`: the
    /// item is in the queue by then and cannot be given back.
    ///
    /// # Errors
    ///
    /// The item comes back in the error: [`PutTimeoutError::Full`] if there was no room in time,
    /// [`PutTimeoutError::Closed`], or [`PutTimeoutError::Failed`] with the reason.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// use std::time::Duration;
    /// let queue = spillq::Queue::builder(dir.path()).max_len(1).open()?;
    /// queue.put_timeout(1, Duration::from_millis(10))?;
    /// assert!(queue.put_timeout(2, Duration::from_millis(10)).unwrap_err().is_full());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_timeout(&self, item: T, timeout: Duration) -> Result<(), PutTimeoutError<T>> {
        self.engine
            .put(item, Wait::for_timeout(timeout))
            .map_err(|refused| match refused {
                Refused::Full(item) => PutTimeoutError::Full(item),
                Refused::Closed(item) => PutTimeoutError::Closed(item),
                Refused::Failed(item, error) => PutTimeoutError::Failed(item, error),
            })
    }

    /// Appends every item of `items`, in order and contiguous: no other producer's item lands
    /// inside the batch. Under [`Durability::EveryPut`](crate::Durability::EveryPut) the whole batch costs one fsync.
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put). If any item cannot be encoded, none is put.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2, 3])?;
    /// assert_eq!(queue.get_batch(10, std::time::Duration::ZERO)?, vec![1, 2, 3]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn put_all(&self, items: impl IntoIterator<Item = T>) -> Result<(), Error> {
        let items: Vec<T> = items.into_iter().collect();
        if items.is_empty() {
            return if self.engine.is_closed() {
                Err(Error::Closed)
            } else {
                Ok(())
            };
        }
        self.engine
            .put(Many::new(items), Wait::forever())
            .map_err(Refused::into_error)
    }

    /// Removes and returns the head item, waiting until there is one.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] (also when the queue is closed while waiting); [`Error::Codec`] if the
    /// head record does not decode as `T`: that record is moved aside to the `undecodable/`
    /// folder of the queue directory, and the next call goes on with the next item.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// let producer = queue.clone();
    /// std::thread::spawn(move || producer.put(42));
    /// assert_eq!(queue.get()?, 42);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get(&self) -> Result<T, Error> {
        self.engine.get(Wait::forever())?.ok_or(Error::Closed)
    }

    /// Removes and returns the head item if there is one now.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert_eq!(queue.try_get()?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get(&self) -> Result<Option<T>, Error> {
        self.engine.get(Wait::No)
    }

    /// Removes and returns the head item, waiting up to `timeout`; `None` if none came.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert_eq!(queue.get_timeout(std::time::Duration::from_millis(5))?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_timeout(&self, timeout: Duration) -> Result<Option<T>, Error> {
        self.engine.get(Wait::for_timeout(timeout))
    }

    /// Removes and returns up to `max` items: waits up to `timeout` for the first, then takes
    /// what is there without waiting.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get). A record that does not decode ends the batch before it; the next
    /// call reports it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all(0..5)?;
    /// assert_eq!(queue.get_batch(3, std::time::Duration::ZERO)?, vec![0, 1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_batch(&self, max: usize, timeout: Duration) -> Result<Vec<T>, Error> {
        self.engine.get_batch(max, Wait::for_timeout(timeout))
    }

    /// The head item, not removed; `None` if the queue is empty. Never waits. The item is a
    /// copy made through the codec (so `T` need not be `Clone`).
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Codec`] if the head does not encode or decode (an undecodable
    /// record leaves on the next `get` or `delete`).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// assert_eq!(queue.peek()?, None);
    /// queue.put(1)?;
    /// assert_eq!(queue.peek()?, Some(1));
    /// assert_eq!(queue.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peek(&self) -> Result<Option<T>, Error> {
        self.engine.peek(Wait::No)
    }

    /// As [`peek`](Self::peek), waiting up to `timeout` for an item.
    ///
    /// # Errors
    ///
    /// As [`peek`](Self::peek).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert_eq!(queue.peek_timeout(std::time::Duration::from_millis(5))?, None);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn peek_timeout(&self, timeout: Duration) -> Result<Option<T>, Error> {
        self.engine.peek(Wait::for_timeout(timeout))
    }

    /// Removes up to `n` head items without decoding them; returns how many. With
    /// [`peek`](Self::peek) this is the loop that loses nothing: peek, process, delete on
    /// success.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`].
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2, 3])?;
    /// assert_eq!(queue.delete(2)?, 2);
    /// assert_eq!(queue.delete(5)?, 1);
    /// assert_eq!(queue.delete(1)?, 0);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn delete(&self, n: usize) -> Result<usize, Error> {
        self.engine.delete(n)
    }

    /// Takes the head item for acknowledged delivery, waiting until there is one. The item is
    /// out with this consumer only; see [`Delivery`].
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(5)?;
    /// let delivery = queue.get_ack()?;
    /// assert_eq!(*delivery, 5);
    /// drop(delivery); // not acknowledged: back at the head
    /// assert_eq!(queue.get()?, 5);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ack(&self) -> Result<Delivery<T>, Error> {
        self.get_ack_with(Wait::forever())?.ok_or(Error::Closed)
    }

    /// As [`get_ack`](Self::get_ack), without waiting.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert!(queue.try_get_ack()?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_get_ack(&self) -> Result<Option<Delivery<T>>, Error> {
        self.get_ack_with(Wait::No)
    }

    /// As [`get_ack`](Self::get_ack), waiting up to `timeout`.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert!(queue.get_ack_timeout(std::time::Duration::from_millis(5))?.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn get_ack_timeout(&self, timeout: Duration) -> Result<Option<Delivery<T>>, Error> {
        self.get_ack_with(Wait::for_timeout(timeout))
    }

    /// A blocking iterator over removed items; it ends when the queue is closed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2])?;
    /// let closer = queue.clone();
    /// std::thread::spawn(move || {
    ///     std::thread::sleep(std::time::Duration::from_millis(20));
    ///     closer.close()
    /// });
    /// let items: Vec<i32> = queue.iter().collect::<Result<_, _>>()?;
    /// assert_eq!(items, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn iter(&self) -> Iter<'_, T> {
        Iter {
            queue: self,
            wait: Wait::forever(),
        }
    }

    /// An iterator over the items there now; it ends when the queue is empty (or closed).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2])?;
    /// let items: Vec<i32> = queue.try_iter().collect::<Result<_, _>>()?;
    /// assert_eq!(items, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn try_iter(&self) -> Iter<'_, T> {
        Iter {
            queue: self,
            wait: Wait::No,
        }
    }

    /// Items in the queue, memory and disk together; exact whenever no call is in flight.
    /// Items out with an unacknowledged [`Delivery`] are not counted (see [`Stats::unacked`]).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all(["a", "b"].map(String::from))?;
    /// assert_eq!(queue.len(), 2);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn len(&self) -> usize {
        self.engine.len()
    }

    /// Whether [`len`](Self::len) is 0.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// assert!(queue.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Counts and sizes: items in memory and on disk, segments, bytes on disk, records skipped
    /// as corrupt, fsyncs.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::builder(dir.path()).cache_size(1).open()?;
    /// queue.put_all([1, 2, 3])?;
    /// let stats = queue.stats();
    /// assert_eq!((stats.len, stats.in_memory, stats.on_disk), (3, 0, 3));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn stats(&self) -> Stats {
        self.engine.stats()
    }

    /// Returns once every item put before the call and not yet removed, and the read cursor,
    /// are on stable storage.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Io`] or [`Error::Poisoned`] if the disk failed;
    /// [`Error::Codec`] if an item held in memory could not be encoded (it stays in memory
    /// only, and every other item reached disk).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(1)?;
    /// queue.sync()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sync(&self) -> Result<(), Error> {
        self.engine.sync()
    }

    /// Removes every item, durably.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`]; [`Error::Io`] or [`Error::Poisoned`] if the disk failed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2, 3])?;
    /// queue.clear()?;
    /// assert!(queue.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clear(&self) -> Result<(), Error> {
        self.engine.clear()
    }

    /// The queue's identity: 128 random bits in hex, made when the queue was first opened and
    /// kept in its directory (the file `id`), the same for every later open and every clone.
    /// With [`Delivery::sequence`], it names an item uniquely: a forwarder can tell a receiver
    /// that a message it sends again after a crash is one it has seen.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// let id = queue.id().to_string();
    /// assert_eq!(id.len(), 32);
    /// queue.close()?;
    /// assert_eq!(spillq::Queue::<u8>::open(dir.path())?.id(), id);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn id(&self) -> &str {
        self.engine.id()
    }

    /// The bytes the queue's codec makes of `item`: what the queue stores for it, and what a
    /// forwarder sends on.
    ///
    /// # Errors
    ///
    /// [`Error::Codec`] if the codec cannot encode it.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::<(u8, String)>::open(dir.path())?;
    /// assert_eq!(queue.encode(&(1, "a".to_string()))?, [0x92, 0x01, 0xa1, b'a']);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn encode(&self, item: &T) -> Result<Vec<u8>, Error> {
        self.engine.encode(item)
    }

    /// Syncs, stops the spill thread and releases the directory. Blocked callers wake with
    /// [`Error::Closed`], and every later call on any clone gets it. Dropping the last clone
    /// closes the same way but cannot report errors.
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync); [`Error::Closed`] if already closed.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(1)?;
    /// queue.close()?;
    /// assert!(matches!(queue.put(2), Err(spillq::Error::Closed)));
    /// let queue = spillq::Queue::<i32>::open(dir.path())?;
    /// assert_eq!(queue.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn close(&self) -> Result<(), Error> {
        self.engine.close()
    }
}

impl<T: Send + 'static> Clone for Queue<T> {
    fn clone(&self) -> Self {
        self.engine.add_handle();
        Self {
            engine: Arc::clone(&self.engine),
        }
    }
}

impl<T: Send + 'static> Drop for Queue<T> {
    fn drop(&mut self) {
        if self.engine.drop_handle() {
            let _ = self.close();
        }
    }
}

impl<T: Send + 'static> fmt::Debug for Queue<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Queue")
            .field("dir", &self.engine.dir())
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Iterator over removed items, from [`Queue::iter`] (blocking) or [`Queue::try_iter`].
/// Yields `Err` for an item that fails to decode and goes on after it.
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::open(dir.path())?;
/// queue.put_all(["x", "y"].map(String::from))?;
/// let mut items = queue.try_iter();
/// assert_eq!(items.next().transpose()?, Some("x".to_string()));
/// assert_eq!(items.next().transpose()?, Some("y".to_string()));
/// assert!(items.next().is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct Iter<'a, T: Send + 'static> {
    queue: &'a Queue<T>,
    wait: Wait,
}

impl<T: Send + 'static> Iterator for Iter<'_, T> {
    type Item = Result<T, Error>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.queue.engine.get(self.wait) {
            Ok(Some(item)) => Some(Ok(item)),
            Ok(None) | Err(Error::Closed) => None,
            Err(error) => Some(Err(error)),
        }
    }
}
