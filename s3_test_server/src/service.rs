//! [`FaultService`]: the `s3s` service with what this crate adds in front of each request: counting,
//! the armed faults, the `NoSuchBucket` answer, and the object's lock (see the crate docs).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use hyper::body::Incoming;
use s3s::service::S3Service;
use s3s::{HttpError, HttpResponse};

use crate::request::{is_object_get, is_upload_part, key_access, object_bucket, KeyAccess};
use crate::response::no_such_bucket;
use crate::state::State;

/// The S3 service with request counting and the fault hook in front of it.
#[derive(Clone)]
pub(crate) struct FaultService {
    inner: S3Service,
    state: Arc<State>,
}

type ServiceFuture = Pin<Box<dyn Future<Output = Result<HttpResponse, HttpError>> + Send>>;

impl FaultService {
    pub(crate) fn new(inner: S3Service, state: Arc<State>) -> Self {
        FaultService { inner, state }
    }
}

impl hyper::service::Service<hyper::Request<Incoming>> for FaultService {
    type Response = HttpResponse;
    type Error = HttpError;
    type Future = ServiceFuture;

    fn call(&self, req: hyper::Request<Incoming>) -> Self::Future {
        self.state.count_request();
        if is_upload_part(&req) && self.state.upload_part_kills() {
            // The accept loop drops this connection with the others; this request gets no answer.
            return Box::pin(std::future::pending());
        }
        if let Some(bucket) = object_bucket(&req) {
            if !self.state.has_bucket(bucket) {
                // s3s-fs answers NoSuchKey for an object of a missing bucket (and a PutObject would
                // create the bucket's directory); S3 answers NoSuchBucket.
                return Box::pin(std::future::ready(Ok(no_such_bucket(bucket))));
            }
        }
        let access = key_access(&req);
        let lock = (access != KeyAccess::None).then(|| self.state.key_lock(req.uri().path()));
        let held = if is_object_get(&req) {
            self.state.take_hold()
        } else {
            None
        };
        let inner = self.inner.clone();
        Box::pin(async move {
            if let Some(hold) = held {
                hold.wait().await;
            }
            match (access, lock) {
                (KeyAccess::Write, Some(lock)) => {
                    let _guard = lock.write_owned().await;
                    hyper::service::Service::call(&inner, req).await
                }
                (KeyAccess::Read, Some(lock)) => {
                    let _guard = lock.read_owned().await;
                    hyper::service::Service::call(&inner, req).await
                }
                _ => hyper::service::Service::call(&inner, req).await,
            }
        })
    }
}
