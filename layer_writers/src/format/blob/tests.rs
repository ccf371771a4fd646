use super::*;
use crate::format::error::FormatError;
use rstest::rstest;

#[rstest]
#[case(0, 1)]
#[case(1, 1)]
#[case(127, 1)]
#[case(128, 4)]
#[case(129, 4)]
#[case(MAX_BLOB_LEN, 4)]
fn header_round_trip(#[case] len: usize, #[case] expected_header_len: usize) {
    for compression in [Compression::None, Compression::Zstd] {
        let h = encode_header(len, compression).unwrap();
        let want_len = if compression == Compression::Zstd {
            4
        } else {
            expected_header_len
        };
        assert_eq!(h.as_slice().len(), want_len);
        let d = decode_header(h.as_slice()).unwrap();
        assert_eq!(
            d,
            BlobHeader {
                header_len: want_len,
                payload_len: len,
                compression
            }
        );
    }
}

#[test]
fn header_bytes_are_as_documented() {
    assert_eq!(encode_header(5, Compression::None).unwrap().as_slice(), [5]);
    assert_eq!(
        encode_header(0x0123_4567, Compression::None)
            .unwrap()
            .as_slice(),
        [0x81, 0x23, 0x45, 0x67]
    );
    assert_eq!(
        encode_header(0x0123_4567, Compression::Zstd)
            .unwrap()
            .as_slice(),
        [0x91, 0x23, 0x45, 0x67]
    );
    assert_eq!(
        encode_header(3, Compression::Zstd).unwrap().as_slice(),
        [0x90, 0, 0, 3]
    );
}

#[test]
fn too_large() {
    assert!(matches!(
        encode_header(MAX_BLOB_LEN + 1, Compression::None),
        Err(FormatError::TooLarge { len, max }) if len == 1 << 28 && max == MAX_BLOB_LEN as u64
    ));
    let big = vec![0u8; MAX_VALUE_LEN + 1];
    assert!(matches!(
        encode_blob(&big, true),
        Err(FormatError::TooLarge { .. })
    ));
    let blob = encode_blob(&[7; 300], false).unwrap();
    assert!(matches!(
        decode_blob_with_limit(&blob, 299),
        Err(FormatError::TooLarge { len: 300, max: 299 })
    ));
    assert_eq!(decode_blob_with_limit(&blob, 300).unwrap(), vec![7; 300]);
}

#[test]
fn decompression_is_capped() {
    // 1 MiB of zeros compresses to a few bytes; a small limit must stop it without producing it all.
    let blob = encode_blob(&vec![0u8; 1 << 20], true).unwrap();
    assert!(blob.len() < 1000);
    assert!(matches!(
        decode_blob_with_limit(&blob, 4096),
        Err(FormatError::TooLarge {
            len: 4097,
            max: 4096
        })
    ));
}

#[test]
fn unknown_compression() {
    for code in 2u8..8 {
        let b = [0x80 | (code << 4), 0, 0, 1, 0];
        assert!(
            matches!(decode_header(&b), Err(FormatError::UnknownCompression { code: c }) if c == code)
        );
    }
}

#[test]
fn truncated_inputs() {
    assert!(matches!(
        decode_header(&[]),
        Err(FormatError::Truncated {
            needed: 1,
            available: 0,
            ..
        })
    ));
    for n in 1..4 {
        assert!(matches!(
            decode_header(&[0x80, 0, 1, 0][..n]),
            Err(FormatError::Truncated { needed: 4, available, .. }) if available == n
        ));
    }
    for (value, compress) in [
        (vec![1u8; 10], false),
        (vec![2u8; 1000], false),
        (vec![0u8; 1000], true),
    ] {
        let blob = encode_blob(&value, compress).unwrap();
        for cut in 0..blob.len() {
            assert!(
                matches!(
                    decode_blob(&blob[..cut]),
                    Err(FormatError::Truncated { .. })
                ),
                "cut at {cut} of {}",
                blob.len()
            );
        }
        assert_eq!(decode_blob(&blob).unwrap(), value);
    }
}

#[test]
fn compression_only_when_smaller() {
    // Compressible: compressed, long header with the zstd code.
    let zeros = vec![0u8; 10_000];
    let blob = encode_blob(&zeros, true).unwrap();
    assert!(blob.len() < 100);
    assert_eq!(decode_header(&blob).unwrap().compression, Compression::Zstd);
    assert_eq!(decode_blob(&blob).unwrap(), zeros);

    // Not asked: stored raw.
    let blob = encode_blob(&zeros, false).unwrap();
    assert_eq!(blob.len(), 4 + zeros.len() + CRC_LEN);
    assert_eq!(decode_header(&blob).unwrap().compression, Compression::None);

    // Incompressible (random) and tiny values: stored raw even when asked.
    let mut random = vec![0u8; 4096];
    rand::Rng::fill(&mut rand::rng(), &mut random[..]);
    for value in [&random[..], b"", b"a", b"abcabc"] {
        let blob = encode_blob(value, true).unwrap();
        let h = decode_header(&blob).unwrap();
        assert_eq!(h.compression, Compression::None, "len {}", value.len());
        assert_eq!(blob.len(), h.header_len + value.len() + CRC_LEN);
        assert_eq!(decode_blob(&blob).unwrap(), value);
    }
}

#[test]
fn trailing_bytes_are_ignored_and_blobs_chain() {
    let values: Vec<Vec<u8>> = vec![
        vec![],
        vec![1; 127],
        vec![2; 128],
        vec![0; 5000],
        b"xyz".to_vec(),
    ];
    let mut file = Vec::new();
    for (i, v) in values.iter().enumerate() {
        encode_blob_into(v, i % 2 == 1, &mut file).unwrap();
    }
    let mut pos = 0;
    for v in &values {
        let h = decode_header(&file[pos..]).unwrap();
        assert_eq!(&decode_blob(&file[pos..]).unwrap(), v);
        pos += h.total_len();
    }
    assert_eq!(pos, file.len());
}

#[test]
fn corrupt_zstd_payload_is_an_error() {
    let mut blob = encode_blob(&vec![3u8; 5000], true).unwrap();
    assert_eq!(decode_header(&blob).unwrap().compression, Compression::Zstd);
    // Destroy the zstd magic number, with a CRC that matches: the frame itself is refused.
    blob[4] ^= 0xff;
    let n = blob.len() - CRC_LEN;
    let crc = crc32c::crc32c(&blob[..n]);
    blob[n..].copy_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode_blob(&blob),
        Err(FormatError::Decompress { .. })
    ));
}

#[test]
fn crc_trailer_is_as_documented() {
    let blob = encode_blob(b"hello, world", false).unwrap();
    assert_eq!(blob.len(), 1 + 12 + CRC_LEN);
    assert_eq!(blob[0], 12);
    assert_eq!(&blob[1..13], b"hello, world");
    assert_eq!(blob[13..], crc32c::crc32c(&blob[..13]).to_be_bytes());
    let checked = check_blob(&blob).unwrap();
    assert_eq!(checked.payload, b"hello, world");
    assert_eq!(checked.header.total_len(), blob.len());
}

#[test]
fn every_bit_flip_in_a_blob_is_detected() {
    for (value, compress) in [
        (b"hello, world".to_vec(), false),
        (vec![9u8; 300], false),
        (vec![5u8; 3000], true),
    ] {
        let good = encode_blob(&value, compress).unwrap();
        for bit in 0..good.len() * 8 {
            let mut b = good.clone();
            b[bit / 8] ^= 1 << (bit % 8);
            // Never the value: a checksum mismatch, or (a length flip) a header or truncation error.
            match decode_blob(&b) {
                Ok(v) => panic!("bit {bit}: decoded {} bytes", v.len()),
                Err(
                    FormatError::BlobChecksumMismatch { .. }
                    | FormatError::Truncated { .. }
                    | FormatError::UnknownCompression { .. },
                ) => {}
                Err(e) => panic!("bit {bit}: unexpected {e:?}"),
            }
        }
    }
}

#[test]
fn compression_bit_flip_is_a_checksum_mismatch() {
    // The flip that used to hand back the compressed bytes as the value.
    let mut blob = encode_blob(&vec![7u8; 5000], true).unwrap();
    assert_eq!(decode_header(&blob).unwrap().compression, Compression::Zstd);
    blob[0] ^= 0x10; // compression 1 -> 0
    assert_eq!(decode_header(&blob).unwrap().compression, Compression::None);
    assert!(matches!(
        decode_blob(&blob),
        Err(FormatError::BlobChecksumMismatch { .. })
    ));
}

#[test]
fn exact_decoding() {
    for (value, compress) in [
        (vec![], false),
        (vec![7u8; 100], false),
        (vec![7u8; 100], true),
        (vec![1u8; 5000], true),
        (
            (0..5000u32).map(|i| (i * 7919 % 251) as u8).collect(),
            false,
        ),
    ] {
        let blob = encode_blob(&value, compress).unwrap();
        assert_eq!(decode_blob_exact(&blob).unwrap(), value);
        // An extent one byte longer or shorter than the blob is refused (its last 4 bytes are not the
        // CRC of the rest).
        let mut longer = blob.clone();
        longer.push(0);
        assert!(matches!(
            decode_blob_exact(&longer),
            Err(FormatError::BlobChecksumMismatch { .. })
        ));
        if !blob.is_empty() {
            assert!(decode_blob_exact(&blob[..blob.len() - 1]).is_err());
        }
    }
    assert!(matches!(
        decode_blob_exact(&[]),
        Err(FormatError::Truncated { .. })
    ));
    // A CRC that matches but a header that describes another length: the extent check catches it.
    let mut odd = vec![5u8, 1, 2, 3, 4, 5, 6];
    let crc = crc32c::crc32c(&odd);
    odd.extend_from_slice(&crc.to_be_bytes());
    assert!(matches!(
        decode_blob_exact(&odd),
        Err(FormatError::BlobExtentMismatch {
            extent: 11,
            encoded: 10
        })
    ));
    let abc = encode_blob(b"abc", false).unwrap();
    let checked = check_blob_exact(&abc).unwrap();
    assert_eq!(checked.payload, b"abc");
}
