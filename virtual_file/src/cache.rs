//! The open-file cache: a fixed number of descriptor slots shared by all files of a context, with a
//! clock (second-chance) replacement policy.
//!
//! A [`VirtualFile`](crate::VirtualFile) remembers which slot holds its descriptor and the slot's tag at
//! the time. An IO takes the slot's read lock for its whole duration (that *pins* the descriptor: it
//! cannot be closed under an IO in flight) and checks the tag; if another file has taken the slot since,
//! the IO reopens its file into a victim slot chosen by the clock. The clock skips slots used since its
//! last pass and slots that are pinned (a failed `try_write`), so eviction never waits for IO. Files
//! beyond the number of slots stay usable; they just reopen on next use, with the same flags minus
//! create/truncate, and only if the path still names the same file (device and inode, checked by
//! [`VirtualFile`](crate::VirtualFile) before the new descriptor is installed; otherwise
//! [`Error::FileReplaced`](crate::Error::FileReplaced) and the slot stays empty).
//!
//! Weakness: two tasks that miss on the same file at the same moment both reopen it, and the older slot
//! keeps a stale descriptor until the clock reuses it (still within the slot count).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use io_engine::IoFd;
use tokio::sync::{RwLock, RwLockReadGuard, RwLockWriteGuard};

/// Default number of descriptor slots.
pub const DEFAULT_OPEN_FILES: usize = 100;

pub(crate) struct OpenFileCache {
    slots: Box<[Slot]>,
    clock_hand: Mutex<usize>,
    next_tag: AtomicU64,
}

struct Slot {
    recently_used: AtomicBool,
    inner: RwLock<SlotInner>,
}

pub(crate) struct SlotInner {
    pub(crate) tag: u64,
    pub(crate) fd: Option<Arc<IoFd>>,
}

/// Where a file's descriptor was last put.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct SlotHandle {
    pub(crate) index: usize,
    pub(crate) tag: u64,
}

impl OpenFileCache {
    pub(crate) fn new(slots: usize) -> Self {
        assert!(slots > 0, "the open-file cache needs at least one slot");
        Self {
            slots: (0..slots)
                .map(|_| Slot {
                    recently_used: AtomicBool::new(false),
                    inner: RwLock::new(SlotInner { tag: 0, fd: None }),
                })
                .collect(),
            clock_hand: Mutex::new(0),
            next_tag: AtomicU64::new(1),
        }
    }

    pub(crate) fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// The descriptor in `handle`'s slot, pinned by a read lock, if the slot still belongs to that file.
    pub(crate) async fn get(&self, handle: SlotHandle) -> Option<RwLockReadGuard<'_, SlotInner>> {
        let slot = &self.slots[handle.index];
        let guard = slot.inner.read().await;
        if guard.tag == handle.tag && guard.fd.is_some() {
            slot.recently_used.store(true, Ordering::Relaxed);
            Some(guard)
        } else {
            None
        }
    }

    /// A slot to (re)open a file into, write-locked, chosen by the clock. Waits only if every slot is
    /// pinned by an IO in flight.
    pub(crate) async fn victim(&self) -> (usize, RwLockWriteGuard<'_, SlotInner>) {
        let n = self.slots.len();
        loop {
            {
                let mut hand = self.clock_hand.lock().unwrap_or_else(|p| p.into_inner());
                // Two rounds: the first may only clear `recently_used` bits.
                for _ in 0..2 * n {
                    let i = *hand;
                    *hand = (i + 1) % n;
                    let slot = &self.slots[i];
                    if slot.recently_used.swap(false, Ordering::Relaxed) {
                        continue;
                    }
                    if let Ok(guard) = slot.inner.try_write() {
                        return (i, guard);
                    }
                }
            }
            // Every slot is pinned by an IO in flight: wait for one to finish.
            tokio::time::sleep(Duration::from_micros(50)).await;
        }
    }

    /// Installs `fd` in a write-locked slot with a fresh tag and returns the handle to find it again.
    pub(crate) fn install(
        &self,
        index: usize,
        guard: &mut RwLockWriteGuard<'_, SlotInner>,
        fd: Arc<IoFd>,
    ) -> SlotHandle {
        let tag = self.next_tag.fetch_add(1, Ordering::Relaxed);
        guard.tag = tag;
        guard.fd = Some(fd);
        self.slots[index]
            .recently_used
            .store(true, Ordering::Relaxed);
        SlotHandle { index, tag }
    }

    /// Closes the descriptor of `handle` if the slot still holds it and is not in use (for `Drop`).
    pub(crate) fn close_if_idle(&self, handle: SlotHandle) {
        if let Ok(mut guard) = self.slots[handle.index].inner.try_write() {
            if guard.tag == handle.tag {
                guard.fd = None;
            }
        }
    }

    /// Number of slots holding an open descriptor.
    pub(crate) fn open_count(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| s.inner.try_read().map(|g| g.fd.is_some()).unwrap_or(true))
            .count()
    }
}
