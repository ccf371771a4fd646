//! Planning vectored reads: which file ranges to read to fetch a set of blobs.
//!
//! Input: blob extents (`[offset, next blob's offset)`), in any order, possibly repeated. Output: reads,
//! each an aligned file range covering a run of blobs sorted by offset. Blobs are merged into one read
//! while they are close (the gap between one blob's end and the next one's start is at most
//! [`MAX_MERGE_GAP`]) and the merged read stays within the size limit ([`MAX_VECTORED_READ`] for lookups).
//! A blob larger than the limit is read on its own, in one read of its own size.
//!
//! Every read starts at its first blob's offset rounded down to the alignment and ends at its last blob's
//! end rounded up, clamped to the file length, so the reads are valid `O_DIRECT` reads (the layer file's
//! length is a multiple of 8 KiB, so the clamp keeps the alignment).

use std::ops::Range;

/// Largest merged read of point and vectored lookups.
pub const MAX_VECTORED_READ: u64 = 128 * 1024;
/// Largest read of a full scan.
pub const SCAN_READ: u64 = 1024 * 1024;
/// Blobs further apart than this are not merged: reading the gap would cost more than a second IO.
pub const MAX_MERGE_GAP: u64 = 16 * 1024;

/// One blob to fetch; `tag` says where its value goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct BlobRead {
    pub extent: Range<u64>,
    pub tag: usize,
}

/// One read: the aligned file range, and the blobs it serves (a range of the sorted blob list).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ReadChunk {
    pub range: Range<u64>,
    pub blobs: Range<usize>,
}

impl ReadChunk {
    pub fn len(&self) -> u64 {
        self.range.end - self.range.start
    }
}

/// Sorts `blobs` by offset and groups them into reads of at most `max_read` bytes (except a single blob
/// larger than that), aligned to `align` (a power of two) and clamped to `file_len`.
pub(crate) fn plan_reads(
    blobs: &mut [BlobRead],
    max_read: u64,
    align: u64,
    file_len: u64,
) -> Vec<ReadChunk> {
    blobs.sort_by_key(|b| (b.extent.start, b.tag));
    let down = |x: u64| x - x % align;
    let up = |x: u64| x.div_ceil(align).saturating_mul(align).min(file_len);
    let mut chunks: Vec<ReadChunk> = Vec::new();
    // End of the blobs covered by the last chunk (before alignment).
    let mut covered_end = 0u64;
    for (i, blob) in blobs.iter().enumerate() {
        let start = down(blob.extent.start);
        let end = up(blob.extent.end);
        if let Some(last) = chunks.last_mut() {
            let close = blob.extent.start <= covered_end.saturating_add(MAX_MERGE_GAP);
            let merged_end = last.range.end.max(end);
            if close && merged_end - last.range.start <= max_read {
                last.range.end = merged_end;
                last.blobs.end = i + 1;
                covered_end = covered_end.max(blob.extent.end);
                continue;
            }
        }
        chunks.push(ReadChunk {
            range: start..end.max(start),
            blobs: i..i + 1,
        });
        covered_end = blob.extent.end;
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reads(extents: &[(u64, u64)]) -> Vec<BlobRead> {
        extents
            .iter()
            .enumerate()
            .map(|(tag, &(s, e))| BlobRead { extent: s..e, tag })
            .collect()
    }

    #[test]
    fn adjacent_blobs_merge_up_to_the_limit() {
        // 100 blobs of 3000 bytes back to back from 8192.
        let ext: Vec<(u64, u64)> = (0..100)
            .map(|i| (8192 + i * 3000, 8192 + (i + 1) * 3000))
            .collect();
        let mut blobs = reads(&ext);
        let chunks = plan_reads(&mut blobs, MAX_VECTORED_READ, 512, 1 << 30);
        assert!(chunks.len() > 1);
        let mut next_blob = 0;
        for c in &chunks {
            assert!(c.len() <= MAX_VECTORED_READ, "{c:?}");
            assert_eq!(c.range.start % 512, 0);
            assert_eq!(c.range.end % 512, 0);
            assert_eq!(c.blobs.start, next_blob);
            next_blob = c.blobs.end;
            for b in &blobs[c.blobs.clone()] {
                assert!(c.range.start <= b.extent.start && b.extent.end <= c.range.end);
            }
        }
        assert_eq!(next_blob, 100);
        // Greedy: 128 KiB holds about 43 of them.
        assert!(chunks.len() <= 3, "{}", chunks.len());
    }

    #[test]
    fn far_apart_blobs_are_separate_and_order_is_restored() {
        let mut blobs = reads(&[
            (900_000, 900_100),
            (8192, 8200),
            (20_000, 20_010),
            (8200, 8300),
        ]);
        let chunks = plan_reads(&mut blobs, MAX_VECTORED_READ, 512, 1 << 30);
        let tags: Vec<usize> = blobs.iter().map(|b| b.tag).collect();
        assert_eq!(tags, [1, 3, 2, 0]);
        // 8192..8300 and 20000 are within the gap limit; 900000 is not.
        assert_eq!(chunks.len(), 2);
        assert_eq!(chunks[0].range, 8192..20_480);
        assert_eq!(chunks[0].blobs, 0..3);
        assert_eq!(chunks[1].range, 899_584..900_608);
    }

    #[test]
    fn big_blob_alone_and_clamped() {
        let mut blobs = reads(&[(8192, 8292), (8292, 8292 + 300_000), (308_292, 308_300)]);
        let chunks = plan_reads(&mut blobs, MAX_VECTORED_READ, 512, 308_736);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].range, 8192..308_736);
        assert_eq!(chunks[2].range, 308_224..308_736);
    }

    #[test]
    fn duplicates_share_a_read() {
        let mut blobs = reads(&[(10_000, 10_050), (10_000, 10_050), (10_050, 10_060)]);
        let chunks = plan_reads(&mut blobs, MAX_VECTORED_READ, 512, 1 << 20);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].range, 9728..10_240);
        assert_eq!(chunks[0].blobs, 0..3);
        assert!(plan_reads(&mut [], MAX_VECTORED_READ, 512, 1 << 20).is_empty());
    }
}
