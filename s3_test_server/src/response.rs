//! Answers the server makes itself, in S3's XML error format, before a request reaches `s3s`.

use s3s::HttpResponse;

/// The 404 S3 sends for a request on an object of a bucket that does not exist.
pub(crate) fn no_such_bucket(bucket: &str) -> HttpResponse {
    let body = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchBucket</Code>\
         <Message>The specified bucket does not exist</Message><BucketName>{bucket}</BucketName></Error>"
    );
    let mut response = HttpResponse::new(s3s::Body::from(body));
    *response.status_mut() = hyper::StatusCode::NOT_FOUND;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/xml"),
    );
    response
}
