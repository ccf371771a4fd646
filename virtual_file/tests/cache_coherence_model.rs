//! Model-based test of the page cache's coherence, in every IO mode x engine: seeded random sequences of
//! writes, `set_len`, `fallocate`, cached and uncached reads, futures dropped after their first poll and
//! a write racing a cached read of its page, over a few files with several handles each (the writer, an
//! `open_again_read_only` twin, a second read-only and a second read-write open, and a read-write open
//! through a second context of the same mode and engine).
//!
//! After every step the test waits until no mutation is in flight ([`quiesce`]), compares each file with
//! the model of its content (the bytes completed ops must have left; resynced from the file after a
//! dropped op, whose effect is unknown) and reads a random range through every handle with
//! `read_cached_at`: the file's bytes as `std::fs::read` sees them, or `UnexpectedEof` exactly when the
//! range ends past the end. Any other outcome, a panic or a hang is a failure reported with the seed,
//! the step and the last ops.
//!
//! - `VIRTUAL_FILE_MODEL_SEED=<n>` replays a run (every combo uses that seed).
//! - `VIRTUAL_FILE_MODEL_OPS=<n>` sets the steps per combo (default [`DEFAULT_OPS`]).
//! - `VIRTUAL_FILE_MODEL_EXCLUDE=<list>` leaves out kinds of ops or handles, to tell which one a failure
//!   needs (comma-separated, from [`EXCLUDABLE`]).

mod coherence;
mod common;

use std::collections::VecDeque;
use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use coherence::{
    bytes, check_read, context, guarded, poll_once, read_cached, read_uncached, real, try_quiesce,
    write_at, Failure, OnDrop, ReadCheck, ALIGN, PAGE,
};
use io_engine::IoEngineKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::{Error, IoContext, IoMode, OpenOptions, VirtualFile};

/// Steps per combo unless `VIRTUAL_FILE_MODEL_OPS` says otherwise.
const DEFAULT_OPS: usize = 3000;
const SEED_ENV: &str = "VIRTUAL_FILE_MODEL_SEED";
const OPS_ENV: &str = "VIRTUAL_FILE_MODEL_OPS";
const EXCLUDE_ENV: &str = "VIRTUAL_FILE_MODEL_EXCLUDE";
/// What `VIRTUAL_FILE_MODEL_EXCLUDE` accepts.
const EXCLUDABLE: [&str; 11] = [
    "past-eof",
    "write-past-eof",
    "dropped",
    "concurrent",
    "fallocate",
    "set-len",
    "ragged",
    "twin",
    "second-open",
    "other-context",
    "small-budget",
];
const FILES: usize = 3;
/// Files stay below this length (writes and growth are clamped), so pages are shared often.
const MAX_LEN: usize = 16 * PAGE;
/// The memory budget of runs with a small one: 12 pages for 3 files x 5 handles of up to 16 pages.
const SMALL_BUDGET: usize = 12 * PAGE;
/// Ops kept for a failure report.
const HISTORY: usize = 16;
/// Failures reported in detail (all are counted).
const REPORTED: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum HandleKind {
    Writer,
    Twin,
    ReadOnly,
    ReadWrite,
    OtherContext,
}

impl HandleKind {
    fn writable(self) -> bool {
        matches!(
            self,
            HandleKind::Writer | HandleKind::ReadWrite | HandleKind::OtherContext
        )
    }

    fn name(self) -> &'static str {
        match self {
            HandleKind::Writer => "writer",
            HandleKind::Twin => "twin",
            HandleKind::ReadOnly => "ro",
            HandleKind::ReadWrite => "rw",
            HandleKind::OtherContext => "ctx2",
        }
    }
}

struct Handle {
    kind: HandleKind,
    file: Arc<VirtualFile>,
}

struct File {
    path: PathBuf,
    /// What the completed ops must have left in the file.
    model: Vec<u8>,
    handles: Vec<Handle>,
    /// Whether the writer reads through the cache itself. If not, it only writes and its twin reads, as
    /// an ephemeral file's writer does: then nothing but the twin's reads marks the shared pages cached.
    writer_reads_cached: bool,
    /// The page most ops and checks go near, so that pages are cached, changed and read again.
    hot: usize,
}

#[derive(Debug, Clone)]
enum What {
    /// `write_all_at`; `skew` shifts the bytes in their buffer (a misaligned address).
    Write {
        offset: u64,
        data: Vec<u8>,
        skew: usize,
    },
    SetLen(u64),
    Fallocate {
        zero: bool,
        offset: u64,
        len: u64,
    },
    CachedRead {
        offset: u64,
        len: usize,
    },
    UncachedRead {
        offset: u64,
        len: usize,
    },
    WriteAndRead(Race),
}

/// A write and a cached read (through handle `reader`) of the same page at once; `spawned` runs them as
/// two tasks.
#[derive(Debug, Clone)]
struct Race {
    reader: usize,
    offset: u64,
    data: Vec<u8>,
    read_offset: u64,
    read_len: usize,
    spawned: bool,
}

#[derive(Debug, Clone)]
struct Op {
    file: usize,
    handle: usize,
    what: What,
    /// Polled once, then dropped.
    dropped: bool,
}

struct OpLabel<'a>(&'a Op, &'a [File]);

impl fmt::Display for OpLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (op, files) = (self.0, self.1);
        let h = |i: usize| files[op.file].handles[i].kind.name();
        write!(f, "f{}/{} ", op.file, h(op.handle))?;
        match &op.what {
            What::Write { offset, data, skew } => {
                write!(f, "write {offset}+{}", data.len())?;
                if *skew != 0 {
                    write!(f, " skew {skew}")?;
                }
            }
            What::SetLen(len) => write!(f, "set_len {len}")?,
            What::Fallocate { zero, offset, len } => {
                let kind = if *zero { "zero" } else { "punch" };
                write!(f, "fallocate {kind} {offset}+{len}")?;
            }
            What::CachedRead { offset, len } => write!(f, "read_cached_at {offset}+{len}")?,
            What::UncachedRead { offset, len } => write!(f, "read_exact_at {offset}+{len}")?,
            What::WriteAndRead(race) => write!(
                f,
                "write {}+{} racing {} read_cached_at {}+{}{}",
                race.offset,
                race.data.len(),
                h(race.reader),
                race.read_offset,
                race.read_len,
                if race.spawned { " (two tasks)" } else { "" }
            )?,
        }
        if op.dropped {
            write!(f, " (dropped after one poll)")?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Category {
    Stale,
    MissedEof,
    SpuriousEof,
    OtherError,
    /// A mutation's result (`Ok`, or `Misaligned` on an `O_DIRECT` handle) was not the expected one.
    WrongResult,
    /// An uncached read disagreed with the model.
    Uncached,
    /// A completed op's effect is not in the file (or something else changed it).
    Divergence,
    Panic,
    Hang,
}

#[derive(Default)]
struct Counts {
    ops: usize,
    dropped: usize,
    pending: usize,
    concurrent: usize,
    misaligned: usize,
    checks: usize,
    stale: usize,
    missed_eof: usize,
    spurious_eof: usize,
    other_errors: usize,
    wrong_results: usize,
    uncached: usize,
    divergences: usize,
    panics: usize,
    hangs: usize,
}

impl Counts {
    fn count(&mut self, c: Category) {
        let n = match c {
            Category::Stale => &mut self.stale,
            Category::MissedEof => &mut self.missed_eof,
            Category::SpuriousEof => &mut self.spurious_eof,
            Category::OtherError => &mut self.other_errors,
            Category::WrongResult => &mut self.wrong_results,
            Category::Uncached => &mut self.uncached,
            Category::Divergence => &mut self.divergences,
            Category::Panic => &mut self.panics,
            Category::Hang => &mut self.hangs,
        };
        *n += 1;
    }
}

/// Which ops and handles a run leaves out (`VIRTUAL_FILE_MODEL_EXCLUDE`).
struct Exclude(Vec<&'static str>);

impl Exclude {
    fn from_env() -> Self {
        let Ok(value) = std::env::var(EXCLUDE_ENV) else {
            return Exclude(Vec::new());
        };
        let mut out = Vec::new();
        for part in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match EXCLUDABLE.iter().find(|e| **e == part) {
                Some(e) => out.push(*e),
                None => panic!(
                    "{EXCLUDE_ENV}: unknown entry {part:?}; accepted (comma-separated): {}",
                    EXCLUDABLE.join(", ")
                ),
            }
        }
        Exclude(out)
    }

    fn has(&self, what: &str) -> bool {
        self.0.contains(&what)
    }
}

fn env_number(name: &str) -> Option<u64> {
    let value = std::env::var(name).ok()?;
    Some(
        value
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?}: expected a non-negative integer")),
    )
}

struct Run {
    mode: IoMode,
    kind: IoEngineKind,
    seed: u64,
    rng: StdRng,
    files: Vec<File>,
    exclude: Exclude,
    counts: Counts,
    history: VecDeque<String>,
    failures: Vec<String>,
    step: usize,
    /// A panic or a hang: the cache may be wedged, later steps would only repeat it.
    stopped: bool,
}

impl Run {
    fn fail(&mut self, c: Category, detail: String) {
        self.counts.count(c);
        if matches!(c, Category::Panic | Category::Hang) {
            self.stopped = true;
        }
        if self.failures.len() < REPORTED {
            let mut msg = format!("step {}: {c:?}: {detail}", self.step);
            if self.failures.is_empty() {
                msg.push_str("\n    last ops:");
                for h in &self.history {
                    msg.push_str("\n      ");
                    msg.push_str(h);
                }
            }
            self.failures.push(msg);
        }
    }

    fn fail_read(&mut self, what: &str, check: ReadCheck) {
        let c = match check {
            ReadCheck::Good => return,
            ReadCheck::Stale { .. } => Category::Stale,
            ReadCheck::MissedEof => Category::MissedEof,
            ReadCheck::SpuriousEof => Category::SpuriousEof,
            ReadCheck::OtherError(_) => Category::OtherError,
        };
        self.fail(c, format!("{what}: {check:?}"));
    }

    fn fail_guard(&mut self, what: &str, f: Failure) {
        let c = match f {
            Failure::Panic(_) => Category::Panic,
            Failure::Hang => Category::Hang,
        };
        self.fail(c, format!("{what} {f}"));
    }

    /// A position in file `fi`: near its hot page, near a page boundary, inside the file, or just past
    /// its end.
    fn position(&mut self, fi: usize) -> usize {
        let len = self.files[fi].model.len();
        let r = self.rng.random_range(0..10);
        let p = if r < 4 {
            let hot = self.files[fi].hot * PAGE;
            (hot + self.rng.random_range(0..PAGE + 700)).saturating_sub(350)
        } else if r < 6 {
            // near a page boundary
            let page = self.rng.random_range(0..=len.div_ceil(PAGE).max(1));
            (page * PAGE).saturating_sub(self.rng.random_range(0..700))
                + self.rng.random_range(0..3)
        } else if r < 9 {
            self.rng.random_range(0..=len)
        } else {
            len + self.rng.random_range(0..2 * PAGE)
        };
        p.min(MAX_LEN - 1)
    }

    fn length(&mut self) -> usize {
        match self.rng.random_range(0..10) {
            0..=3 => self.rng.random_range(1..700),
            4..=5 => PAGE,
            6 => PAGE / 2,
            _ => self.rng.random_range(1..3 * PAGE),
        }
    }

    /// A write on handle `h` of file `fi`: aligned or ragged, inside, across pages or past the end.
    fn gen_write(&mut self, fi: usize, h: usize) -> What {
        let len = self.files[fi].model.len();
        let direct = self.files[fi].handles[h].file.is_direct();
        let ragged_ok = !self.exclude.has("ragged");
        let ragged = ragged_ok && self.rng.random_bool(if direct { 0.1 } else { 0.5 });
        let mut offset = self.position(fi);
        if self.exclude.has("write-past-eof") {
            offset = offset.min(len);
        }
        let mut n = self.length();
        let mut skew = 0;
        if !ragged {
            offset -= offset % ALIGN;
            n = n.next_multiple_of(ALIGN);
        } else if direct && self.rng.random_bool(0.3) {
            // aligned offset and length, misaligned buffer address
            offset -= offset % ALIGN;
            n = n.next_multiple_of(ALIGN);
            skew = self.rng.random_range(1..ALIGN);
        }
        if offset + n > MAX_LEN {
            offset = MAX_LEN - n;
            if !ragged {
                offset -= offset % ALIGN;
            }
        }
        let seed = self.rng.random();
        What::Write {
            offset: offset as u64,
            data: bytes(n, seed),
            skew,
        }
    }

    /// A read of file `fi` for a handle that is `O_DIRECT` or not: inside, across pages, or (unless
    /// excluded) past the end.
    fn gen_read_range(&mut self, fi: usize, aligned: bool) -> (u64, usize) {
        let len = self.files[fi].model.len();
        let past = !self.exclude.has("past-eof") && self.rng.random_bool(0.15);
        let (mut offset, mut n) = if past {
            let o = len.saturating_sub(self.rng.random_range(0..300))
                + self.rng.random_range(0..2 * PAGE) * usize::from(self.rng.random_bool(0.5));
            let min_n = (len + 1).saturating_sub(o).max(1);
            (o, min_n + self.rng.random_range(0..2 * PAGE))
        } else if len == 0 {
            return (0, 0);
        } else if self.rng.random_bool(0.1) {
            (0, len)
        } else {
            let o = self.position(fi).min(len - 1);
            (o, self.length().min(len - o))
        };
        if aligned {
            offset -= offset % ALIGN;
            n = n.next_multiple_of(ALIGN);
            if !past && offset + n > len {
                // an aligned read that still ends in the file, if there is one
                n = (len - offset) / ALIGN * ALIGN;
                if n == 0 {
                    return (0, 0);
                }
            }
        }
        (offset as u64, n)
    }

    fn gen_op(&mut self) -> Op {
        let fi = self.rng.random_range(0..self.files.len());
        let handles = self.files[fi].handles.len();
        let writable: Vec<usize> = (0..handles)
            .filter(|&i| self.files[fi].handles[i].kind.writable())
            .collect();
        let any = self.rng.random_range(0..handles);
        let cached_reader = if any == 0 && !self.files[fi].writer_reads_cached {
            1
        } else {
            any
        };
        let w = writable[self.rng.random_range(0..writable.len())];
        let len = self.files[fi].model.len();
        let mut dropped = false;
        let mut r = self.rng.random_range(0..100);
        if r < 12 && !self.exclude.has("dropped") {
            dropped = true;
            r = self.rng.random_range(12..70);
        } else if r < 12 {
            r += 12;
        }
        let (handle, what) = match r {
            12..=36 => (w, self.gen_write(fi, w)),
            37..=44 if !self.exclude.has("set-len") => {
                let new = if self.rng.random_bool(0.5) || len == 0 {
                    len + self.rng.random_range(1..2 * PAGE)
                } else {
                    self.rng.random_range(0..len)
                };
                (w, What::SetLen(new.min(MAX_LEN) as u64))
            }
            45..=52 if !self.exclude.has("fallocate") => {
                let offset = self.position(fi) as u64;
                let n = self.length() as u64;
                let zero = self.rng.random_bool(0.5);
                (
                    w,
                    What::Fallocate {
                        zero,
                        offset,
                        len: n,
                    },
                )
            }
            53..=62 => {
                let direct = self.files[fi].handles[any].file.is_direct();
                let (offset, n) = self.gen_read_range(fi, direct);
                if n == 0 {
                    (w, self.gen_write(fi, w))
                } else {
                    (any, What::UncachedRead { offset, len: n })
                }
            }
            93..=99 if !self.exclude.has("concurrent") && len >= PAGE && !dropped => {
                self.counts.concurrent += 1;
                let direct = self.files[fi].handles[w].file.is_direct();
                let page = self.rng.random_range(0..len / PAGE);
                let base = page * PAGE;
                let (mut offset, mut n) = (
                    base + self.rng.random_range(0..PAGE - 1),
                    self.rng.random_range(1..PAGE),
                );
                if direct {
                    offset -= offset % ALIGN;
                    n = n.next_multiple_of(ALIGN);
                }
                n = n.min(base + PAGE - offset);
                let read_offset = base + self.rng.random_range(0..PAGE - 1);
                let read_len = self.rng.random_range(1..=base + PAGE - read_offset);
                let seed = self.rng.random();
                let spawned = self.rng.random_bool(0.5);
                (
                    w,
                    What::WriteAndRead(Race {
                        reader: cached_reader,
                        offset: offset as u64,
                        data: bytes(n, seed),
                        read_offset: read_offset as u64,
                        read_len,
                        spawned,
                    }),
                )
            }
            _ => {
                let (offset, n) = self.gen_read_range(fi, false);
                if n == 0 {
                    (w, self.gen_write(fi, w))
                } else {
                    (cached_reader, What::CachedRead { offset, len: n })
                }
            }
        };
        Op {
            file: fi,
            handle,
            what,
            dropped,
        }
    }

    /// Runs `op` and checks what it returned; updates the model for completed mutations. Returns true if
    /// the op's effect on the file is unknown (dropped while pending).
    async fn run(&mut self, op: &Op) -> bool {
        let label = OpLabel(op, &self.files).to_string();
        let file = Arc::clone(&self.files[op.file].handles[op.handle].file);
        if let What::WriteAndRead(race) = &op.what {
            let reader = Arc::clone(&self.files[op.file].handles[race.reader].file);
            let old = self.files[op.file].model.clone();
            let (offset, data) = (race.offset, &race.data);
            let (read_offset, read_len) = (race.read_offset, race.read_len);
            let res = if race.spawned {
                let (w, r, data) = (Arc::clone(&file), Arc::clone(&reader), data.clone());
                let write = tokio::spawn(async move { write_at(&w, offset, &data, 0).await });
                let read =
                    tokio::spawn(async move { read_cached(&r, read_offset, read_len).await });
                guarded(async move {
                    let (w, r) = tokio::join!(write, read);
                    (w.unwrap(), r.unwrap())
                })
                .await
            } else {
                guarded(async {
                    tokio::join!(
                        write_at(&file, offset, data, 0),
                        read_cached(&reader, read_offset, read_len)
                    )
                })
                .await
            };
            let (wres, rres) = match res {
                Ok(v) => v,
                Err(f) => {
                    self.fail_guard(&label, f);
                    return true;
                }
            };
            if let Err(e) = wres {
                self.fail(Category::WrongResult, format!("{label}: write: {e}"));
                return true;
            }
            apply_write(&mut self.files[op.file].model, offset, data);
            let new = &self.files[op.file].model;
            // Racing the write, the read may return either version of each byte, never a third.
            let (ro, rl) = (read_offset as usize, read_len);
            match rres {
                Ok(got) => {
                    let bad = (0..rl).find(|&i| got[i] != old[ro + i] && got[i] != new[ro + i]);
                    if let Some(i) = bad {
                        let detail = format!(
                            "{label}: byte {} is {}, neither the old {} nor the new {}",
                            ro + i,
                            got[i],
                            old[ro + i],
                            new[ro + i]
                        );
                        self.fail(Category::Stale, detail);
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    self.fail(Category::SpuriousEof, format!("{label}: {e}"));
                }
                Err(e) => self.fail(Category::OtherError, format!("{label}: {e}")),
            }
            return false;
        }
        let what = op.what.clone();
        let perform = async move {
            match &what {
                What::Write { offset, data, skew } => {
                    Outcome::Unit(write_at(&file, *offset, data, *skew).await)
                }
                What::SetLen(len) => Outcome::Unit(file.set_len(*len).await),
                What::Fallocate { zero, offset, len } => {
                    let mode = if *zero {
                        libc::FALLOC_FL_ZERO_RANGE
                    } else {
                        libc::FALLOC_FL_PUNCH_HOLE
                    } | libc::FALLOC_FL_KEEP_SIZE;
                    Outcome::Unit(file.fallocate(mode, *offset, *len).await)
                }
                What::CachedRead { offset, len } => {
                    Outcome::Bytes(read_cached(&file, *offset, *len).await)
                }
                What::UncachedRead { offset, len } => {
                    Outcome::Bytes(read_uncached(&file, *offset, *len).await)
                }
                What::WriteAndRead(_) => unreachable!("handled above"),
            }
        };
        let res = if op.dropped {
            self.counts.dropped += 1;
            guarded(poll_once(perform)).await
        } else {
            guarded(async { Some(perform.await) }).await
        };
        let outcome = match res {
            Ok(Some(o)) => o,
            Ok(None) => {
                self.counts.pending += 1;
                return true;
            }
            Err(f) => {
                self.fail_guard(&label, f);
                return true;
            }
        };
        let handle_direct = self.files[op.file].handles[op.handle].file.is_direct();
        let model = &mut self.files[op.file].model;
        match (&op.what, outcome) {
            (What::Write { offset, data, skew }, Outcome::Unit(res)) => {
                let misaligned = handle_direct
                    && (*offset as usize % ALIGN != 0 || data.len() % ALIGN != 0 || *skew != 0);
                match res {
                    Ok(()) if !misaligned => apply_write(model, *offset, data),
                    Err(Error::Misaligned { .. }) if misaligned => self.counts.misaligned += 1,
                    other => {
                        let want = if misaligned { "Misaligned" } else { "Ok" };
                        let detail = format!("{label}: expected {want}, got {other:?}");
                        self.fail(Category::WrongResult, detail);
                        return true;
                    }
                }
            }
            (What::SetLen(len), Outcome::Unit(res)) => match res {
                Ok(()) => model.resize(*len as usize, 0),
                Err(e) => {
                    self.fail(Category::WrongResult, format!("{label}: {e}"));
                    return true;
                }
            },
            (What::Fallocate { offset, len, .. }, Outcome::Unit(res)) => match res {
                Ok(()) => {
                    let end = ((offset + len) as usize).min(model.len());
                    if (*offset as usize) < end {
                        model[*offset as usize..end].fill(0);
                    }
                }
                Err(e) => {
                    self.fail(Category::WrongResult, format!("{label}: {e}"));
                    return true;
                }
            },
            (What::CachedRead { offset, len }, Outcome::Bytes(res)) => {
                let check = check_read(&res, model, *offset, *len);
                self.fail_read(&label, check);
            }
            (What::UncachedRead { offset, len }, Outcome::Bytes(res)) => {
                let check = check_read(&res, model, *offset, *len);
                if !check.is_good() {
                    self.fail(Category::Uncached, format!("{label}: {check:?}"));
                }
            }
            _ => unreachable!("outcome of the op's kind"),
        }
        false
    }

    /// After a step: nothing in flight, every file equal to its model (or the model taken from the file
    /// after an op of unknown effect), and a cached read through every handle equal to the file.
    async fn check(&mut self, unknown: Option<usize>) {
        for fi in 0..self.files.len() {
            for hi in 0..self.files[fi].handles.len() {
                let file = Arc::clone(&self.files[fi].handles[hi].file);
                if let Err(e) = try_quiesce(&file).await {
                    self.fail(Category::Hang, e);
                    return;
                }
            }
        }
        for fi in 0..self.files.len() {
            let real = real(&self.files[fi].path);
            if unknown != Some(fi) && real != self.files[fi].model {
                let model = &self.files[fi].model;
                let at = real.iter().zip(model).position(|(a, b)| a != b);
                let detail = format!(
                    "f{fi}: the file ({} bytes) is not what the completed ops left ({} bytes); \
                     first difference at {at:?}",
                    real.len(),
                    model.len()
                );
                self.fail(Category::Divergence, detail);
            }
            self.files[fi].model = real.clone();
            if self.rng.random_bool(0.1) {
                self.files[fi].hot = self.rng.random_range(0..=real.len() / PAGE);
            }
            for hi in 0..self.files[fi].handles.len() {
                if hi == 0 && !self.files[fi].writer_reads_cached {
                    continue;
                }
                let len = real.len();
                let (offset, n) = if self.rng.random_bool(0.1) {
                    (0, len.max(1))
                } else {
                    match self.gen_read_range(fi, false) {
                        (_, 0) => (0, 1),
                        r => r,
                    }
                };
                let file = Arc::clone(&self.files[fi].handles[hi].file);
                let what = format!(
                    "check f{fi}/{} read_cached_at {offset}+{n} (file {len} bytes)",
                    self.files[fi].handles[hi].kind.name()
                );
                self.counts.checks += 1;
                match guarded(read_cached(&file, offset, n)).await {
                    Ok(res) => {
                        let check = check_read(&res, &real, offset, n);
                        self.fail_read(&what, check);
                    }
                    Err(f) => {
                        self.fail_guard(&what, f);
                        return;
                    }
                }
            }
        }
    }
}

enum Outcome {
    Unit(Result<(), Error>),
    Bytes(Result<Vec<u8>, Error>),
}

fn apply_write(model: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let (start, end) = (offset as usize, offset as usize + data.len());
    if model.len() < end {
        model.resize(end, 0);
    }
    model[start..end].copy_from_slice(data);
}

async fn open_handles(
    ctx: &IoContext,
    ctx2: &IoContext,
    path: &std::path::Path,
    exclude: &Exclude,
) -> Vec<Handle> {
    let rw = OpenOptions::new().read(true).write(true);
    let writer = VirtualFile::open_with_options(ctx, path, rw).await.unwrap();
    let mut handles = Vec::new();
    if !exclude.has("twin") {
        let twin = writer.open_again_read_only().await.unwrap();
        handles.push((HandleKind::Twin, twin));
    }
    if !exclude.has("second-open") {
        let ro = VirtualFile::open(ctx, path).await.unwrap();
        handles.push((HandleKind::ReadOnly, ro));
        let rw2 = VirtualFile::open_with_options(ctx, path, rw).await.unwrap();
        handles.push((HandleKind::ReadWrite, rw2));
    }
    if !exclude.has("other-context") {
        let other = VirtualFile::open_with_options(ctx2, path, rw)
            .await
            .unwrap();
        handles.push((HandleKind::OtherContext, other));
    }
    handles.insert(0, (HandleKind::Writer, writer));
    handles
        .into_iter()
        .map(|(kind, file)| Handle {
            kind,
            file: Arc::new(file),
        })
        .collect()
}

#[rstest]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_reads_match_the_file_under_random_ops(
    #[values(IoMode::Buffered, IoMode::Direct, IoMode::DirectRw)] mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let seed = env_number(SEED_ENV).unwrap_or_else(rand::random);
    let ops = env_number(OPS_ENV).map_or(DEFAULT_OPS, |n| n as usize);
    let exclude = Exclude::from_env();
    let mut rng = StdRng::seed_from_u64(seed);
    // A small budget (eviction all the time) and a small open-file cache (reopens) in some runs.
    let small = !exclude.has("small-budget") && rng.random_bool(0.5);
    let budget = small.then_some(SMALL_BUDGET);
    let open_files = rng.random_bool(0.3).then_some(4);
    let ctx = context(mode, kind, budget, open_files, OnDrop::Cancel);
    let ctx2 = context(mode, kind, budget, open_files, OnDrop::Cancel);
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for i in 0..FILES {
        let path = dir.path().join(format!("f{i}"));
        let len = rng.random_range(0..8 * PAGE);
        std::fs::write(&path, bytes(len, rng.random())).unwrap();
        let handles = open_handles(&ctx, &ctx2, &path, &exclude).await;
        // (the twin is handle 1 when there is one)
        let writer_reads_cached = exclude.has("twin") || rng.random_bool(0.5);
        files.push(File {
            model: std::fs::read(&path).unwrap(),
            path,
            handles,
            writer_reads_cached,
            hot: rng.random_range(0..=len / PAGE),
        });
    }
    let mut run = Run {
        mode,
        kind,
        seed,
        rng,
        files,
        exclude,
        counts: Counts::default(),
        history: VecDeque::new(),
        failures: Vec::new(),
        step: 0,
        stopped: false,
    };
    let start = Instant::now();
    while run.step < ops && !run.stopped {
        let op = run.gen_op();
        let label = OpLabel(&op, &run.files).to_string();
        run.history.push_back(format!("step {}: {label}", run.step));
        if run.history.len() > HISTORY {
            run.history.pop_front();
        }
        run.counts.ops += 1;
        let unknown = run.run(&op).await;
        if !run.stopped {
            run.check(unknown.then_some(op.file)).await;
        }
        run.step += 1;
    }
    let c = &run.counts;
    let write_only = run.files.iter().filter(|f| !f.writer_reads_cached).count();
    eprintln!(
        "model {}/{} seed {}: {} ops ({} dropped, {} of them pending, {} racing, {} misaligned), {} \
         checks in {:.1?}{}, {write_only} write-only writers; stale {}, missed EOF {}, spurious EOF {}, other errors {}, wrong results \
         {}, uncached {}, divergences {}, panics {}, hangs {}",
        run.mode,
        run.kind,
        run.seed,
        c.ops,
        c.dropped,
        c.pending,
        c.concurrent,
        c.misaligned,
        c.checks,
        start.elapsed(),
        if small { ", 96 KiB budget" } else { "" },
        c.stale,
        c.missed_eof,
        c.spurious_eof,
        c.other_errors,
        c.wrong_results,
        c.uncached,
        c.divergences,
        c.panics,
        c.hangs,
    );
    assert!(
        run.failures.is_empty(),
        "{}/{}: the page cache disagreed with the file; replay with {SEED_ENV}={} (and {OPS_ENV}={ops}){}\n  {}",
        run.mode,
        run.kind,
        run.seed,
        if run.stopped {
            "; stopped at the first panic or hang"
        } else {
            ""
        },
        run.failures.join("\n  ")
    );
}
