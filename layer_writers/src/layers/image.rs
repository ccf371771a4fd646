//! Image layers: `key -> image` at one LSN, in a layer file (see [`crate::layers::layer_file`] for the layout).
//!
//! The index maps the 16-byte key to the blob's offset. Images are put in strictly increasing key order
//! and zstd-compressed when that makes them smaller. As in delta layers, each blob ends where the next
//! index entry's blob begins (the last at `values_end`).

use std::ops::{Bound, ControlFlow};
use std::path::Path;

use virtual_file::IoContext;

use crate::format::key::{image_index_key, Key, Lsn};
use crate::format::summary::LayerKind;
use crate::io::error::LayerError;
use crate::io::vectored::MAX_VECTORED_READ;
use crate::layers::layer_file::{layer_writer_front, LayerFileWriter, LayerInfo};
use crate::layers::layer_reader::{layer_reader_front, FoundBlob, LayerFileReader, VerifyReport};
use crate::layers::value_stream::BlobEntry;

/// Writes an image layer file.
#[derive(Debug)]
pub struct ImageLayerWriter {
    file: LayerFileWriter,
    lsn: Lsn,
    first_key: Option<Key>,
    last_key: Option<Key>,
}

layer_writer_front!(ImageLayerWriter);

impl ImageLayerWriter {
    /// Starts writing the image layer `<dir>/<file_name>` of images at `lsn` (as a uniquely named temp
    /// file `<file_name>.<hex>.___temp` until finished). [`Lsn::MAX`] is refused: the LSN range `lsn..lsn + 1` could not represent it.
    pub async fn new(
        ctx: &IoContext,
        dir: &Path,
        file_name: &str,
        lsn: Lsn,
    ) -> Result<Self, LayerError> {
        if lsn == Lsn::MAX {
            return Err(LayerError::RangeOverflow {
                path: dir.join(file_name),
                what: format!("LSN {lsn}"),
            });
        }
        Ok(ImageLayerWriter {
            file: LayerFileWriter::create(ctx, dir, file_name, LayerKind::Image).await?,
            lsn,
            first_key: None,
            last_key: None,
        })
    }

    /// Appends the image of `key`, compressed if that makes it smaller. Keys must be strictly increasing
    /// ([`LayerError::KeyOrder`] otherwise, and nothing is written); [`Key::MAX`] is refused.
    pub async fn put_image(&mut self, key: Key, value: &[u8]) -> Result<(), LayerError> {
        if let Some(prev_key) = self.last_key {
            if key <= prev_key {
                return Err(LayerError::KeyOrder {
                    path: self.file.temp_path().to_owned(),
                    key,
                    lsn: self.lsn,
                    prev_key,
                    prev_lsn: self.lsn,
                });
            }
        }
        if key == Key::MAX {
            return Err(LayerError::RangeOverflow {
                path: self.file.temp_path().to_owned(),
                what: format!("key {key}"),
            });
        }
        self.file.put(&image_index_key(key), 0, value, true).await?;
        self.first_key.get_or_insert(key);
        self.last_key = Some(key);
        Ok(())
    }

    /// Completes the layer, makes it durable and moves it to its final name.
    pub async fn finish(self) -> Result<LayerInfo, LayerError> {
        let key_range = match (self.first_key, self.last_key) {
            // `put_image` refused Key::MAX, so the successor exists.
            (Some(first), Some(last)) => first..last.checked_next().unwrap_or(Key::MAX),
            _ => Key::MIN..Key::MIN,
        };
        let lsn_range = self.lsn..Lsn(self.lsn.0.saturating_add(1));
        self.file.finish(key_range, lsn_range).await
    }
}

/// Reads an image layer file.
#[derive(Debug)]
pub struct ImageLayerReader {
    inner: LayerFileReader,
}

/// An index entry of an image layer, before its blob is read.
#[derive(Debug, Clone, Copy)]
struct ImageEntry {
    key: Key,
    offset: u64,
    /// The layer's LSN (error context).
    lsn: Lsn,
}

impl BlobEntry for ImageEntry {
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

layer_reader_front!(ImageLayerReader, LayerKind::Image, "image");

impl ImageLayerReader {
    /// The LSN of the images.
    pub fn lsn(&self) -> Lsn {
        self.summary().lsn_range.start
    }

    /// The image of `key`, if the layer has one.
    pub async fn get(&self, key: Key) -> Result<Option<Vec<u8>>, LayerError> {
        let mut out = self.get_many(&[key]).await?;
        Ok(out.pop().flatten())
    }

    /// [`ImageLayerReader::get`] for many keys: all blobs are fetched together, sorted by offset, with
    /// neighbouring blobs merged into reads of at most 128 KiB. One result per key, in request order.
    pub async fn get_many(&self, keys: &[Key]) -> Result<Vec<Option<Vec<u8>>>, LayerError> {
        let mut blobs: Vec<FoundBlob> = Vec::new();
        let mut owners: Vec<usize> = Vec::new();
        for (req, &key) in keys.iter().enumerate() {
            if let Some(extent) = self.lookup(key).await? {
                blobs.push(FoundBlob {
                    extent,
                    key,
                    lsn: Some(self.lsn()),
                });
                owners.push(req);
            }
        }
        let mut out: Vec<Option<Vec<u8>>> = vec![None; keys.len()];
        self.inner
            .read_blobs(&blobs, MAX_VECTORED_READ, true, |i, value| {
                out[owners[i]] = Some(value);
                ControlFlow::Continue(())
            })
            .await?;
        for (i, &req) in owners.iter().enumerate() {
            if out[req].is_none() {
                return Err(LayerError::corrupt(
                    self.path(),
                    blobs[i].extent.start,
                    Some(keys[req]),
                    "blob not read",
                ));
            }
        }
        Ok(out)
    }

    /// Every image in key order.
    pub async fn scan(&self) -> Result<Vec<(Key, Vec<u8>)>, LayerError> {
        let mut out = Vec::new();
        self.scan_each(|key, value| {
            out.push((key, value));
            ControlFlow::Continue(())
        })
        .await?;
        Ok(out)
    }

    /// Calls `f(key, image)` for every image in key order until it breaks. The index is walked one run of
    /// leaves at a time while one scan reads the values front to back, reads of up to 1 MiB in flight
    /// ahead of `f`; the memory held does not grow with the layer (`value_stream`).
    pub async fn scan_each<F>(&self, mut f: F) -> Result<(), LayerError>
    where
        F: FnMut(Key, Vec<u8>) -> ControlFlow<()>,
    {
        self.inner
            .stream_values(
                |k, v| self.parse_entry(k, v),
                |e: ImageEntry, value| f(e.key, value),
            )
            .await
    }

    /// Checks every byte of the file: the summary (at open), every index page, every image's CRC and
    /// decoding, that the values are exactly covered by the index, and the zero padding. Any flipped bit
    /// anywhere in the file is an error. Streams the index and the values as `scan_each` does.
    pub async fn verify(&self) -> Result<VerifyReport, LayerError> {
        self.inner.verify(|k, v| self.parse_entry(k, v)).await
    }

    /// An index entry of the whole-index walk, or the corruption error for it.
    fn parse_entry(&self, k: &[u8], offset: u64) -> Result<ImageEntry, LayerError> {
        match Key::from_slice(k) {
            Ok(key) => Ok(ImageEntry {
                key,
                offset,
                lsn: self.lsn(),
            }),
            Err(e) => Err(self.bad_index(None, e.to_string())),
        }
    }

    /// The extent of `key`'s blob, if the index has the key.
    async fn lookup(&self, key: Key) -> Result<Option<std::ops::Range<u64>>, LayerError> {
        let wanted = image_index_key(key);
        let mut found: Option<u64> = None;
        let mut next: Option<u64> = None;
        self.inner
            .visit(Bound::Included(&wanted[..]), Some(key), |k, v| {
                if found.is_none() && k == wanted {
                    found = Some(v);
                    ControlFlow::Continue(())
                } else {
                    next = Some(v);
                    ControlFlow::Break(())
                }
            })
            .await?;
        Ok(found.map(|start| start..next.unwrap_or(self.summary().values_end)))
    }

    fn bad_index(&self, key: Option<Key>, reason: String) -> LayerError {
        LayerError::corrupt(
            self.path(),
            self.summary().index_start_offset(),
            key,
            reason,
        )
    }
}
