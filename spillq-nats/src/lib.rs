//! Forwards the items of a [`spillq`] queue into a NATS JetStream stream, losing nothing.
//!
//! The edge pattern: producers put items into a local spillq queue, which absorbs any backlog
//! on disk; a [`Forwarder`] sends them on to JetStream, where other machines consume them. When
//! the network, the server or the cluster goes away, items wait in the queue and go out once
//! it is back. An item leaves the queue only after JetStream acknowledged it.
//!
//! # Quickstart
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! // The stream (once): `nats stream add EVENTS --subjects events`, or from Rust:
//! let client = async_nats::connect("nats://127.0.0.1:4222").await?;
//! let js = async_nats::jetstream::new(client);
//! js.get_or_create_stream(async_nats::jetstream::stream::Config {
//!     name: "EVENTS".into(),
//!     subjects: vec!["events".into()],
//!     ..Default::default()
//! })
//! .await?;
//!
//! let queue = spillq::Queue::<String>::open("/var/lib/edge/queue")?;
//! queue.put("sensor 7: 21.5 °C".to_string())?; // producers, anywhere in the program
//!
//! let forwarder = spillq_nats::Forwarder::new(queue.clone(), js, "events");
//! forwarder.run().await?; // until the queue is closed, or an error retrying cannot cure
//! # Ok(())
//! # }
//! ```
//!
//! The message of an item is the item's bytes in the queue's codec
//! ([`Queue::encode`](spillq::Queue::encode); MessagePack by default), so a consumer decodes it
//! as the producers' type.
//!
//! # What it guarantees
//!
//! - **Nothing lost.** An item is removed from the queue ([`Delivery::ack`](spillq::Delivery::ack))
//!   only after JetStream acknowledged its message, so it is stored (on as many replicas as the
//!   stream has). Until then it is out of the queue with the forwarder and comes back after a
//!   crash.
//! - **Nothing twice.** Every message carries a `Nats-Msg-Id` made of the queue's identity
//!   ([`Queue::id`](spillq::Queue::id)) and the item's sequence number, the same every time
//!   the item is sent. What a crash or a lost acknowledgement makes the forwarder send again,
//!   JetStream drops as a duplicate within the stream's duplicate window (`duplicate_window`,
//!   2 minutes by default). In [`Ordering::Strict`] the forwarder also learns the stream's last
//!   id from the server's refusals or, when a restarted server no longer knows it, from the
//!   stream's last message, which covers outages longer than that window.
//! - **Published only once durable.** What is published is always durable in the queue
//!   first: an item goes out only once its sequence number is below
//!   [`Stats::synced_sequence`](spillq::Stats::synced_sequence) (its record fsynced, or found
//!   on disk when the queue was opened); one that is not yet is made durable with
//!   [`Queue::sync_async`](spillq::Queue::sync_async) first, one sync for every item the
//!   window takes at once. Otherwise a crash could lose the record of an item already
//!   published, spillq would give its sequence number (so its message id) to a later item
//!   after the reopen, and JetStream would drop that item as a duplicate. The cost is one
//!   fsync per window of items not yet synced (items put while the forwarder keeps up, under
//!   `Durability::OnSync` or `Interval`), none under `Durability::EveryPut` or for a backlog
//!   already on disk. One exception: when the queue's disk cap (`max_disk_bytes`) keeps the
//!   sync from writing, the items the forwarder holds are published anyway (waiting could
//!   wait for ever), and a warning says so, once per run.
//!
//!   A known limit: records found on disk when the queue was opened count as durable, but
//!   after the process was killed the tail it had written may still be only in the page cache.
//!   A power cut soon after the restart (two faults close together) can then lose records of
//!   items already published, and spillq gives their sequence numbers to later items, which
//!   JetStream drops as duplicates (within the duplicate window) or, in `Strict` order, the
//!   forwarder takes for stored.
//! - **In order.** In [`Ordering::Strict`] (the default, for a stream the forwarder alone
//!   writes to) the server stores each message only right after the one before it, so the
//!   stream holds the queue's items in queue order, across lost connections, restarted servers
//!   and new leaders. [`Ordering::Shared`] gives that up around failures, for streams that
//!   other publishers write to as well.
//!
//! # How it works
//!
//! [`run`](Forwarder::run) takes items with [`Queue::get_ack`](spillq::Queue::get_ack) (each
//! out with the forwarder until acknowledged), as many as the queue holds, up to the window
//! ([`window_messages`](Forwarder::window_messages), 512 by default) of messages in flight;
//! if they are not all durable yet it syncs the queue once, then publishes them; it waits for
//! acknowledgements in publish order, removing each acknowledged item and filling the window
//! again. When the queue is empty it waits for the next item without blocking a thread.
//!
//! When a publish fails, every message still in flight is awaited first; the items JetStream
//! did not acknowledge go back to the head of the line, in order, and are sent again after a
//! backoff ([`initial_backoff`](Forwarder::initial_backoff) 100 ms, doubling up to
//! [`max_backoff`](Forwarder::max_backoff) 5 s) once the client is connected again.
//!
//! | what happens | what the forwarder does |
//! |---|---|
//! | the server is killed or unreachable | in-flight messages time out (the context's timeout, 5 s by default); it waits for the client to reconnect, with backoff, logging a warning, and sends them again; duplicates are dropped by JetStream |
//! | the stream's leader is lost (cluster) | the same: messages time out until a new leader is elected, then go again |
//! | the forwarding process is killed | unacknowledged items come out of the queue again at the next run; JetStream (or the stream's last id) recognises those it has |
//! | the forwarding machine loses power | as spillq's contract: items put and never synced can be lost (with `Durability::OnSync` or `Interval`); none of them was published (see above), so no later item is taken for one |
//! | the server's store is full, account or stream limits reached | retried with backoff, logged, until space is freed |
//! | no stream captures the subject | [`Error::StreamNotFound`] (checked with the JetStream API, so a stream still being loaded is waited for) |
//! | an item larger than `max_payload` or the stream's `max_msg_size` | the items before it are forwarded, then [`Error::TooLarge`]; the item stays at the head of the queue. In [`Ordering::Shared`] the items in flight after it may be stored already, so once it goes it lands after them |
//! | a sealed stream, JetStream disabled | [`Error::Refused`] (naming the item); [`Error::JetStreamDisabled`] when the JetStream API says so |
//! | the server restarted and its stream's last message is older than the duplicate window | in `Strict` order the server no longer knows its last id; the forwarder reads the stream's last message and removes the items it holds from the queue without sending them again |
//! | another publisher writes to the stream in `Strict` order | [`Error::OtherPublisher`] |
//! | the queue is closed | in-flight messages are settled, `run` returns `Ok`; items in flight at the close cannot be removed from the closed queue, so they are sent again by the next run (JetStream drops them as duplicates, or in `Strict` order finds them in the stream) |
//! | [`stop`](Forwarder::stop) | the same, and acknowledged items are removed from the queue |
//!
//! Whatever error `run` returns, every item JetStream did not acknowledge is back in the queue,
//! in order.
//!
//! # Stats and logs
//!
//! [`Forwarder::stats`] counts messages published, acknowledged, sent again, and reported as
//! duplicates. The forwarder logs through [`tracing`](https://docs.rs/tracing): a warning for
//! every failed round (with the error and the wait before the next), a warning while the
//! server stays away, and an info event when it is back. In [`Ordering::Strict`] the first
//! message of each run is a probe that the server refuses, naming its last message, and is
//! then sent again: it counts in `published` (not in `retried`).
//!
//! # Running it
//!
//! Give the stream a `duplicate_window` longer than the outages you expect (the window costs
//! the server memory per message id), and use one forwarder per queue: a second
//! [`run`](Forwarder::run) on a queue already forwarded in the process returns
//! [`Error::AlreadyRunning`]. The context's
//! [`max_ack_inflight`](async_nats::jetstream::ContextBuilder::max_ack_inflight) (5000 by
//! default) caps the messages in flight below a larger window. The context's timeout
//! ([`ContextBuilder::timeout`](async_nats::jetstream::ContextBuilder::timeout)) bounds the
//! wait for each acknowledgement. `examples/forward.rs` is a complete program.

#![warn(missing_docs, unreachable_pub)]

mod backoff;
mod config;
mod error;
mod failure;
mod forwarder;
mod message_id;
mod stats;

pub use config::Ordering;
pub use error::Error;
pub use forwarder::Forwarder;
pub use stats::Stats;
