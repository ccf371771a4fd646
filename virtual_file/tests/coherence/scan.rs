//! Scans for `cache_coherence_model.rs`: [`collect`] runs a [`Scan`] (to its end, with some `next_chunk`
//! futures dropped after their first poll, or abandoned with reads in flight after some chunks) and
//! keeps what it handed out; [`check_range`] and [`check_extents`] compare that with the file's bytes.

use std::ops::{Bound, Range};

use virtual_file::{Error, Scan};

use super::poll_once;

/// More `next_chunk` calls than any scan of the model's files needs: a scan still going after them
/// hands out chunks without end.
const MAX_CALLS: usize = 100_000;

/// How [`collect`] drives a scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Drive {
    /// `next_chunk` until `None` (or an error).
    ToEnd,
    /// As `ToEnd`, but these calls (counted from 0) are polled once and dropped. A call that completed
    /// in its one poll hands out its chunk as any other.
    DropPolls(Vec<usize>),
    /// The scan is dropped after this many chunks (its reads in flight left to finish on their own).
    Abandon(usize),
}

/// What a scan handed out.
#[derive(Debug, Default)]
pub struct Collected {
    /// (offset, bytes) of each chunk, in the order handed out.
    pub chunks: Vec<(u64, Vec<u8>)>,
    /// The error that ended the scan, and whether the call after it failed too (a failed scan stays
    /// failed).
    pub error: Option<(Error, bool)>,
    /// `next_chunk` returned `None`.
    pub ended: bool,
    /// `next_chunk` calls dropped while still pending.
    pub dropped_pending: usize,
    /// Reads in flight when the scan was abandoned.
    pub in_flight_at_drop: usize,
}

/// Drives `scan` as `drive` says and returns what it handed out.
pub async fn collect(mut scan: Scan, drive: &Drive) -> Collected {
    let mut out = Collected::default();
    for call in 0..MAX_CALLS {
        if let Drive::Abandon(n) = drive {
            if out.chunks.len() == *n {
                out.in_flight_at_drop = scan.in_flight();
                drop(scan);
                return out;
            }
        }
        let res = match drive {
            Drive::DropPolls(calls) if calls.contains(&call) => {
                match poll_once(scan.next_chunk()).await {
                    Some(res) => res,
                    None => {
                        out.dropped_pending += 1;
                        continue;
                    }
                }
            }
            _ => scan.next_chunk().await,
        };
        match res {
            Ok(Some(chunk)) => out.chunks.push((chunk.offset, chunk.bytes.to_vec())),
            Ok(None) => {
                out.ended = true;
                return out;
            }
            Err(e) => {
                let failed_again = scan.next_chunk().await.is_err();
                out.error = Some((e, failed_again));
                return out;
            }
        }
    }
    out
}

/// The bytes `scan(bounds)` must hand out of a file of `size` bytes: `bounds` clipped to the size.
pub fn expected_range(bounds: (Bound<u64>, Bound<u64>), size: u64) -> Range<u64> {
    let start = match bounds.0 {
        Bound::Included(s) => s,
        Bound::Excluded(s) => s + 1,
        Bound::Unbounded => 0,
    };
    let end = match bounds.1 {
        Bound::Included(e) => e + 1,
        Bound::Excluded(e) => e,
        Bound::Unbounded => u64::MAX,
    }
    .min(size);
    start.min(end)..end
}

/// How chunks disagreed with the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScanCheck {
    Good,
    /// A byte that is not the file's (file offset, ours, the file's).
    Stale {
        at: u64,
        got: u8,
        real: u8,
    },
    /// The chunks do not tile what they should: a gap, an overlap, a wrong offset, an empty or
    /// oversized chunk, too few or too many chunks.
    Shape(String),
}

fn first_difference(got: &[u8], want: &[u8], offset: u64) -> ScanCheck {
    match got.iter().zip(want).position(|(a, b)| a != b) {
        Some(i) => ScanCheck::Stale {
            at: offset + i as u64,
            got: got[i],
            real: want[i],
        },
        None => ScanCheck::Good,
    }
}

/// Checks the chunks of a scan of `range` of `real` (already clipped to the file's size): in order, back
/// to back from `range.start`, none empty, none longer than `read_size`, each the file's bytes, and,
/// when the scan `ended`, reaching `range.end` exactly.
pub fn check_range(
    chunks: &[(u64, Vec<u8>)],
    real: &[u8],
    range: Range<u64>,
    read_size: usize,
    ended: bool,
) -> ScanCheck {
    let mut at = range.start;
    for (i, (offset, bytes)) in chunks.iter().enumerate() {
        if *offset != at {
            return ScanCheck::Shape(format!("chunk {i} at {offset}, expected at {at}"));
        }
        if bytes.is_empty() || bytes.len() > read_size {
            return ScanCheck::Shape(format!(
                "chunk {i} at {offset} is {} bytes (reads of {read_size})",
                bytes.len()
            ));
        }
        let end = at + bytes.len() as u64;
        if end > range.end {
            return ScanCheck::Shape(format!(
                "chunk {i} at {offset} ends at {end}, past the range's end {}",
                range.end
            ));
        }
        let want = &real[at as usize..end as usize];
        let check = first_difference(bytes, want, at);
        if check != ScanCheck::Good {
            return check;
        }
        at = end;
    }
    if ended && at != range.end {
        return ScanCheck::Shape(format!(
            "ended at {at} after {} chunk(s), the range ends at {}",
            chunks.len(),
            range.end
        ));
    }
    ScanCheck::Good
}

/// Checks the chunks of a `scan_extents` of `extents` (all within `real`): one chunk per extent, in
/// order, each exactly its extent's bytes.
pub fn check_extents(chunks: &[(u64, Vec<u8>)], real: &[u8], extents: &[Range<u64>]) -> ScanCheck {
    if chunks.len() != extents.len() {
        return ScanCheck::Shape(format!(
            "{} chunk(s) for {} extent(s)",
            chunks.len(),
            extents.len()
        ));
    }
    for (i, ((offset, bytes), extent)) in chunks.iter().zip(extents).enumerate() {
        if *offset != extent.start || bytes.len() as u64 != extent.end - extent.start {
            return ScanCheck::Shape(format!(
                "chunk {i} is {offset}+{}, its extent {extent:?}",
                bytes.len()
            ));
        }
        let want = &real[extent.start as usize..extent.end as usize];
        let check = first_difference(bytes, want, extent.start);
        if check != ScanCheck::Good {
            return check;
        }
    }
    ScanCheck::Good
}
