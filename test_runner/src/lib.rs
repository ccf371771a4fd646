//! End-to-end tests run as a user would: the project's binaries as child processes under every IO mode
//! and engine, crash (`SIGKILL`) and fault-injection tests, corrupt input, and resource limits. The tests
//! live in `tests/`; this library holds what they and the `layer_tool` binary share.
//!
//! One floor: [`layer_set`] (the deterministic layers the tests and `layer_tool` write and verify); the
//! binaries `layer_tool` and `bench_ingest_cli` and the tests in `tests/` sit above the library.
//!
//! # Example
//!
//! What a crash test's child writes and its verifier checks: layers whose every byte follows from a seed,
//! checked after a (possibly killed) run by [`layer_set::verify_dir`]:
//!
//! ```
//! use test_runner::layer_set::{verify_dir, write_layer};
//! use virtual_file::IoContext;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
//! rt.block_on(async {
//!     let ctx = IoContext::from_env()?;
//!     let dir = tempfile::tempdir()?;
//!     for layer in 0..3 {
//!         write_layer(&ctx, dir.path(), 42, layer, 100).await?;
//!     }
//!     // removes temp files a killed writer left, then checks every byte of every layer
//!     let report = verify_dir(&ctx, dir.path(), 100).await?;
//!     assert_eq!((report.layers, report.entries), (3, 300));
//!     Ok(())
//! })
//! # }
//! ```

#![warn(missing_docs)]

pub mod layer_set;
