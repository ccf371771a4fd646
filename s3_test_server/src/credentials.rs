//! The one credential pair the server accepts, and the region clients sign for.

/// The access key the server accepts.
pub const ACCESS_KEY: &str = "s3-test-server-access-key";
/// The secret key the server accepts (until `S3TestServer::set_secret_key` changes it).
pub const SECRET_KEY: &str = "s3-test-server-secret-key-0123456789";
/// The region clients should sign for (the server accepts any).
pub const REGION: &str = "us-east-1";
