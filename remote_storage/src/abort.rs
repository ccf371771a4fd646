//! Aborting multipart uploads that did not complete, also when the future driving one is dropped:
//! [`AbortOnDrop`] holds an upload until it completes, [`abort_upload`] retries the abort for the
//! policy's abort window, and an upload that still cannot be aborted is kept as [`Unaborted`] in the
//! [`UnabortedList`] of its `RemoteStorage`, whose `remove_orphans` tries again.

use std::sync::{Arc, Mutex};

use object_store::path::Path as ObjectPath;
use object_store::MultipartUpload;

use crate::error::{is_missing_object, store_error_is_transient};
use crate::retry::{wait_within, RetryPolicy};

/// A multipart upload whose abort failed for the whole abort window.
#[derive(Debug)]
pub(crate) struct Unaborted {
    pub(crate) key: ObjectPath,
    pub(crate) upload: Box<dyn MultipartUpload>,
}

/// Memory of the uploads still to abort, shared by a `RemoteStorage` and its uploads' guards.
pub(crate) type UnabortedList = Arc<Mutex<Vec<Unaborted>>>;

/// Aborts `upload` with retries for the policy's abort window. If it still fails, the upload is kept
/// in `unaborted` for `RemoteStorage::remove_orphans` and the error is logged (the upload already
/// failed for another reason, which is what the caller reports).
pub(crate) async fn abort_upload(
    policy: &RetryPolicy,
    unaborted: &UnabortedList,
    key: ObjectPath,
    mut upload: Box<dyn MultipartUpload>,
) {
    let start = std::time::Instant::now();
    let mut attempts = 1;
    let res = loop {
        match upload.abort().await {
            Err(e) if store_error_is_transient(&e) => {
                match wait_within(policy, start, policy.abort_window, attempts) {
                    Some(wait) => {
                        tracing::debug!(%key, attempts, error = %e, "abort failed, retrying");
                        tokio::time::sleep(wait).await;
                        attempts += 1;
                    }
                    None => break Err(e),
                }
            }
            res => break res,
        }
    };
    match res {
        Ok(()) => tracing::debug!(%key, attempts, "aborted a multipart upload"),
        Err(e) if is_missing_object(&e) => {}
        Err(e) => {
            tracing::warn!(%key, attempts, error = %e,
                "could not abort a multipart upload; remove_orphans will try again");
            unaborted
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push(Unaborted { key, upload });
        }
    }
}

/// Aborts a multipart upload that was not completed, also when the future driving it is dropped (in
/// the background then), with retries for the abort window; one that cannot be aborted is remembered
/// for `RemoteStorage::remove_orphans`.
pub(crate) struct AbortOnDrop {
    upload: Option<Box<dyn MultipartUpload>>,
    key: ObjectPath,
    policy: RetryPolicy,
    unaborted: UnabortedList,
}

impl AbortOnDrop {
    /// Holds `upload` of `key`: aborted unless [`disarm`](Self::disarm)ed.
    pub(crate) fn new(
        upload: Box<dyn MultipartUpload>,
        key: ObjectPath,
        policy: RetryPolicy,
        unaborted: UnabortedList,
    ) -> Self {
        AbortOnDrop {
            upload: Some(upload),
            key,
            policy,
            unaborted,
        }
    }

    /// The upload held.
    pub(crate) fn upload(&mut self) -> &mut Box<dyn MultipartUpload> {
        self.upload
            .as_mut()
            .expect("the upload is held until completed or aborted")
    }

    /// Completion succeeded: nothing to abort.
    pub(crate) fn disarm(mut self) {
        self.upload = None;
    }

    /// Aborts now (the upload already failed for another reason, which is what is reported).
    pub(crate) async fn abort(mut self) {
        if let Some(upload) = self.upload.take() {
            abort_upload(&self.policy, &self.unaborted, self.key.clone(), upload).await;
        }
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        if let Some(upload) = self.upload.take() {
            let (policy, unaborted, key) = (self.policy, self.unaborted.clone(), self.key.clone());
            match tokio::runtime::Handle::try_current() {
                Ok(rt) => {
                    rt.spawn(async move { abort_upload(&policy, &unaborted, key, upload).await });
                }
                Err(_) => unaborted
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .push(Unaborted { key, upload }),
            }
        }
    }
}
