//! The page map and eviction: [`State`], what the cache's one mutex guards: the map from
//! [`PageKey`] to slot, the slots, the lists of free and vacant slots, and the clock hand (second-chance
//! eviction: a point read's hit sets a slot's referenced bit, a scan's does not, the hand clears it and takes the first ready slot found
//! without it).

use std::collections::HashMap;

use super::slot::{PageBuf, PageKey, Slot};

/// A multiply-rotate hasher for [`PageKey`]s (two `u64`s, chosen by this process, not by an attacker, so
/// SipHash's flood resistance buys nothing; it cost a measurable part of a hit).
#[derive(Default)]
pub(super) struct PageKeyHasher(u64);

impl std::hash::Hasher for PageKeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

pub(super) type PageMap = HashMap<PageKey, usize, std::hash::BuildHasherDefault<PageKeyHasher>>;

/// The map, the slots and the clock of one page cache.
#[derive(Default)]
pub(super) struct State {
    pub(super) map: PageMap,
    /// Entries of `map` per file id, so that dropping every page of a file that has none (a close, a
    /// `set_len`) does not scan the map.
    pub(super) per_file: HashMap<u64, usize, std::hash::BuildHasherDefault<PageKeyHasher>>,
    pub(super) slots: Vec<Slot>,
    hand: usize,
    /// Slots with a buffer and no page.
    pub(super) free: Vec<usize>,
    /// Slots without a buffer.
    pub(super) vacant: Vec<usize>,
}

impl State {
    pub(super) fn map_insert(&mut self, key: PageKey, slot: usize) {
        if self.map.insert(key, slot).is_none() {
            *self.per_file.entry(key.0).or_default() += 1;
        }
    }

    pub(super) fn map_remove(&mut self, key: &PageKey) {
        if self.map.remove(key).is_some() {
            if let Some(n) = self.per_file.get_mut(&key.0) {
                *n -= 1;
                if *n == 0 {
                    self.per_file.remove(&key.0);
                }
            }
        }
    }

    pub(super) fn vacant_index(&mut self) -> usize {
        match self.vacant.pop() {
            Some(i) => i,
            None => {
                self.slots.push(Slot::Vacant);
                self.slots.len() - 1
            }
        }
    }

    pub(super) fn put_free(&mut self, page: PageBuf) {
        let i = self.vacant_index();
        self.put_free_at(i, page);
    }

    pub(super) fn put_free_at(&mut self, i: usize, page: PageBuf) {
        self.slots[i] = Slot::Free(page);
        self.free.push(i);
    }

    /// The clock's next victim among ready pages. With `second_chance`, referenced pages are skipped once
    /// (their bit cleared); without, the first ready page is taken.
    pub(super) fn clock_victim(&mut self, second_chance: bool) -> Option<usize> {
        let n = self.slots.len();
        for _ in 0..2 * n {
            let i = self.hand % n.max(1);
            self.hand = (i + 1) % n.max(1);
            if let Slot::Ready { referenced, .. } = &mut self.slots[i] {
                if *referenced && second_chance {
                    *referenced = false;
                } else {
                    return Some(i);
                }
            }
        }
        None
    }

    /// Takes the page out of ready slot `i` (the slot is left vacant, not listed; the caller reuses it).
    pub(super) fn evict(&mut self, i: usize) -> Option<PageBuf> {
        match std::mem::replace(&mut self.slots[i], Slot::Vacant) {
            Slot::Ready { key, page, .. } => {
                self.map_remove(&key);
                Some(page)
            }
            other => {
                self.slots[i] = other;
                None
            }
        }
    }

    pub(super) fn drop_key(&mut self, key: PageKey) {
        let Some(&i) = self.map.get(&key) else {
            return;
        };
        match &mut self.slots[i] {
            Slot::Loading { stale, .. } => *stale = true,
            Slot::Ready { .. } => {
                if let Some(page) = self.evict(i) {
                    self.put_free_at(i, page);
                }
            }
            _ => {}
        }
    }
}
