//! What failed or cancelled uploads leave behind, and [`RemoteStorage::remove_orphans`]; the
//! abort of unfinished multipart uploads is in `abort`.
//!
//! Two kinds of leftovers:
//!
//! - **Orphan objects**: a complete object under `<prefix>/layers/` that no index entry names (an upload
//!   that failed or was cancelled between its object and its index entry). Deleted by
//!   `remove_orphans`, under the rule below.
//! - **Unfinished multipart uploads**: parts stored without a completed object. The uploader aborts
//!   them when it fails or is dropped, retrying the abort with backoff for
//!   [`RetryPolicy::abort_window`](crate::RetryPolicy::abort_window) (an outage of seconds does not
//!   leave them behind). One that still could not be aborted is remembered by this [`RemoteStorage`] and
//!   aborted by the next `remove_orphans`. `object_store` 0.14 offers no listing of multipart uploads
//!   (S3's `ListMultipartUploads` is not in its API), so uploads started by another process, or by this
//!   one before a restart, that were never aborted cannot be found here: they are left to the bucket's
//!   lifecycle rule (`AbortIncompleteMultipartUpload`), which every bucket used with this crate should
//!   have.
//!
//! # The orphan rule
//!
//! `remove_orphans` must never delete a layer that an index holds, also while other instances upload.
//! An upload writes its object first and its index entry after; between the two the object looks like
//! an orphan. So:
//!
//! 1. Write the probe object `<prefix>/orphan-scan` and take its last-modified time from a listing as
//!    *now* (the store's clock, in the same format as the layer listing: no clock skew between hosts).
//! 2. List `<prefix>/layers/`.
//! 3. Read the index (after the listing: an object indexed before this read is kept).
//! 4. Delete an object only if the index does not name it **and** its last-modified time is at least
//!    the grace period ([`RemoteOptions::orphan_grace`](crate::RemoteOptions::orphan_grace)) before
//!    *now*.
//!
//! An object's last-modified time is not later than its upload's start, so an upload that writes its
//! index entry within the grace period of its start is safe from every scan: a scan that read the index
//! before the entry was written took *now* earlier still, when the object was younger than the grace
//! period. An upload that took longer (from start to index entry) than the grace period checks its
//! object after writing the entry and uploads it again if it was deleted. With a grace period of zero
//! this protection is gone; use it only when nothing uploads to the prefix.

use std::time::Duration;

use futures::TryStreamExt;
use object_store::{ObjectStoreExt, PutPayload};

use crate::abort::{abort_upload, Unaborted};
use crate::error::{is_missing_object, RemoteError};
use crate::remote::RemoteStorage;

/// The probe object a scan writes to learn the store's clock, under the prefix.
pub const ORPHAN_SCAN_PROBE: &str = "orphan-scan";

/// What [`RemoteStorage::remove_orphans`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OrphanReport {
    /// Keys of the orphan objects deleted.
    pub deleted: Vec<String>,
    /// Keys of objects no index names that were kept: younger than the grace period (maybe an upload
    /// in flight).
    pub kept_young: Vec<String>,
    /// Multipart uploads of this instance whose abort had failed and that were aborted now.
    pub uploads_aborted: usize,
    /// Multipart uploads of this instance that still cannot be aborted (kept for the next call).
    pub uploads_unaborted: usize,
}

impl RemoteStorage {
    /// Removes what failed uploads left (the rule that keeps uploads in flight safe is in `orphans.rs`): aborts this instance's multipart
    /// uploads whose abort had failed, and deletes the objects under `<prefix>/layers/` that the index
    /// does not name and that are older than [`RemoteOptions::orphan_grace`](crate::RemoteOptions::orphan_grace).
    /// Safe while uploads to the prefix run anywhere (in this process or others), as long as each
    /// takes less than the grace period from its start to its index entry.
    pub async fn remove_orphans(&self) -> Result<OrphanReport, RemoteError> {
        self.remove_orphans_older_than(self.options.orphan_grace)
            .await
    }

    /// [`remove_orphans`](Self::remove_orphans) with another grace period. Zero deletes every object
    /// the index does not name, uploads in flight included: only for a prefix nothing uploads to.
    pub async fn remove_orphans_older_than(
        &self,
        grace: Duration,
    ) -> Result<OrphanReport, RemoteError> {
        let mut report = OrphanReport::default();
        let pending =
            std::mem::take(&mut *self.unaborted.lock().unwrap_or_else(|p| p.into_inner()));
        let before = pending.len();
        for Unaborted { key, upload } in pending {
            abort_upload(&self.options.retry, &self.unaborted, key, upload).await;
        }
        report.uploads_unaborted = self
            .unaborted
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .len();
        report.uploads_aborted = before.saturating_sub(report.uploads_unaborted);

        // 1. the store's clock
        let probe = self.prefix.clone().join(ORPHAN_SCAN_PROBE);
        let nonce: u64 = rand::random();
        self.store
            .put(&probe, PutPayload::from(nonce.to_string().into_bytes()))
            .await
            .map_err(|e| self.store_error("put", probe.as_ref(), e))?;
        let top = self
            .store
            .list_with_delimiter(Some(&self.prefix))
            .await
            .map_err(|e| self.store_error("list", self.prefix.as_ref(), e))?;
        let now = top
            .objects
            .iter()
            .find(|meta| meta.location == probe)
            .map(|meta| meta.last_modified)
            .ok_or_else(|| {
                RemoteError::Config(format!(
                    "{}: the probe object {probe} just written is not in the listing of {}",
                    self.description, self.prefix
                ))
            })?;
        // 2. the objects, 3. then the index
        let layers = self.prefix.clone().join("layers");
        let objects: Vec<_> = self
            .store
            .list(Some(&layers))
            .try_collect()
            .await
            .map_err(|e| self.store_error("list", layers.as_ref(), e))?;
        let index = self.load_index().await?;
        // 4. only old objects the index does not name
        for meta in objects {
            let name = meta.location.filename().unwrap_or_default();
            if index.layers.contains_key(name) {
                continue;
            }
            // negative (newer than the probe): zero
            let age = now
                .signed_duration_since(meta.last_modified)
                .to_std()
                .unwrap_or(Duration::ZERO);
            if age < grace {
                report.kept_young.push(meta.location.to_string());
                continue;
            }
            match self.store.delete(&meta.location).await {
                Ok(()) => {}
                Err(e) if is_missing_object(&e) => {}
                Err(e) => return Err(self.store_error("delete", meta.location.as_ref(), e)),
            }
            tracing::info!(key = %meta.location, "removed an orphan layer object");
            report.deleted.push(meta.location.to_string());
        }
        Ok(report)
    }
}
