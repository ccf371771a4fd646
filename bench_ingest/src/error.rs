//! [`CaseError`]: what can fail in one case, from the write-out to the read phase and the remote round
//! trip; [`ObjstoreError`]: what can fail in `bench_ingest objstore`.

/// Errors of a case.
#[derive(Debug, thiserror::Error)]
pub enum CaseError {
    /// The library failed.
    #[error("{0}")]
    Layer(#[from] layer_writers::LayerError),
    /// The in-memory layer failed.
    #[error("{0}")]
    InMemory(#[from] layer_writers::InMemoryLayerError),
    /// The context could not be built.
    #[error("{0}")]
    Context(#[from] virtual_file::Error),
    /// A value read back differs from the one put in.
    #[error("verification failed: {0}")]
    Verify(String),
    /// Plain IO in the harness failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The remote round trip failed.
    #[error("{0}")]
    Remote(String),
}

/// Errors of `bench_ingest objstore`: each names the store and the phase it happened in.
#[derive(Debug, thiserror::Error)]
pub enum ObjstoreError {
    /// An `ObjectStore` call failed.
    #[error("{store} {phase}: {what} of {object}: {source}")]
    Store {
        /// The store (`local_fs`, `virtual_file`).
        store: String,
        /// The phase (`put`, `get`, `get_range`, `delete`).
        phase: &'static str,
        /// The call (`put_part`, `complete`, ...).
        what: &'static str,
        /// The object's name.
        object: String,
        /// What `object_store` said (boxed: it is large).
        source: Box<object_store::Error>,
    },
    /// Plain IO (the raw loop, the directories, the cache eviction) failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: std::path::PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Bytes read back differ in number or content from those written.
    #[error("verification failed: {0}")]
    Verify(String),
    /// Our store's IO context could not be built.
    #[error("IO context: {0}")]
    Context(#[from] virtual_file::Error),
    /// Our store could not be opened over its directory.
    #[error("virtual_file store: {0}")]
    VirtualFileStore(#[from] virtual_file_store::StoreError),
    /// A setting is out of range.
    #[error("{0}")]
    Settings(String),
}
