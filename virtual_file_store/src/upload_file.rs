//! [`UploadFile`]: the temp file an object is written into before it is published, shared by `put_opts`
//! and both multipart interfaces.
//!
//! Rules:
//! - The temp file is `<object name>#vfs.<16 hex digits>` in the object's directory (same file system,
//!   so the publishing rename is atomic), created exclusively through the context (its IO mode applies:
//!   `O_DIRECT` in `direct-rw`). Until [`UploadFile::publish`] it is never visible under the object's
//!   name; dropped unpublished, it is removed.
//! - Parts are written at offsets claimed in advance, several at once. Through the page cache a part's
//!   payload chunks are written as they are (no copy). With `O_DIRECT` each part's aligned middle is
//!   copied once into aligned [`TransferBuffers`](crate::transfer_buffers::TransferBuffers) and written;
//!   its unaligned edges (at most one sector at each end) are collected per sector from the parts that
//!   share it and written once the sector is whole; the last sector of the object is written zero-padded
//!   at publish and the file cut to its length.
//! - Every buffer in flight is paid from the memory budget first.
//! - A part that fails, or whose future is dropped before it finished, fails the upload: publish
//!   refuses and removes the temp file.
//! - Publish: `fdatasync`, attributes (extended attribute), rename (no-replace for `PutMode::Create`),
//!   directory `fsync`. A successful publish is durable.

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use io_engine::{FullSlice, RenameMode};
use object_store::{Attributes, PutPayload, PutResult};
use virtual_file::VirtualFile;

use crate::directories::{create_dirs, CREATE_ATTEMPTS};
use crate::error::StoreError;
use crate::location::INTERNAL_MARK;
use crate::object_meta::{set_attributes, FileFacts};
use crate::store_inner::StoreInner;
use crate::transfer_buffers::{TransferBuffers, TRANSFER_CHUNK};

/// A sector shared by parts, being filled.
struct PartialSector {
    bytes: Vec<u8>,
    filled: usize,
}

/// The temp file of one object being written.
pub(crate) struct UploadFile {
    file: VirtualFile,
    location: String,
    target: PathBuf,
    /// `Some(alignment)` when the temp file is `O_DIRECT`.
    align: Option<usize>,
    sectors: Mutex<HashMap<u64, PartialSector>>,
    failed: Mutex<Option<String>>,
    /// Part writes running as tasks ([`spawn_part`](Self::spawn_part)).
    tasks: Arc<PartTasks>,
    buffers: Arc<TransferBuffers>,
    store: Arc<StoreInner>,
}

/// Marks the upload failed if a part's write ends without success (error or dropped future).
struct PartGuard<'a> {
    upload: &'a UploadFile,
    offset: u64,
    done: bool,
}

impl Drop for PartGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.upload.fail(format!(
                "the part at offset {} did not finish (its write failed or its future was dropped)",
                self.offset
            ));
        }
    }
}

/// The count of an upload's running part tasks, and their wake-up. Apart from the [`UploadFile`] so that
/// a task can let go of the file before it counts itself out.
#[derive(Default)]
struct PartTasks {
    running: AtomicUsize,
    done: tokio::sync::Notify,
}

/// Counts a part task down when it ends, however it ends: after dropping its hold on the file, so that
/// whoever [`wait_parts`](UploadFile::wait_parts) and sees the count at 0 may take the file alone.
struct TaskGuard {
    file: Option<Arc<UploadFile>>,
    tasks: Arc<PartTasks>,
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        drop(self.file.take());
        self.tasks.running.fetch_sub(1, Ordering::AcqRel);
        self.tasks.done.notify_waiters();
    }
}

/// The future a caller awaits for a spawned part: dropped before the part finished, it fails the
/// upload (the caller never learns whether the part landed, so the object must not be published).
pub(crate) struct PartHandle {
    task: tokio::task::JoinHandle<Result<(), StoreError>>,
    file: Arc<UploadFile>,
    offset: u64,
    finished: bool,
}

impl std::future::Future for PartHandle {
    type Output = Result<(), StoreError>;

    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Self::Output> {
        let res = std::task::ready!(std::pin::Pin::new(&mut self.task).poll(cx));
        self.finished = true;
        std::task::Poll::Ready(match res {
            Ok(r) => r,
            Err(join) => Err(StoreError::UploadFailed {
                location: self.file.location.clone(),
                reason: format!(
                    "the task writing the part at offset {} ended: {join}",
                    self.offset
                ),
            }),
        })
    }
}

impl Drop for PartHandle {
    fn drop(&mut self) {
        if !self.finished {
            self.file.fail(format!(
                "the future of the part at offset {} was dropped before the part finished",
                self.offset
            ));
        }
    }
}

/// Copies `dst.len()` bytes of the payload, starting `from` bytes into it, into `dst`.
fn copy_out(chunks: &[Bytes], mut from: usize, mut dst: &mut [u8]) {
    for c in chunks {
        if dst.is_empty() {
            return;
        }
        if from >= c.len() {
            from -= c.len();
            continue;
        }
        let n = (c.len() - from).min(dst.len());
        dst[..n].copy_from_slice(&c[from..from + n]);
        dst = &mut dst[n..];
        from = 0;
    }
    debug_assert!(dst.is_empty(), "payload shorter than its claimed range");
}

impl UploadFile {
    /// Creates the temp file for the object `location` stored at `target`.
    pub async fn create(
        store: &Arc<StoreInner>,
        location: &str,
        target: PathBuf,
    ) -> Result<Self, StoreError> {
        let dir = target.parent().unwrap_or(&store.root).to_owned();
        let name = target
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let prefix = format!("{name}{INTERNAL_MARK}");
        let mut attempt = 0;
        let file = loop {
            attempt += 1;
            create_dirs(&store.ctx, &store.root, &dir).await?;
            match VirtualFile::create_temp(&store.ctx, &dir, &prefix, "").await {
                Ok(f) => break f,
                // the directory was removed by a delete that emptied it: create it again
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) && attempt < CREATE_ATTEMPTS => {}
                Err(e) => return Err(StoreError::file("create temp file", location, e)),
            }
        };
        let align = file.is_direct().then(|| store.ctx.alignment());
        Ok(UploadFile {
            file,
            location: location.to_owned(),
            target,
            align,
            sectors: Mutex::new(HashMap::new()),
            failed: Mutex::new(None),
            tasks: Arc::default(),
            buffers: Arc::clone(&store.buffers),
            store: Arc::clone(store),
        })
    }

    /// The temp file (for tests and checks).
    pub fn file(&self) -> &VirtualFile {
        &self.file
    }

    /// Marks the upload failed (the first reason is kept).
    pub fn fail(&self, reason: String) {
        let mut failed = self.failed.lock().unwrap_or_else(|p| p.into_inner());
        if failed.is_none() {
            tracing::warn!(location = %self.location, %reason, "upload failed");
            *failed = Some(reason);
        }
    }

    pub fn check_not_failed(&self) -> Result<(), StoreError> {
        match &*self.failed.lock().unwrap_or_else(|p| p.into_inner()) {
            Some(reason) => Err(StoreError::UploadFailed {
                location: self.location.clone(),
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Writes `payload` at `offset` as a task of its own, so that parts are written at once also on an
    /// engine whose ops run inline (`std-fs`) and however the caller polls them.
    pub fn spawn_part(self: &Arc<Self>, offset: u64, payload: PutPayload) -> PartHandle {
        self.tasks.running.fetch_add(1, Ordering::AcqRel);
        let guard = TaskGuard {
            file: Some(Arc::clone(self)),
            tasks: Arc::clone(&self.tasks),
        };
        let task = tokio::spawn(async move {
            let guard = guard;
            let file = guard.file.as_ref().expect("set until the guard drops");
            file.write_part(offset, &payload).await
        });
        PartHandle {
            task,
            file: Arc::clone(self),
            offset,
            finished: false,
        }
    }

    /// Waits until no part task of this upload is running.
    pub async fn wait_parts(&self) {
        loop {
            let done = self.tasks.done.notified();
            tokio::pin!(done);
            done.as_mut().enable();
            if self.tasks.running.load(Ordering::Acquire) == 0 {
                return;
            }
            done.await;
        }
    }

    /// Writes `payload` at `offset` (a range claimed for it alone). Any failure fails the upload.
    pub async fn write_part(&self, offset: u64, payload: &PutPayload) -> Result<(), StoreError> {
        let len = payload.content_length() as u64;
        let mut guard = PartGuard {
            upload: self,
            offset,
            done: false,
        };
        self.check_not_failed()?;
        let chunks: Vec<Bytes> = payload.iter().cloned().collect();
        let res = match self.align {
            None => self.write_buffered(offset, &chunks).await,
            Some(align) => self.write_direct(offset, len, &chunks, align as u64).await,
        };
        let res = res.map_err(|source| StoreError::Part {
            location: self.location.clone(),
            offset,
            len,
            source: Box::new(source),
        });
        if let Err(e) = &res {
            self.fail(e.to_string());
        } else {
            guard.done = true;
        }
        res
    }

    fn budget_error(&self, source: virtual_file::MemoryBudgetError) -> StoreError {
        StoreError::Budget {
            location: self.location.clone(),
            source,
        }
    }

    async fn write_buffered(&self, offset: u64, chunks: &[Bytes]) -> Result<(), StoreError> {
        let budget = self.store.ctx.memory_budget();
        let mut pos = offset;
        for chunk in chunks {
            let mut at = 0;
            while at < chunk.len() {
                let n = (chunk.len() - at).min(TRANSFER_CHUNK);
                let piece = chunk.slice(at..at + n);
                let _reservation = budget
                    .reserve(virtual_file::Consumer::StoreTransfers, n)
                    .await
                    .map_err(|e| self.budget_error(e))?;
                let (_, res) = self.file.write_all_at(FullSlice::new(piece), pos).await;
                res.map_err(|e| StoreError::file("write", &self.location, e))?;
                pos += n as u64;
                at += n;
            }
        }
        Ok(())
    }

    async fn write_direct(
        &self,
        offset: u64,
        len: u64,
        chunks: &[Bytes],
        align: u64,
    ) -> Result<(), StoreError> {
        let end = offset + len;
        let mid_start = offset.next_multiple_of(align).min(end);
        let mid_end = (end / align * align).max(mid_start);
        if mid_start > offset {
            let mut head = vec![0u8; (mid_start - offset) as usize];
            copy_out(chunks, 0, &mut head);
            self.add_edge(offset, &head, align).await?;
        }
        let mut pos = mid_start;
        while pos < mid_end {
            let n = ((mid_end - pos) as usize).min(TRANSFER_CHUNK);
            let mut tb = self
                .buffers
                .get(n)
                .await
                .map_err(|e| self.budget_error(e))?;
            let buf = tb.buf_mut();
            buf.resize(n);
            copy_out(chunks, (pos - offset) as usize, buf.as_mut_slice());
            let (buf, res) = self.file.write_all_at(FullSlice::new(tb.take()), pos).await;
            tb.restore(buf.into_inner());
            res.map_err(|e| StoreError::file("write", &self.location, e))?;
            pos += n as u64;
        }
        if end > mid_end {
            let mut tail = vec![0u8; (end - mid_end) as usize];
            copy_out(chunks, (mid_end - offset) as usize, &mut tail);
            self.add_edge(mid_end, &tail, align).await?;
        }
        Ok(())
    }

    /// Adds the bytes of a part's edge (inside one sector) and writes the sector once it is whole.
    async fn add_edge(&self, pos: u64, data: &[u8], align: u64) -> Result<(), StoreError> {
        let sector = pos / align;
        let within = (pos % align) as usize;
        let whole = {
            let mut sectors = self.sectors.lock().unwrap_or_else(|p| p.into_inner());
            let s = sectors.entry(sector).or_insert_with(|| PartialSector {
                bytes: vec![0; align as usize],
                filled: 0,
            });
            s.bytes[within..within + data.len()].copy_from_slice(data);
            s.filled += data.len();
            if s.filled == align as usize {
                sectors.remove(&sector).map(|s| s.bytes)
            } else {
                None
            }
        };
        match whole {
            Some(bytes) => self.write_sector(sector * align, &bytes).await,
            None => Ok(()),
        }
    }

    async fn write_sector(&self, at: u64, bytes: &[u8]) -> Result<(), StoreError> {
        let mut tb = self
            .buffers
            .get(bytes.len())
            .await
            .map_err(|e| self.budget_error(e))?;
        tb.buf_mut().extend_from_slice(bytes);
        let (buf, res) = self.file.write_all_at(FullSlice::new(tb.take()), at).await;
        tb.restore(buf.into_inner());
        res.map_err(|e| StoreError::file("write", &self.location, e))
    }

    /// Writes what remains of the last sector, cuts the file to `len`, and publishes it under the
    /// object's name: `Replace` overwrites an existing object, `NoReplace` fails with `AlreadyExists`.
    pub async fn publish(
        mut self,
        len: u64,
        attributes: &Attributes,
        mode: RenameMode,
    ) -> Result<PutResult, StoreError> {
        let res = self.publish_inner(len, attributes, mode).await;
        if res.is_err() {
            self.remove().await;
        }
        res
    }

    async fn publish_inner(
        &mut self,
        len: u64,
        attributes: &Attributes,
        mode: RenameMode,
    ) -> Result<PutResult, StoreError> {
        self.check_not_failed()?;
        if self.file.mutations_in_flight() != 0 {
            return Err(StoreError::UploadFailed {
                location: self.location.clone(),
                reason: "writes of dropped parts are still in flight".into(),
            });
        }
        self.finish_sectors(len).await?;
        let location = self.location.clone();
        let io = |op| {
            let location = location.clone();
            move |e| StoreError::file(op, &location, e)
        };
        self.file.sync_data().await.map_err(io("fdatasync"))?;
        let stat = self.file.metadata().await.map_err(io("stat"))?;
        if stat.size != len {
            return Err(StoreError::BadParts {
                location: self.location.clone(),
                reason: format!("the file holds {} bytes, the parts {len}", stat.size),
            });
        }
        set_attributes(self.file.path(), &self.location, attributes)?;
        let e_tag = FileFacts::from_stat(&stat).e_tag();
        let target = self.target.clone();
        self.file
            .persist(&target, mode)
            .await
            .map_err(io("rename into place"))?;
        let dir = self.target.parent().unwrap_or(&self.store.root);
        self.store
            .ctx
            .sync_dir(dir)
            .await
            .map_err(io("sync directory"))?;
        Ok(PutResult {
            e_tag: Some(e_tag),
            version: None,
            extensions: Default::default(),
        })
    }

    /// Writes the last, partial sector of an `O_DIRECT` file of `len` bytes zero-padded and cuts the file
    /// to `len`; any other sector still partial means the parts do not cover `0..len`.
    pub async fn finish_sectors(&self, len: u64) -> Result<(), StoreError> {
        let Some(align) = self.align else {
            return Ok(());
        };
        let align = align as u64;
        let left: Vec<(u64, PartialSector)> = self
            .sectors
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (sector, s) in left {
            if sector != len / align || len % align == 0 {
                return Err(StoreError::BadParts {
                    location: self.location.clone(),
                    reason: format!(
                        "sector {sector} ({} of {align} bytes) was never filled: parts do not cover \
                         0..{len}",
                        s.filled
                    ),
                });
            }
            self.write_sector(sector * align, &s.bytes).await?;
            self.file
                .set_len(len)
                .await
                .map_err(|e| StoreError::file("set length", &self.location, e))?;
        }
        Ok(())
    }

    /// Removes the temp file (abort, or a failed publish).
    pub async fn remove(&self) {
        let path: &FsPath = self.file.path();
        if let Err(e) = self.store.ctx.engine().unlink(path).await {
            if e.raw_os_error() != Some(libc::ENOENT) {
                tracing::warn!(path = %path.display(), error = %e, "removing an upload's temp file failed");
            }
        }
    }
}
