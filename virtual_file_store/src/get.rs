//! Reads: `get_opts` (ranges, suffixes, the `if_*` conditions on the e_tag and modification time, `head`)
//! and `get_ranges`.
//!
//! Rules:
//! - The object is opened once; its metadata comes from that descriptor (`statx`), so size, e_tag and
//!   bytes belong to one version even while the object is replaced. (Attributes are read by path and
//!   may belong to a newer version if the object is replaced between the open and that read.)
//! - A body is a stream of chunks of at most [`TRANSFER_CHUNK`] bytes, [`READ_AHEAD`] reads in flight
//!   ahead of the consumer, never the whole object in memory; every read's buffer is paid from the
//!   memory budget while the read is in flight (what the consumer keeps is its own memory).
//! - With `O_DIRECT` a range is read as the aligned range around it and the wanted bytes are handed out
//!   without a copy (a `Bytes` over the aligned buffer). Point reads (ranges of at most
//!   [`POINT_READ_MAX`] bytes) of `O_DIRECT` files go through the context's page cache instead.
//! - A range that fits one read (at most [`TRANSFER_CHUNK`] bytes, within one chunk) is read by
//!   `get_opts` itself, together with the open, and handed out as a body of one ready chunk: a random
//!   `get_range` is one request to the engine, and with `std-fs` one hop to the blocking pool
//!   ([`StoreInner::run_io`]). Each read of a longer body, and each read of `get_ranges`, runs through
//!   `run_io` on its own.
//! - `get_ranges` merges ranges less than [`COALESCE_GAP`] apart into one read, reads the merged
//!   ranges concurrently, and slices the answers out of them.

use std::ops::Range;
use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use io_engine::Slice;
use object_store::path::Path;
use object_store::{GetOptions, GetResult, GetResultPayload, Result};
use virtual_file::VirtualFile;

use crate::error::{not_found, not_implemented, StoreError};
use crate::location::object_file;
use crate::object_meta::{get_attributes, FileFacts};
use crate::store_inner::StoreInner;
use crate::transfer_buffers::{TransferBuffers, TRANSFER_CHUNK};

/// Reads of one body in flight ahead of its consumer.
pub const READ_AHEAD: usize = 4;

/// Ranges of at most this many bytes of `O_DIRECT` files are read through the page cache.
pub const POINT_READ_MAX: u64 = 256 << 10;

/// `get_ranges` merges ranges closer than this into one read (`object_store`'s default).
pub const COALESCE_GAP: u64 = object_store::OBJECT_STORE_COALESCE_DEFAULT;

/// An open object: its file and the facts from that descriptor.
pub(crate) struct OpenObject {
    pub file: Arc<VirtualFile>,
    pub facts: FileFacts,
}

/// Opens the object at `location`; a missing object, or a directory, is `NotFound`.
pub(crate) async fn open_object(store: &StoreInner, location: &Path) -> Result<OpenObject> {
    let loc = location.as_ref();
    let path = object_file(&store.root, location).map_err(|e| e.into_object_store(loc))?;
    let file = VirtualFile::open(&store.ctx, &path)
        .await
        .map_err(|e| match e.raw_os_error() {
            // a directory cannot be opened with O_DIRECT: the error says so, but it is no object
            _ if path.is_dir() => not_found(loc, "a directory is no object"),
            _ => StoreError::file("open", loc, e).into_object_store(loc),
        })?;
    let stat = file
        .metadata()
        .await
        .map_err(|e| StoreError::file("stat", loc, e).into_object_store(loc))?;
    if stat.mode & libc::S_IFMT != libc::S_IFREG {
        return Err(not_found(loc, "not a regular file"));
    }
    Ok(OpenObject {
        file: Arc::new(file),
        facts: FileFacts::from_stat(&stat),
    })
}

/// Reads `range` of `file` (at most [`TRANSFER_CHUNK`] bytes beyond alignment) into one buffer paid
/// from the budget, and returns the wanted bytes over it.
pub(crate) async fn read_range(
    store: &StoreInner,
    buffers: &Arc<TransferBuffers>,
    file: &VirtualFile,
    location: &str,
    range: Range<u64>,
) -> Result<Bytes, StoreError> {
    let len = range.end - range.start;
    if len == 0 {
        return Ok(Bytes::new());
    }
    if file.is_direct() && len <= POINT_READ_MAX {
        let mut out = vec![0u8; len as usize];
        file.read_cached_at(range.start, &mut out)
            .await
            .map_err(|e| StoreError::file("read", location, e))?;
        return Ok(Bytes::from(out));
    }
    let align = if file.is_direct() {
        store.ctx.alignment() as u64
    } else {
        1
    };
    let start = range.start / align * align;
    let end = range.end.next_multiple_of(align);
    let want = (range.end - start) as usize;
    let mut tb = buffers
        .get((end - start) as usize)
        .await
        .map_err(|source| StoreError::Budget {
            location: location.to_owned(),
            source,
        })?;
    let mut buf = tb.take();
    buf.clear();
    // read until the wanted bytes are in; the aligned end may lie past the end of the file
    while buf.len() < want {
        let at = buf.len();
        let window = Slice::new(buf, at..(end - start) as usize);
        let (window, res) = file.read_at(window, start + at as u64).await;
        buf = window.into_inner();
        match res {
            Ok(0) => {
                tb.restore(buf);
                return Err(StoreError::Range {
                    location: location.to_owned(),
                    start: range.start,
                    end: range.end,
                    size: start + at as u64,
                });
            }
            Ok(_) => {}
            Err(e) => {
                tb.restore(buf);
                return Err(StoreError::file("read", location, e));
            }
        }
    }
    tb.restore(buf);
    let skip = (range.start - start) as usize;
    Ok(tb.into_bytes(skip..skip + len as usize))
}

/// The body of `range` as a stream of chunks with reads in flight ahead of the consumer.
fn body(
    store: Arc<StoreInner>,
    object: OpenObject,
    location: String,
    range: Range<u64>,
) -> GetResultPayload {
    // pieces end at multiples of the chunk size, so each aligned window fits one buffer
    let chunk = TRANSFER_CHUNK as u64;
    let pieces = std::iter::successors(Some(range.start), move |&s| {
        let next = (s / chunk + 1) * chunk;
        (next < range.end).then_some(next)
    })
    .filter(move |&s| s < range.end)
    .map(move |s| s..((s / chunk + 1) * chunk).min(range.end));
    let file = object.file;
    let stream = futures::stream::iter(pieces)
        .map(move |piece| {
            let (store, file, location) = (Arc::clone(&store), Arc::clone(&file), location.clone());
            async move {
                let read = {
                    let (store, location) = (Arc::clone(&store), location.clone());
                    async move {
                        let buffers = Arc::clone(&store.buffers);
                        read_range(&store, &buffers, &file, &location, piece).await
                    }
                };
                store
                    .run_io(read, || Err(cancelled(&location)))
                    .await
                    .map_err(|e| e.into_object_store(&location))
            }
        })
        .buffered(READ_AHEAD);
    GetResultPayload::Stream(stream.boxed())
}

/// The error of IO that never ran: the runtime shut down first.
fn cancelled(location: &str) -> StoreError {
    StoreError::Cancelled {
        location: location.to_owned(),
    }
}

/// True if `range` is read by one [`read_range`] (see the rules above).
fn one_read(range: &Range<u64>) -> bool {
    let chunk = TRANSFER_CHUNK as u64;
    range.end > range.start && range.start / chunk == (range.end - 1) / chunk
}

pub(crate) async fn get_opts(
    store: &Arc<StoreInner>,
    location: &Path,
    options: GetOptions,
) -> Result<GetResult> {
    let io = get_opts_now(Arc::clone(store), location.clone(), options);
    let loc = location.to_string();
    store
        .run_io(io, || Err(cancelled(&loc).into_object_store(&loc)))
        .await
}

async fn get_opts_now(
    store: Arc<StoreInner>,
    location: Path,
    options: GetOptions,
) -> Result<GetResult> {
    let (store, location) = (&store, &location);
    let loc = location.as_ref();
    if options.version.is_some() {
        return Err(not_implemented("`get_opts` with a version"));
    }
    let object = open_object(store, location).await?;
    let meta = object.facts.meta(location.clone());
    options.check_preconditions(&meta)?;
    let size = meta.size;
    let range = match &options.range {
        Some(r) => r.as_range(size).map_err(|e| object_store::Error::Generic {
            store: crate::error::STORE_NAME,
            source: Box::new(StoreError::Attributes {
                location: loc.to_owned(),
                reason: format!("invalid range: {e}"),
            }),
        })?,
        None => 0..size,
    };
    let path = object_file(&store.root, location).map_err(|e| e.into_object_store(loc))?;
    let attributes = get_attributes(&path, loc).map_err(|e| e.into_object_store(loc))?;
    let payload = if options.head {
        GetResultPayload::Stream(futures::stream::empty().boxed())
    } else if one_read(&range) {
        let bytes = read_range(store, &store.buffers, &object.file, loc, range.clone())
            .await
            .map_err(|e| e.into_object_store(loc))?;
        GetResultPayload::Stream(futures::stream::once(async { Ok(bytes) }).boxed())
    } else {
        body(Arc::clone(store), object, loc.to_owned(), range.clone())
    };
    Ok(GetResult {
        payload,
        meta,
        range,
        attributes,
        extensions: Default::default(),
    })
}

/// Merges sorted ranges closer than [`COALESCE_GAP`]; each merged range keeps within one read.
fn merge(ranges: &[Range<u64>]) -> Vec<Range<u64>> {
    let mut sorted: Vec<Range<u64>> = ranges.to_vec();
    sorted.sort_by_key(|r| r.start);
    let mut merged: Vec<Range<u64>> = Vec::new();
    for r in sorted {
        match merged.last_mut() {
            Some(last)
                if r.start <= last.end.saturating_add(COALESCE_GAP)
                    && r.end.max(last.end) - last.start <= TRANSFER_CHUNK as u64 / 2 =>
            {
                last.end = last.end.max(r.end);
            }
            _ => merged.push(r),
        }
    }
    merged
}

pub(crate) async fn get_ranges(
    store: &Arc<StoreInner>,
    location: &Path,
    ranges: &[Range<u64>],
) -> Result<Vec<Bytes>> {
    let loc = location.as_ref();
    let object = {
        let (s, l) = (Arc::clone(store), location.clone());
        store
            .run_io(async move { open_object(&s, &l).await }, || {
                Err(cancelled(loc).into_object_store(loc))
            })
            .await?
    };
    let size = object.facts.size;
    if let Some(bad) = ranges.iter().find(|r| r.end > size || r.start > r.end) {
        return Err(StoreError::Range {
            location: loc.to_owned(),
            start: bad.start,
            end: bad.end,
            size,
        }
        .into_object_store(loc));
    }
    let merged = merge(ranges);
    let fetched: Vec<(Range<u64>, Bytes)> = futures::stream::iter(merged)
        .map(|m| {
            let (s, file, l) = (Arc::clone(store), Arc::clone(&object.file), loc.to_owned());
            let read = async move {
                // a merged range larger than one read (a single large range) is read in pieces
                let mut parts = Vec::new();
                let mut at = m.start;
                while at < m.end {
                    let end = (at + TRANSFER_CHUNK as u64 / 2).min(m.end);
                    parts.push(read_range(&s, &s.buffers, &file, &l, at..end).await?);
                    at = end;
                }
                let bytes = if parts.len() == 1 {
                    parts.pop().unwrap_or_default()
                } else {
                    Bytes::from(parts.concat())
                };
                Ok::<_, StoreError>((m, bytes))
            };
            store.run_io(read, || Err(cancelled(loc)))
        })
        .buffered(READ_AHEAD)
        .try_collect()
        .await
        .map_err(|e| e.into_object_store(loc))?;
    Ok(ranges
        .iter()
        .map(|r| {
            let (m, b) = fetched
                .iter()
                .find(|(m, _)| m.start <= r.start && r.end <= m.end)
                .expect("every range lies in a merged range");
            b.slice((r.start - m.start) as usize..(r.end - m.start) as usize)
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merges_close_ranges() {
        assert_eq!(merge(&[0..1, 2..3, 0..5]), vec![0..5]);
        assert_eq!(
            merge(&[0..10, 10 + COALESCE_GAP + 1..10 + COALESCE_GAP + 2]),
            vec![0..10, 10 + COALESCE_GAP + 1..10 + COALESCE_GAP + 2]
        );
    }
}
