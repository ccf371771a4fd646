//! Power-loss simulation for tests (feature `testing`): a [`Recorder`] is an engine hook
//! (`EngineHook`) around a real engine, so files on disk are real and the code under test runs
//! normally, and it records in order every op that changes durable state. Wrap an engine with
//! `IoEngine::hooked(inner, Arc::new(Recorder::new(root)))`.
//! From the log, [`OpLog::crash_image`] builds the directory tree as a power cut at any point could have
//! left it, and [`CrashImage::materialize`] writes it into a fresh directory. A killed process cannot
//! show a missing `fsync` (the page cache survives it); a power cut can, and this models one.
//!
//! # What is recorded
//!
//! Only files under the `root` given at construction; other paths and descriptors pass through
//! unrecorded. A file is identified by its inode (`fstat` of the descriptor on each op), so a rename
//! moves a name, never contents; an inode number reused by a new file gets a new [`FileId`].
//!
//! | op | logged as |
//! |---|---|
//! | `open` with `O_CREAT` of a name that did not exist just before | [`DurableOp::Create`] |
//! | `open` with `O_TRUNC` of a known file, `ftruncate` | [`DurableOp::SetLen`] |
//! | `write_at`, `writev_at` (the bytes the kernel reported written) | [`DurableOp::Write`] |
//! | `fallocate` (not `COLLAPSE_RANGE` / `INSERT_RANGE`: those fail with `EOPNOTSUPP`) | [`DurableOp::Fallocate`] |
//! | completed `fsync` / `fdatasync` of a file | [`DurableOp::SyncFile`] |
//! | completed `fsync` of a directory (opened through the engine) | [`DurableOp::SyncDir`] |
//! | `rename`, `unlink` | [`DurableOp::Rename`], [`DurableOp::Unlink`] |
//!
//! An op is logged when it completes, with the log's length when it was issued ([`LoggedOp::issued`]),
//! so ops that overlapped are known. Failed ops are not logged. Removals made around the engine (plain
//! `std::fs::remove_file`) are invisible: such a file stays in the images under its last name (until a
//! create through the engine reuses the name, which logs the removal first). A create is recognised by
//! the name not existing just before the `O_CREAT` open, so two tasks creating one name at once are not
//! told apart.
//!
//! # The crash model
//!
//! A cut at `c` means: the first `c` logged ops completed, and the ops issued by then but completed later
//! were in flight. Then:
//!
//! - **File data.** A data op (write, set-length, fallocate) is *guaranteed* if it completed before a
//!   `fsync`/`fdatasync` of the same file was issued, and that sync completed before the cut. Every other
//!   data op of the file up to the cut (and those in flight) is, by seed, present, absent, or — for a
//!   write — torn at 512-byte sector granularity (each sector of it present or not). They are applied in
//!   completion order, so a later write to the same bytes wins where both land.
//! - **Directory entries** (create, rename, unlink). An op is guaranteed if it completed before an
//!   `fsync` of its directory (for a rename: of both directories) was issued, and that fsync completed
//!   before the cut; also guaranteed is every earlier op on the same file or the same name as a
//!   guaranteed op (it must have happened first). The rest happen, by seed, either as a prefix in order
//!   ([`DirOrder::Prefix`], as a journaling file system commits metadata) or each on its own
//!   ([`DirOrder::Independent`]). Every op happens as a unit (a rename moves the name or does not) and
//!   only where it still applies: a rename or unlink needs its file under the old name, a create a free
//!   name. So no file has data without having been created, and a name only ever holds a file that was
//!   at some point written under it.
//! - A file's `fsync` does **not** make its directory entry durable here (ext4 often does in practice;
//!   POSIX does not promise it). Directories themselves are assumed to exist durably.
//! - A file visible in the image holds its guaranteed data plus the chosen unguaranteed data; bytes never
//!   written read as zeros.
//!
//! Not modelled: errors reported by a later `fsync` after a lost write-back (the fsyncgate case), and
//! metadata other than names and lengths (modes, times, extended attributes).

mod image;
mod log;
mod recorder;

pub use image::{CrashImage, DirOrder, SECTOR};
pub use log::{DurableOp, Entry, FileId, LoggedOp, OpLog};
pub use recorder::{Issued, Recorder};
