//! The tier's bookkeeping: what is known about each layer ([`LayerState`]), the bytes counted against
//! the budget ([`State`]), the counters ([`TierStats`]), and [`Inner`], what every clone of a
//! `TieredLayers` shares, with the eviction of least recently used layers ([`Inner::make_room`]).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use virtual_file::IoContext;

use crate::error::RemoteError;
use crate::index::IndexEntry;
use crate::remote::RemoteStorage;

/// What is known about one layer.
#[derive(Debug)]
pub(super) struct LayerState {
    pub(super) size: u64,
    pub(super) resident: bool,
    pub(super) uploaded: Option<IndexEntry>,
    /// Tick of the last open (or admission); smallest is evicted first.
    pub(super) last_used: u64,
    /// Open `ResidentLayer` handles.
    pub(super) pins: usize,
    /// Held while the layer is downloaded; openers of a layer that is not resident queue here.
    pub(super) download: Arc<tokio::sync::Mutex<()>>,
}

impl LayerState {
    /// A layer last used at `last_used`, not pinned, no download in progress.
    pub(super) fn new(
        size: u64,
        resident: bool,
        uploaded: Option<IndexEntry>,
        last_used: u64,
    ) -> Self {
        LayerState {
            size,
            resident,
            uploaded,
            last_used,
            pins: 0,
            download: Arc::default(),
        }
    }
}

#[derive(Debug, Default)]
pub(super) struct State {
    pub(super) layers: HashMap<String, LayerState>,
    /// Bytes of resident layers plus downloads in progress.
    pub(super) used: u64,
    pub(super) tick: u64,
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

/// What every clone of a `TieredLayers` shares.
pub(super) struct Inner {
    pub(super) ctx: IoContext,
    pub(super) dir: PathBuf,
    pub(super) remote: Arc<RemoteStorage>,
    pub(super) budget: u64,
    pub(super) state: Mutex<State>,
    pub(super) downloads: AtomicU64,
    pub(super) evictions: AtomicU64,
    pub(super) uploads: AtomicU64,
    pub(super) corrupt_removed: AtomicU64,
}

impl Inner {
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The error for a layer `name` that this directory does not hold.
    pub(super) fn unknown_layer(&self, name: &str) -> RemoteError {
        RemoteError::UnknownLayer {
            layer: name.to_owned(),
            dir: self.dir.clone(),
        }
    }

    pub(super) fn fs_error(
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
    pub(super) fn make_room(
        &self,
        state: &mut State,
        needed: u64,
        keep: Option<&str>,
    ) -> Result<bool, u64> {
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

    pub(super) async fn sync_dir(&self) -> Result<(), RemoteError> {
        self.ctx
            .sync_dir(&self.dir)
            .await
            .map_err(|source| RemoteError::Local {
                layer: String::new(),
                source,
            })
    }

    /// Brings the directory back within budget if uploads made that possible.
    pub(super) async fn enforce_budget(&self) -> Result<(), RemoteError> {
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
}
