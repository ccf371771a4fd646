//! Floors of remote_storage, lowest first (a module may use its own floor and those below it).
pub const FLOORS: &[&[&str]] = &[
    &["error"], // floor 0: module paths relative to the crate root
    &["index", "retry", "chunks"],
    &["config", "abort"],
    &["remote"],
    &["index_write", "download", "orphans"],
    &["upload"],
    &["tiered::state"],
    &["tiered::resident"],
    &["tiered::scan"],
    &["tiered"],
];
