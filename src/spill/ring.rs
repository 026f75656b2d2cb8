//! The memory ring: the items at the head of the queue, decoded, oldest first.
//!
//! An item in the ring is either only in memory (never written), or also in the log under a
//! sequence number (read back from disk, or written because the queue began to spill, or for
//! `sync`). Items never written are always the ring's youngest: when an item must go to disk
//! they are written first (`Engine::write_memory`), so the log keeps queue order.

use std::collections::VecDeque;
use std::path::PathBuf;

/// Whether an item in the ring is in the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Written {
    /// Only in memory.
    No,
    /// In the log with this sequence number.
    At(u64),
    /// Its encoding failed; it stays in memory only.
    Never,
}

/// One entry of the ring.
pub(crate) enum Slot<T> {
    Item {
        item: T,
        written: Written,
    },
    /// A record that did not decode as `T`; its bytes were moved aside.
    Undecodable {
        sequence: u64,
        moved_to: Option<PathBuf>,
        message: String,
    },
}

impl<T> Slot<T> {
    /// The item's sequence number in the log, if it has one.
    pub(crate) fn sequence(&self) -> Option<u64> {
        match self {
            Self::Item {
                written: Written::At(sequence),
                ..
            }
            | Self::Undecodable { sequence, .. } => Some(*sequence),
            Self::Item { .. } => None,
        }
    }

    fn is_unwritten(&self) -> bool {
        matches!(
            self,
            Self::Item {
                written: Written::No,
                ..
            }
        )
    }
}

/// The ring. See the module docs.
pub(crate) struct Ring<T> {
    slots: VecDeque<Slot<T>>,
    /// `Written::No` items, all among the youngest.
    unwritten: usize,
}

impl<T> Default for Ring<T> {
    fn default() -> Self {
        Self {
            slots: VecDeque::new(),
            unwritten: 0,
        }
    }
}

impl<T> Ring<T> {
    pub(crate) fn len(&self) -> usize {
        self.slots.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }

    /// Items never written.
    pub(crate) fn unwritten(&self) -> usize {
        self.unwritten
    }

    pub(crate) fn front(&self) -> Option<&Slot<T>> {
        self.slots.front()
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &Slot<T>> {
        self.slots.iter()
    }

    /// Adds a new item, only in memory, at the young end.
    pub(crate) fn push_new(&mut self, item: T) {
        self.slots.push_back(Slot::Item {
            item,
            written: Written::No,
        });
        self.unwritten += 1;
    }

    /// Adds a slot read back from the log at the young end.
    pub(crate) fn push_read(&mut self, slot: Slot<T>) {
        debug_assert!(!slot.is_unwritten());
        self.slots.push_back(slot);
    }

    /// Puts a slot given back at `at` (0 is the head).
    pub(crate) fn insert(&mut self, at: usize, slot: Slot<T>) {
        self.unwritten += usize::from(slot.is_unwritten());
        self.slots.insert(at.min(self.slots.len()), slot);
    }

    pub(crate) fn pop_front(&mut self) -> Option<Slot<T>> {
        let slot = self.slots.pop_front()?;
        self.unwritten -= usize::from(slot.is_unwritten());
        Some(slot)
    }

    /// Moves up to `max` items from the head into `out`, stopping before an undecodable record.
    /// Returns how many.
    pub(crate) fn take_items(&mut self, max: usize, out: &mut Vec<T>) -> usize {
        let count = self
            .slots
            .iter()
            .take(max)
            .take_while(|slot| matches!(slot, Slot::Item { .. }))
            .count();
        let mut unwritten = 0;
        out.extend(self.slots.drain(..count).filter_map(|slot| match slot {
            Slot::Item { item, written } => {
                unwritten += usize::from(written == Written::No);
                Some(item)
            }
            Slot::Undecodable { .. } => None,
        }));
        self.unwritten -= unwritten;
        count
    }

    /// Hands each item never written to `write`, oldest first, with its position (0 is the
    /// head); `write` says what it became (`Written::At` or `Written::Never`), or `None` to
    /// stop there (that item and the ones after it stay unwritten).
    pub(crate) fn write_unwritten(&mut self, mut write: impl FnMut(usize, &T) -> Option<Written>) {
        // They are among the youngest: find where they start, walking back from the young end.
        let mut start = self.slots.len();
        let mut seen = 0;
        while seen < self.unwritten && start > 0 {
            start -= 1;
            seen += usize::from(self.slots.get(start).is_some_and(Slot::is_unwritten));
        }
        for (index, slot) in self.slots.range_mut(start..).enumerate() {
            let Slot::Item {
                item,
                written: written @ Written::No,
            } = slot
            else {
                continue;
            };
            match write(start + index, item) {
                Some(now) => {
                    *written = now;
                    self.unwritten -= 1;
                }
                None => return,
            }
        }
    }

    /// Drops every item.
    pub(crate) fn clear(&mut self) {
        self.slots.clear();
        self.unwritten = 0;
    }
}
