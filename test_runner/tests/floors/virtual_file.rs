//! Floors of virtual_file, lowest first (a module may use its own floor and those below it).
pub const FLOORS: &[&[&str]] = &[
    &["metrics", "io_mode", "cache", "file::id"], // floor 0: module paths relative to the crate root
    &["memory_budget"],
    &["error"],
    &["page_cache::slot"],
    &["page_cache::map"],
    &["page_cache::budget"],
    &["page_cache"],
    &["buffered_writer"],
    &["context"],
    &["file"],
    &["metrics_export"],
];
