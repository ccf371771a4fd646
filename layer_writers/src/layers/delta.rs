//! Delta layers: `(key, lsn) -> value` records with a will-init flag, in a layer file (see
//! [`crate::layers::layer_file`] for the layout).
//!
//! The index maps the 24-byte delta index key (key, then LSN big-endian; see [`crate::format::key`]) to the blob's
//! offset, with [`WILL_INIT_FLAG`] set when the record can be applied without the ones before it. Records
//! are put in strictly increasing `(key, lsn)` order, so blobs lie in index order and each blob ends where
//! the next index entry's blob begins (the last at `values_end`): readers know every blob's extent before
//! reading it. Values are stored uncompressed (WAL-like records are small and written on the ingest path,
//! where CPU matters); readers decode compressed blobs too.

use std::ops::{Bound, ControlFlow, Range};
use std::path::Path;

use virtual_file::IoContext;

use crate::format::key::{delta_index_key, parse_delta_index_key, Key, Lsn};
use crate::format::summary::LayerKind;
use crate::io::error::LayerError;
use crate::io::vectored::MAX_VECTORED_READ;
use crate::layers::layer_file::{layer_writer_front, LayerFileWriter, LayerInfo};
use crate::layers::layer_reader::{layer_reader_front, FoundBlob, LayerFileReader, VerifyReport};
use crate::layers::value_stream::BlobEntry;

/// High bit of a delta index value: the record is a will-init record. The other bits are the offset.
pub const WILL_INIT_FLAG: u64 = 1 << 63;

/// One record read back: `(lsn, will_init, value)`.
pub type DeltaValue = (Lsn, bool, Vec<u8>);

/// Writes a delta layer file.
#[derive(Debug)]
pub struct DeltaLayerWriter {
    file: LayerFileWriter,
    /// First key put, and the last `(key, lsn)`.
    first_key: Option<Key>,
    last: Option<(Key, Lsn)>,
    min_lsn: Lsn,
    max_lsn: Lsn,
}

layer_writer_front!(DeltaLayerWriter);

impl DeltaLayerWriter {
    /// Starts writing the delta layer `<dir>/<file_name>` (as a uniquely named temp file
    /// `<file_name>.<hex>.___temp` until finished).
    pub async fn new(ctx: &IoContext, dir: &Path, file_name: &str) -> Result<Self, LayerError> {
        Ok(DeltaLayerWriter {
            file: LayerFileWriter::create(ctx, dir, file_name, LayerKind::Delta).await?,
            first_key: None,
            last: None,
            min_lsn: Lsn::MAX,
            max_lsn: Lsn::MIN,
        })
    }

    /// Appends a record. `(key, lsn)` must be greater than the previous one ([`LayerError::KeyOrder`]
    /// otherwise, and nothing is written). [`Key::MAX`] and [`Lsn::MAX`] are refused: the layer's
    /// exclusive range ends could not represent them.
    pub async fn put_value(
        &mut self,
        key: Key,
        lsn: Lsn,
        will_init: bool,
        value: &[u8],
    ) -> Result<(), LayerError> {
        self.check_next(self.last, key, lsn)?;
        let flags = if will_init { WILL_INIT_FLAG } else { 0 };
        self.file
            .put(&delta_index_key(key, lsn), flags, value, false)
            .await?;
        self.first_key.get_or_insert(key);
        self.last = Some((key, lsn));
        self.min_lsn = self.min_lsn.min(lsn);
        self.max_lsn = self.max_lsn.max(lsn);
        Ok(())
    }

    /// `(key, lsn)` may follow `prev`: strictly increasing, and below `Key::MAX` / `Lsn::MAX`.
    fn check_next(&self, prev: Option<(Key, Lsn)>, key: Key, lsn: Lsn) -> Result<(), LayerError> {
        if let Some((prev_key, prev_lsn)) = prev {
            if (key, lsn) <= (prev_key, prev_lsn) {
                return Err(LayerError::KeyOrder {
                    path: self.file.temp_path().to_owned(),
                    key,
                    lsn,
                    prev_key,
                    prev_lsn,
                });
            }
        }
        if key == Key::MAX || lsn == Lsn::MAX {
            return Err(LayerError::RangeOverflow {
                path: self.file.temp_path().to_owned(),
                what: format!("({key}, {lsn})"),
            });
        }
        Ok(())
    }

    /// Appends records whose blobs are already encoded: `records[i]` is `(key, lsn, will_init, len)` of
    /// the `i`th blob in `blobs` (back to back, `len` bytes each, CRC-checked by the caller). The blobs go
    /// to the file in one write, with no per-record copy or future. The key order is checked for all of
    /// them before anything is written, as [`put_value`](Self::put_value) checks it.
    pub(crate) async fn put_encoded_blobs(
        &mut self,
        records: &[(Key, Lsn, bool, u32)],
        blobs: &[u8],
    ) -> Result<(), LayerError> {
        let mut prev = self.last;
        let (mut min_lsn, mut max_lsn) = (self.min_lsn, self.max_lsn);
        for &(key, lsn, _, _) in records {
            self.check_next(prev, key, lsn)?;
            prev = Some((key, lsn));
            min_lsn = min_lsn.min(lsn);
            max_lsn = max_lsn.max(lsn);
        }
        let Some(&(first_key, ..)) = records.first() else {
            return Ok(());
        };
        let entries = records.iter().map(|&(key, lsn, will_init, len)| {
            let flags = if will_init { WILL_INIT_FLAG } else { 0 };
            (delta_index_key(key, lsn), flags, len)
        });
        self.file.put_blobs(entries, blobs).await?;
        self.first_key.get_or_insert(first_key);
        self.last = prev;
        self.min_lsn = min_lsn;
        self.max_lsn = max_lsn;
        Ok(())
    }

    /// Completes the layer, makes it durable and moves it to its final name.
    pub async fn finish(self) -> Result<LayerInfo, LayerError> {
        let (key_range, lsn_range) = match (self.first_key, self.last) {
            // Put refused MAX keys and LSNs, so the successors exist.
            (Some(first), Some((last, _))) => (
                first..last.checked_next().unwrap_or(Key::MAX),
                self.min_lsn..Lsn(self.max_lsn.0.saturating_add(1)),
            ),
            _ => (Key::MIN..Key::MIN, Lsn::MIN..Lsn::MIN),
        };
        self.file.finish(key_range, lsn_range).await
    }
}

/// Reads a delta layer file.
#[derive(Debug)]
pub struct DeltaLayerReader {
    inner: LayerFileReader,
}

/// An index entry of a delta layer, before its blob is read.
#[derive(Debug, Clone, Copy)]
struct DeltaEntry {
    key: Key,
    lsn: Lsn,
    will_init: bool,
    offset: u64,
}

impl BlobEntry for DeltaEntry {
    fn offset(&self) -> u64 {
        self.offset
    }
    fn key(&self) -> Key {
        self.key
    }
    fn lsn(&self) -> Option<Lsn> {
        Some(self.lsn)
    }
}

layer_reader_front!(DeltaLayerReader, LayerKind::Delta, "delta");

impl DeltaLayerReader {
    /// The records of `key` with an LSN in `lsn_range`, in ascending LSN order.
    pub async fn get(
        &self,
        key: Key,
        lsn_range: Range<Lsn>,
    ) -> Result<Vec<DeltaValue>, LayerError> {
        let mut out = self.get_many(&[(key, lsn_range)]).await?;
        Ok(out.pop().unwrap_or_default())
    }

    /// [`DeltaLayerReader::get`] for many requests at once: all their blobs are fetched together, sorted
    /// by offset, with neighbouring blobs merged into reads of at most 128 KiB. One result per request,
    /// in request order.
    pub async fn get_many(
        &self,
        requests: &[(Key, Range<Lsn>)],
    ) -> Result<Vec<Vec<DeltaValue>>, LayerError> {
        let mut blobs: Vec<FoundBlob> = Vec::new();
        let mut meta: Vec<(usize, Lsn, bool)> = Vec::new();
        for (req, (key, lsns)) in requests.iter().enumerate() {
            if lsns.start >= lsns.end {
                continue;
            }
            let (entries, next) = self.lookup(*key, lsns.clone()).await?;
            let end = next.unwrap_or(self.summary().values_end);
            for (i, e) in entries.iter().enumerate() {
                let extent_end = entries.get(i + 1).map_or(end, |n| n.offset);
                blobs.push(FoundBlob {
                    extent: e.offset..extent_end,
                    key: e.key,
                    lsn: Some(e.lsn),
                });
                meta.push((req, e.lsn, e.will_init));
            }
        }
        let mut values: Vec<Option<Vec<u8>>> = vec![None; blobs.len()];
        self.inner
            .read_blobs(&blobs, MAX_VECTORED_READ, true, |i, v| {
                values[i] = Some(v);
                ControlFlow::Continue(())
            })
            .await?;
        let mut out: Vec<Vec<DeltaValue>> = vec![Vec::new(); requests.len()];
        for ((req, lsn, will_init), (value, blob)) in
            meta.into_iter().zip(values.into_iter().zip(&blobs))
        {
            let value = value.ok_or_else(|| {
                LayerError::corrupt(
                    self.path(),
                    blob.extent.start,
                    Some(blob.key),
                    "blob not read",
                )
            })?;
            out[req].push((lsn, will_init, value));
        }
        Ok(out)
    }

    /// Every record in `(key, lsn)` order.
    pub async fn scan(&self) -> Result<Vec<(Key, Lsn, bool, Vec<u8>)>, LayerError> {
        let mut out = Vec::new();
        self.scan_each(|key, lsn, will_init, value| {
            out.push((key, lsn, will_init, value));
            ControlFlow::Continue(())
        })
        .await?;
        Ok(out)
    }

    /// Calls `f(key, lsn, will_init, value)` for every record in `(key, lsn)` order until it breaks. The
    /// index is walked one run of leaves at a time while one scan reads the values front to back, reads
    /// of up to 1 MiB in flight ahead of `f`; the memory held does not grow with the layer
    /// (`value_stream`).
    pub async fn scan_each<F>(&self, mut f: F) -> Result<(), LayerError>
    where
        F: FnMut(Key, Lsn, bool, Vec<u8>) -> ControlFlow<()>,
    {
        self.inner
            .stream_values(
                |k, v| self.parse_entry(k, v),
                |e: DeltaEntry, value| f(e.key, e.lsn, e.will_init, value),
            )
            .await
    }

    /// Checks every byte of the file: the summary (at open), every index page, every value's CRC and
    /// decoding, that the values are exactly covered by the index, and the zero padding. Any flipped bit
    /// anywhere in the file is an error. Streams the index and the values as `scan_each` does.
    pub async fn verify(&self) -> Result<VerifyReport, LayerError> {
        self.inner.verify(|k, v| self.parse_entry(k, v)).await
    }

    /// An index entry of the whole-index walk, or the corruption error for it.
    fn parse_entry(&self, k: &[u8], v: u64) -> Result<DeltaEntry, LayerError> {
        decode_entry(k, v).map_err(|reason| self.bad_index(reason))
    }

    /// The index entries of `key` in `lsns`, and the offset of the entry after them (if any).
    async fn lookup(
        &self,
        key: Key,
        lsns: Range<Lsn>,
    ) -> Result<(Vec<DeltaEntry>, Option<u64>), LayerError> {
        let start = delta_index_key(key, lsns.start);
        let mut entries = Vec::new();
        let mut next = None;
        let mut bad = None;
        self.inner
            .visit(Bound::Included(&start[..]), Some(key), |k, v| {
                if collect_entry(k, v, &mut entries, &mut bad).is_break() {
                    return ControlFlow::Break(());
                }
                let last = entries[entries.len() - 1];
                if last.key == key && last.lsn < lsns.end {
                    return ControlFlow::Continue(());
                }
                entries.pop();
                next = Some(last.offset);
                ControlFlow::Break(())
            })
            .await?;
        self.check_parse(bad)?;
        Ok((entries, next))
    }

    fn check_parse(&self, bad: Option<String>) -> Result<(), LayerError> {
        match bad {
            Some(reason) => Err(self.bad_index(reason)),
            None => Ok(()),
        }
    }

    /// A corrupt index entry, as a layer error.
    fn bad_index(&self, reason: String) -> LayerError {
        LayerError::corrupt(
            self.path(),
            self.summary().index_start_offset(),
            None,
            reason,
        )
    }
}

/// Decodes one index entry (key and value) into a [`DeltaEntry`], or says why it is malformed.
fn decode_entry(k: &[u8], v: u64) -> Result<DeltaEntry, String> {
    let (key, lsn) = parse_delta_index_key(k).map_err(|e| e.to_string())?;
    Ok(DeltaEntry {
        key,
        lsn,
        will_init: v & WILL_INIT_FLAG != 0,
        offset: v & !WILL_INIT_FLAG,
    })
}

/// Parses one index entry into `entries`; on a malformed key records why in `bad` and breaks.
fn collect_entry(
    k: &[u8],
    v: u64,
    entries: &mut Vec<DeltaEntry>,
    bad: &mut Option<String>,
) -> ControlFlow<()> {
    match decode_entry(k, v) {
        Ok(entry) => {
            entries.push(entry);
            ControlFlow::Continue(())
        }
        Err(reason) => {
            *bad = Some(reason);
            ControlFlow::Break(())
        }
    }
}

#[cfg(test)]
mod tests {
    use io_engine::{IoEngine, IoEngineKind};
    use virtual_file::IoMode;

    use super::*;
    use crate::format::blob::encode_blob;

    #[tokio::test]
    async fn encoded_blobs_in_bulk_equal_values_put_one_by_one() {
        let ctx = IoContext::builder()
            .engine(IoEngine::launch(IoEngineKind::StdFs).unwrap())
            .mode(IoMode::Buffered)
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let values: Vec<Vec<u8>> = (0..300u32)
            .map(|i| (0..(i * 37) % 500).map(|j| (i + j) as u8).collect())
            .collect();
        let key = |i: usize| Key::from_u128(1000 + i as u128 / 3);
        let lsn = |i: usize| Lsn(10 + i as u64);

        let mut one = DeltaLayerWriter::new(&ctx, dir.path(), "one")
            .await
            .unwrap();
        for (i, v) in values.iter().enumerate() {
            one.put_value(key(i), lsn(i), i % 4 == 0, v).await.unwrap();
        }
        let one = one.finish().await.unwrap();

        let mut bulk = DeltaLayerWriter::new(&ctx, dir.path(), "bulk")
            .await
            .unwrap();
        for chunk in (0..values.len()).collect::<Vec<_>>().chunks(70) {
            let mut blobs = Vec::new();
            let mut records = Vec::new();
            for &i in chunk {
                let blob = encode_blob(&values[i], false).unwrap();
                records.push((key(i), lsn(i), i % 4 == 0, blob.len() as u32));
                blobs.extend_from_slice(&blob);
            }
            bulk.put_encoded_blobs(&records, &blobs).await.unwrap();
        }
        // refused before anything is written: out of order, and lengths that do not add up
        let blob = encode_blob(b"x", false).unwrap();
        let stale = [(key(0), lsn(0), false, blob.len() as u32)];
        assert!(matches!(
            bulk.put_encoded_blobs(&stale, &blob).await,
            Err(LayerError::KeyOrder { .. })
        ));
        let late = [(Key::from_u128(5000), Lsn(1), false, blob.len() as u32 + 1)];
        assert!(matches!(
            bulk.put_encoded_blobs(&late, &blob).await,
            Err(LayerError::Corrupt { .. })
        ));
        let bulk = bulk.finish().await.unwrap();

        assert_eq!(
            std::fs::read(&one.path).unwrap(),
            std::fs::read(&bulk.path).unwrap(),
            "byte-identical layers"
        );
        assert_eq!(one.key_range, bulk.key_range);
        assert_eq!(one.lsn_range, bulk.lsn_range);
    }
}
