//! A deterministic set of delta layers: what a child process writes (and may be killed while writing),
//! and what a verifier checks afterwards byte by byte, knowing only the seed.
//!
//! Layer `i` of seed `s` is named `layer-<s>-<i>` and holds `entries` values; the value of entry `j` is a
//! function of `(s, i, j)`, so a verifier recomputes every byte without a copy.

use std::path::{Path, PathBuf};

use layer_writers::{remove_temp_files, DeltaLayerReader, DeltaLayerWriter, Key, LayerError, Lsn};
use virtual_file::IoContext;

/// A SplitMix64 step: a fast, well-mixed 64-bit hash.
pub fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// The key of entry `j` (distinct, increasing in `j`).
pub fn key_of(j: u64) -> Key {
    Key::from_u128(((j as u128) << 8) | 0x5A)
}

/// The LSN of entry `j` of layer `layer`.
pub fn lsn_of(layer: u64, j: u64) -> Lsn {
    Lsn(0x10_0000 + layer * 0x1_0000 + j)
}

/// The value of entry `j` of layer `layer` of seed `seed`: 0..=3000 bytes.
pub fn value_of(seed: u64, layer: u64, j: u64) -> Vec<u8> {
    let h = mix(seed ^ mix(layer ^ mix(j)));
    let len = (h % 3001) as usize;
    let mut out = Vec::with_capacity(len);
    let mut state = h;
    while out.len() < len {
        state = mix(state);
        out.extend_from_slice(&state.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// The final file name of layer `layer` of seed `seed`.
pub fn layer_name(seed: u64, layer: u64) -> String {
    format!("layer-{seed}-{layer:04}")
}

/// Parses a final layer name back into `(seed, layer)`.
pub fn parse_layer_name(name: &str) -> Option<(u64, u64)> {
    let rest = name.strip_prefix("layer-")?;
    let (seed, layer) = rest.split_once('-')?;
    Some((seed.parse().ok()?, layer.parse().ok()?))
}

/// Writes layer `layer` of seed `seed` with `entries` entries into `dir` (temp name, then renamed).
pub async fn write_layer(
    ctx: &IoContext,
    dir: &Path,
    seed: u64,
    layer: u64,
    entries: u64,
) -> Result<PathBuf, LayerError> {
    let mut w = DeltaLayerWriter::new(ctx, dir, &layer_name(seed, layer)).await?;
    for j in 0..entries {
        w.put_value(
            key_of(j),
            lsn_of(layer, j),
            j % 3 == 0,
            &value_of(seed, layer, j),
        )
        .await?;
    }
    Ok(w.finish().await?.path)
}

/// What [`verify_dir`] found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// Final-named layers that passed.
    pub layers: usize,
    /// Entries checked.
    pub entries: u64,
    /// Temp files the start-up helper removed.
    pub temp_files_removed: usize,
}

/// Errors of [`verify_dir`]: every one names the file.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The layer failed to open or read (checksum, truncation, ...).
    #[error("{path}: {source}")]
    Layer {
        /// The layer file (or the directory, if removing temp files failed).
        path: PathBuf,
        /// What opening, verifying or reading it reported.
        #[source]
        source: LayerError,
    },
    /// The layer read fine but holds other bytes than were written.
    #[error("{path}: {what}")]
    Content {
        /// The layer file.
        path: PathBuf,
        /// What differs: the number of entries, or the first entry whose bytes differ.
        what: String,
    },
    /// Listing the directory failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

/// The start-up routine of a process that owns `dir`: removes leftover temp files, then opens every
/// final-named layer, verifies every byte of it (`DeltaLayerReader::verify`) and checks every entry
/// against the generator. `entries` is how many each layer has.
pub async fn verify_dir(
    ctx: &IoContext,
    dir: &Path,
    entries: u64,
) -> Result<VerifyReport, VerifyError> {
    let temp_files_removed = remove_temp_files(dir).map_err(|source| VerifyError::Layer {
        path: dir.to_owned(),
        source,
    })?;
    let mut report = VerifyReport {
        temp_files_removed,
        ..Default::default()
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .collect();
    names.sort();
    for name in names {
        let Some((seed, layer)) = parse_layer_name(&name) else {
            continue;
        };
        let path = dir.join(&name);
        let err = |source| VerifyError::Layer {
            path: path.clone(),
            source,
        };
        let reader = DeltaLayerReader::open(ctx, &path).await.map_err(err)?;
        // every byte: index pages, blob CRCs, padding (the summary was checked by open)
        reader.verify().await.map_err(err)?;
        let all = reader.scan().await.map_err(err)?;
        if all.len() as u64 != entries {
            return Err(VerifyError::Content {
                path,
                what: format!("{} entries, expected {entries}", all.len()),
            });
        }
        for (j, (key, lsn, will_init, value)) in all.into_iter().enumerate() {
            let j = j as u64;
            if key != key_of(j)
                || lsn != lsn_of(layer, j)
                || will_init != (j % 3 == 0)
                || value != value_of(seed, layer, j)
            {
                return Err(VerifyError::Content {
                    path,
                    what: format!("entry {j} differs"),
                });
            }
        }
        report.layers += 1;
        report.entries += entries;
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_and_values_are_deterministic() {
        assert_eq!(parse_layer_name(&layer_name(7, 12)), Some((7, 12)));
        assert_eq!(parse_layer_name("layer-7-0012.___temp"), None);
        assert_eq!(value_of(1, 2, 3), value_of(1, 2, 3));
        assert_ne!(value_of(1, 2, 3), value_of(1, 2, 4));
        assert!(key_of(1) < key_of(2));
    }
}
