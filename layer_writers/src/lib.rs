//! Layer files on top of `virtual_file`: blob IO, the on-disk B-tree index, delta and image layer writers
//! and readers, and the in-memory (ephemeral) layer.
//!
//! Nothing is implemented here yet; see the project's open issues.
