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

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use layer_writers::{DeltaLayerReader, ImageLayerReader, TEMP_SUFFIX};
use virtual_file::IoContext;

use crate::download::is_download_temp;
use crate::error::RemoteError;
use crate::index::{validate_layer_name, IndexEntry};
use crate::remote::RemoteStorage;

mod resident;

use resident::Reservation;
pub use resident::ResidentLayer;

/// What is known about one layer.
#[derive(Debug)]
struct LayerState {
    size: u64,
    resident: bool,
    uploaded: Option<IndexEntry>,
    /// Tick of the last open (or admission); smallest is evicted first.
    last_used: u64,
    /// Open [`ResidentLayer`] handles.
    pins: usize,
    /// Held while the layer is downloaded; openers of a layer that is not resident queue here.
    download: Arc<tokio::sync::Mutex<()>>,
}

#[derive(Debug, Default)]
struct State {
    layers: HashMap<String, LayerState>,
    /// Bytes of resident layers plus downloads in progress.
    used: u64,
    tick: u64,
}

/// Counters of what the store did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TierStats {
    /// Bytes of resident layers (and downloads in progress).
    pub resident_bytes: u64,
    /// The local directory's byte budget.
    pub budget: u64,
    /// Layers resident now.
    pub resident_layers: usize,
    /// Layers known (resident or uploaded).
    pub layers: usize,
    /// Downloads completed.
    pub downloads: u64,
    /// Evictions done.
    pub evictions: u64,
    /// Uploads completed.
    pub uploads: u64,
    /// Local files removed at open because their CRC32C differs from the index entry of their
    /// layer (which is then downloaded again when opened).
    pub corrupt_removed: u64,
}

struct Inner {
    ctx: IoContext,
    dir: PathBuf,
    remote: Arc<RemoteStorage>,
    budget: u64,
    state: Mutex<State>,
    downloads: AtomicU64,
    evictions: AtomicU64,
    uploads: AtomicU64,
    corrupt_removed: AtomicU64,
}

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

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn fs_error(
        &self,
        layer: &str,
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    ) -> RemoteError {
        RemoteError::LocalFs {
            layer: layer.to_owned(),
            op,
            path,
            source,
        }
    }

    /// Evicts resident, uploaded, unpinned layers other than `keep`, least recently used first, until
    /// `needed` more bytes fit the budget. Unlinks under the state lock, so a layer is never downloaded
    /// while its old file is still in place. Returns whether anything was evicted (the directory then
    /// needs an fsync) or the bytes that could not be freed.
    fn make_room(&self, state: &mut State, needed: u64, keep: Option<&str>) -> Result<bool, u64> {
        let mut evicted = false;
        while state.used + needed > self.budget {
            let victim = state
                .layers
                .iter()
                .filter(|(name, l)| {
                    l.resident && l.uploaded.is_some() && l.pins == 0 && Some(name.as_str()) != keep
                })
                .min_by_key(|(_, l)| l.last_used)
                .map(|(name, _)| name.clone());
            let Some(victim) = victim else {
                return Err(state.used);
            };
            let path = self.dir.join(&victim);
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(path = %path.display(), error = %e, "cannot evict a layer");
                    return Err(state.used);
                }
            }
            let layer = state.layers.get_mut(&victim).expect("chosen from the map");
            layer.resident = false;
            state.used -= layer.size;
            self.evictions.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(layer = %victim, "evicted");
            evicted = true;
        }
        Ok(evicted)
    }

    async fn sync_dir(&self) -> Result<(), RemoteError> {
        self.ctx
            .sync_dir(&self.dir)
            .await
            .map_err(|source| RemoteError::Local {
                layer: String::new(),
                source,
            })
    }

    /// Brings the directory back within budget if uploads made that possible.
    async fn enforce_budget(&self) -> Result<(), RemoteError> {
        let evicted = {
            let mut state = self.lock();
            let r = self.make_room(&mut state, 0, None);
            matches!(r, Ok(true))
        };
        if evicted {
            self.sync_dir().await?;
        }
        Ok(())
    }

    fn pin(self: &Arc<Self>, state: &mut State, name: &str) -> ResidentLayer {
        state.tick += 1;
        let tick = state.tick;
        let layer = state.layers.get_mut(name).expect("caller checked");
        layer.pins += 1;
        layer.last_used = tick;
        ResidentLayer::new(Arc::clone(self), name.to_owned(), self.dir.join(name))
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
        let fs_err = |op, source| RemoteError::LocalFs {
            layer: String::new(),
            op,
            path: dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(dir).map_err(|e| fs_err("create directory", e))?;
        let index = remote.load_index().await?;
        let mut state = State::default();
        let mut corrupt_removed = 0;
        for entry in std::fs::read_dir(dir).map_err(|e| fs_err("list directory", e))? {
            let entry = entry.map_err(|e| fs_err("list directory", e))?;
            let file_name = entry.file_name();
            let Some(name) = file_name.to_str() else {
                continue;
            };
            if is_download_temp(name) {
                std::fs::remove_file(entry.path())
                    .map_err(|e| fs_err("remove temporary download", e))?;
                continue;
            }
            if name.ends_with(TEMP_SUFFIX) || validate_layer_name(name).is_err() {
                continue;
            }
            let meta = entry.metadata().map_err(|e| fs_err("stat", e))?;
            if !meta.is_file() {
                continue;
            }
            let uploaded = index.layers.get(name).copied();
            if let Some(u) = uploaded.filter(|u| u.size != meta.len()) {
                tracing::warn!(
                    layer = name,
                    local = meta.len(),
                    remote = u.size,
                    "local layer differs in size from the uploaded one; treated as not uploaded"
                );
            }
            let uploaded = uploaded.filter(|u| u.size == meta.len());
            if let Some(u) = uploaded {
                let path = entry.path();
                let chunk = remote.options.download_buffer;
                let local = crate::upload::file_crc32c(ctx, &path, name, chunk).await?;
                if local.crc32c != u.crc32c || local.size != u.size {
                    tracing::warn!(
                        layer = name,
                        path = %path.display(),
                        local_crc32c = local.crc32c,
                        remote_crc32c = u.crc32c,
                        size = u.size,
                        "local layer file is corrupt (its CRC32C differs from the index); removed, \
                         it is downloaded again when opened"
                    );
                    std::fs::remove_file(&path).map_err(|e| RemoteError::LocalFs {
                        layer: name.to_owned(),
                        op: "unlink a corrupt local layer",
                        path: path.clone(),
                        source: e,
                    })?;
                    corrupt_removed += 1;
                    continue;
                }
            }
            state.used += meta.len();
            state.layers.insert(
                name.to_owned(),
                LayerState {
                    size: meta.len(),
                    resident: true,
                    uploaded,
                    last_used: 0,
                    pins: 0,
                    download: Arc::default(),
                },
            );
        }
        for (name, entry) in &index.layers {
            state
                .layers
                .entry(name.clone())
                .or_insert_with(|| LayerState {
                    size: entry.size,
                    resident: false,
                    uploaded: Some(*entry),
                    last_used: 0,
                    pins: 0,
                    download: Arc::default(),
                });
        }
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
                state.layers.insert(
                    name.to_owned(),
                    LayerState {
                        size,
                        resident: true,
                        uploaded: None,
                        last_used: tick,
                        pins: 0,
                        download: Arc::default(),
                    },
                );
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
                None => {
                    return Err(RemoteError::UnknownLayer {
                        layer: name.to_owned(),
                        dir: inner.dir.clone(),
                    })
                }
                Some(l) if l.uploaded.is_some() => return Ok(l.uploaded.expect("checked")),
                Some(l) => {
                    let size = l.size;
                    (inner.pin(&mut state, name), size)
                }
            }
        };
        let expect = crate::upload::Expect {
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
                return Err(RemoteError::UnknownLayer {
                    layer: name.to_owned(),
                    dir: inner.dir.clone(),
                });
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
                None => {
                    return Err(RemoteError::UnknownLayer {
                        layer: name.to_owned(),
                        dir: inner.dir.clone(),
                    })
                }
                Some(l) if l.resident => return Ok(inner.pin(&mut state, name)),
                Some(l) => Arc::clone(&l.download),
            }
        };
        let _downloading = lock.lock().await;
        let (entry, evicted) = {
            let mut state = inner.lock();
            let layer = state.layers.get(name).expect("layers are never forgotten");
            if layer.resident {
                // Downloaded by the caller we waited for.
                return Ok(inner.pin(&mut state, name));
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
        Ok(inner.pin(&mut state, name))
    }

    /// [`get`](Self::get), then opens the file as a delta layer. Keep the handle while reading.
    pub async fn open_delta(
        &self,
        name: &str,
    ) -> Result<(ResidentLayer, DeltaLayerReader), RemoteError> {
        let layer = self.get(name).await?;
        let reader = layer.open_delta().await?;
        Ok((layer, reader))
    }

    /// [`get`](Self::get), then opens the file as an image layer. Keep the handle while reading.
    pub async fn open_image(
        &self,
        name: &str,
    ) -> Result<(ResidentLayer, ImageLayerReader), RemoteError> {
        let layer = self.get(name).await?;
        let reader = layer.open_image().await?;
        Ok((layer, reader))
    }
}
