//! The in-memory index: for each key, its versions sorted by LSN, each pointing at a blob in the
//! ephemeral file.
//!
//! A hash map from key to a small LSN-sorted vector: a put costs one hash lookup (and usually a push, as
//! LSNs arrive in increasing order), a read one lookup and a binary search. Key order is needed only when
//! the layer is written out, which sorts the keys once.

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

#[derive(Debug, Default)]
pub(super) struct Index {
    map: HashMap<Key, Vec<(Lsn, Entry)>>,
    range: Option<(Key, Key)>,
}

impl Index {
    pub(super) fn contains(&self, key: Key, lsn: Lsn) -> bool {
        self.map
            .get(&key)
            .is_some_and(|v| v.binary_search_by_key(&lsn, |e| e.0).is_ok())
    }

    /// Inserts a version that [`contains`](Self::contains) said is absent.
    pub(super) fn insert(&mut self, key: Key, lsn: Lsn, entry: Entry) {
        let versions = self.map.entry(key).or_default();
        match versions.last() {
            Some(&(last, _)) if last >= lsn => {
                let at = versions.partition_point(|e| e.0 < lsn);
                versions.insert(at, (lsn, entry));
            }
            _ => versions.push((lsn, entry)),
        }
        self.range = Some(match self.range {
            None => (key, key),
            Some((lo, hi)) => (lo.min(key), hi.max(key)),
        });
    }

    /// The versions of `key` with LSN in `lsns`, ascending.
    pub(super) fn versions(&self, key: Key, lsns: Range<Lsn>) -> &[(Lsn, Entry)] {
        let Some(v) = self.map.get(&key) else {
            return &[];
        };
        let from = v.partition_point(|e| e.0 < lsns.start);
        let to = v.partition_point(|e| e.0 < lsns.end);
        &v[from..to.max(from)]
    }

    /// Smallest and largest key.
    pub(super) fn key_bounds(&self) -> Option<(Key, Key)> {
        self.range
    }

    /// Every (key, LSN, entry) in (key, LSN) order.
    pub(super) fn sorted(&self) -> impl Iterator<Item = (Key, Lsn, Entry)> + '_ {
        let mut keys: Vec<Key> = self.map.keys().copied().collect();
        keys.sort_unstable();
        keys.into_iter()
            .flat_map(move |k| self.map[&k].iter().map(move |&(lsn, e)| (k, lsn, e)))
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
}
