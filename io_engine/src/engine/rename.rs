//! [`RenameMode`]: whether a rename may replace its target.

/// Whether [`IoEngine::rename`](crate::IoEngine::rename) may replace an existing target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RenameMode {
    /// An existing target is atomically replaced (`rename(2)`).
    Replace,
    /// An existing target is an `EEXIST` error (`renameat2(2)` with `RENAME_NOREPLACE`).
    NoReplace,
}
