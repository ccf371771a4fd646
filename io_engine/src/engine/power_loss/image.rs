//! Crash images: what a directory tree may hold after a power cut at a point of an [`OpLog`].
//!
//! The model is stated in the parent module's docs; this file implements it.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::io;
use std::path::{Path, PathBuf};

use super::log::{DurableOp, Entry, FileId, LoggedOp, OpLog};

/// `FALLOC_FL_KEEP_SIZE`.
const KEEP_SIZE: i32 = 0x01;
/// `FALLOC_FL_PUNCH_HOLE`.
const PUNCH_HOLE: i32 = 0x02;
/// `FALLOC_FL_ZERO_RANGE`.
const ZERO_RANGE: i32 = 0x10;
/// The sector size at which unsynced writes tear.
pub const SECTOR: u64 = 512;

/// How the directory ops that no directory fsync covers are chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DirOrder {
    /// A prefix of them happened, in order (a journaling file system such as ext4 commits metadata in
    /// order).
    Prefix,
    /// Each happened or not on its own, where it still applies (a file system that orders per entry
    /// only). Weaker than any journaling file system: a stricter test.
    Independent,
}

/// The directory tree after a power cut: every visible file (path relative to the log's root) with its
/// bytes.
#[derive(Debug, Clone)]
pub struct CrashImage {
    /// Visible files: path relative to the root -> content.
    pub files: BTreeMap<PathBuf, Vec<u8>>,
    /// How unsynced directory ops were chosen.
    pub dir_order: DirOrder,
    /// Ops that were not guaranteed (after the last covering sync, or in flight at the cut).
    pub optional_ops: usize,
}

impl CrashImage {
    /// Writes the image under `dest` (which must exist and should be empty): the root's files at the
    /// same relative paths, directories created as needed.
    pub fn materialize(&self, dest: &Path) -> io::Result<()> {
        for (rel, bytes) in &self.files {
            let path = dest.join(rel);
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, bytes)?;
        }
        Ok(())
    }
}

/// splitmix64: a small deterministic generator, so an image is a pure function of (log, cut, seed).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (`n > 0`; the modulo bias is irrelevant here).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn coin(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

/// What happens to one write that no sync covers.
enum WriteFate {
    Present,
    Absent,
    Torn,
}

impl OpLog {
    /// The tree as a power cut could leave it once the first `cut` ops have completed (ops still in
    /// flight at that moment may or may not have happened), with the unguaranteed outcomes chosen by
    /// `seed`. `cut` is clamped to `0..=len()`.
    pub fn crash_image(&self, cut: usize, seed: u64) -> CrashImage {
        let cut = cut.min(self.ops.len());
        let mut rng = Rng(seed);
        let dir_order = if rng.coin() {
            DirOrder::Prefix
        } else {
            DirOrder::Independent
        };
        // the ops that may be in the image: completed before the cut, or issued by then (in flight)
        let seen: Vec<(usize, &LoggedOp)> = self
            .ops
            .iter()
            .enumerate()
            .filter(|(i, o)| *i < cut || o.issued <= cut)
            .collect();
        // for each file / directory, the issue mark of its latest sync completed before the cut: the
        // ops completed before that mark are covered
        let mut file_synced: HashMap<FileId, usize> = HashMap::new();
        let mut dir_synced: HashMap<&PathBuf, usize> = HashMap::new();
        for (i, o) in &seen {
            if *i >= cut {
                continue;
            }
            match &o.op {
                DurableOp::SyncFile { file } => {
                    let e = file_synced.entry(*file).or_default();
                    *e = (*e).max(o.issued);
                }
                DurableOp::SyncDir { dir } => {
                    let e = dir_synced.entry(dir).or_default();
                    *e = (*e).max(o.issued);
                }
                _ => {}
            }
        }
        let mut optional_ops = 0;
        let names = self.namespace(&seen, &dir_synced, dir_order, &mut rng, &mut optional_ops);

        let mut contents: BTreeMap<FileId, Vec<u8>> = BTreeMap::new();
        for file in names.values() {
            contents.entry(*file).or_default();
        }
        for (i, o) in &seen {
            let Some(file) = o.op.data_file() else {
                continue;
            };
            let Some(content) = contents.get_mut(&file) else {
                continue; // not visible under any name
            };
            let covered = file_synced.get(&file).is_some_and(|&mark| *i < mark);
            if covered {
                apply_data(content, &o.op);
                continue;
            }
            optional_ops += 1;
            let fate = match rng.below(8) {
                0..=2 => WriteFate::Present,
                3..=5 => WriteFate::Absent,
                _ => WriteFate::Torn,
            };
            match fate {
                WriteFate::Present => apply_data(content, &o.op),
                WriteFate::Absent => {}
                WriteFate::Torn => apply_torn(content, &o.op, &mut rng),
            }
        }
        let files = names
            .iter()
            .map(|(entry, file)| {
                let rel = entry
                    .path()
                    .strip_prefix(&self.root)
                    .map(Path::to_path_buf)
                    .unwrap_or_else(|_| entry.path());
                (rel, contents[file].clone())
            })
            .collect();
        CrashImage {
            files,
            dir_order,
            optional_ops,
        }
    }

    /// The directory entries after the cut: covered ops (and what they depend on) happened; the others
    /// as `dir_order` and the generator choose, each only where it still applies.
    fn namespace(
        &self,
        seen: &[(usize, &LoggedOp)],
        dir_synced: &HashMap<&PathBuf, usize>,
        dir_order: DirOrder,
        rng: &mut Rng,
        optional_ops: &mut usize,
    ) -> BTreeMap<Entry, FileId> {
        let dir_ops: Vec<(usize, &DurableOp)> = seen
            .iter()
            .filter(|(_, o)| o.op.is_dir_op())
            .map(|(i, o)| (*i, &o.op))
            .collect();
        // forced: covered by a directory fsync of every directory it touches, or an earlier op on the
        // same file or entry as a forced op (it must have happened first)
        let mut forced = vec![false; dir_ops.len()];
        let mut files: HashSet<FileId> = HashSet::new();
        let mut entries: HashSet<&Entry> = HashSet::new();
        for (k, (i, op)) in dir_ops.iter().enumerate().rev() {
            let covered = op
                .dirs()
                .iter()
                .all(|d| dir_synced.get(d).is_some_and(|&mark| *i < mark));
            let (op_files, op_entries) = touched(op);
            let depended_on = op_files.iter().any(|f| files.contains(f))
                || op_entries.iter().any(|e| entries.contains(e));
            if covered || depended_on {
                forced[k] = true;
                files.extend(op_files);
                entries.extend(op_entries);
            }
        }
        let pending = forced.iter().filter(|f| !**f).count();
        *optional_ops += pending;
        let prefix = rng.below(pending as u64 + 1) as usize;
        let mut names = BTreeMap::new();
        let mut pending_seen = 0;
        for (k, (_, op)) in dir_ops.iter().enumerate() {
            let happens = forced[k] || {
                pending_seen += 1;
                match dir_order {
                    DirOrder::Prefix => pending_seen <= prefix,
                    DirOrder::Independent => rng.coin(),
                }
            };
            if happens {
                apply_dir_op(&mut names, op);
            }
        }
        names
    }
}

/// The files and entries a directory op touches.
fn touched(op: &DurableOp) -> (Vec<FileId>, Vec<&Entry>) {
    match op {
        DurableOp::Create { entry, file } | DurableOp::Unlink { entry, file } => {
            (vec![*file], vec![entry])
        }
        DurableOp::Rename { file, from, to, .. } => (vec![*file], vec![from, to]),
        _ => (Vec::new(), Vec::new()),
    }
}

/// Applies a directory op where it still applies to `names` (a create needs a free name, a rename or
/// unlink needs its file under the old name, a no-replace rename a free target).
fn apply_dir_op(names: &mut BTreeMap<Entry, FileId>, op: &DurableOp) {
    match op {
        DurableOp::Create { entry, file } => {
            names.entry(entry.clone()).or_insert(*file);
        }
        DurableOp::Rename {
            file,
            from,
            to,
            no_replace,
        } => {
            let movable = names.get(from) == Some(file) && from != to;
            if movable && !(*no_replace && names.contains_key(to)) {
                names.remove(from);
                names.insert(to.clone(), *file);
            }
        }
        DurableOp::Unlink { entry, file } if names.get(entry) == Some(file) => {
            names.remove(entry);
        }
        _ => {}
    }
}

/// Applies a data op to `content`.
fn apply_data(content: &mut Vec<u8>, op: &DurableOp) {
    match op {
        DurableOp::Write { offset, data, .. } => write_at(content, *offset, data),
        DurableOp::SetLen { len, .. } => content.resize(to_usize(*len), 0),
        DurableOp::Fallocate {
            mode, offset, len, ..
        } => fallocate(content, *mode, *offset, *len),
        _ => {}
    }
}

/// A torn data op: a write lands only in some of its 512-byte sectors (each chosen by the generator);
/// other ops happen or not as a unit.
fn apply_torn(content: &mut Vec<u8>, op: &DurableOp, rng: &mut Rng) {
    let DurableOp::Write { offset, data, .. } = op else {
        if rng.coin() {
            apply_data(content, op);
        }
        return;
    };
    let end = offset + data.len() as u64;
    let mut at = *offset;
    while at < end {
        let next = ((at / SECTOR + 1) * SECTOR).min(end);
        if rng.coin() {
            let range = (at - offset) as usize..(next - offset) as usize;
            write_at(content, at, &data[range]);
        }
        at = next;
    }
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn write_at(content: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let start = to_usize(offset);
    let end = start + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[start..end].copy_from_slice(data);
}

/// The effect of `fallocate` on the bytes: allocation alone changes nothing but the size (unless
/// `KEEP_SIZE`); punching a hole or zeroing a range reads back as zeros.
fn fallocate(content: &mut Vec<u8>, mode: i32, offset: u64, len: u64) {
    let end = to_usize(offset.saturating_add(len));
    if mode & (PUNCH_HOLE | ZERO_RANGE) != 0 {
        let zero_end = end.min(content.len());
        let start = to_usize(offset).min(zero_end);
        content[start..zero_end].fill(0);
    }
    if mode & KEEP_SIZE == 0 && content.len() < end {
        content.resize(end, 0);
    }
}
