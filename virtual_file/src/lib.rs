//! `VirtualFile`: positional async reads and writes through an IO engine, the `IoMode` that decides where
//! `O_DIRECT` is used, an open-file cache, and the double-buffered `BufferedWriter`.
//!
//! Nothing is implemented here yet; see the project's open issues.

pub mod buffered_writer;
