//! [`Forwarder`]: the handle a user builds and runs, and the run loop.
//!
//! The loop owns two lines of items, both in queue order and each item out of the queue with a
//! [`Delivery`] guard: the window (published, waiting for JetStream's acknowledgement) and the
//! pending line (taken from the queue, or sent before and to be sent again). It tops the
//! pending line up from the queue without waiting, as far as the window has room, makes sure
//! the queue holds those items durably (one sync for all of them, when they are not yet), and
//! fills the window from the pending line; then it waits for the oldest acknowledgement, a new
//! item, or a stop. An acknowledged item is removed from the queue (`Delivery::ack`); an item
//! whose publish failed goes back to the pending line, after the rest of the window has been
//! settled, and is sent again after a backoff. Whatever ends the run (an error, a stop, a
//! dropped future), the guards still held give their items back to the queue, where they wait
//! for the next run.
//!
//! Only durable items are published. An item's message id holds its sequence number, which
//! spillq gives it when it frames its record (for an item held only in memory, when the
//! forwarder takes it). A kill before the record is written, or a power cut before it is
//! fsynced, loses it, and after the reopen spillq gives the same number to a later item; had
//! the lost one been published, JetStream would take the later one for a duplicate (and in
//! `Strict` order the stream's last id would name it as stored), and the forwarder would remove
//! it from the queue unsent. So an item goes out only once its sequence number is below the
//! queue's `synced_sequence`.

use crate::backoff::Backoff;
use crate::config::{
    DEFAULT_INITIAL_BACKOFF, DEFAULT_MAX_BACKOFF, DEFAULT_WINDOW_MESSAGES, Ordering,
};
use crate::error::Error;
use crate::failure::{self, Failure, Sent};
use crate::message_id::{self, LastId};
use crate::stats::{Counters, Stats};
use async_nats::jetstream::Context;
use async_nats::jetstream::context::PublishError;
use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use async_nats::{Subject, ToSubject};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use serde::Serialize;
use serde::de::DeserializeOwned;
use spillq::{Delivery, Queue};
use std::collections::BTreeSet;
use std::collections::VecDeque;
use std::fmt;
use std::future::{Future, IntoFuture};
use std::pin::Pin;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;
use tokio::sync::watch;

/// Forwards the items of a [`spillq::Queue`] into a NATS JetStream stream.
///
/// Made with [`new`](Self::new), tuned with the setters, driven by [`run`](Self::run). See the
/// [crate docs](crate) for what it guarantees and how it reacts to each failure.
///
/// # Examples
///
/// ```no_run
/// # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
/// let queue = spillq::Queue::<String>::open("/var/lib/edge/queue")?;
/// let client = async_nats::connect("nats://127.0.0.1:4222").await?;
/// let js = async_nats::jetstream::new(client);
///
/// let forwarder = spillq_nats::Forwarder::new(queue.clone(), js, "events")
///     .window_messages(1024)
///     .max_backoff(std::time::Duration::from_secs(10));
/// forwarder.run().await?; // returns once the queue is closed, or on an error retrying won't cure
/// println!("{:?}", forwarder.stats());
/// # Ok(())
/// # }
/// ```
pub struct Forwarder<T: Send + 'static> {
    queue: Queue<T>,
    js: Context,
    subject: Subject,
    queue_id: String,
    window_messages: usize,
    initial_backoff: Duration,
    max_backoff: Duration,
    ordering: Ordering,
    counters: Counters,
    stop: watch::Sender<bool>,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Forwarder<T> {
    /// A forwarder of the items of `queue` to `subject`, through the JetStream context `js`.
    ///
    /// A stream must capture `subject`, with a duplicate window (`duplicate_window`, 2 minutes
    /// by default) longer than the outages after which you want no item stored twice. The
    /// context's timeout (5 seconds by default, see
    /// [`ContextBuilder::timeout`](async_nats::jetstream::ContextBuilder::timeout)) bounds the
    /// wait for each acknowledgement.
    ///
    /// ```no_run
    /// # async fn demo(queue: spillq::Queue<u64>, client: async_nats::Client) {
    /// let js = async_nats::jetstream::new(client);
    /// let forwarder = spillq_nats::Forwarder::new(queue, js, "metrics.host-1");
    /// # }
    /// ```
    pub fn new(queue: Queue<T>, js: Context, subject: impl ToSubject) -> Self {
        let queue_id = queue.id().to_string();
        Self {
            queue,
            js,
            subject: subject.to_subject(),
            queue_id,
            window_messages: DEFAULT_WINDOW_MESSAGES,
            initial_backoff: DEFAULT_INITIAL_BACKOFF,
            max_backoff: DEFAULT_MAX_BACKOFF,
            ordering: Ordering::default(),
            counters: Counters::default(),
            stop: watch::Sender::new(false),
        }
    }

    /// How many messages may be in flight (published, not yet acknowledged) at once; 512 by
    /// default, at least 1. A larger window keeps a distant server busier; everything in
    /// flight when the server goes away is sent again. The context's
    /// [`max_ack_inflight`](async_nats::jetstream::ContextBuilder::max_ack_inflight) (5000 by
    /// default) caps the messages actually in flight.
    ///
    /// ```no_run
    /// # fn demo(forwarder: spillq_nats::Forwarder<u64>) {
    /// let forwarder = forwarder.window_messages(2048);
    /// # }
    /// ```
    #[must_use]
    pub fn window_messages(mut self, messages: usize) -> Self {
        self.window_messages = messages.max(1);
        self
    }

    /// The wait after the first failed attempt to reach JetStream; 100 ms by default. Each
    /// further failure doubles it, up to [`max_backoff`](Self::max_backoff); a success starts
    /// over.
    ///
    /// ```no_run
    /// # fn demo(forwarder: spillq_nats::Forwarder<u64>) {
    /// let forwarder = forwarder.initial_backoff(std::time::Duration::from_millis(50));
    /// # }
    /// ```
    #[must_use]
    pub fn initial_backoff(mut self, wait: Duration) -> Self {
        self.initial_backoff = wait;
        self
    }

    /// The longest wait between two attempts to reach JetStream; 5 s by default.
    ///
    /// ```no_run
    /// # fn demo(forwarder: spillq_nats::Forwarder<u64>) {
    /// let forwarder = forwarder.max_backoff(std::time::Duration::from_secs(30));
    /// # }
    /// ```
    #[must_use]
    pub fn max_backoff(mut self, wait: Duration) -> Self {
        self.max_backoff = wait;
        self
    }

    /// How the queue's order is kept in the stream; [`Ordering::Strict`] by default.
    ///
    /// ```no_run
    /// # fn demo(forwarder: spillq_nats::Forwarder<u64>) {
    /// let forwarder = forwarder.ordering(spillq_nats::Ordering::Shared);
    /// # }
    /// ```
    #[must_use]
    pub fn ordering(mut self, ordering: Ordering) -> Self {
        self.ordering = ordering;
        self
    }

    /// What the forwarder has done so far; callable while [`run`](Self::run) is running.
    ///
    /// ```no_run
    /// # fn demo(forwarder: spillq_nats::Forwarder<u64>) {
    /// let stats = forwarder.stats();
    /// println!("{} acknowledged, {} sent again", stats.acknowledged, stats.retried);
    /// # }
    /// ```
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// Asks [`run`](Self::run) to return: it takes no new item, waits for the
    /// acknowledgements of what is in flight (each bounded by the context's timeout), removes
    /// from the queue what JetStream acknowledged, gives the rest back, and returns `Ok`. A
    /// stopped forwarder stays stopped: a later `run` returns at once.
    ///
    /// ```no_run
    /// # async fn demo(forwarder: spillq_nats::Forwarder<u64>) -> Result<(), spillq_nats::Error> {
    /// let run = forwarder.run();
    /// tokio::pin!(run);
    /// tokio::select! {
    ///     result = &mut run => result?,
    ///     _ = tokio::signal::ctrl_c() => {
    ///         forwarder.stop();
    ///         run.await?;
    ///     }
    /// }
    /// # Ok(())
    /// # }
    /// ```
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// Forwards items until the queue is closed, [`stop`](Self::stop) is called, or a failure
    /// that retrying cannot cure.
    ///
    /// Items are published in queue order, up to
    /// [`window_messages`](Self::window_messages) in flight, each with a `Nats-Msg-Id` made of
    /// the queue's identity and the item's sequence number; an item leaves the queue only once
    /// JetStream acknowledged it. A server, cluster or link that goes away is retried with
    /// backoff (and logged through `tracing`), for as long as it takes.
    ///
    /// What is published is always durable in the queue first: an item not yet fsynced (below
    /// [`Stats::synced_sequence`](spillq::Stats::synced_sequence)) is made durable with
    /// [`Queue::sync_async`](spillq::Queue::sync_async) before it goes out, so that a crash
    /// cannot hand its sequence number, and so its message id, to a later item. That costs one
    /// fsync per window of items not yet synced (items put while the forwarder keeps up, under
    /// `Durability::OnSync` or `Interval`), and none under `Durability::EveryPut` or for a
    /// backlog already on disk. Only when the queue's disk cap (`max_disk_bytes`) keeps the
    /// sync from writing is an item published before it is written, with a warning.
    ///
    /// Dropping the future before it completes is safe: the items it held go back to the
    /// queue, in order, and are sent again by the next run (the duplicate window drops those
    /// JetStream already had).
    ///
    /// # Errors
    ///
    /// [`Error::StreamNotFound`], [`Error::TooLarge`], [`Error::Refused`],
    /// [`Error::JetStreamDisabled`], [`Error::OtherPublisher`] and [`Error::Encode`] when
    /// JetStream or the codec refuses an item for good (the item stays in the queue);
    /// [`Error::Queue`] if the queue fails (also its sync before publishing);
    /// [`Error::ClientClosed`]; [`Error::AlreadyRunning`] if a run on the same queue (by this
    /// forwarder or another in this process) is under way.
    ///
    /// Closing the queue while items are in flight ends the run with `Ok`; those items stay in
    /// the queue and go out again with the next run, where JetStream drops them as duplicates.
    ///
    /// ```no_run
    /// # async fn demo(forwarder: spillq_nats::Forwarder<u64>) {
    /// match forwarder.run().await {
    ///     Ok(()) => println!("queue closed, all forwarded"),
    ///     Err(error) => eprintln!("forwarding stopped: {error}"),
    /// }
    /// # }
    /// ```
    pub async fn run(&self) -> Result<(), Error> {
        let _running = Running::claim(&self.queue_id).ok_or(Error::AlreadyRunning)?;
        let mut run = Run {
            forwarder: self,
            window: Window::default(),
            pending: VecDeque::new(),
            last_taken: None,
            backoff: Backoff::new(self.initial_backoff, self.max_backoff),
            stop: self.stop.subscribe(),
            draining: false,
            blocked: None,
            probing: false,
            durable_below: 0,
            warned_undurable: false,
        };
        run.run().await
    }

    /// The message of an item: its codec bytes, and its place in the stream's order.
    fn entry(
        &self,
        delivery: Delivery<T>,
        last_taken: &mut Option<u64>,
    ) -> Result<Entry<T>, Error> {
        let Some(sequence) = delivery.sequence() else {
            let source = match self.queue.encode(&delivery) {
                Err(error) => error,
                // An item without a sequence number is one that could not be written.
                Ok(_) => spillq::Error::Codec {
                    sequence: None,
                    moved_to: None,
                    source: "the item has no sequence number".into(),
                },
            };
            return Err(Error::Encode {
                sequence: None,
                source,
            });
        };
        let payload = self
            .queue
            .encode(&delivery)
            .map_err(|source| Error::Encode {
                sequence: Some(sequence),
                source,
            })?;
        let previous = last_taken.replace(sequence);
        Ok(Entry {
            delivery,
            sequence,
            payload: Bytes::from(payload),
            after: match (self.ordering, previous) {
                (Ordering::Shared, _) => After::Anything,
                (Ordering::Strict, Some(previous)) => After::Item(previous),
                (Ordering::Strict, None) => After::Probe,
            },
            attempts: 0,
        })
    }

    /// Hands the entry's message to the client; the future resolves with JetStream's answer
    /// (its timeout runs from its first poll, so the window polls every one at once).
    async fn publish(&self, entry: Entry<T>) -> Result<InFlight<T>, (Entry<T>, PublishError)> {
        let mut message = PublishMessage::build()
            .payload(entry.payload.clone())
            .message_id(message_id::format(&self.queue_id, entry.sequence));
        match entry.after {
            After::Anything => {}
            After::Item(previous) => {
                message =
                    message.expected_last_message_id(message_id::format(&self.queue_id, previous));
            }
            After::Probe => message = message.expected_last_message_id(message_id::PROBE),
        }
        match self.js.send_publish(self.subject.clone(), message).await {
            Ok(ack) => Ok(Box::pin(async move {
                let answer = ack.into_future().await;
                (entry, answer)
            })),
            Err(error) => Err((entry, error)),
        }
    }

    /// The message's size on the wire, as the server counts it against its limits (roughly:
    /// payload and headers).
    fn sent(&self, entry: &Entry<T>) -> Sent {
        // "NATS/1.0\r\n", the two headers and the closing blank line.
        let headers = 10 + 2 * (30 + self.queue_id.len() + 21) + 2;
        Sent {
            sequence: entry.sequence,
            bytes: entry.payload.len() + headers,
        }
    }

    fn classify(&self, error: &PublishError, entry: &Entry<T>) -> Failure {
        failure::classify(
            error,
            &self.queue_id,
            self.sent(entry),
            self.js.client().server_info().max_payload,
        )
    }

    /// Asks the JetStream API whether a stream captures the subject, after a publish found
    /// no responder: `Ok` if one does (it was not reachable yet: retry), the error otherwise.
    async fn confirm_stream(&self) -> Result<(), Error> {
        match self.js.stream_by_subject(self.subject.as_str()).await {
            Ok(_) => Ok(()),
            Err(error) => {
                use async_nats::jetstream::context::GetStreamByNameErrorKind;
                if error.kind() == GetStreamByNameErrorKind::NotFound {
                    return Err(Error::StreamNotFound {
                        subject: self.subject.to_string(),
                    });
                }
                match failure::api_error(&error) {
                    Some(api) if failure::jetstream_disabled(api) => {
                        Err(Error::JetStreamDisabled {
                            code: api.error_code().0,
                            description: format!(
                                "{api}: start nats-server with JetStream (-js) or enable it for the account"
                            ),
                        })
                    }
                    // The API did not answer (JetStream still starting, no meta leader): the
                    // stream may well be there.
                    _ => Ok(()),
                }
            }
        }
    }
}

impl<T: Send + 'static> Forwarder<T> {
    /// Reads the stream's last message: its `Nats-Msg-Id`, or that the stream is empty. `Err`
    /// with the reason when the API does not answer.
    async fn stream_end(&self) -> Result<StreamEnd, String> {
        let name = self
            .js
            .stream_by_subject(self.subject.as_str())
            .await
            .map_err(|error| error.to_string())?;
        let stream = self
            .js
            .get_stream(&name)
            .await
            .map_err(|error| error.to_string())?;
        let state = &stream.cached_info().state;
        if state.messages == 0 {
            return Ok(StreamEnd::Empty);
        }
        let message = stream
            .get_raw_message(state.last_sequence)
            .await
            .map_err(|error| error.to_string())?;
        let id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .map_or("", |id| id.as_str());
        Ok(StreamEnd::Last(message_id::parse(&self.queue_id, id)))
    }
}

impl<T: Send + 'static> fmt::Debug for Forwarder<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Forwarder")
            .field("subject", &self.subject)
            .field("queue_id", &self.queue_id)
            .field("window_messages", &self.window_messages)
            .field("ordering", &self.ordering)
            .field("stats", &self.counters.snapshot())
            .finish_non_exhaustive()
    }
}

/// The identities of the queues a run forwards now, in this process: two runs on one queue
/// would each remove items the other has in flight, and take the other's messages for foreign.
static RUNNING: Mutex<BTreeSet<String>> = Mutex::new(BTreeSet::new());

fn running() -> MutexGuard<'static, BTreeSet<String>> {
    // The set stays consistent whatever panicked while it was locked.
    RUNNING.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A queue's place in [`RUNNING`], given up when `run` ends, however it ends.
struct Running(String);

impl Running {
    /// `None` if a run on the queue is under way already.
    fn claim(queue_id: &str) -> Option<Self> {
        running()
            .insert(queue_id.to_string())
            .then(|| Self(queue_id.to_string()))
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        running().remove(&self.0);
    }
}

/// An item out of the queue on its way to JetStream.
struct Entry<T: Send + 'static> {
    /// Gives the item back to the queue when dropped unacknowledged.
    delivery: Delivery<T>,
    sequence: u64,
    payload: Bytes,
    /// What the stream must hold last for this item to be stored after it.
    after: After,
    attempts: u32,
}

/// The item an error is about, when it is about one item that JetStream refuses for good.
fn item_of(error: &Error) -> Option<u64> {
    match error {
        Error::TooLarge { sequence, .. } | Error::Refused { sequence, .. } => Some(*sequence),
        _ => None,
    }
}

/// A probe refused because the stream's last message is another did its job: sending the item
/// again is no retry.
fn refused_probe<T: Send + 'static>(entry: &mut Entry<T>, failure: &Failure) {
    if entry.after == After::Probe && matches!(failure, Failure::OutOfOrder(_)) {
        entry.attempts = 0;
    }
}

/// What the stream must hold last for an entry to be stored (`Nats-Expected-Last-Msg-Id`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// No condition (`Shared` order, or the server does not know its last id).
    Anything,
    /// The item with this sequence number.
    Item(u64),
    /// The first item of a run in `Strict` order: an id no message has, so that the server
    /// either takes the item for a duplicate or refuses it naming the stream's last id, which
    /// tells the forwarder where the stream stands.
    Probe,
}

/// A published entry, with JetStream's answer once it came.
type Answered<T> = (Entry<T>, Result<PublishAck, PublishError>);

/// A published entry waiting for JetStream's answer.
type InFlight<T> = Pin<Box<dyn Future<Output = Answered<T>> + Send>>;

/// The published entries, answered in publish order. Answers that came while a publish waited
/// for one of the client's permits for acknowledgements in flight (`max_ack_inflight`) are kept
/// ahead of the rest: polling the window frees those permits, so a window larger than the
/// client's limit does not wait for ever.
struct Window<T: Send + 'static> {
    answered: VecDeque<Answered<T>>,
    in_flight: FuturesOrdered<InFlight<T>>,
}

impl<T: Send + 'static> Default for Window<T> {
    fn default() -> Self {
        Self {
            answered: VecDeque::new(),
            in_flight: FuturesOrdered::new(),
        }
    }
}

impl<T: Send + 'static> Window<T> {
    fn len(&self) -> usize {
        self.answered.len() + self.in_flight.len()
    }

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push_back(&mut self, in_flight: InFlight<T>) {
        self.in_flight.push_back(in_flight);
    }

    /// The oldest answer; `None` when nothing is in flight. Cancel-safe.
    async fn next(&mut self) -> Option<Answered<T>> {
        match self.answered.pop_front() {
            Some(answered) => Some(answered),
            None => self.in_flight.next().await,
        }
    }
}

/// What ended a wait in the main loop.
enum Event<T: Send + 'static> {
    Stop,
    Answer(Answered<T>),
    Item(Result<Delivery<T>, spillq::Error>),
}

/// What became of a failed entry's neighbours while the window was settled.
#[derive(Default)]
struct Settled {
    /// A refusal that retrying cannot cure (the first noted).
    fatal: Option<Error>,
    /// What order refusals said of the stream's last message: a foreign id rather than an
    /// unknown one, rather than one of ours.
    out_of_order: Option<LastId>,
    /// Why a message was not taken when the server or the stream may take it later: those
    /// call for a backoff even when order refusals came too (a stream at its limits refuses
    /// the head for room and the rest for order).
    retry: Option<Failure>,
    /// The largest sequence number the server named as the stream's last message of ours.
    last_stored: Option<u64>,
}

impl Settled {
    fn note(&mut self, failure: Failure) {
        match failure {
            Failure::Fatal(error) => {
                self.fatal.get_or_insert(error);
            }
            Failure::OutOfOrder(last) => {
                if let LastId::Ours(sequence) = last {
                    self.last_stored = Some(
                        self.last_stored
                            .map_or(sequence, |known| known.max(sequence)),
                    );
                }
                let rank = |last: &LastId| match last {
                    LastId::Ours(_) => 0,
                    LastId::Unknown => 1,
                    LastId::Foreign(_) => 2,
                };
                if self
                    .out_of_order
                    .as_ref()
                    .is_none_or(|known| rank(&last) > rank(known))
                {
                    self.out_of_order = Some(last);
                }
            }
            // A missing responder asks the API whether the stream is there: it comes first.
            Failure::NoResponders => self.retry = Some(Failure::NoResponders),
            Failure::Transient(reason) => {
                if self.retry.is_none() {
                    self.retry = Some(Failure::Transient(reason));
                }
            }
        }
    }
}

/// How the stream ends, read from the stream itself.
enum StreamEnd {
    Empty,
    /// The `Nats-Msg-Id` of its last message (`Unknown` if it has none).
    Last(LastId),
}

/// The state of one call to `run`.
struct Run<'a, T: Send + 'static> {
    forwarder: &'a Forwarder<T>,
    /// Published entries, answered in the order they were published.
    window: Window<T>,
    pending: VecDeque<Entry<T>>,
    /// The sequence number of the last item taken from the queue: the next one follows it.
    last_taken: Option<u64>,
    backoff: Backoff,
    stop: watch::Receiver<bool>,
    /// No new item is taken (stop asked, or the queue closed); the run ends once the window is
    /// settled.
    draining: bool,
    /// An item JetStream refuses for good, with the error: the items before it are still
    /// forwarded, nothing after it is sent, and the run returns the error once the items
    /// before it are settled.
    blocked: Option<(u64, Error)>,
    /// A probe is in flight: nothing more is sent until its answer says where the stream
    /// stands.
    probing: bool,
    /// Items with smaller sequence numbers may be published: the queue's `synced_sequence`
    /// when last read (records below it were fsynced, or found on disk at open), or past the
    /// items held when the disk cap refused a sync. Read again only when the next item is not
    /// below it, so an item already durable costs no call.
    durable_below: u64,
    /// The warning that items go out before they are durable was logged in this run.
    warned_undurable: bool,
}

impl<T: Serialize + DeserializeOwned + Send + 'static> Run<'_, T> {
    async fn run(&mut self) -> Result<(), Error> {
        let result = self.forward().await;
        if result.is_err() {
            // Remove what JetStream acknowledged, so that the next run does not send it again.
            while let Some((entry, answer)) = self.window.next().await {
                if let Ok(ack) = answer {
                    // An error here changes nothing: the item comes again, as a duplicate.
                    let _ = self.acknowledged(entry, &ack);
                }
            }
        }
        result
    }

    async fn forward(&mut self) -> Result<(), Error> {
        let forwarder = self.forwarder;
        loop {
            if *self.stop.borrow() {
                self.draining = true;
            }
            if self.draining {
                // Nothing new goes out; what was never sent, or must be sent again, goes back
                // to the queue when its guard drops.
                self.pending.clear();
            }
            if let Some(failure) = self.fill().await? {
                self.recover(None, failure).await?;
                continue;
            }
            if self.window.is_empty() {
                let head = self.pending.front().map(|entry| entry.sequence);
                if let Some((sequence, _)) = &self.blocked
                    && (self.draining || head.is_none_or(|head| head >= *sequence))
                    && let Some((_, error)) = self.blocked.take()
                {
                    return Err(error);
                }
                if self.draining {
                    return Ok(());
                }
            }
            // With messages in flight, their answers wake the loop and `fill` takes what came
            // meanwhile; waiting on the queue as well would cost a waker per answer.
            let idle = !self.draining && self.window.is_empty() && self.pending.is_empty();
            let event = {
                let stop = &mut self.stop;
                let queue = &forwarder.queue;
                let window = &mut self.window;
                let in_flight = !window.is_empty();
                tokio::select! {
                    biased;
                    _ = stop.wait_for(|stop| *stop), if !self.draining => Event::Stop,
                    Some(answered) = window.next(), if in_flight => Event::Answer(answered),
                    item = queue.get_ack_async(), if idle => Event::Item(item),
                }
            };
            match event {
                Event::Stop => self.draining = true,
                Event::Item(Ok(delivery)) => {
                    let entry = forwarder.entry(delivery, &mut self.last_taken)?;
                    self.pending.push_back(entry);
                }
                Event::Item(Err(error)) => {
                    self.queue_error(error)?;
                }
                Event::Answer((mut entry, answer)) => {
                    if entry.after == After::Probe {
                        self.probing = false;
                    }
                    match answer {
                        Ok(ack) => self.acknowledged(entry, &ack)?,
                        Err(error) => {
                            let failure = forwarder.classify(&error, &entry);
                            refused_probe(&mut entry, &failure);
                            self.recover(Some(entry), failure).await?;
                        }
                    }
                }
            }
        }
    }

    /// Takes the items the queue holds now into the pending line, as many as the window has
    /// room for, then publishes pending entries while the window has room, each once it is
    /// durable in the queue. Returns the failure that stopped it, if one did; its entry is
    /// then at the head of the pending line.
    async fn fill(&mut self) -> Result<Option<Failure>, Error> {
        let forwarder = self.forwarder;
        self.take()?;
        while self.window.len() < forwarder.window_messages && !self.probing {
            let mut entry = match self.pending.pop_front() {
                Some(entry) if self.is_blocked_by(&entry) => {
                    self.pending.push_front(entry);
                    break;
                }
                Some(entry) if entry.sequence >= self.durable_below => {
                    // Not known to be durable: one sync covers it and the rest of the line.
                    self.pending.push_front(entry);
                    self.make_durable().await?;
                    if self.draining {
                        // The queue was closed meanwhile: nothing new goes out.
                        break;
                    }
                    continue;
                }
                Some(entry) => entry,
                None => break,
            };
            let retry = entry.attempts > 0;
            entry.attempts += 1;
            self.probing = entry.after == After::Probe;
            let sent = {
                let sending = forwarder.publish(entry);
                tokio::pin!(sending);
                let window = &mut self.window;
                loop {
                    tokio::select! {
                        biased;
                        sent = &mut sending => break sent,
                        // The client may be out of permits until acknowledgements in flight
                        // are taken: take them meanwhile.
                        Some(answered) = window.in_flight.next(), if !window.in_flight.is_empty() => {
                            window.answered.push_back(answered);
                        }
                    }
                }
            };
            match sent {
                Ok(in_flight) => {
                    Counters::add(&forwarder.counters.published, 1);
                    if retry {
                        Counters::add(&forwarder.counters.retried, 1);
                    }
                    self.window.push_back(in_flight);
                }
                Err((mut entry, error)) => {
                    // Never sent: this attempt does not count.
                    entry.attempts -= 1;
                    self.probing = false;
                    let failure = forwarder.classify(&error, &entry);
                    if let Failure::Fatal(error) = failure {
                        // Refused before it was sent: what is in flight goes on meanwhile.
                        self.blocked = Some((entry.sequence, error));
                        self.pending.push_front(entry);
                        break;
                    }
                    self.pending.push_front(entry);
                    return Ok(Some(failure));
                }
            }
        }
        Ok(None)
    }

    /// Moves the items the queue holds now into the pending line, without waiting, until the
    /// window and the pending line together hold `window_messages`.
    fn take(&mut self) -> Result<(), Error> {
        let forwarder = self.forwarder;
        while !self.draining
            && self.blocked.is_none()
            && self.window.len() + self.pending.len() < forwarder.window_messages
        {
            match forwarder.queue.try_get_ack() {
                Ok(Some(delivery)) => {
                    let entry = forwarder.entry(delivery, &mut self.last_taken)?;
                    self.pending.push_back(entry);
                }
                Ok(None) => break,
                Err(error) => self.queue_error(error)?,
            }
        }
        Ok(())
    }

    /// Makes the pending entries durable in the queue, so that they may be published: reads
    /// the queue's `synced_sequence` (the spill thread, or `EveryPut`, may have synced them
    /// already) and, if the head of the line is not below it, syncs the queue (which writes
    /// the items held only in memory, and fsyncs every record framed, so those of all the
    /// pending entries) and reads it again. A closed queue makes the run drain.
    async fn make_durable(&mut self) -> Result<(), Error> {
        let queue = &self.forwarder.queue;
        let Some(head) = self.pending.front().map(|entry| entry.sequence) else {
            return Ok(());
        };
        self.durable_below = self.durable_below.max(queue.stats().synced_sequence);
        if head < self.durable_below {
            return Ok(());
        }
        match queue.sync_async().await {
            // An item held in memory that does not encode stays there; every other one was
            // written and fsynced, and the forwarder reports it when it reaches it.
            Ok(()) | Err(spillq::Error::Codec { .. }) => {}
            Err(spillq::Error::Full) => {
                // The disk cap keeps items held only in memory from being written. The
                // pending entries were framed already (within the cap's slack) and the spill
                // thread writes them; waiting for room here could wait for ever, since room
                // comes only when the forwarder removes items. So they go now, exposed.
                let end = self.pending.iter().map(|entry| entry.sequence).max();
                if let Some(end) = end {
                    self.durable_below = self.durable_below.max(end.saturating_add(1));
                }
                if !self.warned_undurable {
                    self.warned_undurable = true;
                    tracing::warn!(
                        subject = %self.forwarder.subject,
                        first = head,
                        "the queue is at its disk cap (max_disk_bytes), so it could not sync \
                         the items about to be published; publishing them before they are \
                         durable: should this process be killed before spillq writes them, \
                         later items could get their sequence numbers and be taken for \
                         duplicates by JetStream (logged once per run)"
                    );
                }
                return Ok(());
            }
            Err(spillq::Error::Closed) => {
                self.draining = true;
                return Ok(());
            }
            Err(error) => return Err(Error::Queue(error)),
        }
        // A sync covers every record framed before it: the pending entries are below this
        // now (if a sync ever fell short, `fill` asks for another rather than publish).
        self.durable_below = self.durable_below.max(queue.stats().synced_sequence);
        Ok(())
    }

    /// Whether `entry` is the refused item, or comes after it.
    fn is_blocked_by(&self, entry: &Entry<T>) -> bool {
        self.blocked
            .as_ref()
            .is_some_and(|(sequence, _)| entry.sequence >= *sequence)
    }

    /// Acts on a queue error while taking items: a closed queue makes the run drain; a record
    /// that does not decode was moved aside by spillq (and logged), and the next item follows;
    /// anything else ends the run.
    fn queue_error(&mut self, error: spillq::Error) -> Result<(), Error> {
        match error {
            spillq::Error::Closed => {
                self.draining = true;
                Ok(())
            }
            spillq::Error::Codec {
                sequence,
                moved_to,
                source,
            } => {
                tracing::warn!(
                    sequence,
                    moved_to = ?moved_to,
                    error = %source,
                    "an item in the queue does not decode and is not forwarded"
                );
                Ok(())
            }
            error => Err(Error::Queue(error)),
        }
    }

    /// JetStream holds the entry's item: count it and remove it from the queue.
    fn acknowledged(&mut self, entry: Entry<T>, ack: &PublishAck) -> Result<(), Error> {
        let counters = &self.forwarder.counters;
        Counters::add(&counters.acknowledged, 1);
        if ack.duplicate {
            Counters::add(&counters.duplicates, 1);
        }
        self.backoff.reset();
        self.remove(entry)
    }

    /// Removes an item JetStream holds from the queue.
    fn remove(&mut self, entry: Entry<T>) -> Result<(), Error> {
        match entry.delivery.ack() {
            Ok(()) => Ok(()),
            // The item is delivered again after the queue is reopened, and the duplicate
            // window (or, in `Strict` order, the stream's last id) keeps it from being stored
            // twice.
            Err(spillq::Error::Closed) => {
                self.draining = true;
                Ok(())
            }
            Err(error) => Err(Error::Queue(error)),
        }
    }

    /// After a failure: settles the rest of the window, puts every item JetStream does not
    /// hold back at the head of the pending line (in order), and waits before they are sent
    /// again. `oldest` is the failed entry when it came out of the window (it is older than
    /// the rest of the window); a failed send left its entry at the head of the pending line
    /// instead (it is newer). Returns an error only for a failure that retrying cannot cure.
    async fn recover(&mut self, oldest: Option<Entry<T>>, first: Failure) -> Result<(), Error> {
        let forwarder = self.forwarder;
        let mut failed: VecDeque<Entry<T>> = oldest.into_iter().collect();
        let mut settled = Settled::default();
        settled.note(first);
        self.probing = false;
        while let Some((entry, answer)) = self.window.next().await {
            match answer {
                Ok(ack) => self.acknowledged(entry, &ack)?,
                Err(error) => {
                    let mut entry = entry;
                    let failure = forwarder.classify(&error, &entry);
                    refused_probe(&mut entry, &failure);
                    settled.note(failure);
                    failed.push_back(entry);
                }
            }
        }
        // A refused probe names where the stream stands; whatever it names is no error.
        let probed = failed.iter().any(|entry| entry.after == After::Probe);
        while let Some(entry) = failed.pop_back() {
            self.pending.push_front(entry);
        }

        let Settled {
            fatal,
            out_of_order,
            retry,
            last_stored,
        } = settled;
        if let Some(stored) = last_stored {
            self.found_in_stream(stored)?;
        }
        if let Some(error) = fatal {
            return match item_of(&error) {
                // The items before it may still go: block the queue at it; they are sent
                // again at once.
                Some(sequence) if self.blocked.is_none() => {
                    self.blocked = Some((sequence, error));
                    Ok(())
                }
                _ => Err(error),
            };
        }
        let mut unreadable = None;
        let only_order = out_of_order.is_some() && retry.is_none();
        match out_of_order {
            Some(LastId::Foreign(last_message_id)) if !probed => {
                return Err(Error::OtherPublisher {
                    subject: forwarder.subject.to_string(),
                    last_message_id,
                });
            }
            Some(LastId::Unknown) if last_stored.is_none() => {
                // The server does not know its last id (it restarted, and its last message
                // is older than the duplicate window): read the last message itself, lest
                // items it holds be stored again.
                match forwarder.stream_end().await {
                    Ok(end) => self.at_stream_end(end, probed)?,
                    Err(reason) => unreadable = Some(reason),
                }
            }
            Some(_) if last_stored.is_none() => {
                // A probe found another publisher's message last (the run starts on a
                // stream holding other messages): the duplicate window judges the head.
                if let Some(head) = self.pending.front_mut() {
                    head.after = After::Anything;
                }
            }
            _ => {}
        }
        let reason = match (retry, unreadable) {
            (_, Some(reason)) => format!("could not read the stream's last message: {reason}"),
            (Some(Failure::NoResponders), None) => {
                forwarder.confirm_stream().await?;
                "no responder for the subject yet".to_string()
            }
            (Some(Failure::Transient(reason)), None) => reason,
            (_, None) if only_order => {
                // Only order refusals: the server answered, so it is there. Send again at
                // once, in order.
                tracing::debug!(
                    subject = %forwarder.subject,
                    items = self.pending.len(),
                    "the stream's last message is not the one expected; sending again from there"
                );
                return Ok(());
            }
            (_, None) => String::new(),
        };
        if self.pending.is_empty() {
            return Ok(());
        }

        let wait = self.backoff.next_wait();
        tracing::warn!(
            subject = %forwarder.subject,
            items = self.pending.len(),
            retry_in = ?wait,
            error = %reason,
            "JetStream did not take every message; sending them again"
        );
        let stop = &mut self.stop;
        tokio::select! {
            biased;
            _ = stop.wait_for(|stop| *stop) => {
                self.draining = true;
                return Ok(());
            }
            () = tokio::time::sleep(wait) => {}
        }
        self.wait_for_connection().await
    }

    /// In `Strict` order the server named the last item of ours it stored: it holds that one
    /// and every item before it, so those leave the queue without being sent again, and the
    /// next one must follow it.
    fn found_in_stream(&mut self, stored: u64) -> Result<(), Error> {
        let forwarder = self.forwarder;
        while let Some(entry) = self.pending.pop_front() {
            if entry.sequence > stored {
                self.pending.push_front(entry);
                break;
            }
            Counters::add(&forwarder.counters.found_in_stream, 1);
            self.remove(entry)?;
        }
        if let Some(head) = self.pending.front_mut() {
            head.after = After::Item(stored);
        }
        Ok(())
    }

    /// Acts on the stream's last message, read because the server did not know its id.
    fn at_stream_end(&mut self, end: StreamEnd, probed: bool) -> Result<(), Error> {
        match end {
            StreamEnd::Last(LastId::Ours(stored)) => self.found_in_stream(stored)?,
            StreamEnd::Last(LastId::Foreign(_) | LastId::Unknown) if probed => {}
            StreamEnd::Last(LastId::Foreign(last_message_id)) => {
                return Err(Error::OtherPublisher {
                    subject: self.forwarder.subject.to_string(),
                    last_message_id,
                });
            }
            StreamEnd::Last(LastId::Unknown) => {
                return Err(Error::OtherPublisher {
                    subject: self.forwarder.subject.to_string(),
                    last_message_id: String::new(),
                });
            }
            StreamEnd::Empty => {}
        }
        // The server knows no last id, so it would refuse any expected one: the head goes
        // without, and sets the id the next ones name.
        if let Some(head) = self.pending.front_mut() {
            head.after = After::Anything;
        }
        Ok(())
    }

    /// Waits until the client is connected and has written what it had queued, logging while
    /// it waits; returns early on stop.
    async fn wait_for_connection(&mut self) -> Result<(), Error> {
        let forwarder = self.forwarder;
        let client = forwarder.js.client();
        // Log at least every few seconds while the server stays away.
        let patience = forwarder.max_backoff.max(Duration::from_secs(1));
        let mut waited = Duration::ZERO;
        loop {
            let stop = &mut self.stop;
            let flushed = tokio::select! {
                biased;
                _ = stop.wait_for(|stop| *stop) => {
                    self.draining = true;
                    return Ok(());
                }
                flushed = tokio::time::timeout(patience, client.flush()) => flushed,
            };
            match flushed {
                Ok(Ok(())) => {
                    if !waited.is_zero() {
                        tracing::info!(
                            subject = %forwarder.subject,
                            after = ?waited,
                            "connected to NATS again; resending"
                        );
                    }
                    return Ok(());
                }
                Ok(Err(error)) => {
                    if error.kind() == async_nats::client::FlushErrorKind::SendError {
                        return Err(Error::ClientClosed);
                    }
                    // The connection broke while flushing: wait for the next one.
                }
                Err(_elapsed) => {
                    waited += patience;
                    tracing::warn!(
                        subject = %forwarder.subject,
                        waited = ?waited,
                        state = %client.connection_state(),
                        "still waiting for the NATS server"
                    );
                }
            }
        }
    }
}
