//! Floors of virtual_file_store, lowest first (a module may use its own floor and those below it).
pub const FLOORS: &[&[&str]] = &[
    &["error", "location", "object_meta", "transfer_buffers"], // floor 0: errors, paths, metadata, buffers
    &["directories", "store_inner"],                           // directories; what operations share
    &["upload_file"],                                          // the temp file of a write
    &["get"],                                                  // reads
    &[
        "put",
        "multipart_upload",
        "multipart_store",
        "list",
        "manage",
    ], // the operations
    &["store"],                                                // the type and its trait impls
];
