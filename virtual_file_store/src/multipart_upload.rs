//! `put_multipart_opts`: a [`MultipartUpload`] whose parts are written into one temp file as they come,
//! each at the offset it claims when `put_part` is called (the sum of the lengths before it), so that
//! several parts are in flight at once, in any order of completion, without a lock around the writes.
//! `complete` publishes the file (see `upload_file.rs`); `abort` removes it; an upload dropped without
//! either leaves nothing behind.

use std::sync::Arc;

use io_engine::RenameMode;
use object_store::path::Path;
use object_store::{
    Attributes, MultipartUpload, PutMultipartOptions, PutPayload, PutResult, Result, UploadPart,
};

use crate::error::{not_implemented, StoreError};
use crate::location::object_file;
use crate::store_inner::StoreInner;
use crate::upload_file::UploadFile;

/// One multipart upload of the `ObjectStore` interface.
pub(crate) struct FileUpload {
    file: Option<Arc<UploadFile>>,
    location: String,
    next_offset: u64,
    attributes: Attributes,
}

impl std::fmt::Debug for FileUpload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FileUpload")
            .field("location", &self.location)
            .field("next_offset", &self.next_offset)
            .finish()
    }
}

pub(crate) async fn start(
    store: &Arc<StoreInner>,
    location: &Path,
    opts: PutMultipartOptions,
) -> Result<Box<dyn MultipartUpload>> {
    let loc = location.as_ref();
    if !opts.tags.encoded().is_empty() {
        return Err(not_implemented("`put_multipart_opts` with tags"));
    }
    let target = object_file(&store.root, location).map_err(|e| e.into_object_store(loc))?;
    let file = UploadFile::create(store, loc, target)
        .await
        .map_err(|e| e.into_object_store(loc))?;
    Ok(Box::new(FileUpload {
        file: Some(Arc::new(file)),
        location: loc.to_owned(),
        next_offset: 0,
        attributes: opts.attributes,
    }))
}

impl FileUpload {
    fn finished(&self) -> StoreError {
        StoreError::UploadFailed {
            location: self.location.clone(),
            reason: "the upload was already completed or aborted".into(),
        }
    }

    /// The upload's file, alone, once its part tasks have ended: `PartsInFlight` if anything else still
    /// holds it.
    async fn take_file(&mut self) -> Result<UploadFile, StoreError> {
        let file = self.file.take().ok_or_else(|| self.finished())?;
        file.wait_parts().await;
        Arc::try_unwrap(file).map_err(|file| {
            let parts = Arc::strong_count(&file) - 1;
            file.fail("complete was called with parts in flight".into());
            StoreError::PartsInFlight {
                location: self.location.clone(),
                parts,
            }
        })
    }
}

#[async_trait::async_trait]
impl MultipartUpload for FileUpload {
    fn put_part(&mut self, data: PutPayload) -> UploadPart {
        let offset = self.next_offset;
        self.next_offset += data.content_length() as u64;
        let file = self.file.clone();
        let location = self.location.clone();
        let finished = self.finished();
        let Some(file) = file else {
            return Box::pin(async move { Err(finished.into_object_store(&location)) });
        };
        let part = file.spawn_part(offset, data);
        Box::pin(async move { part.await.map_err(|e| e.into_object_store(&location)) })
    }

    async fn complete(&mut self) -> Result<PutResult> {
        let loc = self.location.clone();
        let file = self
            .take_file()
            .await
            .map_err(|e| e.into_object_store(&loc))?;
        file.publish(self.next_offset, &self.attributes, RenameMode::Replace)
            .await
            .map_err(|e| e.into_object_store(&loc))
    }

    async fn abort(&mut self) -> Result<()> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        file.fail("aborted".into());
        file.wait_parts().await;
        file.remove().await;
        Ok(())
    }
}
