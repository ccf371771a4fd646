//! The in-memory index: every put as (key, LSN, blob location) in put order, and a hash map from key to
//! the positions of its versions, sorted by LSN.
//!
//! A put costs one hash lookup and, for a key's first version (the common case), no allocation; a read
//! costs one lookup and a scan of that key's few versions. Key order is needed only when the layer is
//! written out: a permutation of the entries is sorted then, or not at all when the puts already came in
//! (key, LSN) order.

use std::collections::HashMap;
use std::ops::Range;

use crate::key::{Key, Lsn};

/// Where one value's blob is in the ephemeral file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Entry {
    pub(super) offset: u64,
    pub(super) len: u32,
    pub(super) will_init: bool,
}

/// Positions (in `Index::entries`) of one key's versions, ascending by LSN.
#[derive(Debug)]
enum Versions {
    One(u32),
    Many(Vec<u32>),
}

#[derive(Debug, Default)]
pub(super) struct Index {
    entries: Vec<(Key, Lsn, Entry)>,
    by_key: HashMap<Key, Versions>,
    range: Option<(Key, Key)>,
}

impl Index {
    fn lsn_at(&self, pos: u32) -> Lsn {
        self.entries[pos as usize].1
    }

    fn positions<'a>(&'a self, key: &Key) -> &'a [u32] {
        match self.by_key.get(key) {
            None => &[],
            Some(Versions::One(p)) => std::slice::from_ref(p),
            Some(Versions::Many(v)) => v,
        }
    }

    pub(super) fn contains(&self, key: Key, lsn: Lsn) -> bool {
        self.positions(&key).iter().any(|&p| self.lsn_at(p) == lsn)
    }

    /// Inserts a version that [`contains`](Self::contains) said is absent.
    pub(super) fn insert(&mut self, key: Key, lsn: Lsn, entry: Entry) {
        let pos = u32::try_from(self.entries.len()).expect("fewer than 2^32 values in one layer");
        self.entries.push((key, lsn, entry));
        let entries = &self.entries;
        match self.by_key.get_mut(&key) {
            None => {
                self.by_key.insert(key, Versions::One(pos));
            }
            Some(versions) => {
                let mut list = match std::mem::replace(versions, Versions::Many(Vec::new())) {
                    Versions::One(p) => vec![p],
                    Versions::Many(v) => v,
                };
                let at = list.partition_point(|&p| entries[p as usize].1 < lsn);
                list.insert(at, pos);
                *versions = Versions::Many(list);
            }
        }
        self.range = Some(match self.range {
            None => (key, key),
            Some((lo, hi)) => (lo.min(key), hi.max(key)),
        });
    }

    /// The versions of `key` with LSN in `lsns`, ascending.
    pub(super) fn versions(&self, key: Key, lsns: Range<Lsn>) -> Vec<(Lsn, Entry)> {
        self.positions(&key)
            .iter()
            .map(|&p| {
                let (_, lsn, e) = self.entries[p as usize];
                (lsn, e)
            })
            .filter(|(lsn, _)| lsns.contains(lsn))
            .collect()
    }

    /// Smallest and largest key.
    pub(super) fn key_bounds(&self) -> Option<(Key, Key)> {
        self.range
    }

    /// Every (key, LSN, entry) in (key, LSN) order.
    pub(super) fn sorted(&self) -> impl Iterator<Item = (Key, Lsn, Entry)> + '_ {
        let in_order = self.entries.is_sorted_by_key(|e| (e.0, e.1));
        let mut order: Vec<u32> = (0..self.entries.len() as u32).collect();
        if !in_order {
            order.sort_unstable_by_key(|&p| {
                let (k, l, _) = self.entries[p as usize];
                (k, l)
            });
        }
        order.into_iter().map(move |p| self.entries[p as usize])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn e(offset: u64) -> Entry {
        Entry {
            offset,
            len: 1,
            will_init: false,
        }
    }

    #[test]
    fn versions_stay_sorted_and_iteration_is_in_key_order() {
        let mut idx = Index::default();
        let k = |n| Key::from_u128(n);
        idx.insert(k(5), Lsn(20), e(0));
        idx.insert(k(5), Lsn(10), e(1)); // out of order
        idx.insert(k(5), Lsn(30), e(2));
        idx.insert(k(1), Lsn(7), e(3));
        assert!(idx.contains(k(5), Lsn(10)));
        assert!(!idx.contains(k(5), Lsn(11)));
        let lsns: Vec<u64> = idx
            .versions(k(5), Lsn(0)..Lsn(100))
            .iter()
            .map(|v| v.0 .0)
            .collect();
        assert_eq!(lsns, vec![10, 20, 30]);
        assert_eq!(idx.versions(k(5), Lsn(11)..Lsn(30)).len(), 1);
        assert!(idx.versions(k(5), Lsn(30)..Lsn(11)).is_empty());
        assert!(idx.versions(k(9), Lsn(0)..Lsn(100)).is_empty());
        let order: Vec<(u128, u64)> = idx.sorted().map(|(k, l, _)| (k.to_u128(), l.0)).collect();
        assert_eq!(order, vec![(1, 7), (5, 10), (5, 20), (5, 30)]);
        assert_eq!(idx.key_bounds(), Some((k(1), k(5))));
    }

    #[test]
    fn puts_in_order_need_no_sort() {
        let mut idx = Index::default();
        for i in 0..100u128 {
            idx.insert(Key::from_u128(i), Lsn(1000 + i as u64), e(i as u64));
        }
        let keys: Vec<u128> = idx.sorted().map(|(k, _, _)| k.to_u128()).collect();
        assert_eq!(keys, (0..100).collect::<Vec<_>>());
    }
}
