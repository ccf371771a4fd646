//! Object locations and file paths: an [`object_store::path::Path`] names the file `root/<path>` (its
//! parts as they are, percent-encoding included, like `LocalFileSystem`), and a file under the root is
//! an object unless its name carries [`INTERNAL_MARK`] (the store's temp and part files).
//!
//! No location escapes the root: `Path` refuses `.` and `..` parts and never contains `/` inside a part,
//! and [`object_file`] checks that again.

use std::path::{Path as FsPath, PathBuf};

use object_store::path::Path;

use crate::error::StoreError;

/// Marks the store's own files (temp files of puts and uploads): `<object name>#vfs.<16 hex digits>`.
/// `Path` percent-encodes `#` in the parts it builds, so only a parsed location can contain it; the store
/// refuses such names and leaves them out of listings.
pub const INTERNAL_MARK: &str = "#vfs.";

/// 16 random hex digits for the store's own names (staged copies, upload ids): the standard library's
/// randomly keyed hasher over the current time.
pub(crate) fn random_hex() -> String {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    format!("{:016x}", h.finish())
}

/// True for names of the store's own files.
pub(crate) fn is_internal_name(name: &str) -> bool {
    name.contains(INTERNAL_MARK)
}

/// The file of the object at `location`.
pub(crate) fn object_file(root: &FsPath, location: &Path) -> Result<PathBuf, StoreError> {
    let invalid = |reason| StoreError::InvalidLocation {
        location: location.to_string(),
        reason,
    };
    if location.as_ref().is_empty() {
        return Err(invalid(
            "the empty location names the store's root, not an object",
        ));
    }
    for part in location.parts() {
        let part = part.as_ref();
        if part.is_empty() || part == "." || part == ".." {
            return Err(invalid("empty, `.` or `..` part"));
        }
        if is_internal_name(part) {
            return Err(invalid(
                "names containing `#vfs.` are reserved for the store's temp files",
            ));
        }
    }
    Ok(root.join(location.as_ref()))
}

/// The directory listed for `prefix` (the root for `None` or the empty prefix).
pub(crate) fn prefix_dir(root: &FsPath, prefix: Option<&Path>) -> PathBuf {
    match prefix {
        Some(p) if !p.as_ref().is_empty() => root.join(p.as_ref()),
        _ => root.to_owned(),
    }
}

/// The location of the file at `file` under `root`, or `None` for the store's own files and for names
/// that are no valid location (not UTF-8, or not a `Path`).
pub(crate) fn location_of(root: &FsPath, file: &FsPath) -> Option<Path> {
    let rel = file.strip_prefix(root).ok()?.to_str()?;
    if rel.split('/').any(is_internal_name) {
        return None;
    }
    match Path::parse(rel) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(file = %file.display(), error = %e, "file under the store root is no valid object location; skipped");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn maps_and_refuses() {
        let root = FsPath::new("/r");
        let p = Path::from_iter(["a", "b/c", "f"]);
        assert_eq!(
            object_file(root, &p).unwrap(),
            PathBuf::from("/r/a/b%2Fc/f")
        );
        assert!(object_file(root, &Path::from("")).is_err());
        let internal = Path::parse("a/x#vfs.0123456789abcdef").unwrap();
        assert!(matches!(
            object_file(root, &internal),
            Err(StoreError::InvalidLocation { .. })
        ));
        assert_eq!(
            location_of(root, FsPath::new("/r/a/b%2Fc/f")),
            Some(p.clone())
        );
        assert_eq!(location_of(root, FsPath::new("/r/a/x#vfs.00")), None);
        assert_eq!(prefix_dir(root, None), PathBuf::from("/r"));
        assert_eq!(
            prefix_dir(root, Some(&Path::from("a"))),
            PathBuf::from("/r/a")
        );
    }
}
