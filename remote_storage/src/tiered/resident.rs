//! [`ResidentLayer`], the handle that keeps a layer from eviction while it is read, and the
//! [`Reservation`] of budget bytes for a download in progress.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use layer_writers::{DeltaLayerReader, ImageLayerReader};

use super::state::{Inner, State};
use crate::error::RemoteError;

/// An open handle on a resident layer: while it lives the layer is not evicted.
pub struct ResidentLayer {
    inner: Arc<Inner>,
    name: String,
    path: PathBuf,
}

impl std::fmt::Debug for ResidentLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ResidentLayer")
            .field("name", &self.name)
            .field("path", &self.path)
            .finish()
    }
}

impl ResidentLayer {
    /// Pins layer `name` (known to `state`) and marks it used now.
    pub(super) fn pin(inner: &Arc<Inner>, state: &mut State, name: &str) -> Self {
        state.tick += 1;
        let tick = state.tick;
        let layer = state.layers.get_mut(name).expect("caller checked");
        layer.pins += 1;
        layer.last_used = tick;
        ResidentLayer {
            inner: Arc::clone(inner),
            name: name.to_owned(),
            path: inner.dir.join(name),
        }
    }

    /// The layer's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The local file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the file as a delta layer.
    pub async fn open_delta(&self) -> Result<DeltaLayerReader, RemoteError> {
        Ok(DeltaLayerReader::open(&self.inner.ctx, &self.path).await?)
    }

    /// Opens the file as an image layer.
    pub async fn open_image(&self) -> Result<ImageLayerReader, RemoteError> {
        Ok(ImageLayerReader::open(&self.inner.ctx, &self.path).await?)
    }
}

impl Drop for ResidentLayer {
    fn drop(&mut self) {
        let mut state = self.inner.lock();
        if let Some(layer) = state.layers.get_mut(&self.name) {
            layer.pins = layer.pins.saturating_sub(1);
        }
    }
}

/// Bytes counted against the budget for a download in progress; given back on drop unless the download
/// completed ([`Reservation::commit`]).
pub(super) struct Reservation<'a> {
    inner: &'a Inner,
    size: u64,
}

impl<'a> Reservation<'a> {
    /// Counts `size` bytes against the budget until dropped or committed (the caller added them).
    pub(super) fn new(inner: &'a Inner, size: u64) -> Self {
        Reservation { inner, size }
    }

    /// The download completed: its bytes stay counted, now as the resident layer's.
    pub(super) fn commit(mut self) {
        self.size = 0;
    }
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        if self.size > 0 {
            self.inner.lock().used -= self.size;
        }
    }
}
