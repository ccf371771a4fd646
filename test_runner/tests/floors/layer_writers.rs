//! Floors of layer_writers, lowest first (a module may use its own floor and those below it).
pub const FLOORS: &[&[&str]] = &[
    // the on-disk formats, no IO
    &["format::raw", "format::error"],
    &["format::key"],
    &["format::blob", "format::btree"],
    &["format::summary"],
    &["format"],
    // the IO on the format
    &["io::error"],
    &["io::read_budget", "io::vectored", "io::page_source"],
    &["io::blob_io"],
    &["io"],
    // the layers
    &[
        "layers::layer_file",
        "layers::layer_reader",
        "layers::value_stream",
    ],
    &["layers::delta", "layers::image"],
    &["layers::in_memory"],
    &["layers"],
];
