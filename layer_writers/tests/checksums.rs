//! Format version 2: every blob carries a CRC32C of its header and stored bytes, checked by every read;
//! `verify` checks every byte; a version-1 file is refused by name.

mod common;

use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use common::{all_contexts, context};
use io_engine::IoEngineKind;
use layer_writers::format::summary::SUMMARY_SIZE;
use layer_writers::{
    DeltaLayerReader, DeltaLayerWriter, FormatError, ImageLayerReader, ImageLayerWriter, Key,
    LayerError, Lsn,
};
use virtual_file::{IoContext, IoMode};

/// Offset of the summary CRC and the version byte (see the summary module's diagram).
const SUMMARY_CRC_OFFSET: usize = 76;
const VERSION_LOW_BYTE: u64 = 5;

fn flip(path: &Path, offset: u64, mask: u8) {
    let f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    let mut b = [0u8; 1];
    f.read_exact_at(&mut b, offset).unwrap();
    f.write_all_at(&[b[0] ^ mask], offset).unwrap();
}

async fn hello_delta(ctx: &IoContext, dir: &Path, name: &str) -> PathBuf {
    let mut w = DeltaLayerWriter::new(ctx, dir, name).await.unwrap();
    w.put_value(Key::from_u128(5), Lsn(7), true, b"hello, world")
        .await
        .unwrap();
    w.finish().await.unwrap().path
}

/// The case from the issue: one value, bit 0 of byte 8193 flipped ("hello" -> "iello"). Every read path
/// in every mode and engine reports a blob checksum mismatch naming the file, offset, key and LSN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn value_bit_flip_is_a_checksum_error_in_every_mode() {
    let dir = tempfile::tempdir().unwrap();
    let writer_ctx = context(IoMode::Buffered, IoEngineKind::StdFs).unwrap();
    let path = hello_delta(&writer_ctx, dir.path(), "hello").await;
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[8193..8205], b"hello, world");
    flip(&path, 8193, 1);
    for (label, ctx) in all_contexts() {
        let r = DeltaLayerReader::open(&ctx, &path).await.unwrap();
        let errs = [
            r.get(Key::from_u128(5), Lsn(0)..Lsn(100))
                .await
                .unwrap_err(),
            r.get_many(&[(Key::from_u128(5), Lsn(7)..Lsn(8))])
                .await
                .unwrap_err(),
            r.scan().await.unwrap_err(),
            r.verify().await.unwrap_err(),
        ];
        for err in errs {
            match &err {
                LayerError::Format {
                    path: p,
                    offset: 8192,
                    key: Some(k),
                    lsn: Some(Lsn(7)),
                    source: FormatError::BlobChecksumMismatch { .. },
                } if p == &path && *k == Key::from_u128(5) => {}
                other => panic!("{label}: unexpected {other:?}"),
            }
            let text = err.to_string();
            assert!(
                text.contains("offset 8192") && text.contains("blob checksum mismatch"),
                "{label}: {text}"
            );
        }
    }
}

/// Flipping the compression bits of a zstd blob's header used to return the compressed bytes as the
/// image; the CRC covers the header, so it is now a checksum error.
#[tokio::test]
async fn compression_bit_flip_is_detected() {
    let ctx = context(IoMode::DirectRw, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = ImageLayerWriter::new(&ctx, dir.path(), "img", Lsn(3))
        .await
        .unwrap();
    w.put_image(Key::from_u128(1), &vec![7u8; 5000])
        .await
        .unwrap();
    let path = w.finish().await.unwrap().path;
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[SUMMARY_SIZE] >> 4, 0b1001, "long header, zstd");
    let r = ImageLayerReader::open(&ctx, &path).await.unwrap();
    assert_eq!(
        r.get(Key::from_u128(1)).await.unwrap(),
        Some(vec![7u8; 5000])
    );
    drop(r);
    flip(&path, SUMMARY_SIZE as u64, 0x10); // zstd -> none
    let r = ImageLayerReader::open(&ctx, &path).await.unwrap();
    for err in [
        r.get(Key::from_u128(1)).await.unwrap_err(),
        r.scan().await.unwrap_err(),
        r.verify().await.unwrap_err(),
    ] {
        assert!(
            matches!(
                err,
                LayerError::Format {
                    source: FormatError::BlobChecksumMismatch { .. },
                    offset: 8192,
                    ..
                }
            ),
            "{err:?}"
        );
    }
}

/// A layer written with format version 1 (same summary layout, version 1, valid CRC) is refused with a
/// clear typed error.
#[tokio::test]
async fn version_1_is_refused_by_name() {
    let ctx = context(IoMode::Buffered, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = hello_delta(&ctx, dir.path(), "v1").await;
    let mut bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes[4..6], [0, 2], "this build writes version 2");
    bytes[VERSION_LOW_BYTE as usize] = 1;
    let crc = crc32c::crc32c(&bytes[..SUMMARY_CRC_OFFSET]);
    bytes[SUMMARY_CRC_OFFSET..SUMMARY_CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    std::fs::write(&path, &bytes).unwrap();
    let err = DeltaLayerReader::open(&ctx, &path).await.unwrap_err();
    assert!(
        matches!(
            err,
            LayerError::Format {
                source: FormatError::UnsupportedVersion {
                    found: 1,
                    supported: 2
                },
                ..
            }
        ),
        "{err:?}"
    );
    assert!(
        err.to_string()
            .contains("unsupported layer format version 1 (this build reads 2)"),
        "{err}"
    );
}

/// The padding between the values and the index is never returned by a read, so reads stay right; the
/// full verify reports it, naming the offset.
#[tokio::test]
async fn padding_flip_is_found_by_verify() {
    let ctx = context(IoMode::Direct, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = hello_delta(&ctx, dir.path(), "pad").await;
    let r = DeltaLayerReader::open(&ctx, &path).await.unwrap();
    let report = r.verify().await.unwrap();
    assert_eq!(report.entries, 1);
    assert_eq!(report.value_bytes, 1 + 12 + 4);
    assert_eq!(report.padding_bytes, 8192 - 17);
    assert_eq!(report.index_pages, 1);
    drop(r);
    let at = 8192 + 17 + 1000;
    flip(&path, at, 0x40);
    let r = DeltaLayerReader::open(&ctx, &path).await.unwrap();
    assert_eq!(
        r.get(Key::from_u128(5), Lsn(0)..Lsn(100)).await.unwrap(),
        vec![(Lsn(7), true, b"hello, world".to_vec())]
    );
    assert_eq!(r.scan().await.unwrap().len(), 1);
    match r.verify().await {
        Err(LayerError::Format {
            offset,
            source:
                FormatError::NonZeroPadding {
                    offset: o,
                    byte: 0x40,
                    ..
                },
            ..
        }) if offset == at && o == at => {}
        other => panic!("unexpected {other:?}"),
    }
}

/// An empty layer verifies (no blobs, no padding); a good image layer with compressed and raw images
/// verifies in every mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn good_layers_verify() {
    let dir = tempfile::tempdir().unwrap();
    let ctx = context(IoMode::Buffered, IoEngineKind::StdFs).unwrap();
    let empty = DeltaLayerWriter::new(&ctx, dir.path(), "empty")
        .await
        .unwrap()
        .finish()
        .await
        .unwrap()
        .path;
    let mut w = ImageLayerWriter::new(&ctx, dir.path(), "img", Lsn(9))
        .await
        .unwrap();
    for k in 0..50u128 {
        let v: Vec<u8> = if k % 2 == 0 {
            vec![k as u8; 3000]
        } else {
            (0..(k as usize * 97) % 4000)
                .map(|i| (i * 31 + k as usize) as u8)
                .collect()
        };
        w.put_image(Key::from_u128(k), &v).await.unwrap();
    }
    let img = w.finish().await.unwrap().path;
    for (label, ctx) in all_contexts() {
        let e = DeltaLayerReader::open(&ctx, &empty).await.unwrap();
        let report = e.verify().await.unwrap();
        assert_eq!(
            (report.entries, report.value_bytes, report.padding_bytes),
            (0, 0, 0),
            "{label}"
        );
        let r = ImageLayerReader::open(&ctx, &img).await.unwrap();
        assert_eq!(r.verify().await.unwrap().entries, 50, "{label}");
    }
}
