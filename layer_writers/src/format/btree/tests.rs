//! B-tree tests against a `BTreeMap` model, and corruption tests.

use std::collections::BTreeMap;
use std::ops::{Bound, ControlFlow};

use bytes::Bytes;
use proptest::prelude::*;
use rand::rngs::SmallRng as StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;

use super::page::PAGE_SIZE;
use super::*;
use crate::format::error::FormatError;
use crate::format::key::{delta_index_key, Key, Lsn, DELTA_INDEX_KEY_SIZE, IMAGE_INDEX_KEY_SIZE};

type Model = BTreeMap<Vec<u8>, u64>;

/// Runs a future whose IO is in memory. `MemPageSource` reads are always ready, so this never waits; a
/// runtime per call would dominate the cost of the many small reads these tests make.
fn block_on<F: std::future::Future>(f: F) -> F::Output {
    let mut f = std::pin::pin!(f);
    let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
    loop {
        if let std::task::Poll::Ready(out) = f.as_mut().poll(&mut cx) {
            return out;
        }
        std::thread::yield_now();
    }
}

/// Builds `model` into pages, draining them as they are produced, like a writer would.
fn build(key_len: usize, model: &Model) -> (BtreeSummary, MemPageSource) {
    let mut b = BtreeBuilder::new(key_len).unwrap();
    let mut pages = Vec::new();
    for (k, v) in model {
        b.append(k, *v).unwrap();
        pages.extend(b.drain_pages());
    }
    let (summary, rest) = b.finish().unwrap();
    pages.extend(rest);
    assert_eq!(summary.num_pages as usize, pages.len());
    assert_eq!(summary.num_entries as usize, model.len());
    (summary, pages.into_iter().collect())
}

fn reader(summary: &BtreeSummary, source: MemPageSource) -> BtreeReader<MemPageSource> {
    BtreeReader::from_summary(source, summary).unwrap()
}

/// A full scan through [`BtreeReader::scan`], checked to give the same entries, or the same error, as
/// [`BtreeReader::scan_in_runs`].
async fn scan_all<S: PageSource + Sync>(
    r: &BtreeReader<S>,
) -> Result<Vec<(Vec<u8>, u64)>, BtreeReadError<S::Error>>
where
    S::Error: std::fmt::Debug,
{
    let mut out = Vec::new();
    let res = r
        .scan(|k, v| {
            out.push((k.to_vec(), v));
            ControlFlow::Continue(())
        })
        .await;
    let mut in_runs = Vec::new();
    let res_in_runs = r
        .scan_in_runs(|k, v| {
            in_runs.push((k.to_vec(), v));
            ControlFlow::Continue(())
        })
        .await;
    assert_eq!(format!("{res:?}"), format!("{res_in_runs:?}"));
    res?;
    assert_eq!(out, in_runs);
    Ok(out)
}

/// A page source that counts its calls.
struct CountingSource {
    inner: MemPageSource,
    pages: std::sync::atomic::AtomicUsize,
    runs: std::sync::atomic::AtomicUsize,
}

impl PageSource for CountingSource {
    type Page = Bytes;
    type Error = PageOutOfRange;

    async fn read_page(&self, page_no: u32) -> Result<Bytes, PageOutOfRange> {
        self.pages
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.inner.read_page(page_no).await
    }

    async fn read_run(&self, first: u32, count: u32) -> Result<Vec<Bytes>, PageOutOfRange> {
        assert!(count as usize <= MAX_RUN_PAGES);
        self.runs.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        // the trait's default, page by page from the inner source
        self.inner.read_run(first, count).await
    }
}

/// `scan_in_runs` reads the leaves in runs: one `read_run` per lowest internal page (the builder writes
/// a parent's leaves back to back), one `read_page` per page above; a callback that breaks stops it.
#[rstest]
#[case::two_levels(DELTA_INDEX_KEY_SIZE, 200_000, 2)]
#[case::three_levels(4, 600_000, 3)]
fn scan_in_runs_reads_leaves_in_runs(#[case] key_len: usize, #[case] n: usize, #[case] depth: u8) {
    let model: Model = if key_len == 4 {
        // spread keys, so pages share short prefixes and the tree gets deep
        let mut rng = StdRng::seed_from_u64(7);
        let mut model = Model::new();
        while model.len() < n {
            model.insert(rng.random::<u32>().to_be_bytes().to_vec(), rng.random());
        }
        model
    } else {
        random_model(&mut StdRng::seed_from_u64(7), key_len, n)
    };
    let (summary, inner) = build(key_len, &model);
    assert_eq!(summary.depth, depth);
    let source = CountingSource {
        inner,
        pages: 0.into(),
        runs: 0.into(),
    };
    let r = BtreeReader::from_summary(source, &summary).unwrap();
    let mut n = 0;
    block_on(r.scan_in_runs(|_, _| {
        n += 1;
        ControlFlow::Continue(())
    }))
    .unwrap();
    assert_eq!(n, model.len());
    let pages = r.source().pages.load(std::sync::atomic::Ordering::Relaxed);
    let runs = r.source().runs.load(std::sync::atomic::Ordering::Relaxed);
    let total = summary.num_pages as usize;
    // every page once: the upper ones one by one, the leaves in runs
    assert!(
        runs >= 1 && pages + runs < total / 20,
        "{pages} pages, {runs} runs of {total}"
    );
    let all = block_on(scan_all(&r)).unwrap();
    assert!(all.iter().map(|(k, v)| (k, v)).eq(model.iter()));

    let mut n = 0;
    block_on(r.scan_in_runs(|_, _| {
        n += 1;
        if n == 10 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    }))
    .unwrap();
    assert_eq!(n, 10);
}

/// Random keys shaped like real index keys: delta keys cluster (few distinct keys, many LSNs), so pages get
/// long prefixes; image keys are spread over a wider space with shared high bytes.
fn random_model(rng: &mut StdRng, key_len: usize, n: usize) -> Model {
    let mut model = Model::new();
    while model.len() < n {
        let key = if key_len == DELTA_INDEX_KEY_SIZE {
            let k = Key::from_u128(
                0x0001_0000_0000_0000_0000_0000_0000_0000
                    | rng.random_range(0..(n as u128 / 4 + 2)),
            );
            delta_index_key(k, Lsn(rng.random_range(0..1 << 40))).to_vec()
        } else if rng.random_bool(0.1) {
            rng.random::<[u8; IMAGE_INDEX_KEY_SIZE]>().to_vec()
        } else {
            Key::from_u128(rng.random_range(0..(n as u128) * 8))
                .to_bytes()
                .to_vec()
        };
        model.insert(key, rng.random());
    }
    model
}

/// Checks every read path of `r` against `model`. `max_gets` bounds the point lookups (the full scan covers
/// every entry regardless).
async fn check_against_model(
    r: &BtreeReader<MemPageSource>,
    model: &Model,
    key_len: usize,
    rng: &mut StdRng,
    max_gets: usize,
) {
    // Full scan: every entry, in order (with and without runs).
    let scanned = scan_all(r).await.unwrap();
    assert_eq!(scanned.len(), model.len());
    assert!(scanned.iter().map(|(k, v)| (k, v)).eq(model.iter()));

    // Point lookups of present keys.
    let keys: Vec<&Vec<u8>> = model.keys().collect();
    let step = (keys.len() / max_gets.max(1)).max(1);
    for k in keys.iter().step_by(step) {
        assert_eq!(r.get(k).await.unwrap(), model.get(*k).copied());
    }
    // Missing keys: random ones, neighbours of present ones, and the extremes.
    for i in 0..200.min(max_gets) {
        let mut k: Vec<u8> = (0..key_len).map(|_| rng.random()).collect();
        if i % 2 == 1 && !keys.is_empty() {
            k = keys[rng.random_range(0..keys.len())].clone();
            let last = k.len() - 1;
            k[last] = k[last].wrapping_add(1);
        }
        assert_eq!(
            r.get(&k).await.unwrap(),
            model.get(&k).copied(),
            "key {k:02x?}"
        );
    }
    for k in [vec![0u8; key_len], vec![0xff; key_len]] {
        assert_eq!(r.get(&k).await.unwrap(), model.get(&k).copied());
    }

    // Ranges with random bounds (present keys or random bytes, some shorter than a key) and limits.
    let random_bound = |rng: &mut StdRng| -> Vec<u8> {
        if !keys.is_empty() && rng.random_bool(0.5) {
            keys[rng.random_range(0..keys.len())].clone()
        } else {
            let len = rng.random_range(1..=key_len);
            (0..len).map(|_| rng.random()).collect()
        }
    };
    // Wide ranges over big trees are capped so the test stays fast; the full scan above covers every entry.
    let cap = if model.len() <= 5_000 {
        usize::MAX
    } else {
        1_000
    };
    for _ in 0..40 {
        let (mut a, mut b) = (random_bound(rng), random_bound(rng));
        if a > b {
            std::mem::swap(&mut a, &mut b);
        }
        let limit = if rng.random_bool(0.5) {
            cap
        } else {
            rng.random_range(0..50)
        };
        let got = r.range(&a[..]..&b[..], limit).await.unwrap();
        let want: Vec<(Vec<u8>, u64)> = model
            .range::<[u8], _>((Bound::Included(&a[..]), Bound::Excluded(&b[..])))
            .take(limit)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(got, want, "range {a:02x?}..{b:02x?} limit {limit}");

        // Exclusive start, inclusive end through `visit`, stopped by the callback.
        let mut got = Vec::new();
        r.visit(Bound::Excluded(&a), Bound::Included(&b), |k, v| {
            got.push((k.to_vec(), v));
            if got.len() < cap {
                ControlFlow::Continue(())
            } else {
                ControlFlow::Break(())
            }
        })
        .await
        .unwrap();
        let want: Vec<(Vec<u8>, u64)> = model
            .range::<[u8], _>((Bound::Excluded(&a[..]), Bound::Included(&b[..])))
            .take(cap)
            .map(|(k, v)| (k.clone(), *v))
            .collect();
        assert_eq!(got, want);
    }
}

#[rstest]
fn matches_model(
    #[values(IMAGE_INDEX_KEY_SIZE, DELTA_INDEX_KEY_SIZE)] key_len: usize,
    #[values(1, 2, 300, 5_000, 200_000)] n: usize,
) {
    let mut rng = StdRng::seed_from_u64(n as u64 * 31 + key_len as u64);
    let model = random_model(&mut rng, key_len, n);
    let (summary, source) = build(key_len, &model);
    if n >= 5_000 {
        assert!(summary.depth >= 2, "big trees have internal pages");
    }
    let r = reader(&summary, source);
    // Trees up to 5k entries: every key is looked up; bigger ones: 5k evenly spread keys (the full scan
    // still checks every entry).
    block_on(check_against_model(&r, &model, key_len, &mut rng, 5_000));
}

#[test]
fn prefix_compression_packs_clustered_keys() {
    // 10k LSNs of one key: every page shares the 16-byte key (and more), so a leaf holds
    // (8172 - prefix) / (suffix + 8) entries instead of 8172 / 32 = 255.
    let model: Model = (0..10_000u64)
        .map(|lsn| (delta_index_key(Key::from_u128(7), Lsn(lsn)).to_vec(), lsn))
        .collect();
    let (summary, source) = build(DELTA_INDEX_KEY_SIZE, &model);
    let leaves = summary.num_pages as usize - 1;
    assert!(
        leaves * 255 < 10_000 * 2 / 3,
        "{leaves} leaves: prefix compression did not pack the keys"
    );
    let r = reader(&summary, source);
    let mut rng = StdRng::seed_from_u64(1);
    block_on(check_against_model(
        &r,
        &model,
        DELTA_INDEX_KEY_SIZE,
        &mut rng,
        10_000,
    ));
}

#[test]
fn empty_tree() {
    let (summary, source) = build(16, &Model::new());
    let r = reader(&summary, source);
    block_on(async {
        assert_eq!(r.get(&[0; 16]).await.unwrap(), None);
        assert!(scan_all(&r).await.unwrap().is_empty());
        assert!(r
            .range(&[0u8][..]..&[0xffu8][..], 10)
            .await
            .unwrap()
            .is_empty());
    });
}

#[test]
fn wrong_key_length_lookup_is_an_error() {
    let model: Model = [(vec![1u8; 16], 1)].into();
    let (summary, source) = build(16, &model);
    let r = reader(&summary, source);
    assert!(matches!(
        block_on(r.get(&[1u8; 15])),
        Err(BtreeReadError::WrongKeyLength {
            expected: 16,
            got: 15
        })
    ));
}

#[test]
fn reader_rejects_root_outside_index() {
    assert!(matches!(
        BtreeReader::new(MemPageSource::new(), 16, 3, 3),
        Err(FormatError::BadPage { page: 3, .. })
    ));
    assert!(BtreeReader::new(MemPageSource::new(), 0, 0, 1).is_err());
}

#[test]
fn missing_page_is_a_source_error() {
    let model = random_model(&mut StdRng::seed_from_u64(5), 16, 2000);
    let (summary, source) = build(16, &model);
    let mut short = MemPageSource::new();
    for p in &source.pages()[1..] {
        short.push(p.clone());
    }
    // Same tree, but the reader believes pages are numbered from the source's start.
    let r = BtreeReader::new(short, 16, summary.root_page, summary.num_pages).unwrap();
    let err = block_on(scan_all(&r)).unwrap_err();
    assert!(
        matches!(err, BtreeReadError::Source { page, .. } if page == summary.root_page),
        "{err:?}"
    );
}

/// A small tree: one root over two leaves.
fn small_tree() -> (BtreeSummary, MemPageSource, Model) {
    let model: Model = (0..600u64)
        .map(|i| {
            (
                delta_index_key(Key::from_u128(u128::from(i) * 1_000_003), Lsn(i)).to_vec(),
                i,
            )
        })
        .collect();
    let (summary, source) = build(DELTA_INDEX_KEY_SIZE, &model);
    assert_eq!((summary.depth, summary.num_pages), (2, 3));
    (summary, source, model)
}

fn replace_page(source: &MemPageSource, page_no: usize, page: Vec<u8>) -> MemPageSource {
    let mut out = MemPageSource::new();
    for (i, p) in source.pages().iter().enumerate() {
        out.push(if i == page_no {
            Bytes::from(page.clone())
        } else {
            p.clone()
        });
    }
    out
}

#[test]
fn every_bit_flip_is_detected() {
    let (_, source, _) = small_tree();
    for page_no in 0..source.len() {
        let mut page = source.pages()[page_no].to_vec();
        // Page level, exhaustively: every bit of every page.
        for byte in 0..PAGE_SIZE {
            for bit in 0..8 {
                page[byte] ^= 1 << bit;
                let err = page::PageView::parse(&page, page_no as u32, DELTA_INDEX_KEY_SIZE)
                    .expect_err("flip must be detected");
                assert!(
                    matches!(err, FormatError::ChecksumMismatch { page, .. } | FormatError::BadPage { page, .. } if page as usize == page_no),
                    "page {page_no} byte {byte} bit {bit}: {err:?}"
                );
                page[byte] ^= 1 << bit;
            }
        }
    }
}

/// Through the reader: a flipped bit in any page surfaces as a typed error naming that page; lookups never
/// return a wrong value. (Every byte with one bit each; [`every_bit_flip_is_detected`] covers all bits.)
#[test]
fn bit_flips_surface_through_the_reader() {
    let (summary, source, model) = small_tree();
    let some_key = model.keys().nth(300).unwrap().clone();
    for page_no in 0..source.len() {
        let mut page = source.pages()[page_no].to_vec();
        for byte in (0..PAGE_SIZE).step_by(3) {
            let bit = byte % 8;
            page[byte] ^= 1 << bit;
            let r = reader(&summary, replace_page(&source, page_no, page.clone()));
            // A full scan reads every page, so it must hit the flipped one.
            let err = block_on(r.scan(|_, _| ControlFlow::Continue(())))
                .expect_err("flip must be detected");
            let typed = matches!(
                err,
                BtreeReadError::Format(FormatError::ChecksumMismatch { page, .. } | FormatError::BadPage { page, .. })
                    if page as usize == page_no
            );
            assert!(typed, "page {page_no} byte {byte} bit {bit}: {err:?}");
            match block_on(r.get(&some_key)) {
                Ok(v) => assert_eq!(v, model.get(&some_key).copied()),
                Err(BtreeReadError::Format(_)) => {}
                Err(e) => panic!("unexpected error {e:?}"),
            }
            page[byte] ^= 1 << bit;
        }
    }
}

#[test]
fn truncated_and_oversized_pages_are_detected() {
    let (summary, source, _) = small_tree();
    for page_no in 0..source.len() {
        let full = source.pages()[page_no].to_vec();
        for len in [0, 1, 20, PAGE_SIZE / 2, PAGE_SIZE - 1, PAGE_SIZE + 1] {
            let mut page = full.clone();
            page.resize(len, 0);
            let r = reader(&summary, replace_page(&source, page_no, page));
            let err = block_on(scan_all(&r)).unwrap_err();
            assert!(
                matches!(err, BtreeReadError::Format(FormatError::BadPage { page, .. }) if page as usize == page_no),
                "page {page_no} len {len}: {err:?}"
            );
        }
    }
}

/// Pages with valid checksums put in the wrong places: the structural checks must catch them.
#[test]
fn misplaced_valid_pages_are_detected() {
    let (summary, source, _) = small_tree();
    let pages = source.pages();
    let scan_err = |source: MemPageSource, root: u32| {
        let r = BtreeReader::new(source, DELTA_INDEX_KEY_SIZE, root, summary.num_pages).unwrap();
        block_on(scan_all(&r)).unwrap_err()
    };
    // A leaf as root is fine on its own (it is a valid one-page tree), but a leaf where the root belongs
    // is reported because its page number differs.
    let mut swapped = MemPageSource::new();
    for i in [0, 2, 1] {
        swapped.push(pages[i].clone());
    }
    assert!(matches!(
        scan_err(swapped, 2),
        BtreeReadError::Format(FormatError::BadPage { .. })
    ));

    // A root pointing at itself or upwards: refused before any cycle can form.
    let (mut b, mut model) = (BtreeBuilder::new(4).unwrap(), Vec::new());
    for i in 0u32..3000 {
        b.append(&i.to_be_bytes(), u64::from(i)).unwrap();
        model.extend(b.drain_pages());
    }
    let (s, rest) = b.finish().unwrap();
    model.extend(rest);
    let root = s.root_page as usize;
    // Rewrite the root's first child pointer to the root itself, with a valid CRC.
    let root_view = page::PageView::parse(&model[root].bytes[..], s.root_page, 4).unwrap();
    let n = root_view.len();
    let mut raw = model[root].bytes.to_vec();
    let value0 = page::HEADER_LEN
        + usize::from(raw[page::PREFIX_LEN_OFFSET])
        + n * (4 - usize::from(raw[page::PREFIX_LEN_OFFSET]));
    raw[value0..value0 + 8].copy_from_slice(&u64::from(s.root_page).to_be_bytes());
    let crc = crc32c::crc32c(&raw[page::PAGE_NO_OFFSET..]);
    raw[page::CRC_OFFSET..page::PAGE_NO_OFFSET].copy_from_slice(&crc.to_be_bytes());
    let mut src: MemPageSource = model.into_iter().collect();
    src = replace_page(&src, root, raw);
    let r = BtreeReader::from_summary(src, &s).unwrap();
    let err = block_on(scan_all(&r)).unwrap_err();
    assert!(
        matches!(err, BtreeReadError::Format(FormatError::BadPage { page, .. }) if page == s.root_page),
        "{err:?}"
    );
    assert!(block_on(r.get(&0u32.to_be_bytes())).is_err());
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Arbitrary small maps over a small alphabet (long shared prefixes, many near-duplicates).
    #[test]
    fn proptest_matches_model(
        entries in proptest::collection::btree_map(proptest::collection::vec(0u8..4, 16), any::<u64>(), 0..1500),
        seed in any::<u64>(),
    ) {
        let (summary, source) = build(16, &entries);
        let r = reader(&summary, source);
        block_on(check_against_model(&r, &entries, 16, &mut StdRng::seed_from_u64(seed), 2000));
    }

    #[test]
    fn proptest_out_of_order_is_refused(keys in proptest::collection::vec(any::<[u8; 3]>(), 2..50)) {
        let mut b = BtreeBuilder::new(3).unwrap();
        let mut last: Option<[u8; 3]> = None;
        for (i, k) in keys.iter().enumerate() {
            let res = b.append(k, 0);
            if last.is_some_and(|l| *k <= l) {
                prop_assert_eq!(res, Err(BtreeBuildError::KeyNotIncreasing { entry: b.num_entries() }));
            } else {
                prop_assert!(res.is_ok(), "entry {}", i);
                last = Some(*k);
            }
        }
    }
}

#[test]
fn common_prefix_len_matches_a_byte_by_byte_count() {
    use super::page::common_prefix_len;
    let naive = |a: &[u8], b: &[u8]| a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let mut x = 0x2545_f491_4f6c_dd1du64;
    for len in [0usize, 1, 7, 8, 9, 16, 23, 24, 25, 40] {
        for _ in 0..200 {
            let a: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    (x % 3) as u8
                })
                .collect();
            let mut b = a.clone();
            if len > 0 {
                let at = (x as usize) % len;
                b[at] ^= 1 << (x % 8);
            }
            assert_eq!(common_prefix_len(&a, &b), naive(&a, &b), "{a:?} {b:?}");
            assert_eq!(common_prefix_len(&a, &a), len);
            assert_eq!(
                common_prefix_len(&a, &b[..len / 2]),
                naive(&a, &b[..len / 2])
            );
        }
    }
}
