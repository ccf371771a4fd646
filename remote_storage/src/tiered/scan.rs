//! What the tier's directory holds when it is opened: temporary downloads left by a crash are removed,
//! and each layer file is taken as resident, uploaded only if the index has it at the same size and
//! CRC32C (each such file is read once to check; one of the right size whose checksum differs is
//! removed as corrupt).

use std::path::Path;

use layer_writers::TEMP_SUFFIX;
use virtual_file::IoContext;

use super::state::{LayerState, State};
use crate::download::is_download_temp;
use crate::error::RemoteError;
use crate::index::validate_layer_name;
use crate::remote::RemoteStorage;
use crate::upload::file_crc32c;

/// The state of the tier over `dir` as found on disk and in the remote index, and the number of
/// corrupt files removed (the directory then needs an fsync).
pub(super) async fn scan(
    ctx: &IoContext,
    dir: &Path,
    remote: &RemoteStorage,
) -> Result<(State, u64), RemoteError> {
    let fs_err = |op, source| RemoteError::LocalFs {
        layer: String::new(),
        op,
        path: dir.to_owned(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(|e| fs_err("create directory", e))?;
    let index = remote.load_index().await?;
    let mut state = State::default();
    let mut corrupt_removed = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| fs_err("list directory", e))? {
        let entry = entry.map_err(|e| fs_err("list directory", e))?;
        let file_name = entry.file_name();
        let Some(name) = file_name.to_str() else {
            continue;
        };
        if is_download_temp(name) {
            std::fs::remove_file(entry.path())
                .map_err(|e| fs_err("remove temporary download", e))?;
            continue;
        }
        if name.ends_with(TEMP_SUFFIX) || validate_layer_name(name).is_err() {
            continue;
        }
        let meta = entry.metadata().map_err(|e| fs_err("stat", e))?;
        if !meta.is_file() {
            continue;
        }
        let uploaded = index.layers.get(name).copied();
        if let Some(u) = uploaded.filter(|u| u.size != meta.len()) {
            tracing::warn!(
                layer = name,
                local = meta.len(),
                remote = u.size,
                "local layer differs in size from the uploaded one; treated as not uploaded"
            );
        }
        let uploaded = uploaded.filter(|u| u.size == meta.len());
        if let Some(u) = uploaded {
            let path = entry.path();
            let chunk = remote.options.download_buffer;
            let local = file_crc32c(ctx, &path, name, chunk).await?;
            if local.crc32c != u.crc32c || local.size != u.size {
                tracing::warn!(
                    layer = name,
                    path = %path.display(),
                    local_crc32c = local.crc32c,
                    remote_crc32c = u.crc32c,
                    size = u.size,
                    "local layer file is corrupt (its CRC32C differs from the index); removed, \
                     it is downloaded again when opened"
                );
                std::fs::remove_file(&path).map_err(|e| RemoteError::LocalFs {
                    layer: name.to_owned(),
                    op: "unlink a corrupt local layer",
                    path: path.clone(),
                    source: e,
                })?;
                corrupt_removed += 1;
                continue;
            }
        }
        state.used += meta.len();
        state.layers.insert(
            name.to_owned(),
            LayerState::new(meta.len(), true, uploaded, 0),
        );
    }
    for (name, entry) in &index.layers {
        state
            .layers
            .entry(name.clone())
            .or_insert_with(|| LayerState::new(entry.size, false, Some(*entry), 0));
    }
    Ok((state, corrupt_removed))
}
