//! The device limit: the same objects as plain files written and read with `O_DIRECT` by a loop of
//! positional syscalls on `parts_in_flight` threads, each at its own offset; no store, no copies, no
//! page cache. Each object file is `fsync`ed after its last part, as a store's `complete` does.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{FileExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use io_engine::IoBufferMut;

use super::spec::{ObjSpec, VERIFIED_RANGES};
use super::store_phases::Moved;
use crate::error::ObjstoreError;

/// The part payloads copied once into aligned buffers (what `O_DIRECT` writes need).
pub fn aligned_payloads(payloads: &[Bytes]) -> Vec<IoBufferMut> {
    payloads
        .iter()
        .map(|p| IoBufferMut::from_slice(p))
        .collect()
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> ObjstoreError {
    let path = path.to_owned();
    move |source| ObjstoreError::Io { what, path, source }
}

fn open_direct(path: &Path, write: bool) -> Result<File, ObjstoreError> {
    let mut o = OpenOptions::new();
    if write {
        o.write(true).create(true);
    } else {
        o.read(true);
    }
    o.custom_flags(libc::O_DIRECT)
        .open(path)
        .map_err(io_err("cannot open with O_DIRECT", path))
}

/// Runs `work(i)` for every `i` in `0..n` on up to `threads` threads, each taking the next `i`.
fn on_threads<S>(
    n: u64,
    threads: usize,
    state: impl Fn() -> S + Sync,
    work: impl Fn(&mut S, u64) -> Result<(), ObjstoreError> + Sync,
) -> Result<(), ObjstoreError> {
    let next = AtomicU64::new(0);
    let threads = threads.min(usize::try_from(n).unwrap_or(usize::MAX)).max(1);
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                s.spawn(|| {
                    let mut st = state();
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= n {
                            return Ok(());
                        }
                        if let Err(e) = work(&mut st, i) {
                            // the others stop at their next item
                            next.store(n, Ordering::Relaxed);
                            return Err(e);
                        }
                    }
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)))
            .collect::<Result<Vec<()>, _>>()
            .map(|_| ())
    })
}

fn object_path(dir: &Path, spec: &ObjSpec, o: u64) -> PathBuf {
    dir.join(spec.object_name(o))
}

/// Writes every object to `dir/<name>` with `O_DIRECT` `pwrite`s of its parts, `parts_in_flight` at a
/// time, then `fsync`s it.
pub fn put(dir: &Path, spec: &ObjSpec, payloads: &[IoBufferMut]) -> Result<Moved, ObjstoreError> {
    for o in 0..spec.objects {
        let path = object_path(dir, spec, o);
        let file = open_direct(&path, true)?;
        on_threads(
            spec.parts_per_object(),
            spec.parts_in_flight,
            || (),
            |_, p| {
                let (off, len) = spec.part(p);
                let buf = &payloads[(p % payloads.len() as u64) as usize][..len];
                file.write_all_at(buf, off).map_err(io_err("pwrite", &path))
            },
        )?;
        file.sync_all().map_err(io_err("fsync", &path))?;
    }
    Ok(Moved {
        bytes: spec.total_bytes(),
        ops: spec.objects * spec.parts_per_object(),
    })
}

/// Reads every object whole with `O_DIRECT` `pread`s of part size, `parts_in_flight` at a time.
pub fn get(dir: &Path, spec: &ObjSpec) -> Result<Moved, ObjstoreError> {
    for o in 0..spec.objects {
        let path = object_path(dir, spec, o);
        let file = open_direct(&path, false)?;
        on_threads(
            spec.parts_per_object(),
            spec.parts_in_flight,
            || IoBufferMut::<io_engine::DefaultAlign>::zeroed(spec.part_bytes as usize),
            |buf, p| {
                let (off, len) = spec.part(p);
                file.read_exact_at(&mut buf[..len], off)
                    .map_err(io_err("pread", &path))
            },
        )?;
    }
    Ok(Moved {
        bytes: spec.total_bytes(),
        ops: spec.objects,
    })
}

/// The ranged reads of `spec.ranges()` with `O_DIRECT` `pread`s, `parts_in_flight` at a time; the first
/// [`crate::objstore::spec::VERIFIED_RANGES`] are compared with the payloads.
pub fn get_range(dir: &Path, spec: &ObjSpec, payloads: &[Bytes]) -> Result<Moved, ObjstoreError> {
    let files = (0..spec.objects)
        .map(|o| open_direct(&object_path(dir, spec, o), false))
        .collect::<Result<Vec<_>, _>>()?;
    let ranges = spec.ranges();
    on_threads(
        ranges.len() as u64,
        spec.parts_in_flight,
        || IoBufferMut::<io_engine::DefaultAlign>::zeroed(spec.range_bytes as usize),
        |buf, i| {
            let (o, off) = ranges[i as usize];
            files[o as usize]
                .read_exact_at(buf, off)
                .map_err(io_err("pread", &object_path(dir, spec, o)))?;
            if (i as usize) < VERIFIED_RANGES {
                spec.verify_range(payloads, off, buf)?;
            }
            Ok(())
        },
    )?;
    Ok(Moved {
        bytes: ranges.len() as u64 * spec.range_bytes,
        ops: ranges.len() as u64,
    })
}

/// Removes the object files.
pub fn delete_all(dir: &Path, spec: &ObjSpec) -> Result<(), ObjstoreError> {
    for o in 0..spec.objects {
        let path = object_path(dir, spec, o);
        std::fs::remove_file(&path).map_err(io_err("cannot remove", &path))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_of_two_small_objects() {
        let dir = tempfile::tempdir().unwrap();
        let spec = ObjSpec {
            objects: 2,
            object_bytes: 3 << 20,
            part_bytes: 1 << 20,
            parts_in_flight: 2,
            range_reads: 40,
            range_bytes: 16 << 10,
            seed: 3,
        };
        let payloads = spec.payloads();
        let aligned = aligned_payloads(&payloads);
        assert_eq!(put(dir.path(), &spec, &aligned).unwrap().bytes, 6 << 20);
        let written = std::fs::read(dir.path().join("object-1")).unwrap();
        assert_eq!(written.len(), 3 << 20);
        spec.verify_range(&payloads, 0, &written).unwrap();
        assert_eq!(get(dir.path(), &spec).unwrap().ops, 2);
        let r = get_range(dir.path(), &spec, &payloads).unwrap();
        assert_eq!((r.ops, r.bytes), (40, 40 * (16 << 10)));
        delete_all(dir.path(), &spec).unwrap();
        assert!(!dir.path().join("object-0").exists());
    }
}
