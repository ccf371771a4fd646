//! [`VirtualFileStore`]: the store type, its root and context, and its `ObjectStore` implementation,
//! which hands each call to the module that does it (`put`, `get`, `list`, `manage`, `multipart_*`).

use std::fmt;
use std::path::Path as FsPath;
use std::sync::Arc;

use futures::stream::BoxStream;
use object_store::multipart::{MultipartStore, PartId};
use object_store::path::Path;
use object_store::{
    CopyMode, CopyOptions, GetOptions, GetResult, ListResult, MultipartId, MultipartUpload,
    ObjectMeta, ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions,
    RenameTargetMode, Result,
};
use virtual_file::IoContext;

use crate::error::StoreError;
use crate::multipart_store::Uploads;
use crate::store_inner::StoreInner;

/// An [`ObjectStore`] and [`MultipartStore`] over the directory `root`, doing all file IO through
/// [`VirtualFile`](virtual_file::VirtualFile)s of its [`IoContext`] (so the context's IO mode, engine,
/// page cache and memory budget apply). Cheap to clone: clones share one store.
///
/// Paths follow `LocalFileSystem`'s rules: the object `a/b` is the file `root/a/b`; directories are
/// created as needed and removed when emptied by a delete or rename. Writes go to a temp file in the
/// object's directory and are published by rename after `fdatasync`, with the directory synced:
/// a reader never sees a partial object, and a completed put survives a crash.
#[derive(Clone)]
pub struct VirtualFileStore {
    inner: Arc<StoreInner>,
    /// Uploads of the [`MultipartStore`] interface, by upload id.
    uploads: Arc<Uploads>,
}

impl VirtualFileStore {
    /// A store over `root` (created if missing; it must be a directory), with all IO through `ctx`.
    pub fn new(ctx: IoContext, root: impl AsRef<FsPath>) -> Result<Self, StoreError> {
        Ok(VirtualFileStore {
            inner: StoreInner::new(ctx, root.as_ref())?,
            uploads: Arc::default(),
        })
    }

    /// The root directory (canonical).
    pub fn root(&self) -> &FsPath {
        &self.inner.root
    }

    /// The context all IO goes through.
    pub fn context(&self) -> &IoContext {
        &self.inner.ctx
    }
}

impl fmt::Display for VirtualFileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "VirtualFileStore({}, {}, {})",
            self.inner.root.display(),
            self.inner.ctx.io_mode(),
            self.inner.ctx.engine_kind()
        )
    }
}

impl fmt::Debug for VirtualFileStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VirtualFileStore")
            .field("root", &self.inner.root)
            .field("io_mode", &self.inner.ctx.io_mode())
            .field("io_engine", &self.inner.ctx.engine_kind())
            .finish()
    }
}

#[async_trait::async_trait]
impl ObjectStore for VirtualFileStore {
    async fn put_opts(
        &self,
        location: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        crate::put::put_opts(&self.inner, location, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        location: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        crate::multipart_upload::start(&self.inner, location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        crate::get::get_opts(&self.inner, location, options).await
    }

    async fn get_ranges(
        &self,
        location: &Path,
        ranges: &[std::ops::Range<u64>],
    ) -> Result<Vec<bytes::Bytes>> {
        crate::get::get_ranges(&self.inner, location, ranges).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        crate::manage::delete_stream(Arc::clone(&self.inner), locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        crate::list::list(&self.inner, prefix)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        crate::list::list_with_delimiter(&self.inner, prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let replace = matches!(options.mode, CopyMode::Overwrite);
        crate::manage::copy(&self.inner, from, to, replace).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let replace = matches!(options.target_mode, RenameTargetMode::Overwrite);
        crate::manage::rename(&self.inner, from, to, replace).await
    }
}

#[async_trait::async_trait]
impl MultipartStore for VirtualFileStore {
    async fn create_multipart(&self, path: &Path) -> Result<MultipartId> {
        crate::multipart_store::create(
            &self.inner,
            &self.uploads,
            path,
            PutMultipartOptions::default(),
        )
        .await
    }

    async fn create_multipart_opts(
        &self,
        path: &Path,
        opts: PutMultipartOptions,
    ) -> Result<MultipartId> {
        crate::multipart_store::create(&self.inner, &self.uploads, path, opts).await
    }

    async fn put_part(
        &self,
        path: &Path,
        id: &MultipartId,
        part_idx: usize,
        data: PutPayload,
    ) -> Result<PartId> {
        crate::multipart_store::put_part(&self.inner, &self.uploads, path, id, part_idx, data).await
    }

    async fn complete_multipart(
        &self,
        path: &Path,
        id: &MultipartId,
        parts: Vec<PartId>,
    ) -> Result<PutResult> {
        crate::multipart_store::complete(&self.inner, &self.uploads, path, id, parts).await
    }

    async fn abort_multipart(&self, path: &Path, id: &MultipartId) -> Result<()> {
        crate::multipart_store::abort(&self.uploads, path, id).await
    }
}
