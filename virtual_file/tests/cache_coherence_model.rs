//! Model-based test of the page cache's coherence, in every IO mode x engine: seeded random sequences of
//! writes, `set_len`, `fallocate`, cached reads (point and scan intent) and uncached reads, scans
//! (`scan` of the whole file or a part, `scan_extents`), futures dropped after their first poll and a
//! write racing a cached read of its page, over a few files with several handles each (the writer, an
//! `open_again_read_only` twin, a second read-only and a second read-write open, and a read-write open
//! through a second context of the same mode and engine).
//!
//! A scan's chunks must be the file's bytes of its range clipped to the file's size at the scan's start,
//! back to back and in order; a `scan_extents` chunk exactly its extent's bytes. Some scans have
//! `next_chunk` futures dropped after their first poll and are then continued to the end; some are
//! dropped after a few chunks with reads in flight (and the step's checks follow while those finish).
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
use std::ops::{Bound, Range};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use coherence::scan::{check_extents, check_range, collect, expected_range, Drive, ScanCheck};
use coherence::{
    bytes, check_read, context, guarded, poll_once, read_cached, read_cached_with, read_uncached,
    real, try_quiesce, write_at, Failure, OnDrop, ReadCheck, ALIGN, PAGE,
};
use io_engine::IoEngineKind;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rstest::rstest;
use virtual_file::{Error, IoContext, IoMode, OpenOptions, ReadIntent, ScanOptions, VirtualFile};

/// Steps per combo unless `VIRTUAL_FILE_MODEL_OPS` says otherwise.
const DEFAULT_OPS: usize = 3000;
const SEED_ENV: &str = "VIRTUAL_FILE_MODEL_SEED";
const OPS_ENV: &str = "VIRTUAL_FILE_MODEL_OPS";
const EXCLUDE_ENV: &str = "VIRTUAL_FILE_MODEL_EXCLUDE";
/// What `VIRTUAL_FILE_MODEL_EXCLUDE` accepts.
const EXCLUDABLE: [&str; 16] = [
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
    // `scan` run to its end
    "scan",
    // `scan` with `next_chunk` futures dropped after their first poll, then run to its end
    "scan-dropped-poll",
    // `scan` dropped after a few chunks, reads in flight
    "scan-abandoned",
    "scan-extents",
    // `read_cached_at_with(.., ReadIntent::Scan)`, also as the read of a write racing a read
    "scan-intent",
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
        intent: ReadIntent,
    },
    UncachedRead {
        offset: u64,
        len: usize,
    },
    WriteAndRead(Race),
    /// `scan(bounds, options)`, driven as `drive` says.
    Scan {
        bounds: (Bound<u64>, Bound<u64>),
        options: ScanOptions,
        drive: Drive,
    },
    /// `scan_extents(extents, options)`; with `past_eof`, the last extent ends past the file's end (its
    /// read fails with `UnexpectedEof`, and so does the call after it).
    ScanExtents {
        extents: Vec<Range<u64>>,
        options: ScanOptions,
        past_eof: bool,
    },
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
    read_intent: ReadIntent,
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
            What::CachedRead {
                offset,
                len,
                intent: ReadIntent::Point,
            } => write!(f, "read_cached_at {offset}+{len}")?,
            What::CachedRead {
                offset,
                len,
                intent,
            } => write!(f, "read_cached_at_with {offset}+{len} {intent:?}")?,
            What::UncachedRead { offset, len } => write!(f, "read_exact_at {offset}+{len}")?,
            What::WriteAndRead(race) => write!(
                f,
                "write {}+{} racing {} read_cached_at {}+{}{}{}",
                race.offset,
                race.data.len(),
                h(race.reader),
                race.read_offset,
                race.read_len,
                if race.read_intent == ReadIntent::Scan {
                    " (scan intent)"
                } else {
                    ""
                },
                if race.spawned { " (two tasks)" } else { "" }
            )?,
            What::Scan {
                bounds,
                options,
                drive,
            } => {
                write!(f, "scan {} {}", RangeLabel(*bounds), OptionsLabel(options))?;
                match drive {
                    Drive::ToEnd => {}
                    Drive::DropPolls(calls) => {
                        write!(f, ", next_chunk calls {calls:?} dropped after one poll")?;
                    }
                    Drive::Abandon(n) => write!(f, ", dropped after {n} chunk(s)")?,
                }
            }
            What::ScanExtents {
                extents,
                options,
                past_eof,
            } => {
                write!(f, "scan_extents {extents:?} {}", OptionsLabel(options))?;
                if *past_eof {
                    write!(f, " (the last past the end)")?;
                }
            }
        }
        if op.dropped {
            write!(f, " (dropped after one poll)")?;
        }
        Ok(())
    }
}

/// A scan's bounds as Rust writes the range: `..`, `3..`, `..=9`, `(Excluded(3), Unbounded)`, ...
struct RangeLabel((Bound<u64>, Bound<u64>));

impl fmt::Display for RangeLabel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 .0 {
            Bound::Included(s) => write!(f, "{s}")?,
            Bound::Unbounded => {}
            Bound::Excluded(_) => return write!(f, "{:?}", self.0),
        }
        match self.0 .1 {
            Bound::Included(e) => write!(f, "..={e}"),
            Bound::Excluded(e) => write!(f, "..{e}"),
            Bound::Unbounded => write!(f, ".."),
        }
    }
}

struct OptionsLabel<'a>(&'a ScanOptions);

impl fmt::Display for OptionsLabel<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let o = self.0;
        write!(
            f,
            "(reads of {} B, {} then up to {} in flight)",
            o.read_size, o.initial_reads, o.max_reads
        )
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
    /// A scan's chunks did not tile its range or extents (a gap, an overlap, a wrong offset or length,
    /// too few or too many), or it failed where it should not have or did not where it should.
    Scan,
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
    scans: usize,
    scan_chunks: usize,
    /// `next_chunk` futures dropped while pending.
    scan_polls_dropped: usize,
    /// Scans dropped with reads in flight.
    scans_abandoned: usize,
    scan_intent_reads: usize,
    stale: usize,
    missed_eof: usize,
    spurious_eof: usize,
    other_errors: usize,
    wrong_results: usize,
    uncached: usize,
    divergences: usize,
    scan_failures: usize,
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
            Category::Scan => &mut self.scan_failures,
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

    /// A cached read of file `fi` through handle `reader` (a write through `w` if the file is empty and
    /// reads past its end are excluded), point or scan intent.
    fn gen_cached_read(&mut self, fi: usize, reader: usize, w: usize) -> (usize, What) {
        let (offset, n) = self.gen_read_range(fi, false);
        if n == 0 {
            return (w, self.gen_write(fi, w));
        }
        let intent = self.gen_intent();
        (
            reader,
            What::CachedRead {
                offset,
                len: n,
                intent,
            },
        )
    }

    /// A cached read's intent: a third scans (unless excluded).
    fn gen_intent(&mut self) -> ReadIntent {
        if !self.exclude.has("scan-intent") && self.rng.random_bool(0.3) {
            ReadIntent::Scan
        } else {
            ReadIntent::Point
        }
    }

    /// A scan of file `fi` of a kind not excluded (`None` if all are): run to its end, with some
    /// `next_chunk` futures dropped after their first poll, dropped after a few chunks, or of extents.
    fn gen_scan(&mut self, fi: usize) -> Option<What> {
        let kinds: Vec<&str> = [
            "scan",
            "scan-dropped-poll",
            "scan-abandoned",
            "scan-extents",
        ]
        .into_iter()
        .filter(|k| !self.exclude.has(k))
        .collect();
        if kinds.is_empty() {
            return None;
        }
        let kind = kinds[self.rng.random_range(0..kinds.len())];
        // unaligned sizes too: the scan rounds them up to the alignment
        let small = kind == "scan-abandoned" || self.rng.random_bool(0.5);
        let mut options = ScanOptions {
            read_size: if small {
                self.rng.random_range(2 << 10..=8 << 10)
            } else {
                self.rng.random_range(8 << 10..=64 << 10)
            },
            initial_reads: self.rng.random_range(1..=4),
            max_reads: self.rng.random_range(1..=4),
        };
        let drive = match kind {
            "scan-extents" => return Some(self.gen_extents(fi, options)),
            "scan" => Drive::ToEnd,
            "scan-dropped-poll" => {
                let mut calls: Vec<usize> = (0..self.rng.random_range(1..=3))
                    .map(|_| self.rng.random_range(0..4))
                    .collect();
                calls.sort_unstable();
                calls.dedup();
                Drive::DropPolls(calls)
            }
            _ => {
                // reads ahead to leave in flight
                options.max_reads = options.max_reads.max(2);
                Drive::Abandon(self.rng.random_range(1..=3))
            }
        };
        let bounds = self.gen_bounds(fi);
        Some(What::Scan {
            bounds,
            options,
            drive,
        })
    }

    /// The bounds of a scan of file `fi`: the whole file, or from a position (or the start) to a
    /// position (or the end), each bound of any kind; the end may lie past the file's end, the start
    /// too (the scan clips both).
    fn gen_bounds(&mut self, fi: usize) -> (Bound<u64>, Bound<u64>) {
        if self.rng.random_bool(0.3) {
            return (Bound::Unbounded, Bound::Unbounded);
        }
        let start = self.position(fi) as u64;
        let end = start + self.rng.random_range(1..=8 * PAGE) as u64;
        let start = match self.rng.random_range(0..10) {
            0..=6 => Bound::Included(start),
            7..=8 => Bound::Unbounded,
            _ => Bound::Excluded(start),
        };
        let end = match self.rng.random_range(0..10) {
            0..=4 => Bound::Excluded(end),
            5..=7 => Bound::Included(end),
            _ => Bound::Unbounded,
        };
        (start, end)
    }

    /// A `scan_extents` of 1 to 5 extents of file `fi` within the file (some empty), in file order or
    /// not; unless excluded, sometimes one more extent that ends past the file's end. Each extent is at
    /// most 4 pages long (one read each, within [`SMALL_BUDGET`]).
    fn gen_extents(&mut self, fi: usize, options: ScanOptions) -> What {
        let len = self.files[fi].model.len();
        let mut extents = Vec::new();
        for _ in 0..self.rng.random_range(1..=5) {
            let start = self.position(fi).min(len);
            let end = if self.rng.random_bool(0.1) {
                start
            } else {
                start + self.length().min(len - start)
            };
            extents.push(start as u64..end as u64);
        }
        if self.rng.random_bool(0.5) {
            extents.sort_by_key(|e| e.start);
        }
        let past_eof = !self.exclude.has("past-eof") && self.rng.random_bool(0.15);
        if past_eof {
            // near the end: an extent is one read, and must fit in the small budget
            let start = len - self.rng.random_range(0..=len.min(2 * PAGE));
            let end = len + self.rng.random_range(1..2 * PAGE);
            extents.push(start as u64..end as u64);
        }
        What::ScanExtents {
            extents,
            options,
            past_eof,
        }
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
                let read_intent = self.gen_intent();
                (
                    w,
                    What::WriteAndRead(Race {
                        reader: cached_reader,
                        offset: offset as u64,
                        data: bytes(n, seed),
                        read_offset: read_offset as u64,
                        read_len,
                        read_intent,
                        spawned,
                    }),
                )
            }
            84..=92 => match self.gen_scan(fi) {
                Some(scan) => (any, scan),
                None => self.gen_cached_read(fi, cached_reader, w),
            },
            _ => self.gen_cached_read(fi, cached_reader, w),
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
        if matches!(op.what, What::Scan { .. } | What::ScanExtents { .. }) {
            self.run_scan(op, &label).await;
            return false;
        }
        let file = Arc::clone(&self.files[op.file].handles[op.handle].file);
        if let What::WriteAndRead(race) = &op.what {
            let reader = Arc::clone(&self.files[op.file].handles[race.reader].file);
            let old = self.files[op.file].model.clone();
            let (offset, data) = (race.offset, &race.data);
            let (read_offset, read_len, intent) =
                (race.read_offset, race.read_len, race.read_intent);
            let res = if race.spawned {
                let (w, r, data) = (Arc::clone(&file), Arc::clone(&reader), data.clone());
                let write = tokio::spawn(async move { write_at(&w, offset, &data, 0).await });
                let read = tokio::spawn(async move {
                    read_cached_with(&r, read_offset, read_len, intent).await
                });
                guarded(async move {
                    let (w, r) = tokio::join!(write, read);
                    (w.unwrap(), r.unwrap())
                })
                .await
            } else {
                guarded(async {
                    tokio::join!(
                        write_at(&file, offset, data, 0),
                        read_cached_with(&reader, read_offset, read_len, intent)
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
                What::CachedRead {
                    offset,
                    len,
                    intent,
                } => Outcome::Bytes(read_cached_with(&file, *offset, *len, *intent).await),
                What::UncachedRead { offset, len } => {
                    Outcome::Bytes(read_uncached(&file, *offset, *len).await)
                }
                What::WriteAndRead(_) | What::Scan { .. } | What::ScanExtents { .. } => {
                    unreachable!("handled above")
                }
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
            (
                What::CachedRead {
                    offset,
                    len,
                    intent,
                },
                Outcome::Bytes(res),
            ) => {
                if *intent == ReadIntent::Scan {
                    self.counts.scan_intent_reads += 1;
                }
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

    /// Runs scan op `op` as far as its drive says and checks what it handed out against the file's bytes
    /// (the model: the file as the last step's check left it; nothing else runs during a step's scan).
    async fn run_scan(&mut self, op: &Op, label: &str) {
        let file = Arc::clone(&self.files[op.file].handles[op.handle].file);
        let real = self.files[op.file].model.clone();
        self.counts.scans += 1;
        let res = match &op.what {
            What::Scan {
                bounds,
                options,
                drive,
            } => {
                guarded(async {
                    let scan = file.scan(*bounds, *options).await?;
                    Ok::<_, Error>(collect(scan, drive).await)
                })
                .await
            }
            What::ScanExtents {
                extents, options, ..
            } => {
                guarded(async {
                    let scan = file.scan_extents(extents.clone(), *options)?;
                    Ok(collect(scan, &Drive::ToEnd).await)
                })
                .await
            }
            _ => unreachable!("a scan op"),
        };
        let got = match res {
            Ok(Ok(got)) => got,
            Ok(Err(e)) => {
                self.fail(
                    Category::OtherError,
                    format!("{label}: could not start: {e}"),
                );
                return;
            }
            Err(f) => {
                self.fail_guard(label, f);
                return;
            }
        };
        self.counts.scan_chunks += got.chunks.len();
        self.counts.scan_polls_dropped += got.dropped_pending;
        self.counts.scans_abandoned += usize::from(got.in_flight_at_drop > 0);
        let (check, eof_expected, abandoned) = match &op.what {
            What::Scan {
                bounds,
                options,
                drive,
            } => {
                let range = expected_range(*bounds, real.len() as u64);
                let read_size = options.read_size.next_multiple_of(ALIGN);
                let check = check_range(&got.chunks, &real, range.clone(), read_size, got.ended);
                (check, false, matches!(drive, Drive::Abandon(_)))
            }
            What::ScanExtents {
                extents, past_eof, ..
            } => {
                let in_file = &extents[..extents.len() - usize::from(*past_eof)];
                (check_extents(&got.chunks, &real, in_file), *past_eof, false)
            }
            _ => unreachable!("a scan op"),
        };
        match check {
            ScanCheck::Good => {}
            ScanCheck::Stale { .. } => self.fail(Category::Stale, format!("{label}: {check:?}")),
            ScanCheck::Shape(what) => self.fail(Category::Scan, format!("{label}: {what}")),
        }
        let eof = std::io::ErrorKind::UnexpectedEof;
        match (&got.error, eof_expected) {
            (None, false) if !got.ended && !abandoned => {
                let detail = format!("{label}: no end after {} chunks", got.chunks.len());
                self.fail(Category::Scan, detail);
            }
            (None, false) => {}
            (None, true) => {
                let detail = format!("{label}: the extent past the end of the file was read");
                self.fail(Category::MissedEof, detail);
            }
            (Some((e, again)), true) if e.kind() == eof => {
                if !again {
                    let detail = format!("{label}: the call after the failed read did not fail");
                    self.fail(Category::Scan, detail);
                }
            }
            (Some((e, _)), false) if e.kind() == eof => {
                self.fail(Category::SpuriousEof, format!("{label}: {e}"));
            }
            (Some((e, _)), _) => self.fail(Category::OtherError, format!("{label}: {e}")),
        }
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
    #[values(
        IoMode::Buffered,
        IoMode::Direct,
        IoMode::DirectRw,
        IoMode::BufferedDontcache
    )]
    mode: IoMode,
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
        "model {}/{} seed {}: {} ops ({} dropped, {} of them pending, {} racing, {} misaligned; {} \
         scans of {} chunks, {} next_chunk calls dropped pending, {} scans dropped with reads in \
         flight; {} scan-intent reads), {} checks in {:.1?}{}, {write_only} write-only writers; \
         stale {}, missed EOF {}, spurious EOF {}, other errors {}, wrong results {}, uncached {}, \
         divergences {}, scan failures {}, panics {}, hangs {}",
        run.mode,
        run.kind,
        run.seed,
        c.ops,
        c.dropped,
        c.pending,
        c.concurrent,
        c.misaligned,
        c.scans,
        c.scan_chunks,
        c.scan_polls_dropped,
        c.scans_abandoned,
        c.scan_intent_reads,
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
        c.scan_failures,
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
