//! [`Recorder`]: turns the ops the power-loss engine passes through into an [`OpLog`], tracking which
//! file (by inode) each descriptor and name refers to.

use std::collections::HashMap;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use super::log::{DurableOp, Entry, FileId, LoggedOp, OpLog};
use crate::engine::fd::IoFd;
use crate::engine::hook::{Completed, EngineHook, EngineOp, Proceed};
use crate::engine::rename::RenameMode;

/// (device, inode) of an open descriptor.
type InodeKey = (u64, u64);

/// The op log being recorded, and the name and inode maps that give each op its [`FileId`].
#[derive(Debug)]
pub struct Recorder {
    root: PathBuf,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    ops: Vec<LoggedOp>,
    /// Full path of each tracked name -> the file it names now.
    names: HashMap<PathBuf, FileId>,
    /// Inodes of the tracked files that are live now.
    inodes: HashMap<InodeKey, FileId>,
    /// Directories under the root opened through the engine.
    dirs: HashMap<InodeKey, PathBuf>,
    next_file: FileId,
    /// Files under the root opened without being known (created before recording or around the engine).
    untracked: u64,
}

impl State {
    fn push(&mut self, op: DurableOp, issued: usize) {
        self.ops.push(LoggedOp { op, issued });
    }
}

/// `fstat` of `fd`: its (device, inode) and whether it is a directory; `None` if `fstat` fails.
fn identity(fd: &IoFd) -> Option<(InodeKey, bool)> {
    // SAFETY: `stat` is plain old data; all-zero is a valid value.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `fd` is an open descriptor owned by `IoFd` for the call, `st` a valid out-pointer.
    let ret = unsafe { libc::fstat(fd.as_raw_fd(), &mut st) };
    (ret == 0).then(|| {
        let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
        ((st.st_dev, st.st_ino), is_dir)
    })
}

impl Recorder {
    /// A recorder of the files under `root`, with an empty log.
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self {
            root: root.into(),
            state: Mutex::default(),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The root whose files are recorded.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Ops logged so far: the cut point "now" (a test records it when an operation is acknowledged).
    pub fn len(&self) -> usize {
        self.state().ops.len()
    }

    /// True when nothing was logged yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// A snapshot of the log.
    pub fn log(&self) -> OpLog {
        OpLog {
            root: self.root.clone(),
            ops: Arc::from(self.state().ops.as_slice()),
        }
    }

    /// Files under the root that were opened without being known to the recorder (existing before it,
    /// or created around the engine); their ops are not recorded. A test over a fresh root expects 0.
    pub fn untracked_opens(&self) -> u64 {
        self.state().untracked
    }

    /// The issue mark of an op starting now.
    fn mark(&self) -> usize {
        self.state().ops.len()
    }

    /// `path` as a directory entry under the root, if it is one.
    fn entry(&self, path: &Path) -> Option<Entry> {
        let (dir, name) = (path.parent()?, path.file_name()?);
        dir.starts_with(&self.root).then(|| Entry {
            dir: dir.to_owned(),
            name: name.to_owned(),
        })
    }

    /// The tracked file `fd` refers to.
    fn file_of(&self, state: &State, fd: &IoFd) -> Option<FileId> {
        let (key, _) = identity(fd)?;
        state.inodes.get(&key).copied()
    }

    /// Logs an open; `creates` says the name did not exist just before it (with `O_CREAT`).
    fn open(&self, fd: &IoFd, path: &Path, flags: libc::c_int, creates: bool, issued: usize) {
        let Some((key, is_dir)) = identity(fd) else {
            return;
        };
        let mut state = self.state();
        if is_dir {
            if path.starts_with(&self.root) {
                state.dirs.insert(key, path.to_owned());
            }
            return;
        }
        let Some(entry) = self.entry(path) else {
            return;
        };
        let named = state.names.get(path).copied();
        if creates {
            if let Some(old) = named {
                // the old file was removed around the engine, and this is a new one
                let unlink = DurableOp::Unlink {
                    entry: entry.clone(),
                    file: old,
                };
                state.push(unlink, issued);
            }
            let file = state.next_file;
            state.next_file += 1;
            state.names.insert(path.to_owned(), file);
            state.inodes.insert(key, file);
            state.push(DurableOp::Create { entry, file }, issued);
            return;
        }
        match (named, state.inodes.get(&key).copied()) {
            (Some(f), Some(g)) if f == g => {
                if flags & libc::O_TRUNC != 0 && flags & libc::O_ACCMODE != libc::O_RDONLY {
                    state.push(DurableOp::SetLen { file: f, len: 0 }, issued);
                }
            }
            (_, Some(_)) => {} // a known file under another name
            (_, None) => state.untracked += 1,
        }
    }

    fn write(&self, fd: &IoFd, issued: usize, offset: u64, data: Arc<[u8]>) {
        let mut state = self.state();
        if let Some(file) = self.file_of(&state, fd) {
            state.push(DurableOp::Write { file, offset, data }, issued);
        }
    }

    fn set_len(&self, fd: &IoFd, len: u64, issued: usize) {
        let mut state = self.state();
        if let Some(file) = self.file_of(&state, fd) {
            state.push(DurableOp::SetLen { file, len }, issued);
        }
    }

    fn fallocate(&self, fd: &IoFd, mode: i32, offset: u64, len: u64, issued: usize) {
        let mut state = self.state();
        if let Some(file) = self.file_of(&state, fd) {
            let op = DurableOp::Fallocate {
                file,
                mode,
                offset,
                len,
            };
            state.push(op, issued);
        }
    }

    fn sync(&self, fd: &IoFd, issued: usize) {
        let Some((key, is_dir)) = identity(fd) else {
            return;
        };
        let mut state = self.state();
        if is_dir {
            if let Some(dir) = state.dirs.get(&key).cloned() {
                state.push(DurableOp::SyncDir { dir }, issued);
            }
        } else if let Some(file) = state.inodes.get(&key).copied() {
            state.push(DurableOp::SyncFile { file }, issued);
        }
    }

    fn rename(&self, from: &Path, to: &Path, mode: RenameMode, issued: usize) {
        let mut state = self.state();
        let moved = state.names.remove(from);
        let (from_entry, to_entry) = (self.entry(from), self.entry(to));
        match (moved, from_entry, to_entry) {
            (Some(file), Some(from), Some(to_entry)) => {
                state.names.insert(to.to_owned(), file);
                let op = DurableOp::Rename {
                    file,
                    from,
                    to: to_entry,
                    no_replace: mode == RenameMode::NoReplace,
                };
                state.push(op, issued);
            }
            (Some(file), Some(entry), None) => {
                // moved out of the root: gone from the tree
                state.push(DurableOp::Unlink { entry, file }, issued);
            }
            (None, _, Some(entry)) => {
                // an untracked file moved in: whatever the name held is gone
                if let Some(file) = state.names.remove(to) {
                    state.push(DurableOp::Unlink { entry, file }, issued);
                }
                state.untracked += 1;
            }
            _ => {}
        }
    }

    fn unlink(&self, path: &Path, issued: usize) {
        let mut state = self.state();
        if let (Some(file), Some(entry)) = (state.names.remove(path), self.entry(path)) {
            state.push(DurableOp::Unlink { entry, file }, issued);
        }
    }
}

/// Where the log stood when an op was issued ([`LoggedOp::issued`]), and for an `open`, whether it
/// creates its name.
#[derive(Debug)]
pub struct Issued {
    mark: usize,
    creates: bool,
}

impl EngineHook for Recorder {
    type Ticket = Issued;

    fn before(&self, op: &EngineOp<'_>) -> std::io::Result<Proceed<Issued>> {
        if let EngineOp::Fallocate { mode, .. } = *op {
            if mode & (libc::FALLOC_FL_COLLAPSE_RANGE | libc::FALLOC_FL_INSERT_RANGE) != 0 {
                // the crash model does not shift file contents
                return Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP));
            }
        }
        let mark = self.mark();
        // a create is told apart by the name not existing just before (an inode number is reused
        // at once by some file systems, so the inode alone cannot tell a new file from an old one)
        let creates = match *op {
            EngineOp::Open { path, flags, .. } => {
                flags & libc::O_CREAT != 0 && std::fs::symlink_metadata(path).is_err()
            }
            _ => false,
        };
        Ok(Proceed::new(Issued { mark, creates }))
    }

    fn after(
        &self,
        op: &EngineOp<'_>,
        issued: Issued,
        result: Result<Completed<'_>, &std::io::Error>,
    ) {
        let Ok(completed) = result else { return };
        let mark = issued.mark;
        match (*op, completed) {
            (EngineOp::WriteAt { fd, offset, data }, Completed::Transferred(n)) => {
                self.write(fd, mark, offset, data[..n.min(data.len())].into());
            }
            (EngineOp::WritevAt { fd, offset, data }, Completed::Transferred(n)) => {
                let mut written = Vec::with_capacity(n);
                for d in data {
                    let take = (n - written.len()).min(d.len());
                    written.extend_from_slice(&d[..take]);
                }
                self.write(fd, mark, offset, written.into());
            }
            (EngineOp::Fsync { fd } | EngineOp::Fdatasync { fd }, _) => self.sync(fd, mark),
            (EngineOp::Open { path, flags, .. }, Completed::Opened(fd)) => {
                self.open(fd, path, flags, issued.creates, mark);
            }
            (EngineOp::Rename { from, to, mode }, _) => self.rename(from, to, mode, mark),
            (EngineOp::Unlink { path }, _) => self.unlink(path, mark),
            (EngineOp::Ftruncate { fd, len }, _) => self.set_len(fd, len, mark),
            (
                EngineOp::Fallocate {
                    fd,
                    mode,
                    offset,
                    len,
                },
                _,
            ) => {
                self.fallocate(fd, mode, offset, len, mark);
            }
            _ => {}
        }
    }
}
