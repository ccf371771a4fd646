//! The floor of the layers, on the IO and the format. Its modules, lowest first (each uses only those
//! before it, and the floors below):
//!
//! 1. `layer_file`: the file layout and the write protocol (temp name, fsync, rename, directory fsync)
//!    shared by both kinds of layer file, [`LayerInfo`](crate::layers::layer_file::LayerInfo),
//!    [`remove_temp_files`](crate::layers::layer_file::remove_temp_files); `layer_reader`: the kind-independent reader
//!    (open and validate, index walk, merged budgeted blob reads, `verify`); `value_stream`: a full pass
//!    over the records in index order, the index walked run by run and the values by one scan.
//! 2. `delta`: [`DeltaLayerWriter`](crate::layers::delta::DeltaLayerWriter) / [`DeltaLayerReader`](crate::layers::delta::DeltaLayerReader);
//!    `image`: [`ImageLayerWriter`](crate::layers::image::ImageLayerWriter) /
//!    [`ImageLayerReader`](crate::layers::image::ImageLayerReader).
//! 3. `in_memory`: [`InMemoryLayer`](crate::layers::in_memory::InMemoryLayer), written out as a delta layer.

pub(crate) mod layer_file;
pub(crate) mod layer_reader;
pub(crate) mod value_stream;

pub(crate) mod delta;
pub(crate) mod image;

pub(crate) mod in_memory;
