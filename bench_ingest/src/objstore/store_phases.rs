//! The three phases over any [`ObjectStore`]: multipart puts with several parts in flight, streamed
//! whole-object gets, and random ranged gets. Each returns the bytes and operations it moved; the
//! caller times it.

use std::sync::Arc;

use bytes::Bytes;
use futures::stream::{FuturesUnordered, StreamExt as _};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _, PutPayload};

use super::spec::{ObjSpec, VERIFIED_RANGES};
use crate::error::ObjstoreError;

/// Bytes and operations a phase moved.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Moved {
    /// Payload bytes.
    pub bytes: u64,
    /// Operations: parts put, objects read, ranges read.
    pub ops: u64,
}

fn store_err(
    store: &str,
    phase: &'static str,
    what: &'static str,
    object: &ObjectPath,
) -> impl FnOnce(object_store::Error) -> ObjstoreError {
    let (store, object) = (store.to_owned(), object.to_string());
    move |source| ObjstoreError::Store {
        store,
        phase,
        what,
        object,
        source: Box::new(source),
    }
}

/// Writes every object of `spec` as a multipart upload of its parts, `parts_in_flight` `put_part`s in
/// flight, then `complete`; a failed upload is aborted.
pub async fn put(
    store: &Arc<dyn ObjectStore>,
    name: &str,
    spec: &ObjSpec,
    payloads: &[Bytes],
) -> Result<Moved, ObjstoreError> {
    let mut moved = Moved { bytes: 0, ops: 0 };
    for o in 0..spec.objects {
        let path = ObjectPath::from(spec.object_name(o));
        let mut upload = store.put_multipart(&path).await.map_err(store_err(
            name,
            "put",
            "put_multipart",
            &path,
        ))?;
        let mut in_flight = FuturesUnordered::new();
        let mut result = Ok(());
        for p in 0..spec.parts_per_object() {
            if in_flight.len() >= spec.parts_in_flight {
                if let Some(Err(e)) = in_flight.next().await {
                    result = Err(e);
                    break;
                }
            }
            in_flight.push(upload.put_part(PutPayload::from_bytes(spec.part_payload(payloads, p))));
        }
        while let Some(r) = in_flight.next().await {
            if let (Ok(()), Err(e)) = (&result, r) {
                result = Err(e);
            }
        }
        if let Err(e) = result {
            let _ = upload.abort().await;
            return Err(store_err(name, "put", "put_part", &path)(e));
        }
        upload
            .complete()
            .await
            .map_err(store_err(name, "put", "complete", &path))?;
        moved.bytes += spec.object_bytes;
        moved.ops += spec.parts_per_object();
    }
    Ok(moved)
}

/// Reads every object whole, one after another, streaming its body and counting the bytes.
pub async fn get(
    store: &Arc<dyn ObjectStore>,
    name: &str,
    spec: &ObjSpec,
) -> Result<Moved, ObjstoreError> {
    let mut moved = Moved { bytes: 0, ops: 0 };
    for o in 0..spec.objects {
        let path = ObjectPath::from(spec.object_name(o));
        let mut body = store
            .get(&path)
            .await
            .map_err(store_err(name, "get", "get", &path))?
            .into_stream();
        let mut n = 0u64;
        while let Some(chunk) = body.next().await {
            n += chunk.map_err(store_err(name, "get", "body", &path))?.len() as u64;
        }
        if n != spec.object_bytes {
            return Err(ObjstoreError::Verify(format!(
                "{name} get of {path}: {n} bytes, {} written",
                spec.object_bytes
            )));
        }
        moved.bytes += n;
        moved.ops += 1;
    }
    Ok(moved)
}

/// The ranged gets of `spec.ranges()`, `parts_in_flight` in flight; the first [`VERIFIED_RANGES`] are
/// compared with the payloads.
pub async fn get_range(
    store: &Arc<dyn ObjectStore>,
    name: &str,
    spec: &ObjSpec,
    payloads: &[Bytes],
) -> Result<Moved, ObjstoreError> {
    let ranges = spec.ranges();
    let reads = futures::stream::iter(ranges.iter().enumerate().map(|(i, &(o, off))| async move {
        let path = ObjectPath::from(spec.object_name(o));
        let got = store
            .get_range(&path, off..off + spec.range_bytes)
            .await
            .map_err(store_err(name, "get_range", "get_range", &path))?;
        if got.len() as u64 != spec.range_bytes {
            return Err(ObjstoreError::Verify(format!(
                "{name} get_range of {path} at {off}: {} bytes, {} asked",
                got.len(),
                spec.range_bytes
            )));
        }
        if i < VERIFIED_RANGES {
            spec.verify_range(payloads, off, &got)?;
        }
        Ok(got.len() as u64)
    }))
    .buffer_unordered(spec.parts_in_flight);
    futures::pin_mut!(reads);
    let mut moved = Moved { bytes: 0, ops: 0 };
    while let Some(n) = reads.next().await {
        moved.bytes += n?;
        moved.ops += 1;
    }
    Ok(moved)
}

/// Deletes every object of `spec`.
pub async fn delete_all(
    store: &Arc<dyn ObjectStore>,
    name: &str,
    spec: &ObjSpec,
) -> Result<(), ObjstoreError> {
    for o in 0..spec.objects {
        let path = ObjectPath::from(spec.object_name(o));
        store
            .delete(&path)
            .await
            .map_err(store_err(name, "delete", "delete", &path))?;
    }
    Ok(())
}
