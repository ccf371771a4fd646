//! What a request is, read from its method, path and query alone: the lock it takes on its object
//! ([`KeyAccess`]), its bucket, and whether it is an object read or an `UploadPart` (the two requests a
//! fault can catch).

/// How a request takes its object's lock.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum KeyAccess {
    /// Not a request on one object's current version (listings, bucket requests, multipart parts).
    None,
    /// Reads the object and its ETag.
    Read,
    /// Replaces or deletes the object (and may check a precondition first).
    Write,
}

/// What `req` does to the object its path names.
pub(crate) fn key_access<B>(req: &hyper::Request<B>) -> KeyAccess {
    if !req.uri().path().trim_matches('/').contains('/') {
        return KeyAccess::None;
    }
    let query = req.uri().query().unwrap_or("");
    let has = |name: &str| {
        query
            .split('&')
            .any(|kv| kv == name || kv.starts_with(&format!("{name}=")))
    };
    match *req.method() {
        hyper::Method::GET | hyper::Method::HEAD if !has("uploadId") => KeyAccess::Read,
        hyper::Method::PUT if !has("partNumber") => KeyAccess::Write,
        // CompleteMultipartUpload; `POST ?uploads` only starts an upload
        hyper::Method::POST if has("uploadId") => KeyAccess::Write,
        // DeleteObject; with an uploadId it is AbortMultipartUpload
        hyper::Method::DELETE if !has("uploadId") => KeyAccess::Write,
        _ => KeyAccess::None,
    }
}

/// The bucket of a request on an object (`/bucket/key...`), `None` for bucket and service requests.
pub(crate) fn object_bucket<B>(req: &hyper::Request<B>) -> Option<&str> {
    let (bucket, key) = req.uri().path().trim_start_matches('/').split_once('/')?;
    (!bucket.is_empty() && !key.is_empty()).then_some(bucket)
}

/// `GET /bucket/key` without a query (an object read, not a listing).
pub(crate) fn is_object_get<B>(req: &hyper::Request<B>) -> bool {
    req.method() == hyper::Method::GET
        && req.uri().query().is_none_or(str::is_empty)
        && req.uri().path().trim_matches('/').contains('/')
}

/// `PUT /bucket/key?partNumber=N&uploadId=...`.
pub(crate) fn is_upload_part<B>(req: &hyper::Request<B>) -> bool {
    req.method() == hyper::Method::PUT
        && req
            .uri()
            .query()
            .is_some_and(|q| q.contains("uploadId=") && q.contains("partNumber="))
}
