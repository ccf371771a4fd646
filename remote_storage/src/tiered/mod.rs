//! [`TieredLayers`]: layers on two tiers, a local directory with a byte budget and a [`RemoteStorage`]
//! that holds the durable copy.
//!
//! Each layer is *resident* (its file is in the directory), *uploaded* (in the remote index), or both.
//! Resident layers count against the budget. Rules:
//!
//! - A layer that is not uploaded is never evicted: its local file is the only copy. Such layers may push
//!   the directory over budget (a new layer is admitted as written); room is made as soon as layers are
//!   uploaded.
//! - When room is needed (after an upload, before a download), the least recently used resident layer
//!   that is uploaded and not in use (no [`ResidentLayer`] handle open) is evicted: its file is unlinked
//!   and the directory fsynced.
//! - Opening a layer that is not resident downloads it first. Concurrent openers of one layer wait on the
//!   same per-layer lock, so it is downloaded once; a layer larger than the whole budget is
//!   [`RemoteError::BudgetTooSmall`], and a budget held by layers that cannot be evicted is
//!   [`RemoteError::BudgetExhausted`]: errors, never a wait or a loop.
//! - A local file is trusted as the uploaded layer only if its size **and whole-file CRC32C** match the
//!   index entry, checked when the tier is opened (every resident uploaded layer is read once then,
//!   through `VirtualFile`: the cost of a sequential read of those bytes). A file of the right size
//!   whose checksum differs is corrupt: it is removed (with a warning, counted in
//!   [`TierStats::corrupt_removed`]) and the layer is downloaded again when opened. A file of another
//!   size is kept as a local layer that is not uploaded (with a warning).
//! - An upload sends the file only if it still has the size recorded when it was admitted
//!   ([`RemoteError::UploadSizeMismatch`] otherwise).
//!
//! Floors inside (lowest first): `state` (the bookkeeping shared by every clone, eviction), `resident`
//! (the handle that pins a layer, the budget reservation of a download), `scan` (what the directory
//! holds at open), then this file: [`TieredLayers`] and its operations.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use layer_writers::{DeltaLayerReader, ImageLayerReader};
use virtual_file::IoContext;

use crate::error::RemoteError;
use crate::index::{validate_layer_name, IndexEntry};
use crate::remote::RemoteStorage;
use crate::upload::Expect;

mod resident;
mod scan;
mod state;

use resident::Reservation;
pub use resident::ResidentLayer;
use scan::scan;
pub use state::TierStats;
use state::{Inner, LayerState};

/// Layers in a local directory with a byte budget, backed by a remote store. Cheap to clone.
#[derive(Clone)]
pub struct TieredLayers {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for TieredLayers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TieredLayers")
            .field("dir", &self.inner.dir)
            .field("budget", &self.inner.budget)
            .field("remote", &self.inner.remote)
            .finish()
    }
}

impl TieredLayers {
    /// Opens the tier over `dir` (created if missing) with a budget of `budget` bytes of resident layers.
    /// Removes temporary downloads left by a crash, reads the remote index, and takes the layer files in
    /// `dir` as resident: uploaded if the index has them at the same size and CRC32C (each such file is
    /// read once to check); a file of the right size with another checksum is removed as corrupt and
    /// downloaded again when opened.
    pub async fn open(
        ctx: &IoContext,
        dir: &Path,
        remote: Arc<RemoteStorage>,
        budget: u64,
    ) -> Result<TieredLayers, RemoteError> {
        let (state, corrupt_removed) = scan(ctx, dir, &remote).await?;
        let tier = TieredLayers {
            inner: Arc::new(Inner {
                ctx: ctx.clone(),
                dir: dir.to_owned(),
                remote,
                budget,
                state: Mutex::new(state),
                downloads: AtomicU64::new(0),
                evictions: AtomicU64::new(0),
                uploads: AtomicU64::new(0),
                corrupt_removed: AtomicU64::new(corrupt_removed),
            }),
        };
        if corrupt_removed > 0 {
            tier.inner.sync_dir().await?;
        }
        tier.inner.enforce_budget().await?;
        Ok(tier)
    }

    /// The local directory.
    pub fn dir(&self) -> &Path {
        &self.inner.dir
    }

    /// The remote store.
    pub fn remote(&self) -> &Arc<RemoteStorage> {
        &self.inner.remote
    }

    /// Counters and the budget.
    pub fn stats(&self) -> TierStats {
        let state = self.inner.lock();
        TierStats {
            resident_bytes: state.used,
            budget: self.inner.budget,
            resident_layers: state.layers.values().filter(|l| l.resident).count(),
            layers: state.layers.len(),
            downloads: self.inner.downloads.load(Ordering::Relaxed),
            evictions: self.inner.evictions.load(Ordering::Relaxed),
            uploads: self.inner.uploads.load(Ordering::Relaxed),
            corrupt_removed: self.inner.corrupt_removed.load(Ordering::Relaxed),
        }
    }

    /// True if the layer's file is in the directory.
    pub fn is_resident(&self, name: &str) -> bool {
        self.inner
            .lock()
            .layers
            .get(name)
            .is_some_and(|l| l.resident)
    }

    /// True if the layer is in the remote index.
    pub fn is_uploaded(&self, name: &str) -> bool {
        self.inner
            .lock()
            .layers
            .get(name)
            .is_some_and(|l| l.uploaded.is_some())
    }

    /// Admits the layer file `dir/name` (just written, complete) as resident and not uploaded. A layer
    /// larger than the whole budget is [`RemoteError::BudgetTooSmall`] (the file is left alone). Other
    /// layers are evicted to make room where they can be; if they cannot, the layer is admitted over
    /// budget (its file is the only copy) until uploads make room.
    pub async fn insert_local(&self, name: &str) -> Result<(), RemoteError> {
        validate_layer_name(name)?;
        let inner = &self.inner;
        let path = inner.dir.join(name);
        let size = std::fs::metadata(&path)
            .map_err(|e| inner.fs_error(name, "stat", path.clone(), e))?
            .len();
        if size > inner.budget {
            return Err(RemoteError::BudgetTooSmall {
                layer: name.to_owned(),
                size,
                budget: inner.budget,
                dir: inner.dir.clone(),
            });
        }
        let evicted =
            {
                let mut state = inner.lock();
                if state.layers.contains_key(name) {
                    return Err(RemoteError::AlreadyPresent {
                        layer: name.to_owned(),
                    });
                }
                let evicted =
                    match inner.make_room(&mut state, size, None) {
                        Ok(evicted) => evicted,
                        Err(pinned) => {
                            tracing::warn!(layer = name, size, pinned, budget = inner.budget,
                        "admitting a layer over budget: the others are not uploaded or in use");
                            true
                        }
                    };
                state.tick += 1;
                let tick = state.tick;
                state.used += size;
                state
                    .layers
                    .insert(name.to_owned(), LayerState::new(size, true, None, tick));
                evicted
            };
        if evicted {
            inner.sync_dir().await?;
        }
        Ok(())
    }

    /// Uploads a resident layer (a no-op if it is uploaded already), then evicts other layers if the
    /// directory is over budget.
    pub async fn upload(&self, name: &str) -> Result<IndexEntry, RemoteError> {
        let inner = &self.inner;
        let (pin, size) = {
            let mut state = inner.lock();
            match state.layers.get(name) {
                None => return Err(inner.unknown_layer(name)),
                Some(l) if l.uploaded.is_some() => return Ok(l.uploaded.expect("checked")),
                Some(l) => {
                    let size = l.size;
                    (ResidentLayer::pin(inner, &mut state, name), size)
                }
            }
        };
        let expect = Expect {
            size: Some(size),
            crc32c: None,
        };
        let entry = inner
            .remote
            .upload_layer_expecting(&inner.ctx, pin.path(), name, expect)
            .await?;
        if let Some(layer) = inner.lock().layers.get_mut(name) {
            layer.uploaded = Some(entry);
        }
        inner.uploads.fetch_add(1, Ordering::Relaxed);
        drop(pin);
        inner.enforce_budget().await?;
        Ok(entry)
    }

    /// Evicts an uploaded, resident layer that is not in use now.
    pub async fn evict(&self, name: &str) -> Result<(), RemoteError> {
        let inner = &self.inner;
        {
            let mut state = inner.lock();
            let Some(layer) = state.layers.get_mut(name) else {
                return Err(inner.unknown_layer(name));
            };
            if !layer.resident {
                return Ok(());
            }
            if layer.uploaded.is_none() {
                return Err(RemoteError::NotUploaded {
                    layer: name.to_owned(),
                });
            }
            if layer.pins > 0 {
                return Err(RemoteError::InUse {
                    layer: name.to_owned(),
                });
            }
            let path = inner.dir.join(name);
            std::fs::remove_file(&path).map_err(|e| inner.fs_error(name, "unlink", path, e))?;
            layer.resident = false;
            let size = layer.size;
            state.used -= size;
            inner.evictions.fetch_add(1, Ordering::Relaxed);
        }
        inner.sync_dir().await
    }

    /// A handle on the resident layer `name`, downloading it first if it is not resident (once for all
    /// concurrent callers).
    pub async fn get(&self, name: &str) -> Result<ResidentLayer, RemoteError> {
        let inner = &self.inner;
        let lock = {
            let mut state = inner.lock();
            match state.layers.get(name) {
                None => return Err(inner.unknown_layer(name)),
                Some(l) if l.resident => return Ok(ResidentLayer::pin(inner, &mut state, name)),
                Some(l) => Arc::clone(&l.download),
            }
        };
        let _downloading = lock.lock().await;
        let (entry, evicted) = {
            let mut state = inner.lock();
            let layer = state.layers.get(name).expect("layers are never forgotten");
            if layer.resident {
                // Downloaded by the caller we waited for.
                return Ok(ResidentLayer::pin(inner, &mut state, name));
            }
            let entry = layer
                .uploaded
                .expect("a layer that is not resident is uploaded");
            if entry.size > inner.budget {
                return Err(RemoteError::BudgetTooSmall {
                    layer: name.to_owned(),
                    size: entry.size,
                    budget: inner.budget,
                    dir: inner.dir.clone(),
                });
            }
            let evicted = inner
                .make_room(&mut state, entry.size, Some(name))
                .map_err(|pinned| RemoteError::BudgetExhausted {
                    layer: name.to_owned(),
                    size: entry.size,
                    budget: inner.budget,
                    pinned,
                    dir: inner.dir.clone(),
                })?;
            state.used += entry.size;
            (entry, evicted)
        };
        // Released if the download fails or this future is dropped.
        let reservation = Reservation::new(inner, entry.size);
        let result = async {
            if evicted {
                inner.sync_dir().await?;
            }
            inner
                .remote
                .download_layer(&inner.ctx, name, &entry, &inner.dir)
                .await
        }
        .await;
        let path = result?;
        debug_assert_eq!(path, inner.dir.join(name));
        reservation.commit();
        let mut state = inner.lock();
        inner.downloads.fetch_add(1, Ordering::Relaxed);
        state
            .layers
            .get_mut(name)
            .expect("layers are never forgotten")
            .resident = true;
        Ok(ResidentLayer::pin(inner, &mut state, name))
    }

    /// [`get`](Self::get), then opens the file as a delta layer. Keep the handle while reading.
    pub async fn open_delta(
        &self,
        name: &str,
    ) -> Result<(ResidentLayer, DeltaLayerReader), RemoteError> {
        self.get_then(name, ResidentLayer::open_delta).await
    }

    /// [`get`](Self::get), then opens the file as an image layer. Keep the handle while reading.
    pub async fn open_image(
        &self,
        name: &str,
    ) -> Result<(ResidentLayer, ImageLayerReader), RemoteError> {
        self.get_then(name, ResidentLayer::open_image).await
    }

    /// [`get`](Self::get), then `open` on the handle.
    async fn get_then<R>(
        &self,
        name: &str,
        open: impl AsyncFnOnce(&ResidentLayer) -> Result<R, RemoteError>,
    ) -> Result<(ResidentLayer, R), RemoteError> {
        let layer = self.get(name).await?;
        let reader = open(&layer).await?;
        Ok((layer, reader))
    }
}
