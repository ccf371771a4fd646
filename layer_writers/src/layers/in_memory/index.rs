//! The in-memory index: every put as (key, LSN, blob location) in put order, and a hash map from key to
//! the positions of its versions, sorted by LSN.
//!
//! A put costs one hash probe (the entry API: the duplicate check is the insert) and, for a key's first
//! version (the common case), no allocation. A key's further versions live in a side table: a sorted
//! vector while LSNs arrive in increasing order (a put is a compare with the last one and a push), turned
//! into a `BTreeMap` when a long list gets an LSN out of order, so a hot key with thousands of versions
//! costs O(1) or O(log n) per put, never a scan. A read costs one probe and a binary search.
//!
//! The hasher is `foldhash` (its fast variant, randomly seeded per map): measured here against std's
//! SipHash, `rustc-hash` (Fx) and `ahash` on a million 16-byte keys put through the entry API, in
//! sequential, shuffled and pageserver-like structured orders, it was the fastest in every order (about
//! 2x std's SipHash, 1.2-1.6x Fx and ahash), and it keeps good distribution on structured keys where Fx's
//! single multiply is weakest. Keys are hashed as one `u128` (one hasher call, not a length prefix and a
//! byte slice).
//!
//! While every put comes in strictly increasing (key, LSN) order (a bulk load), the map is not built at
//! all: the put-order list is then sorted, a put is one compare with the last entry (it cannot be a
//! duplicate) and a read a binary search. The first put out of order builds the map from the list (the
//! same work the puts before it would have done) and the index stays hashed from then on. This matters
//! because a hash map spreads even sequential keys over the whole table: on this machine a probe into a
//! table of a million keys is a cache and TLB miss, about 0.2-0.5 us, more than all other per-put work.
//!
//! Key order is needed only when the layer is written out: the entries are sorted then, or not at all
//! when the puts already came in (key, LSN) order.
//!
//! A batch is applied all or nothing: [`Index::mark`] before it, [`Index::rollback`] to that mark undoes
//! every insert after it (in reverse).

use std::collections::hash_map::Entry as MapEntry;
use std::collections::{BTreeMap, HashMap};
use std::ops::Range;

use crate::format::key::{Key, Lsn};

/// Where one value's blob is in the ephemeral file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) will_init: bool,
}

/// A key's versions in the map: its only version's position in `Index::entries`, or where in
/// `Index::multi` the list of its versions is.
#[derive(Debug, Clone, Copy)]
enum Slot {
    One(u32),
    Many(u32),
}

/// A key's entry in the map: its versions, and the largest LSN among them, so that a put of a newer
/// version (the common case) is known not to be a duplicate without looking at the versions.
#[derive(Debug, Clone, Copy)]
struct Head {
    max_lsn: Lsn,
    slot: Slot,
}

/// Longest sorted list that takes an out-of-order LSN by `Vec::insert`; a longer one becomes a tree.
const SORTED_INSERT_MAX: usize = 32;

/// The versions of a key with more than one: positions in `Index::entries`, ascending by LSN.
#[derive(Debug)]
enum Versions {
    Sorted(Vec<u32>),
    Tree(BTreeMap<Lsn, u32>),
}

/// The state to return to when a batch is refused: see [`Index::rollback`].
#[derive(Debug, Clone, Copy)]
pub(super) struct Mark {
    entries: usize,
    range: Option<(Key, Key)>,
}

#[derive(Debug, Default)]
pub(super) struct Index {
    entries: Vec<(Key, Lsn, Entry)>,
    /// Empty while `ordered`.
    by_key: HashMap<u128, Head, foldhash::fast::RandomState>,
    multi: Vec<Versions>,
    range: Option<(Key, Key)>,
    /// Every put so far came in strictly increasing (key, LSN) order: `entries` is sorted, lookups
    /// binary-search it and `by_key` is not built. Cleared for good by the first put out of order.
    hashed: bool,
}

impl Index {
    fn lsn_at(&self, pos: u32) -> Lsn {
        self.entries[pos as usize].1
    }

    /// Makes room for `additional` more values without growing the tables on the way.
    pub(super) fn reserve(&mut self, additional: usize) {
        self.entries.reserve(additional);
        if self.hashed {
            self.by_key.reserve(additional);
        }
    }

    /// Number of values indexed.
    pub(super) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Where a batch starts.
    pub(super) fn mark(&self) -> Mark {
        Mark {
            entries: self.entries.len(),
            range: self.range,
        }
    }

    /// Adds a version. Returns `false`, and changes nothing, if `(key, lsn)` is already there.
    pub(super) fn insert(&mut self, key: Key, lsn: Lsn, entry: Entry) -> bool {
        let Ok(pos) = u32::try_from(self.entries.len()) else {
            // the caller bounds a layer far below 2^32 values (see `InMemoryLayer::put_batch`)
            return false;
        };
        if !self.hashed {
            // puts in key order (a bulk load): greater than everything before, so new; no map needed
            // compared as integers: a derived `Ord` on the key's bytes is a `memcmp` call
            let new = (key.to_u128(), lsn);
            if self
                .entries
                .last()
                .is_none_or(|l| (l.0.to_u128(), l.1) < new)
            {
                self.push(key, lsn, entry);
                return true;
            }
            self.build_map();
        }
        if !self.link(key, lsn, pos) {
            return false;
        }
        self.push(key, lsn, entry);
        true
    }

    fn push(&mut self, key: Key, lsn: Lsn, entry: Entry) {
        self.entries.push((key, lsn, entry));
        self.range = Some(match self.range {
            None => (key, key),
            Some((lo, hi)) => (lo.min(key), hi.max(key)),
        });
    }

    /// Leaves the ordered mode: indexes every entry so far in `by_key`.
    fn build_map(&mut self) {
        self.hashed = true;
        self.by_key.reserve(self.entries.capacity());
        for pos in 0..self.entries.len() {
            let (key, lsn, _) = self.entries[pos];
            // sorted and without duplicates: every link succeeds, each key's versions in LSN order
            self.link(key, lsn, pos as u32);
        }
    }

    /// Adds `pos` (of `key` at `lsn`) to the map; `false` if `(key, lsn)` is there already.
    fn link(&mut self, key: Key, lsn: Lsn, pos: u32) -> bool {
        let head = match self.by_key.entry(key.to_u128()) {
            MapEntry::Vacant(v) => {
                v.insert(Head {
                    max_lsn: lsn,
                    slot: Slot::One(pos),
                });
                return true;
            }
            MapEntry::Occupied(o) => o.into_mut(),
        };
        match head.slot {
            Slot::One(first) => {
                // the only version's LSN is `max_lsn`
                if head.max_lsn == lsn {
                    return false;
                }
                let list = if head.max_lsn < lsn {
                    vec![first, pos]
                } else {
                    vec![pos, first]
                };
                // fewer than 2^32 lists: each has at least two of the fewer than 2^32 entries
                head.slot = Slot::Many(self.multi.len() as u32);
                self.multi.push(Versions::Sorted(list));
            }
            Slot::Many(m) => {
                let versions = &mut self.multi[m as usize];
                match versions {
                    // newer than every version: no search, no look at the entries
                    Versions::Sorted(list) if head.max_lsn < lsn => list.push(pos),
                    _ => {
                        let entries = &self.entries;
                        if !insert_version(versions, lsn, pos, |p| entries[p as usize].1) {
                            return false;
                        }
                    }
                }
            }
        }
        head.max_lsn = head.max_lsn.max(lsn);
        true
    }

    /// Undoes every insert made after `mark`, newest first.
    pub(super) fn rollback(&mut self, mark: Mark) {
        if !self.hashed {
            self.entries.truncate(mark.entries);
        }
        while self.entries.len() > mark.entries {
            let pos = (self.entries.len() - 1) as u32;
            let (key, lsn, _) = self.entries[pos as usize];
            self.remove_newest(key, lsn, pos);
            self.entries.pop();
        }
        self.range = mark.range;
    }

    /// Removes the map's reference to the newest entry `pos` (of `key` at `lsn`).
    fn remove_newest(&mut self, key: Key, lsn: Lsn, pos: u32) {
        let k = key.to_u128();
        let Some(&head) = self.by_key.get(&k) else {
            return;
        };
        let Slot::Many(m) = head.slot else {
            self.by_key.remove(&k);
            return;
        };
        let (remaining, max_lsn) = match &mut self.multi[m as usize] {
            Versions::Sorted(list) => {
                list.retain(|&p| p != pos);
                let max = list.last().map(|&p| self.entries[p as usize].1);
                ((list.len() == 1).then(|| list[0]), max)
            }
            Versions::Tree(tree) => {
                tree.remove(&lsn);
                let only = (tree.len() == 1)
                    .then(|| tree.values().next().copied())
                    .flatten();
                (only, tree.keys().next_back().copied())
            }
        };
        let mut head = Head {
            max_lsn: max_lsn.unwrap_or(head.max_lsn),
            slot: head.slot,
        };
        // the list made by this batch's insert is the newest: drop it and go back to `One`
        if let (Some(only), true) = (remaining, m as usize + 1 == self.multi.len()) {
            self.multi.pop();
            head.slot = Slot::One(only);
        }
        self.by_key.insert(k, head);
    }

    /// The versions of `key` with LSN in `lsns`, ascending.
    pub(super) fn versions(&self, key: Key, lsns: Range<Lsn>) -> Vec<(Lsn, Entry)> {
        let at = |p: u32| {
            let (_, lsn, e) = self.entries[p as usize];
            (lsn, e)
        };
        if lsns.start >= lsns.end {
            return Vec::new();
        }
        if !self.hashed {
            let from = self
                .entries
                .partition_point(|e| (e.0, e.1) < (key, lsns.start));
            let to = self
                .entries
                .partition_point(|e| (e.0, e.1) < (key, lsns.end));
            return self.entries[from..to]
                .iter()
                .map(|&(_, l, e)| (l, e))
                .collect();
        }
        match self.by_key.get(&key.to_u128()) {
            None => Vec::new(),
            Some(&Head {
                slot: Slot::One(p), ..
            }) => Some(at(p))
                .filter(|(lsn, _)| lsns.contains(lsn))
                .into_iter()
                .collect(),
            Some(&Head {
                slot: Slot::Many(m),
                ..
            }) => match &self.multi[m as usize] {
                Versions::Sorted(list) => {
                    let from = list.partition_point(|&p| self.lsn_at(p) < lsns.start);
                    let to = list.partition_point(|&p| self.lsn_at(p) < lsns.end);
                    list[from..to].iter().map(|&p| at(p)).collect()
                }
                Versions::Tree(tree) => tree.range(lsns).map(|(_, &p)| at(p)).collect(),
            },
        }
    }

    /// Smallest and largest key.
    pub(super) fn key_bounds(&self) -> Option<(Key, Key)> {
        self.range
    }

    /// Every (key, LSN, entry) in (key, LSN) order. When the puts were not in that order, this sorts a
    /// copy of the (key, LSN) pairs with positions (32 bytes per value, held by the returned iterator).
    pub(super) fn sorted(&self) -> Box<dyn Iterator<Item = (Key, Lsn, Entry)> + Send + '_> {
        if !self.hashed || self.entries.is_sorted_by_key(|e| (e.0, e.1)) {
            return Box::new(self.entries.iter().copied());
        }
        // sorting plain integers: no indirection into `entries` per comparison
        let mut order: Vec<(u128, u64, u32)> = self
            .entries
            .iter()
            .enumerate()
            .map(|(p, &(k, l, _))| (k.to_u128(), l.0, p as u32))
            .collect();
        order.sort_unstable();
        Box::new(
            order
                .into_iter()
                .map(move |(_, _, p)| self.entries[p as usize]),
        )
    }
}

/// Adds version `pos` at `lsn` to `versions`; `false` if `lsn` is there already.
fn insert_version(
    versions: &mut Versions,
    lsn: Lsn,
    pos: u32,
    lsn_of: impl Fn(u32) -> Lsn,
) -> bool {
    match versions {
        Versions::Sorted(list) => {
            // the common case, LSNs arriving in increasing order: one compare and a push
            if list.last().is_none_or(|&p| lsn_of(p) < lsn) {
                list.push(pos);
                return true;
            }
            let at = list.partition_point(|&p| lsn_of(p) < lsn);
            if at < list.len() && lsn_of(list[at]) == lsn {
                return false;
            }
            if list.len() < SORTED_INSERT_MAX {
                list.insert(at, pos);
            } else {
                let mut tree: BTreeMap<Lsn, u32> = list.iter().map(|&p| (lsn_of(p), p)).collect();
                tree.insert(lsn, pos);
                *versions = Versions::Tree(tree);
            }
            true
        }
        Versions::Tree(tree) => match tree.entry(lsn) {
            std::collections::btree_map::Entry::Occupied(_) => false,
            std::collections::btree_map::Entry::Vacant(v) => {
                v.insert(pos);
                true
            }
        },
    }
}

#[cfg(test)]
mod tests;
