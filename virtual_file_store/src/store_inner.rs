//! [`StoreInner`]: what every operation of a store shares: its context, its canonical root and its
//! transfer buffers.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use virtual_file::IoContext;

use crate::error::StoreError;
use crate::transfer_buffers::TransferBuffers;

pub(crate) struct StoreInner {
    pub ctx: IoContext,
    pub root: PathBuf,
    pub buffers: Arc<TransferBuffers>,
}

impl StoreInner {
    /// Over `root` (created if missing; it must be a directory).
    pub fn new(ctx: IoContext, root: &FsPath) -> Result<Arc<Self>, StoreError> {
        std::fs::create_dir_all(root).map_err(|e| StoreError::fs("create root", root, e))?;
        let root = root
            .canonicalize()
            .map_err(|e| StoreError::fs("resolve root", root, e))?;
        if !root.is_dir() {
            return Err(StoreError::Root {
                root,
                reason: "not a directory".into(),
            });
        }
        let buffers = TransferBuffers::new(ctx.memory_budget().clone());
        Ok(Arc::new(StoreInner { ctx, root, buffers }))
    }
}
