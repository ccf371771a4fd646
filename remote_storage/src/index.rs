//! The per-prefix index object (`<prefix>/index.json`): which layers are uploaded, with their sizes and
//! whole-file CRC32C, and a generation counted up on every change.
//!
//! The index is written only after the layer objects it names are durable (a completed put), so every
//! entry names a complete object. An object under the prefix that the index does not name is an orphan
//! (an upload that was cancelled or failed after its object completed) and
//! [`RemoteStorage::remove_orphans`](crate::RemoteStorage::remove_orphans) deletes it.
//!
//! ```json
//! {"format":1,"generation":7,"layers":{"layer-a":{"size":1048576,"crc32c":305419896,"generation":7}}}
//! ```
//!
//! Every change is a conditional write of the whole object (`If-Match` with the ETag read, or
//! `If-None-Match: *` for the first), applied again on a fresh read when another writer got there
//! first; on the local backend a file lock stands in for the condition. The protocol is in the
//! `index_write` module's source docs; the rule that keeps `remove_orphans` from deleting a layer an
//! index is about to name is in `orphans.rs`.
//!
//! Nothing read from the index is trusted blindly: its size is bounded before it is read, layer names are
//! validated (they become file names), and sizes are checked against the object and the download.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::RemoteError;

/// The index format this code writes and reads.
pub const INDEX_FORMAT: u32 = 1;

/// An index object larger than this is refused before it is read (about 600k entries).
pub const MAX_INDEX_BYTES: u64 = 64 * 1024 * 1024;

/// Longest layer name accepted.
pub const MAX_LAYER_NAME: usize = 200;

/// One uploaded layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexEntry {
    /// Bytes in the object (and the local file).
    pub size: u64,
    /// CRC32C of the whole file.
    pub crc32c: u32,
    /// The index generation that added the entry.
    pub generation: u64,
}

/// The contents of `index.json`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteIndex {
    /// Always [`INDEX_FORMAT`].
    pub format: u32,
    /// Counted up by every write of the index.
    pub generation: u64,
    /// Uploaded layers by name.
    pub layers: BTreeMap<String, IndexEntry>,
}

impl RemoteIndex {
    /// An empty index (what a prefix without `index.json` holds).
    pub fn empty() -> Self {
        RemoteIndex {
            format: INDEX_FORMAT,
            generation: 0,
            layers: BTreeMap::new(),
        }
    }

    /// Decodes and validates an index read from `key` of `store`.
    pub fn decode(bytes: &[u8], store: &str, key: &str) -> Result<Self, RemoteError> {
        let bad = |reason: String| RemoteError::BadIndex {
            store: store.to_owned(),
            key: key.to_owned(),
            reason,
        };
        let index: RemoteIndex =
            serde_json::from_slice(bytes).map_err(|e| bad(format!("not valid JSON: {e}")))?;
        if index.format != INDEX_FORMAT {
            return Err(bad(format!(
                "format {} is not the supported format {INDEX_FORMAT}",
                index.format
            )));
        }
        for (name, entry) in &index.layers {
            validate_layer_name(name)
                .map_err(|e| bad(format!("it names an invalid layer: {e}")))?;
            if entry.generation > index.generation {
                return Err(bad(format!(
                    "layer {name} has generation {}, newer than the index's {}",
                    entry.generation, index.generation
                )));
            }
        }
        Ok(index)
    }

    /// The JSON bytes.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("an index of strings and integers always serializes")
    }
}

/// Checks that `name` can be an object key component and a file name: 1 to [`MAX_LAYER_NAME`] bytes of
/// `A-Z a-z 0-9 . _ -`, not starting with `.` (temporary and hidden files start with a dot).
pub fn validate_layer_name(name: &str) -> Result<(), RemoteError> {
    let reason = if name.is_empty() {
        Some("empty")
    } else if name.len() > MAX_LAYER_NAME {
        Some("too long")
    } else if name.starts_with('.') {
        Some("starts with '.'")
    } else if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        Some("contains a character outside the allowed set")
    } else {
        None
    };
    match reason {
        Some(reason) => Err(RemoteError::BadLayerName {
            name: name.to_owned(),
            reason,
        }),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(validate_layer_name("layer-1-0001").is_ok());
        assert!(validate_layer_name("a.b_c").is_ok());
        for bad in ["", ".hidden", "../x", "a/b", "a b", &"x".repeat(201)] {
            assert!(validate_layer_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn round_trip_and_validation() {
        let mut index = RemoteIndex::empty();
        index.generation = 3;
        index.layers.insert(
            "layer-a".into(),
            IndexEntry {
                size: 10,
                crc32c: 7,
                generation: 3,
            },
        );
        let bytes = index.encode();
        assert_eq!(RemoteIndex::decode(&bytes, "s", "k").unwrap(), index);

        let evil = br#"{"format":1,"generation":1,"layers":{"../etc":{"size":1,"crc32c":1,"generation":1}}}"#;
        let msg = RemoteIndex::decode(evil, "s", "k").unwrap_err().to_string();
        assert!(msg.contains("invalid layer"), "{msg}");
        let future = br#"{"format":2,"generation":1,"layers":{}}"#;
        assert!(RemoteIndex::decode(future, "s", "k").is_err());
        assert!(RemoteIndex::decode(b"{", "s", "k").is_err());
        let newer =
            br#"{"format":1,"generation":1,"layers":{"a":{"size":1,"crc32c":1,"generation":2}}}"#;
        assert!(RemoteIndex::decode(newer, "s", "k").is_err());
    }
}
