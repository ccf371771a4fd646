use super::*;

fn e(offset: u64) -> Entry {
    Entry {
        offset,
        len: 1,
        will_init: false,
    }
}

fn k(n: u128) -> Key {
    Key::from_u128(n)
}

fn lsns(idx: &Index, key: Key) -> Vec<u64> {
    idx.versions(key, Lsn(0)..Lsn::MAX)
        .iter()
        .map(|v| v.0 .0)
        .collect()
}

#[test]
fn versions_stay_sorted_and_iteration_is_in_key_order() {
    let mut idx = Index::default();
    assert!(idx.insert(k(5), Lsn(20), e(0)));
    assert!(idx.insert(k(5), Lsn(10), e(1))); // out of order
    assert!(idx.insert(k(5), Lsn(30), e(2)));
    assert!(idx.insert(k(1), Lsn(7), e(3)));
    assert!(!idx.insert(k(5), Lsn(10), e(4)), "duplicate refused");
    assert!(
        !idx.insert(k(1), Lsn(7), e(4)),
        "duplicate of a single version refused"
    );
    assert_eq!(idx.len(), 4);
    assert_eq!(lsns(&idx, k(5)), vec![10, 20, 30]);
    assert_eq!(idx.versions(k(5), Lsn(11)..Lsn(30)).len(), 1);
    assert!(idx.versions(k(5), Lsn(30)..Lsn(11)).is_empty());
    assert!(idx.versions(k(9), Lsn(0)..Lsn(100)).is_empty());
    assert!(idx.versions(k(1), Lsn(8)..Lsn(100)).is_empty());
    let order: Vec<(u128, u64)> = idx.sorted().map(|(k, l, _)| (k.to_u128(), l.0)).collect();
    assert_eq!(order, vec![(1, 7), (5, 10), (5, 20), (5, 30)]);
    assert_eq!(idx.key_bounds(), Some((k(1), k(5))));
}

#[test]
fn puts_in_order_need_no_sort() {
    let mut idx = Index::default();
    for i in 0..100u128 {
        assert!(idx.insert(k(i), Lsn(1000 + i as u64), e(i as u64)));
    }
    let keys: Vec<u128> = idx.sorted().map(|(k, _, _)| k.to_u128()).collect();
    assert_eq!(keys, (0..100).collect::<Vec<_>>());
}

#[test]
fn hot_key_out_of_order_becomes_a_tree_and_stays_correct() {
    let mut idx = Index::default();
    // 5000 versions of one key, LSNs in a scrambled order (odd multiplier mod a power of two)
    let n = 5000u64;
    for i in 0..n {
        let lsn = Lsn(1 + (i * 2_654_435_761) % 8192);
        assert!(idx.insert(k(3), lsn, e(i)), "{lsn}");
        assert!(!idx.insert(k(3), lsn, e(i)), "{lsn} twice");
    }
    let got = lsns(&idx, k(3));
    assert_eq!(got.len(), n as usize);
    assert!(got.windows(2).all(|w| w[0] < w[1]));
    let some = idx.versions(k(3), Lsn(100)..Lsn(200));
    assert!(some.iter().all(|(l, _)| (100..200).contains(&l.0)));
    let sorted: Vec<u64> = idx.sorted().map(|(_, l, _)| l.0).collect();
    assert_eq!(sorted, got);
}

#[test]
fn rollback_restores_the_state_before_the_mark() {
    for hot_reverse in [false, true] {
        let mut idx = Index::default();
        assert!(idx.insert(k(1), Lsn(10), e(0)));
        assert!(idx.insert(k(2), Lsn(10), e(1)));
        assert!(idx.insert(k(2), Lsn(11), e(2)));
        let before: Vec<_> = idx.sorted().collect();
        let mark = idx.mark();
        assert!(idx.insert(k(1), Lsn(11), e(3))); // One -> Many
        assert!(idx.insert(k(2), Lsn(5), e(4))); // into an existing list
        assert!(idx.insert(k(0), Lsn(1), e(5))); // new key, new bounds
                                                 // a hot key made in this batch, long enough to become a tree when LSNs go backwards
        for i in 0..40u64 {
            let lsn = if hot_reverse { 1000 - i } else { 1000 + i };
            assert!(idx.insert(k(9), Lsn(lsn), e(10 + i)));
        }
        assert_eq!(idx.key_bounds(), Some((k(0), k(9))));
        idx.rollback(mark);
        assert_eq!(idx.sorted().collect::<Vec<_>>(), before);
        assert_eq!(idx.key_bounds(), Some((k(1), k(2))));
        assert_eq!(lsns(&idx, k(1)), vec![10]);
        assert_eq!(lsns(&idx, k(2)), vec![10, 11]);
        assert!(lsns(&idx, k(9)).is_empty());
        assert!(idx.multi.len() <= 1, "lists made by the batch are dropped");
        // the rolled-back versions can be put again
        assert!(idx.insert(k(1), Lsn(11), e(6)));
        assert!(idx.insert(k(9), Lsn(1000), e(7)));
        assert_eq!(lsns(&idx, k(1)), vec![10, 11]);
    }
}

#[test]
fn rollback_to_empty() {
    let mut idx = Index::default();
    let mark = idx.mark();
    assert!(idx.insert(k(1), Lsn(1), e(0)));
    assert!(idx.insert(k(1), Lsn(2), e(1)));
    idx.rollback(mark);
    assert_eq!(idx.len(), 0);
    assert_eq!(idx.key_bounds(), None);
    assert!(idx.versions(k(1), Lsn(0)..Lsn(9)).is_empty());
}

#[test]
fn puts_in_order_build_no_map_until_one_comes_out_of_order() {
    let mut idx = Index::default();
    for i in 0..50u128 {
        assert!(idx.insert(k(i / 2), Lsn(100 + i as u64), e(i as u64)));
    }
    assert!(!idx.hashed && idx.by_key.is_empty(), "in order: no map");
    assert_eq!(lsns(&idx, k(3)), vec![106, 107]);
    assert_eq!(idx.versions(k(3), Lsn(107)..Lsn(200)).len(), 1);
    assert!(lsns(&idx, k(99)).is_empty());
    // ordered mode rolls back by truncation
    let mark = idx.mark();
    assert!(idx.insert(k(30), Lsn(1), e(60)));
    idx.rollback(mark);
    assert_eq!(idx.len(), 50);
    assert_eq!(idx.key_bounds(), Some((k(0), k(24))));
    // the last put again: a duplicate, found through the map built for it
    assert!(!idx.insert(k(24), Lsn(149), e(61)));
    assert!(idx.hashed);
    assert_eq!(idx.by_key.len(), 25);
    // then out of order, in a batch that is rolled back, and again for good
    let mark = idx.mark();
    assert!(idx.insert(k(3), Lsn(1), e(62)));
    assert!(!idx.insert(k(3), Lsn(106), e(63)));
    idx.rollback(mark);
    assert_eq!(lsns(&idx, k(3)), vec![106, 107]);
    assert!(idx.insert(k(3), Lsn(1), e(64)));
    assert_eq!(lsns(&idx, k(3)), vec![1, 106, 107]);
    let order: Vec<(u128, u64)> = idx.sorted().map(|(k, l, _)| (k.to_u128(), l.0)).collect();
    let mut want = order.clone();
    want.sort();
    assert_eq!(order, want);
    assert_eq!(order.len(), 51);
}
