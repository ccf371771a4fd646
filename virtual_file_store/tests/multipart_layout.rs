//! Multipart uploads with random part sizes (sector-sized, tiny, unaligned), several parts in flight and
//! finishing in any order: the object holds exactly the bytes put, read through the store and straight
//! from the file, in every mode x engine. Also the `MultipartStore` path with parts put out of index
//! order (copied into place at completion).

mod common;

use bytes::Bytes;
use common::io_matrix;
use futures::stream::{FuturesUnordered, StreamExt};
use io_engine::IoEngineKind;
use object_store::multipart::MultipartStore;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::IoMode;

fn random_sizes(rng: &mut StdRng, n: usize) -> Vec<usize> {
    (0..n)
        .map(|_| match rng.random_range(0..6) {
            0 => rng.random_range(0..8),
            1 => 512 * rng.random_range(1..4),
            2 => 4096 + rng.random_range(0..3) - 1,
            3 => rng.random_range(1..600),
            _ => rng.random_range(1..200_000),
        })
        .collect()
}

fn payloads(rng: &mut StdRng, sizes: &[usize]) -> Vec<Bytes> {
    sizes
        .iter()
        .map(|&n| {
            let mut v = vec![0u8; n];
            rng.fill_bytes(&mut v);
            Bytes::from(v)
        })
        .collect()
}

async fn check(store: &virtual_file_store::VirtualFileStore, path: &Path, expected: &[u8]) {
    let got = store.get(path).await.unwrap().bytes().await.unwrap();
    assert_eq!(got.len(), expected.len());
    assert!(got == expected, "bytes differ through the store");
    let on_disk = std::fs::read(store.root().join(path.as_ref())).unwrap();
    assert!(on_disk == expected, "bytes differ on disk");
    // every range of a few sizes, unaligned
    for (start, len) in [
        (0usize, 1usize),
        (1, 511),
        (511, 2),
        (4095, 4098),
        (3, 70_000),
    ] {
        if start + len <= expected.len() {
            let r = store
                .get_range(path, start as u64..(start + len) as u64)
                .await
                .unwrap();
            assert!(r == expected[start..start + len], "range {start}+{len}");
        }
    }
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_in_flight_land_in_place(mode: IoMode, kind: IoEngineKind) {
    let (store, _dir) = common::store(mode, kind);
    for seed in 0..6u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(1..24);
        let sizes = random_sizes(&mut rng, n);
        let parts = payloads(&mut rng, &sizes);
        let path = Path::from(format!("t/obj-{seed}"));
        let mut upload = store.put_multipart(&path).await.unwrap();
        // start every part, then drive them together: they finish in any order
        let mut in_flight: FuturesUnordered<_> = parts
            .iter()
            .map(|p| upload.put_part(p.clone().into()))
            .collect();
        while let Some(r) = in_flight.next().await {
            r.unwrap();
        }
        upload.complete().await.unwrap();
        check(&store, &path, &parts.concat()).await;
    }
    // no temp files left
    let leftover: Vec<_> = std::fs::read_dir(store.root().join("t"))
        .unwrap()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().contains("#vfs."))
        .collect();
    assert!(leftover.is_empty(), "{leftover:?}");
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multipart_store_out_of_order(mode: IoMode, kind: IoEngineKind) {
    let (store, _dir) = common::store(mode, kind);
    for seed in 10..14u64 {
        let mut rng = StdRng::seed_from_u64(seed);
        let n = rng.random_range(2..10);
        let sizes = random_sizes(&mut rng, n);
        let parts = payloads(&mut rng, &sizes);
        let path = Path::from(format!("m/obj-{seed}"));
        let id = store.create_multipart(&path).await.unwrap();
        let mut order: Vec<usize> = (0..parts.len()).collect();
        // a shuffled order of index
        for i in (1..order.len()).rev() {
            order.swap(i, rng.random_range(0..=i));
        }
        let mut ids = vec![None; parts.len()];
        let puts = order.iter().map(|&i| {
            let (store, path, id, part) = (&store, &path, &id, parts[i].clone());
            async move { (i, store.put_part(path, id, i, part.into()).await.unwrap()) }
        });
        for (i, part_id) in futures::future::join_all(puts).await {
            ids[i] = Some(part_id);
        }
        let ids: Vec<_> = ids.into_iter().map(Option::unwrap).collect();
        assert!(store.head(&path).await.is_err(), "visible before complete");
        // a wrong list (two parts swapped, or one missing) is refused and leaves the upload for a retry
        let mut swapped = ids.clone();
        swapped.swap(0, 1);
        assert!(store.complete_multipart(&path, &id, swapped).await.is_err());
        let short = ids[..ids.len() - 1].to_vec();
        assert!(store.complete_multipart(&path, &id, short).await.is_err());
        assert!(
            store.head(&path).await.is_err(),
            "visible after a refused complete"
        );
        store.complete_multipart(&path, &id, ids).await.unwrap();
        check(&store, &path, &parts.concat()).await;
    }
}

#[apply(io_matrix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_ranges_match_the_object(mode: IoMode, kind: IoEngineKind) {
    let (store, _dir) = common::store(mode, kind);
    let mut rng = StdRng::seed_from_u64(99);
    let mut data = vec![0u8; 3 << 20];
    rng.fill_bytes(&mut data);
    let path = Path::from("r/data");
    store.put(&path, data.clone().into()).await.unwrap();
    let ranges: Vec<_> = (0..200)
        .map(|_| {
            let s = rng.random_range(0..data.len() as u64);
            let e = (s + rng.random_range(0..100_000)).min(data.len() as u64);
            s..e
        })
        .chain([0..data.len() as u64, 5..5])
        .collect();
    let got = store.get_ranges(&path, &ranges).await.unwrap();
    for (r, b) in ranges.iter().zip(got) {
        assert!(b == data[r.start as usize..r.end as usize], "{r:?}");
    }
    let past_end = vec![0..data.len() as u64 + 1, 0..1];
    let past = store.get_ranges(&path, &past_end).await;
    assert!(past.is_err());
}
