//! `put_opts`: the whole payload into a temp file, then published (see `upload_file.rs`).
//!
//! `PutMode::Overwrite` replaces an existing object atomically; `PutMode::Create` publishes with a
//! no-replace rename and is `AlreadyExists` if the object exists. `PutMode::Update` (compare-and-swap on
//! an e_tag) is `NotImplemented`, as in `LocalFileSystem`: a file system has no rename-if-inode, so it
//! cannot be made atomic against other processes. Tags are `NotImplemented` too; attributes are kept.

use std::sync::Arc;

use io_engine::RenameMode;
use object_store::path::Path;
use object_store::{PutMode, PutOptions, PutPayload, PutResult, Result};

use crate::error::not_implemented;
use crate::location::object_file;
use crate::store_inner::StoreInner;
use crate::upload_file::UploadFile;

pub(crate) fn rename_mode(mode: &PutMode) -> Result<RenameMode> {
    match mode {
        PutMode::Overwrite => Ok(RenameMode::Replace),
        PutMode::Create => Ok(RenameMode::NoReplace),
        PutMode::Update(_) => Err(not_implemented("`put_opts` with mode `PutMode::Update`")),
    }
}

pub(crate) async fn put_opts(
    store: &Arc<StoreInner>,
    location: &Path,
    payload: PutPayload,
    opts: PutOptions,
) -> Result<PutResult> {
    let loc = location.as_ref();
    let mode = rename_mode(&opts.mode)?;
    if !opts.tags.encoded().is_empty() {
        return Err(not_implemented("`put_opts` with tags"));
    }
    let target = object_file(&store.root, location).map_err(|e| e.into_object_store(loc))?;
    let upload = UploadFile::create(store, loc, target)
        .await
        .map_err(|e| e.into_object_store(loc))?;
    let len = payload.content_length() as u64;
    if let Err(e) = upload.write_part(0, &payload).await {
        upload.remove().await;
        return Err(e.into_object_store(loc));
    }
    upload
        .publish(len, &opts.attributes, mode)
        .await
        .map_err(|e| e.into_object_store(loc))
}
