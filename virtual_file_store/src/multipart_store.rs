//! The [`MultipartStore`](object_store::multipart::MultipartStore) interface: uploads named by an id,
//! parts put by index, in any order, from any task.
//!
//! A part's offset in the object is the sum of the lengths of the parts before it, so it is known only
//! once every lower index has been put. A part whose lower indices are all known (the usual case: parts
//! put in index order, several in flight) is written straight into the upload's temp file at its offset.
//! A part that arrives before a lower one goes to a temp file of its own and is copied into place when
//! `complete_multipart` lays the parts out; it is the only case in which bytes are written twice.
//!
//! Uploads live in the store instance that created them (an id from another instance or process is
//! `UnknownUpload`); dropping the store removes their temp files. `complete_multipart` takes the parts in
//! ascending index order, each once, as S3 does. A `complete_multipart` refused for its part list or
//! because a part failed leaves the upload as it was (for `abort_multipart`, or a retry with the right
//! list); one that fails later, while publishing, ends the upload and removes its files.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use io_engine::RenameMode;
use object_store::multipart::PartId;
use object_store::path::Path;
use object_store::{Attributes, MultipartId, PutMultipartOptions, PutPayload, PutResult, Result};

use crate::error::{not_implemented, StoreError};
use crate::get::read_range;
use crate::location::{object_file, random_hex};
use crate::store_inner::StoreInner;
use crate::transfer_buffers::TRANSFER_CHUNK;
use crate::upload_file::UploadFile;

/// The uploads of one store, by id.
pub(crate) type Uploads = Mutex<HashMap<String, Arc<tokio::sync::Mutex<StoreUpload>>>>;

/// One part put so far.
struct PartRecord {
    len: u64,
    /// Where it goes in the object, once known.
    offset: Option<u64>,
    /// Its own temp file, if it arrived before a lower index.
    side: Option<Arc<UploadFile>>,
}

/// One upload of the `MultipartStore` interface.
pub(crate) struct StoreUpload {
    location: String,
    file: Arc<UploadFile>,
    attributes: Attributes,
    parts: BTreeMap<usize, PartRecord>,
    /// The lowest index whose offset is not known yet, and that offset.
    next_idx: usize,
    next_offset: u64,
}

impl StoreUpload {
    /// Gives offsets to the parts from `next_idx` on that have arrived.
    fn advance(&mut self) {
        while let Some(rec) = self.parts.get_mut(&self.next_idx) {
            rec.offset = Some(self.next_offset);
            self.next_offset += rec.len;
            self.next_idx += 1;
        }
    }
}

fn lookup(
    uploads: &Uploads,
    location: &Path,
    id: &MultipartId,
) -> Result<Arc<tokio::sync::Mutex<StoreUpload>>, StoreError> {
    let uploads = uploads.lock().unwrap_or_else(|p| p.into_inner());
    let unknown = || StoreError::UnknownUpload {
        location: location.to_string(),
        id: id.clone(),
    };
    let upload = uploads.get(id).ok_or_else(unknown)?;
    Ok(Arc::clone(upload))
}

pub(crate) async fn create(
    store: &Arc<StoreInner>,
    uploads: &Uploads,
    location: &Path,
    opts: PutMultipartOptions,
) -> Result<MultipartId> {
    let loc = location.as_ref();
    if !opts.tags.encoded().is_empty() {
        return Err(not_implemented("`create_multipart_opts` with tags"));
    }
    let target = object_file(&store.root, location).map_err(|e| e.into_object_store(loc))?;
    let file = UploadFile::create(store, loc, target)
        .await
        .map_err(|e| e.into_object_store(loc))?;
    let id = random_hex();
    let upload = StoreUpload {
        location: loc.to_owned(),
        file: Arc::new(file),
        attributes: opts.attributes,
        parts: BTreeMap::new(),
        next_idx: 0,
        next_offset: 0,
    };
    uploads
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .insert(id.clone(), Arc::new(tokio::sync::Mutex::new(upload)));
    Ok(id)
}

pub(crate) async fn put_part(
    store: &Arc<StoreInner>,
    uploads: &Uploads,
    location: &Path,
    id: &MultipartId,
    part_idx: usize,
    data: PutPayload,
) -> Result<PartId> {
    let loc = location.as_ref();
    let upload = lookup(uploads, location, id).map_err(|e| e.into_object_store(loc))?;
    let len = data.content_length() as u64;
    let (file, offset) = {
        let mut u = upload.lock().await;
        if u.location != loc {
            return Err(StoreError::UnknownUpload {
                location: loc.to_owned(),
                id: id.clone(),
            }
            .into_object_store(loc));
        }
        if u.parts.contains_key(&part_idx) {
            return Err(StoreError::BadParts {
                location: loc.to_owned(),
                reason: format!("part {part_idx} was put twice"),
            }
            .into_object_store(loc));
        }
        if part_idx == u.next_idx {
            u.parts.insert(
                part_idx,
                PartRecord {
                    len,
                    offset: None,
                    side: None,
                },
            );
            u.advance();
            let offset = u.parts[&part_idx].offset.expect("just advanced over it");
            (Arc::clone(&u.file), offset)
        } else {
            let target = u.file.file().path().to_owned();
            let side = UploadFile::create(store, loc, target)
                .await
                .map_err(|e| e.into_object_store(loc))?;
            let side = Arc::new(side);
            u.parts.insert(
                part_idx,
                PartRecord {
                    len,
                    offset: None,
                    side: Some(Arc::clone(&side)),
                },
            );
            (side, 0)
        }
    };
    file.spawn_part(offset, data)
        .await
        .map_err(|e| e.into_object_store(loc))?;
    Ok(PartId {
        content_id: format!("{part_idx}:{len}"),
    })
}

fn parse_part(location: &str, part: &PartId) -> Result<(usize, u64), StoreError> {
    let bad = || StoreError::BadParts {
        location: location.to_owned(),
        reason: format!("{:?} is no part id of this store", part.content_id),
    };
    let (idx, len) = part.content_id.split_once(':').ok_or_else(bad)?;
    Ok((
        idx.parse().map_err(|_| bad())?,
        len.parse().map_err(|_| bad())?,
    ))
}

/// Copies a side part's bytes into the upload's file at `offset`.
async fn copy_side(
    store: &StoreInner,
    u: &StoreUpload,
    side: &UploadFile,
    len: u64,
    offset: u64,
) -> Result<(), StoreError> {
    side.finish_sectors(len).await?;
    let step = TRANSFER_CHUNK as u64 / 2;
    let mut at = 0;
    while at < len {
        let end = (at + step).min(len);
        let bytes: Bytes =
            read_range(store, &store.buffers, side.file(), &u.location, at..end).await?;
        u.file
            .write_part(offset + at, &PutPayload::from_bytes(bytes))
            .await?;
        at = end;
    }
    Ok(())
}

pub(crate) async fn complete(
    store: &Arc<StoreInner>,
    uploads: &Uploads,
    location: &Path,
    id: &MultipartId,
    parts: Vec<PartId>,
) -> Result<PutResult> {
    let loc = location.as_ref();
    let res = complete_inner(store, uploads, location, id, parts).await;
    res.map_err(|e| e.into_object_store(loc))
}

async fn complete_inner(
    store: &Arc<StoreInner>,
    uploads: &Uploads,
    location: &Path,
    id: &MultipartId,
    parts: Vec<PartId>,
) -> Result<PutResult, StoreError> {
    let loc = location.as_ref();
    let upload = lookup(uploads, location, id)?;
    let mut u = upload.lock().await;
    // checked before the upload is taken: a wrong list or a failed part leaves it for abort
    let layout = check_parts(&u, loc, &parts).await?;
    uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    let mut end = 0;
    for (side, len, offset) in layout {
        if let Some(side) = side {
            copy_side(store, &u, &side, len, offset).await?;
        }
        end = offset + len;
    }
    // side parts are done with; their temp files go when dropped
    u.parts.clear();
    u.file.wait_parts().await;
    let file = Arc::clone(&u.file);
    let attributes = u.attributes.clone();
    drop(u);
    drop(upload);
    let file = Arc::try_unwrap(file).map_err(|f| StoreError::PartsInFlight {
        location: loc.to_owned(),
        parts: Arc::strong_count(&f) - 1,
    })?;
    file.publish(end, &attributes, RenameMode::Replace).await
}

/// A part as `complete_multipart` lays it out: its side file (if it has one), length and offset.
type PartPlace = (Option<Arc<UploadFile>>, u64, u64);

/// Checks `parts` against the parts put (each once, ascending, lengths as put) and that no part has
/// failed; returns where each goes.
async fn check_parts(
    u: &StoreUpload,
    loc: &str,
    parts: &[PartId],
) -> Result<Vec<PartPlace>, StoreError> {
    let bad = |reason: String| StoreError::BadParts {
        location: loc.to_owned(),
        reason,
    };
    if parts.len() != u.parts.len() {
        return Err(bad(format!(
            "{} parts listed, {} put",
            parts.len(),
            u.parts.len()
        )));
    }
    u.file.wait_parts().await;
    u.file.check_not_failed()?;
    let mut layout = Vec::with_capacity(parts.len());
    let mut running = 0u64;
    let mut last_idx = None;
    for part in parts {
        let (idx, len) = parse_part(loc, part)?;
        if last_idx.is_some_and(|l| l >= idx) {
            return Err(bad("parts must be listed in ascending index order".into()));
        }
        last_idx = Some(idx);
        let rec = u
            .parts
            .get(&idx)
            .ok_or_else(|| bad(format!("part {idx} was never put")))?;
        if rec.len != len {
            return Err(bad(format!("part {idx} has {} bytes, not {len}", rec.len)));
        }
        match (&rec.side, rec.offset) {
            (None, Some(o)) if o != running => {
                return Err(bad(format!(
                    "part {idx} lies at {o}, the list puts it at {running}"
                )))
            }
            (Some(side), _) => {
                side.wait_parts().await;
                side.check_not_failed()?;
            }
            _ => {}
        }
        layout.push((rec.side.clone(), len, running));
        running += len;
    }
    Ok(layout)
}

pub(crate) async fn abort(uploads: &Uploads, location: &Path, id: &MultipartId) -> Result<()> {
    let loc = location.as_ref();
    let upload = lookup(uploads, location, id).map_err(|e| e.into_object_store(loc))?;
    uploads.lock().unwrap_or_else(|p| p.into_inner()).remove(id);
    let u = upload.lock().await;
    u.file.fail("aborted".into());
    u.file.remove().await;
    for rec in u.parts.values() {
        if let Some(side) = &rec.side {
            side.remove().await;
        }
    }
    Ok(())
}
