//! Every layer reader on truncated, bit-flipped, overwritten and random files from a seeded generator:
//! typed errors, never a panic. Every byte of a layer is covered by a checksum or a zero check, so a file
//! that differs from the original in any byte must be refused by the reads or by `verify`. A failure
//! names the case and the seed (`CORRUPT_SEED`) to replay it.

mod common;

use std::path::Path;

use common::context;
use io_engine::IoEngineKind;
use layer_writers::{DeltaLayerReader, ImageLayerReader, ImageLayerWriter, Key, Lsn};
use rand::{Rng, SeedableRng};
use test_runner::layer_set::{key_of, write_layer};
use virtual_file::{IoContext, IoMode};

const CASES: u64 = 2500;

/// One corrupted variant of `original`.
fn mutate(rng: &mut rand::rngs::StdRng, original: &[u8]) -> (String, Vec<u8>) {
    let mut data = original.to_vec();
    match rng.random_range(0..5) {
        0 => {
            let len = rng.random_range(0..original.len());
            data.truncate(len);
            (format!("truncate to {len}"), data)
        }
        1 => {
            let flips = rng.random_range(1..=8);
            for _ in 0..flips {
                let bit = rng.random_range(0..data.len() * 8);
                data[bit / 8] ^= 1 << (bit % 8);
            }
            (format!("{flips} bit flips"), data)
        }
        2 => {
            // flips only in the summary and index, where they must be detected
            let page = if rng.random_bool(0.5) {
                0
            } else {
                (data.len() / 8192).saturating_sub(1)
            };
            let bit = page * 8192 * 8 + rng.random_range(0..8192 * 8);
            data[bit / 8] ^= 1 << (bit % 8);
            (
                format!("bit flip at byte {} (summary/index)", bit / 8),
                data,
            )
        }
        3 => {
            let start = rng.random_range(0..data.len());
            let len = rng.random_range(1..=4096.min(data.len() - start));
            rng.fill(&mut data[start..start + len]);
            (format!("{len} random bytes at {start}"), data)
        }
        _ => {
            let len = rng.random_range(0..64 * 1024);
            let mut junk = vec![0u8; len];
            rng.fill(&mut junk[..]);
            if len >= 4 && rng.random_bool(0.5) {
                junk[..4].copy_from_slice(&original[..4]); // the right magic, the rest garbage
            }
            (format!("random file of {len} bytes"), junk)
        }
    }
}

async fn read_delta(ctx: &IoContext, path: &Path) -> Result<usize, String> {
    let r = DeltaLayerReader::open(ctx, path)
        .await
        .map_err(|e| e.to_string())?;
    let all = r.scan().await.map_err(|e| e.to_string())?;
    let got = r
        .get(key_of(7), Lsn(0)..Lsn(u64::MAX - 1))
        .await
        .map_err(|e| e.to_string())?;
    let many = r
        .get_many(&[
            (key_of(1), Lsn(0)..Lsn(u64::MAX - 1)),
            (key_of(100), Lsn(0)..Lsn(u64::MAX - 1)),
        ])
        .await
        .map_err(|e| e.to_string())?;
    r.verify().await.map_err(|e| e.to_string())?;
    Ok(all.len() + got.len() + many.len())
}

async fn read_image(ctx: &IoContext, path: &Path) -> Result<usize, String> {
    let r = ImageLayerReader::open(ctx, path)
        .await
        .map_err(|e| e.to_string())?;
    let all = r.scan().await.map_err(|e| e.to_string())?;
    let one = r.get(Key::from_u128(3)).await.map_err(|e| e.to_string())?;
    let many = r
        .get_many(&[Key::from_u128(1), Key::from_u128(99)])
        .await
        .map_err(|e| e.to_string())?;
    r.verify().await.map_err(|e| e.to_string())?;
    Ok(all.len() + one.map_or(0, |v| v.len()) + many.len())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corrupt_layers_give_typed_errors() {
    let seed = common::seed_from_env("CORRUPT_SEED", 0xBAD_F11E_u64);
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(IoMode::Buffered, IoEngineKind::StdFs);
    let delta = write_layer(&ctx, dir.path(), 5, 0, 120).await.unwrap();
    let mut iw = ImageLayerWriter::new(&ctx, dir.path(), "image", Lsn(0x40))
        .await
        .unwrap();
    for k in 0..150u128 {
        iw.put_image(
            Key::from_u128(k),
            &vec![(k % 251) as u8; (k as usize * 37) % 3000],
        )
        .await
        .unwrap();
    }
    let image = iw.finish().await.unwrap().path;
    let originals = [
        (std::fs::read(&delta).unwrap(), true),
        (std::fs::read(&image).unwrap(), false),
    ];
    let (mut errors, mut detected_meta, mut meta_cases) = (0u64, 0u64, 0u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for case in 0..CASES {
        let (original, is_delta) = &originals[(case % 2) as usize];
        let (what, data) = mutate(&mut rng, original);
        let path = dir.path().join(format!("case-{case}"));
        std::fs::write(&path, &data).unwrap();
        // a different mode and engine now and then: the direct read paths see the same garbage
        let ctx = if case % 10 == 0 {
            context(IoMode::DirectRw, IoEngineKind::TokioEpollUring)
        } else {
            ctx.clone()
        };
        let is_delta = *is_delta;
        let p = path.clone();
        let res = tokio::spawn(async move {
            if is_delta {
                read_delta(&ctx, &p).await
            } else {
                read_image(&ctx, &p).await
            }
        })
        .await
        .unwrap_or_else(|e| {
            panic!("case {case} (CORRUPT_SEED={seed}, {what}): the reader panicked: {e}")
        });
        if res.is_err() {
            errors += 1;
        } else if data != *original {
            panic!("case {case} (CORRUPT_SEED={seed}, {what}): a changed file was accepted");
        }
        if what.contains("summary/index") {
            meta_cases += 1;
            if res.is_err() {
                detected_meta += 1;
            }
        }
        std::fs::remove_file(&path).unwrap();
    }
    assert_eq!(
        detected_meta, meta_cases,
        "every flip in the summary or index is detected"
    );
    assert!(
        errors > CASES / 2,
        "most corrupt files are refused ({errors} of {CASES})"
    );
    eprintln!("corrupt input: {CASES} cases, {errors} typed errors, {meta_cases} summary/index flips all detected");
}
