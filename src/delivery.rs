//! [`Delivery`]: an item out with one consumer until it is acknowledged. `ack` removes it for
//! good; `nack`, or dropping the guard, puts it back at the head. While it is out, the read
//! cursor (and so the checkpoint) stands at or before it, so a crash delivers it again.

use crate::engine::{Engine, Handed};
use crate::error::Error;
use std::fmt;
use std::ops::Deref;
use std::sync::Arc;

/// An item handed out by [`Queue::get_ack`](crate::Queue::get_ack), not yet acknowledged.
///
/// Dereferences to the item. [`ack`](Self::ack) removes it for good; [`nack`](Self::nack), or
/// dropping the guard, gives it back first in line. Until then no other consumer gets it, and a
/// crash or a close delivers it again after reopening.
///
/// # Examples
///
/// ```
/// let dir = tempfile::tempdir()?;
/// let queue = spillq::Queue::<String>::open(dir.path())?;
/// queue.put("upload me".to_string())?;
///
/// let delivery = queue.get_ack()?;
/// let uploaded = delivery.len() > 3; // stand-in for real work
/// if uploaded {
///     delivery.ack()?;
/// } else {
///     delivery.nack()?; // back at the head
/// }
/// assert!(queue.is_empty());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Delivery<T: Send + 'static> {
    engine: Arc<Engine<T>>,
    item: Option<T>,
    sequence: Option<u64>,
    epoch: u64,
}

impl<T: Send + 'static> Delivery<T> {
    pub(crate) fn new(engine: Arc<Engine<T>>, handed: Handed<T>) -> Self {
        Self {
            engine,
            item: Some(handed.item),
            sequence: handed.sequence,
            epoch: handed.epoch,
        }
    }

    /// The item's sequence number in the log, if it has one (an item that could not be encoded
    /// has none, and does not survive a crash).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// queue.put(1)?;
    /// assert_eq!(queue.get_ack()?.sequence(), Some(0));
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn sequence(&self) -> Option<u64> {
        self.sequence
    }

    /// Removes the item for good.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the queue was closed meanwhile; the item is then delivered again
    /// after reopening.
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// queue.put(1)?;
    /// queue.get_ack()?.ack()?;
    /// assert!(queue.is_empty());
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn ack(mut self) -> Result<(), Error> {
        self.item = None;
        self.settle(false)
    }

    /// Gives the item back, first in line.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] if the queue was closed meanwhile (the item is delivered again after
    /// reopening).
    ///
    /// ```
    /// # let dir = tempfile::tempdir()?;
    /// # let queue = spillq::Queue::<u8>::open(dir.path())?;
    /// queue.put(1)?;
    /// queue.put(2)?;
    /// queue.get_ack()?.nack()?;
    /// assert_eq!(queue.get()?, 1);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn nack(mut self) -> Result<(), Error> {
        self.settle(true)
    }

    fn settle(&mut self, give_back: bool) -> Result<(), Error> {
        let item = self.item.take().filter(|_| give_back);
        self.engine.settle(self.sequence, self.epoch, item)
    }
}

impl<T: Send + 'static> Deref for Delivery<T> {
    type Target = T;

    fn deref(&self) -> &T {
        match &self.item {
            Some(item) => item,
            // `item` is only taken by `ack`/`nack`, which consume the guard.
            None => unreachable!("a Delivery's item is present until it is settled"),
        }
    }
}

impl<T: Send + fmt::Debug + 'static> fmt::Debug for Delivery<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Delivery")
            .field("item", &self.item)
            .field("sequence", &self.sequence)
            .finish()
    }
}

impl<T: Send + 'static> Drop for Delivery<T> {
    fn drop(&mut self) {
        if self.item.is_some() {
            let _ = self.settle(true);
        }
    }
}
