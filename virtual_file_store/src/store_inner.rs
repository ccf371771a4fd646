//! [`StoreInner`]: what every operation of a store shares: its context, its canonical root and its
//! transfer buffers; and [`StoreInner::run_io`], where an operation's file IO runs.
//!
//! The `std-fs` engine makes its syscalls on the calling thread. Awaited on a runtime worker, a read
//! blocks that worker, so a runtime with 2 workers has at most 2 reads at the device however many
//! requests are waiting, and its other tasks wait too. So with `std-fs` the store runs the IO of reads
//! on tokio's blocking pool (as `LocalFileSystem` runs all of its calls), one hop per request; the ring
//! engine's ops are already asynchronous and run where they are awaited.

use std::future::Future;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use io_engine::IoEngineKind;
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

impl StoreInner {
    /// Runs `io` to its end on tokio's blocking pool when the context's engine makes its syscalls on
    /// the calling thread (`std-fs`, also after a ring engine's downgrade), else awaits it here.
    /// Dropping the returned future does not stop `io` once it runs on the pool (it only reads, and ends
    /// by itself). `on_cancel` makes the output if the runtime shuts down before `io` ran; a panic in
    /// `io` is resumed here.
    pub async fn run_io<T: Send + 'static>(
        &self,
        io: impl Future<Output = T> + Send + 'static,
        on_cancel: impl FnOnce() -> T,
    ) -> T {
        let inline =
            self.ctx.engine_kind() == IoEngineKind::StdFs || self.ctx.engine().is_downgraded();
        if !inline {
            return io.await;
        }
        let handle = tokio::runtime::Handle::current();
        match tokio::task::spawn_blocking(move || handle.block_on(io)).await {
            Ok(out) => out,
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            Err(_) => on_cancel(),
        }
    }
}
