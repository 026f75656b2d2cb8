//! The async front end: an awaitable form of every call that may wait, a [`Stream`] of items and
//! a [`Sink`] for them, under the default feature `async`. No runtime is needed: a task that
//! waits registers its waker with the queue and is woken by whatever makes its wait end (an
//! item, room, an fsync), so it never blocks its executor's thread. Blocking and async callers
//! share one queue freely.
//!
//! Cancel safety: a future dropped before it completes loses no item. A `get_async`,
//! `get_ack_async` or `get_batch_async` future removes an item only in the poll that returns
//! it. A `put_async` future dropped while it waits for room (`max_len`) or for a segment leaves
//! its item out of the queue (dropped with the future); under `EveryPut`, dropped while it
//! waits for the fsync, its item is in the queue, and durable once that fsync is done.
//!
//! See `docs/async.md`.

use crate::delivery::Delivery;
use crate::engine::{Engine, PutState, Registration, SyncState};
use crate::error::Error;
use crate::queue::Queue;
use futures_core::Stream;
use futures_sink::Sink;
use std::future::poll_fn;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

/// A task's place among the waiting, handed back to the queue when its future is dropped.
struct Waiting<'a, T: Send + 'static> {
    engine: &'a Engine<T>,
    registration: Registration,
}

impl<'a, T: Send + 'static> Waiting<'a, T> {
    fn new(engine: &'a Engine<T>) -> Self {
        Self {
            engine,
            registration: Registration::default(),
        }
    }
}

impl<T: Send + 'static> Drop for Waiting<'_, T> {
    fn drop(&mut self) {
        self.engine.cancel(&mut self.registration);
    }
}

impl<T: Send + 'static> Queue<T> {
    /// Appends `item`, waiting (without blocking the thread) while the queue holds `max_len`
    /// items, and under [`Durability::EveryPut`](crate::Durability::EveryPut) until the item
    /// is fsynced. The awaitable form of [`put`](Self::put).
    ///
    /// Dropped before it completes: the item is not in the queue if the future was waiting for
    /// room; under `EveryPut`, waiting for its fsync, it is (see the [module](crate#async)).
    ///
    /// # Errors
    ///
    /// As [`put`](Self::put).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_async(1).await?;
    /// assert_eq!(queue.get_async().await?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn put_async(&self, item: T) -> Result<(), Error> {
        let engine = self.engine();
        // In memory only, without the lock, as `put`.
        let Err(item) = engine.push_lane(item) else {
            return Ok(());
        };
        let mut waiting = Waiting::new(engine);
        let mut put = PutState::Ready(item);
        poll_fn(|cx| engine.poll_put(cx, &mut waiting.registration, &mut put))
            .await
            .map_err(|refused| refused.into_error())
    }

    /// Removes and returns the head item, waiting (without blocking the thread) until there is
    /// one. The awaitable form of [`get`](Self::get); dropping the future loses no item.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get): [`Error::Closed`] once the queue is closed, also while waiting.
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put("a".to_string())?;
    /// assert_eq!(queue.get_async().await?, "a");
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_async(&self) -> Result<T, Error> {
        let engine = self.engine();
        let mut waiting = Waiting::new(engine);
        poll_fn(|cx| engine.poll_get(cx, &mut waiting.registration)).await
    }

    /// The head item, not removed, once there is one: the awaitable form of
    /// [`peek_timeout`](Self::peek_timeout) without a timeout.
    ///
    /// # Errors
    ///
    /// As [`peek`](Self::peek).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(7)?;
    /// assert_eq!(queue.peek_async().await?, 7);
    /// assert_eq!(queue.len(), 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn peek_async(&self) -> Result<T, Error> {
        let engine = self.engine();
        let mut waiting = Waiting::new(engine);
        poll_fn(|cx| engine.poll_peek(cx, &mut waiting.registration)).await
    }

    /// Takes the head item for acknowledged delivery once there is one: the awaitable form of
    /// [`get_ack`](Self::get_ack). Dropping the future loses no item.
    ///
    /// # Errors
    ///
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put(5)?;
    /// let delivery = queue.get_ack_async().await?;
    /// assert_eq!(*delivery, 5);
    /// delivery.ack()?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_ack_async(&self) -> Result<Delivery<T>, Error> {
        let engine = self.engine();
        let mut waiting = Waiting::new(engine);
        let mut segment = None;
        let handed =
            poll_fn(|cx| engine.poll_get_ack(cx, &mut waiting.registration, &mut segment)).await?;
        Ok(Delivery::new(Arc::clone(self.engine_arc()), handed))
    }

    /// Removes and returns up to `max` items once there is at least one: the awaitable form of
    /// [`get_batch`](Self::get_batch) without a timeout. Dropping the future loses no item.
    ///
    /// # Errors
    ///
    /// As [`get_batch`](Self::get_batch).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2, 3])?;
    /// assert_eq!(queue.get_batch_async(2).await?, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn get_batch_async(&self, max: usize) -> Result<Vec<T>, Error> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let engine = self.engine();
        let mut waiting = Waiting::new(engine);
        poll_fn(|cx| engine.poll_get_batch(cx, &mut waiting.registration, max)).await
    }

    /// Returns once every item put before the call and not yet removed, and the read cursor,
    /// are on stable storage: the awaitable form of [`sync`](Self::sync).
    ///
    /// # Errors
    ///
    /// As [`sync`](Self::sync).
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_async(1).await?;
    /// queue.sync_async().await?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub async fn sync_async(&self) -> Result<(), Error> {
        let engine = self.engine();
        let mut waiting = Waiting::new(engine);
        let mut sync = SyncState::Start;
        poll_fn(|cx| engine.poll_sync(cx, &mut waiting.registration, &mut sync)).await
    }

    /// A [`Stream`] of the items removed from the queue, one at a time; it ends when the queue
    /// is closed. It holds a handle to the queue.
    ///
    /// ```
    /// use futures::StreamExt;
    /// # futures::executor::block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// queue.put_all([1, 2])?;
    /// let mut items = queue.stream();
    /// assert_eq!(items.next().await.transpose()?, Some(1));
    /// assert_eq!(items.next().await.transpose()?, Some(2));
    /// queue.close()?;
    /// assert!(items.next().await.is_none());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn stream(&self) -> GetStream<T> {
        GetStream {
            queue: self.clone(),
            registration: Registration::default(),
            ended: false,
        }
    }

    /// A [`Sink`] that puts the items sent to it, waiting for room as [`put_async`] does. A
    /// flush returns once every item sent is in the queue (durable, under `EveryPut`); closing
    /// the sink flushes it and leaves the queue open. It holds a handle to the queue.
    ///
    /// [`put_async`]: Self::put_async
    ///
    /// ```
    /// use futures::SinkExt;
    /// # futures::executor::block_on(async {
    /// # let dir = tempfile::tempdir()?;
    /// let queue = spillq::Queue::open(dir.path())?;
    /// let mut sink = queue.sink();
    /// sink.send(1).await?;
    /// sink.send(2).await?;
    /// sink.close().await?;
    /// assert_eq!(queue.get_batch(10, std::time::Duration::ZERO)?, [1, 2]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// # }).unwrap();
    /// ```
    pub fn sink(&self) -> PutSink<T> {
        PutSink {
            queue: self.clone(),
            registration: Registration::default(),
            pending: PutState::Done,
        }
    }
}

/// The [`Stream`] of [`Queue::stream`]: items as they are removed; `Err` for an item that does
/// not decode (the stream goes on after it); ends when the queue is closed.
pub struct GetStream<T: Send + 'static> {
    queue: Queue<T>,
    registration: Registration,
    ended: bool,
}

impl<T: Send + 'static> Stream for GetStream<T> {
    type Item = Result<T, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        match this.queue.engine().poll_get(cx, &mut this.registration) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(Error::Closed)) => {
                this.ended = true;
                Poll::Ready(None)
            }
            Poll::Ready(result) => Poll::Ready(Some(result)),
        }
    }
}

impl<T: Send + 'static> Drop for GetStream<T> {
    fn drop(&mut self) {
        self.queue.engine().cancel(&mut self.registration);
    }
}

impl<T: Send + 'static> std::fmt::Debug for GetStream<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GetStream").finish_non_exhaustive()
    }
}

/// The [`Sink`] of [`Queue::sink`]. An item sent and not yet in the queue when the sink is
/// dropped is dropped with it.
pub struct PutSink<T: Send + 'static> {
    queue: Queue<T>,
    registration: Registration,
    pending: PutState<T>,
}

// The item waiting to go in is never pinned: it is moved into the queue, or dropped.
impl<T: Send + 'static> Unpin for PutSink<T> {}

impl<T: Send + 'static> PutSink<T> {
    /// Drives the item sent last into the queue.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        let engine = self.queue.engine();
        match engine.poll_put(cx, &mut self.registration, &mut self.pending) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(outcome) => {
                self.pending = PutState::Done;
                Poll::Ready(outcome.map_err(|refused| refused.into_error()))
            }
        }
    }
}

impl<T: Send + 'static> Sink<T> for PutSink<T> {
    type Error = Error;

    fn poll_ready(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_pending(cx)
    }

    fn start_send(self: Pin<&mut Self>, item: T) -> Result<(), Error> {
        self.get_mut().pending = PutState::Ready(item);
        Ok(())
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_pending(cx)
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Result<(), Error>> {
        self.get_mut().poll_pending(cx)
    }
}

impl<T: Send + 'static> Drop for PutSink<T> {
    fn drop(&mut self) {
        self.queue.engine().cancel(&mut self.registration);
    }
}

impl<T: Send + 'static> std::fmt::Debug for PutSink<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PutSink").finish_non_exhaustive()
    }
}
