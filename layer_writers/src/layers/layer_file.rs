//! The layer file protocol: how a delta or image layer file is laid out, written and made durable.
//!
//! ```text
//! offset                         size                      content
//! 0                              8192                      summary block (summary::Summary), written last
//! 8192                           values_end - 8192         blobs back to back (blob::encode_blob), in index order,
//!                                                          each header | payload | crc32c (4 bytes)
//! values_end                     pad < 8192                zeros up to the next multiple of 8192
//! index_start = page * 8192      index_page_count * 8192   B-tree pages (btree::page), children first, root last
//! file_len = index_start + index_page_count * 8192         end of file, always a multiple of 8192
//! ```
//!
//! Every byte is covered by a check: the summary block by its CRC and its zero tail, each blob by its
//! own CRC32C trailer (header and stored bytes), the padding by being zero, each index page by its CRC
//! and zero tail. Readers check the CRC of every blob they return; `verify` on the readers checks all of
//! it (format version 2; see [`crate::format::summary`]).
//!
//! Every byte is determined by the entries put: padding is zeros, the summary and pages hold no
//! timestamps, zstd runs single-threaded at a fixed level. So a layer is byte-identical whichever IO mode
//! and engine wrote it.
//!
//! # Writing
//!
//! The writer creates a temp file `<dir>/<name>.<16 random hex digits>.___temp` and appends blobs from
//! offset 8192 through one [`BufferedWriter`](virtual_file::buffered_writer::BufferedWriter) (via [`BlobWriter`]), which
//! only ever issues aligned writes of whole buffers, so `O_DIRECT` works. Index pages come out of the [`BtreeBuilder`] while values
//! are still being written, but their place is after the values, so they are kept in memory until
//! `finish`, which then:
//!
//! 1. pads the values with zeros to a multiple of 8 KiB,
//! 2. appends the index pages through the same writer (they land page-aligned) and shuts it down,
//! 3. writes the summary block at offset 0 from an aligned 8 KiB buffer,
//! 4. `fsync`s the file,
//! 5. renames the temp file to `<dir>/<name>` with `RENAME_NOREPLACE`: an existing layer of that name is
//!    never replaced, unless the writer was told to (`replace_existing(true)` on the delta or image
//!    writer); without it, an existing name fails `finish` with [`virtual_file::Error::AlreadyExists`]
//!    (inside [`LayerError::Io`], naming the final path) and the temp file is removed,
//! 6. `fsync`s the directory.
//!
//! A crash before step 5 leaves only the temp file; after step 4 the content under either name is
//! complete, so the final name never refers to a partial layer. [`remove_temp_files`] deletes leftovers at
//! start-up.
//!
//! # Temp and ephemeral files
//!
//! - Names are unique: a random part in every name, and the file is created exclusively (`O_CREAT |
//!   O_EXCL`, [`VirtualFile::create_temp`]), so two writers of the same layer name, or two in-memory
//!   layers with the same id, each get a file of their own and never truncate or write each other's.
//! - A temp file is removed when its [`VirtualFile`] is dropped unless it was persisted. While values are
//!   written, the file is owned by the buffered writer's flush task: a writer dropped without `finish` (or
//!   whose `finish` failed) has its temp file removed by that task after its last write, never while a
//!   write to it could still follow.
//! - A reopen after the open-file cache evicted the descriptor checks the file's identity (device, inode),
//!   so a reader never reads another file that took the path.
//! - [`remove_temp_files`] recognizes every temp name, old and new: `<name>.___temp`,
//!   `<name>.<hex>.___temp`, `ephemeral-<id>.<hex>.___temp` and the old ephemeral `ephemeral-<id>`.
//!
//! # Weaknesses
//!
//! - The index is held in memory until `finish` (about 40 bytes per delta entry, 8 KiB pages); a layer of
//!   tens of millions of entries holds hundreds of MiB. Writing the index to a second temp file, or
//!   reserving its space ahead of the values, would avoid that.
//! - The padding after the values is only checked by a full `verify`, not by point reads or scans (they
//!   never return it). A flipped bit there cannot change what a read returns.
//! - `remove_temp_files` trusts names: a file someone else named like a temp file in a layer directory is
//!   removed too (layer names that look like temp or ephemeral names are refused for that reason).

use std::ops::Range;
use std::path::{Path, PathBuf};

use io_engine::{DefaultAlign, FullSlice, IoBufferMut, RenameMode};
use virtual_file::buffered_writer::ShutdownMode;
use virtual_file::{IoContext, VirtualFile};

use crate::format::btree::page::PAGE_SIZE;
use crate::format::btree::{BtreeBuilder, BuiltPage};
use crate::format::key::{Key, Lsn};
use crate::format::summary::{LayerKind, Summary, SUMMARY_SIZE};
use crate::io::blob_io::BlobWriter;
use crate::io::error::LayerError;

/// Suffix of a layer file being written.
pub const TEMP_SUFFIX: &str = ".___temp";

static ZERO_PAGE: [u8; PAGE_SIZE] = [0; PAGE_SIZE];

/// What a finished layer holds and where it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    /// Final path of the layer file.
    pub path: PathBuf,
    /// Length of the file in bytes (a multiple of 8 KiB).
    pub file_len: u64,
    /// Number of entries (values or images).
    pub num_entries: u64,
    /// Keys of the entries, end exclusive (`MIN..MIN` for an empty layer).
    pub key_range: Range<Key>,
    /// LSNs of the entries, end exclusive (an image layer: its LSN, `lsn..lsn + 1`).
    pub lsn_range: Range<Lsn>,
}

/// Prefix of the ephemeral files of in-memory layers: `ephemeral-<id>.<hex>.___temp` (earlier versions:
/// `ephemeral-<id>`).
pub(crate) const EPHEMERAL_PREFIX: &str = "ephemeral-";

/// The prefix of the temp file names of a layer named `file_name` (the random part and [`TEMP_SUFFIX`]
/// follow).
pub(crate) fn temp_prefix_for(file_name: &str) -> String {
    format!("{file_name}.")
}

/// True for the name of a temp or ephemeral file, in every pattern this crate has written: names ending
/// in [`TEMP_SUFFIX`], and the old ephemeral name `ephemeral-<decimal id>`.
pub fn is_temp_file_name(name: &str) -> bool {
    name.ends_with(TEMP_SUFFIX)
        || name
            .strip_prefix(EPHEMERAL_PREFIX)
            .is_some_and(|id| !id.is_empty() && id.bytes().all(|b| b.is_ascii_digit()))
}

/// Removes the leftover temp and ephemeral files ([`is_temp_file_name`]) in `dir`, then `fsync`s `dir` if
/// any were removed. Returns how many. Blocking (plain `std::fs`): meant for start-up, before any writer
/// runs in `dir`.
pub fn remove_temp_files(dir: &Path) -> Result<usize, LayerError> {
    let std_err = |path: &Path| {
        let path = path.to_owned();
        move |source| LayerError::StdIo { path, source }
    };
    let mut removed = 0;
    for entry in std::fs::read_dir(dir).map_err(std_err(dir))? {
        let entry = entry.map_err(std_err(dir))?;
        let is_temp = entry.file_name().to_str().is_some_and(is_temp_file_name);
        if !is_temp || !entry.file_type().map_err(std_err(dir))?.is_file() {
            continue;
        }
        let path = entry.path();
        match std::fs::remove_file(&path) {
            Ok(()) => {
                tracing::info!(path = %path.display(), "removed leftover temp layer file");
                removed += 1;
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(std_err(&path)(e)),
        }
    }
    if removed > 0 {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(std_err(dir))?;
    }
    Ok(removed)
}

fn check_file_name(name: &str) -> Result<(), LayerError> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.contains('/') || name == "." || name == ".." {
        "not a plain file name"
    } else if is_temp_file_name(name) {
        "named like a temp or ephemeral file (removed at start-up)"
    } else {
        return Ok(());
    };
    Err(LayerError::InvalidFileName {
        name: name.to_owned(),
        reason,
    })
}

/// The kind-independent part of a layer writer: values, index, the finish protocol.
#[derive(Debug)]
pub(crate) struct LayerFileWriter {
    ctx: IoContext,
    dir: PathBuf,
    final_path: PathBuf,
    kind: LayerKind,
    blobs: BlobWriter,
    index: BtreeBuilder,
    index_pages: Vec<BuiltPage>,
    /// Set when a write failed or was cancelled half-way.
    poisoned: bool,
    /// `finish` may replace an existing layer of the same name.
    replace_existing: bool,
}

impl LayerFileWriter {
    /// Creates a new temp file `<dir>/<file_name>.<hex>.___temp` for a layer of `kind`.
    pub async fn create(
        ctx: &IoContext,
        dir: &Path,
        file_name: &str,
        kind: LayerKind,
    ) -> Result<LayerFileWriter, LayerError> {
        check_file_name(file_name)?;
        let final_path = dir.join(file_name);
        let file = VirtualFile::create_temp(ctx, dir, &temp_prefix_for(file_name), TEMP_SUFFIX)
            .await
            .map_err(|e| LayerError::io(&final_path, e))?;
        // The flush task owns the temp file from here: dropped unfinished, the task removes it after
        // its last write.
        let blobs = BlobWriter::new(file, SUMMARY_SIZE as u64)?;
        let index =
            BtreeBuilder::new(kind.index_key_len()).map_err(|source| LayerError::IndexBuild {
                path: final_path.clone(),
                source,
            })?;
        Ok(LayerFileWriter {
            ctx: ctx.clone(),
            dir: dir.to_owned(),
            final_path,
            kind,
            blobs,
            index,
            index_pages: Vec::new(),
            poisoned: false,
            replace_existing: false,
        })
    }

    /// Lets `finish` replace an existing layer of the same name (default: an existing name is an error).
    pub fn set_replace_existing(&mut self, yes: bool) {
        self.replace_existing = yes;
    }

    /// Path of the temp file being written.
    pub fn temp_path(&self) -> &Path {
        self.blobs.path()
    }

    /// Entries put so far.
    pub fn num_entries(&self) -> u64 {
        self.index.num_entries()
    }

    /// Appends `value` as a blob and indexes it under `index_key` with `offset | flags`. The caller has
    /// checked the key order. Returns the blob's offset.
    pub async fn put(
        &mut self,
        index_key: &[u8],
        flags: u64,
        value: &[u8],
        compress: bool,
    ) -> Result<u64, LayerError> {
        if self.poisoned {
            return Err(LayerError::Poisoned {
                path: self.temp_path().to_owned(),
            });
        }
        if value.len() > crate::format::blob::MAX_VALUE_LEN {
            // Refused before anything is written: the writer stays usable.
            return self.blobs.write_blob(value, compress).await;
        }
        self.poisoned = true;
        let offset = self.blobs.write_blob(value, compress).await?;
        self.index
            .append(index_key, offset | flags)
            .map_err(|source| LayerError::IndexBuild {
                path: self.temp_path().to_owned(),
                source,
            })?;
        self.index_pages.extend(self.index.drain_pages());
        self.poisoned = false;
        Ok(offset)
    }

    /// Appends `blobs`, complete encoded blobs back to back, in one write, and indexes the `i`th under
    /// `index_keys[i]` with its offset `| flags[i]`. `lens` are the blobs' lengths and must add up to
    /// `blobs.len()` (checked before anything is written). The caller has checked the key order and the
    /// blobs (their CRCs) and gives keys of the index's key length.
    pub async fn put_blobs<K: AsRef<[u8]>>(
        &mut self,
        entries: impl Iterator<Item = (K, u64, u32)> + Clone,
        blobs: &[u8],
    ) -> Result<(), LayerError> {
        if self.poisoned {
            return Err(LayerError::Poisoned {
                path: self.temp_path().to_owned(),
            });
        }
        let total: u64 = entries.clone().map(|(_, _, len)| u64::from(len)).sum();
        if total != blobs.len() as u64 {
            return Err(LayerError::corrupt(
                self.temp_path(),
                self.blobs.offset(),
                None,
                format!(
                    "{} bytes of blobs, their lengths add up to {total}",
                    blobs.len()
                ),
            ));
        }
        self.poisoned = true;
        let mut offset = self.blobs.write_raw(blobs).await?;
        for (index_key, flags, len) in entries {
            self.index
                .append(index_key.as_ref(), offset | flags)
                .map_err(|source| LayerError::IndexBuild {
                    path: self.temp_path().to_owned(),
                    source,
                })?;
            offset += u64::from(len);
        }
        self.index_pages.extend(self.index.drain_pages());
        self.poisoned = false;
        Ok(())
    }

    /// Completes the file as the module docs describe and moves it into place. Runs in a `layer_finish`
    /// span (layer path, kind, mode, engine; `bytes` recorded when written).
    #[tracing::instrument(
        level = "debug",
        name = "layer_finish",
        skip_all,
        fields(
            layer = %self.final_path.display(),
            kind = ?self.kind,
            mode = %self.ctx.io_mode(),
            engine = %self.ctx.engine_kind(),
            bytes = tracing::field::Empty,
        )
    )]
    pub async fn finish(
        self,
        key_range: Range<Key>,
        lsn_range: Range<Lsn>,
    ) -> Result<LayerInfo, LayerError> {
        let LayerFileWriter {
            ctx,
            dir,
            final_path,
            kind,
            mut blobs,
            index,
            mut index_pages,
            poisoned,
            replace_existing,
        } = self;
        let temp_path = blobs.path().to_owned();
        if poisoned {
            return Err(LayerError::Poisoned { path: temp_path });
        }
        let values_end = blobs.offset();
        let index_start = values_end.next_multiple_of(PAGE_SIZE as u64);
        blobs
            .write_raw(&ZERO_PAGE[..(index_start - values_end) as usize])
            .await?;
        let build_err = |source| LayerError::IndexBuild {
            path: temp_path.clone(),
            source,
        };
        let num_entries = index.num_entries();
        let (tree, rest) = index.finish().map_err(build_err)?;
        index_pages.extend(rest);
        for (i, page) in index_pages.iter().enumerate() {
            if page.page_no as usize != i {
                return Err(LayerError::corrupt(
                    &temp_path,
                    index_start,
                    None,
                    format!("index page {} produced out of order at {i}", page.page_no),
                ));
            }
            blobs.write_raw(&page.bytes[..]).await?;
        }
        drop(index_pages);
        let (end, file) = blobs
            .shutdown(ShutdownMode::ZeroPadToNextMultiple(PAGE_SIZE as u64))
            .await?;
        let index_start_page = u32::try_from(index_start / PAGE_SIZE as u64).map_err(|_| {
            LayerError::RangeOverflow {
                path: temp_path.clone(),
                what: format!("index start {index_start}"),
            }
        })?;
        let summary = Summary {
            kind,
            key_range,
            lsn_range,
            values_end,
            index_start_page,
            index_root: tree.root_page,
            index_page_count: tree.num_pages,
        };
        summary
            .validate()
            .map_err(|source| LayerError::format(&temp_path, 0, None, source))?;
        if summary.file_len() != end {
            return Err(LayerError::corrupt(
                &temp_path,
                end,
                None,
                format!(
                    "wrote {end} bytes, the summary describes {}",
                    summary.file_len()
                ),
            ));
        }
        let mut block = IoBufferMut::<DefaultAlign>::with_capacity(SUMMARY_SIZE);
        block.extend_from_slice(&summary.encode());
        let (_, res) = file.write_all_at(FullSlice::new(block), 0).await;
        res.map_err(|e| LayerError::io(&temp_path, e))?;
        file.sync_all()
            .await
            .map_err(|e| LayerError::io(&temp_path, e))?;
        let mut file = file;
        let mode = if replace_existing {
            RenameMode::Replace
        } else {
            RenameMode::NoReplace
        };
        // On error the temp file is dropped, and so removed, here.
        file.persist(&final_path, mode)
            .await
            .map_err(|e| LayerError::io(&final_path, e))?;
        drop(file);
        ctx.sync_dir(&dir)
            .await
            .map_err(|e| LayerError::io(&dir, e))?;
        tracing::Span::current().record("bytes", end);
        tracing::debug!(
            path = %final_path.display(),
            file_len = end,
            num_entries,
            "layer file written"
        );
        Ok(LayerInfo {
            path: final_path,
            file_len: end,
            num_entries,
            key_range: summary.key_range,
            lsn_range: summary.lsn_range,
        })
    }
}

/// The front both layer writers share, written once: `replace_existing` and `num_entries`, on a writer
/// struct with a `file: LayerFileWriter` field.
macro_rules! layer_writer_front {
    ($writer:ident) => {
        impl $writer {
            /// Lets [`finish`](Self::finish) replace an existing layer of the same name; by default an
            /// existing name fails `finish` with [`virtual_file::Error::AlreadyExists`] and leaves that
            /// layer untouched.
            pub fn replace_existing(mut self, yes: bool) -> Self {
                self.file.set_replace_existing(yes);
                self
            }

            /// Entries put so far.
            pub fn num_entries(&self) -> u64 {
                self.file.num_entries()
            }
        }
    };
}
pub(crate) use layer_writer_front;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_names() {
        assert!(check_file_name("000-abc").is_ok());
        for bad in ["", "a/b", ".", "..", "x.___temp", "ephemeral-12"] {
            assert!(
                matches!(
                    check_file_name(bad),
                    Err(LayerError::InvalidFileName { .. })
                ),
                "{bad}"
            );
        }
        assert!(check_file_name("ephemeral-x").is_ok());
        for temp in [
            "layer.___temp",
            "layer.0123456789abcdef.___temp",
            "ephemeral-7.0123456789abcdef.___temp",
            "ephemeral-7",
        ] {
            assert!(is_temp_file_name(temp), "{temp}");
        }
        for not_temp in ["layer", "ephemeral-", "ephemeral-7x", "x.___temp.y"] {
            assert!(!is_temp_file_name(not_temp), "{not_temp}");
        }
        assert_eq!(temp_prefix_for("layer"), "layer.");
    }
}
