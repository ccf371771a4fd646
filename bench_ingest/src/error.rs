//! [`CaseError`]: what can fail in one case, from the write-out to the read phase and the remote round
//! trip.

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
