//! The power-loss engine: what it records (through a real std-fs engine), and the crash model on
//! hand-made logs (synced data and entries always survive; unsynced writes are present, absent or torn
//! by sector; renames happen as a unit; ops in flight at the cut may or may not have happened).

use std::collections::HashSet;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use io_engine::power_loss::{DirOrder, DurableOp, Entry, LoggedOp, OpLog, Recorder, SECTOR};
use io_engine::{FullSlice, IoEngine, RenameMode};

const SEEDS: u64 = 400;

fn entry(root: &Path, name: &str) -> Entry {
    Entry {
        dir: root.to_owned(),
        name: OsString::from(name),
    }
}

/// Ops completing one after the other (each issued when the previous completed).
fn sequential(ops: Vec<DurableOp>) -> Vec<LoggedOp> {
    ops.into_iter()
        .enumerate()
        .map(|(issued, op)| LoggedOp { op, issued })
        .collect()
}

fn write(file: usize, offset: u64, data: &[u8]) -> DurableOp {
    DurableOp::Write {
        file,
        offset,
        data: data.into(),
    }
}

/// `file` created as `name` in `root`.
fn create(root: &Path, name: &str, file: usize) -> DurableOp {
    DurableOp::Create {
        entry: entry(root, name),
        file,
    }
}

/// `file`'s entry `name` in `root` removed.
fn unlink(root: &Path, name: &str, file: usize) -> DurableOp {
    DurableOp::Unlink {
        entry: entry(root, name),
        file,
    }
}

/// `file` renamed from `from` to `to`, both in `root`.
fn rename(root: &Path, file: usize, from: &str, to: &str, no_replace: bool) -> DurableOp {
    DurableOp::Rename {
        file,
        from: entry(root, from),
        to: entry(root, to),
        no_replace,
    }
}

fn pattern(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt)
        .collect()
}

#[tokio::test]
async fn records_durable_ops_by_inode() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let rec = Arc::new(Recorder::new(&root));
    let e = IoEngine::hooked(IoEngine::std_fs(), rec.clone());
    let (a, b) = (root.join("a"), root.join("b"));
    let fd = Arc::new(
        e.open(&a, libc::O_RDWR | libc::O_CREAT | libc::O_EXCL, 0o644)
            .await
            .unwrap(),
    );
    let (_, r) = e.write_at(&fd, 0, FullSlice::new(vec![7u8; 1000])).await;
    assert_eq!(r.unwrap(), 1000);
    e.fsync(&fd).await.unwrap();
    e.rename(&a, &b, RenameMode::NoReplace).await.unwrap();
    // the same descriptor after the rename: still the same file
    let (_, r) = e
        .writev_at(
            &fd,
            1000,
            vec![FullSlice::new(vec![8u8; 10]), FullSlice::new(vec![9u8; 5])],
        )
        .await;
    assert_eq!(r.unwrap(), 15);
    e.ftruncate(&fd, 1010).await.unwrap();
    e.fdatasync(&fd).await.unwrap();
    let dfd = Arc::new(
        e.open(&root, libc::O_RDONLY | libc::O_DIRECTORY, 0)
            .await
            .unwrap(),
    );
    e.fsync(&dfd).await.unwrap();
    // outside the root: passes through, not recorded
    let other = tempfile::tempdir().unwrap();
    let ofd = Arc::new(
        e.open(&other.path().join("x"), libc::O_RDWR | libc::O_CREAT, 0o644)
            .await
            .unwrap(),
    );
    let (_, r) = e.write_at(&ofd, 0, FullSlice::new(vec![1u8; 4])).await;
    r.unwrap();
    e.unlink(&b).await.unwrap();

    let log = rec.log();
    let ops: Vec<_> = log.ops().iter().map(|o| o.op.clone()).collect();
    let expected = vec![
        create(&root, "a", 0),
        write(0, 0, &[7u8; 1000]),
        DurableOp::SyncFile { file: 0 },
        rename(&root, 0, "a", "b", true),
        write(0, 1000, &[[8u8; 10].as_slice(), &[9u8; 5]].concat()),
        DurableOp::SetLen { file: 0, len: 1010 },
        DurableOp::SyncFile { file: 0 },
        DurableOp::SyncDir { dir: root.clone() },
        unlink(&root, "b", 0),
    ];
    assert_eq!(ops, expected);
    assert!(log.ops().iter().enumerate().all(|(i, o)| o.issued == i));
    assert_eq!(log.sync_points(), vec![3, 7, 8]);
    assert_eq!(rec.untracked_opens(), 0);

    // right after the directory fsync, before the unlink was issued, every seed gives the same
    // image: b with 1010 bytes
    let mut want = vec![7u8; 1000];
    want.extend_from_slice(&[8u8; 10]);
    let before_unlink = OpLog::from_ops(&root, log.ops()[..8].to_vec());
    for seed in 0..SEEDS {
        let image = before_unlink.crash_image(8, seed);
        assert_eq!(image.files.len(), 1, "seed {seed}");
        assert_eq!(image.files[Path::new("b")], want, "seed {seed}");
    }
    // with the unlink issued (in flight at cut 8): b may be gone, and is whole where it is not
    let mut gone = 0;
    for seed in 0..SEEDS {
        match log.crash_image(8, seed).files.get(Path::new("b")) {
            Some(got) => assert_eq!(got, &want, "seed {seed}"),
            None => gone += 1,
        }
    }
    assert!(
        gone > 0 && gone < SEEDS,
        "{gone} of {SEEDS} images without b"
    );
    // materialized
    let out = tempfile::tempdir().unwrap();
    before_unlink
        .crash_image(8, 1)
        .materialize(out.path())
        .unwrap();
    assert_eq!(std::fs::read(out.path().join("b")).unwrap(), want);
}

#[test]
fn unsynced_writes_are_present_absent_or_torn_by_sector() {
    let root = PathBuf::from("/r");
    let data = pattern(4 * SECTOR as usize, 1);
    let log = OpLog::from_ops(
        &root,
        sequential(vec![
            create(&root, "f", 0),
            DurableOp::SyncDir { dir: root.clone() },
            write(0, 0, &data),
        ]),
    );
    let mut seen = HashSet::new();
    for seed in 0..SEEDS {
        let image = log.crash_image(3, seed);
        let got = &image.files[Path::new("f")];
        // each sector is either the data or never written (zeros past a written one, or absent)
        let mut mask = 0u8;
        for (i, sector) in data.chunks(SECTOR as usize).enumerate() {
            let start = i * SECTOR as usize;
            match got.get(start..start + sector.len()) {
                Some(s) if s == sector => mask |= 1 << i,
                Some(s) => assert!(s.iter().all(|b| *b == 0), "seed {seed}: sector {i} garbage"),
                None => assert!(got.len() <= start, "seed {seed}: sector {i} cut short"),
            }
        }
        seen.insert(mask);
    }
    assert!(seen.contains(&0b1111), "never fully present");
    assert!(seen.contains(&0), "never absent");
    assert!(seen.len() > 4, "never torn: {seen:?}");
}

#[test]
fn synced_data_survives_and_later_writes_do_not_undo_it() {
    let root = PathBuf::from("/r");
    let (first, second) = (pattern(3000, 2), pattern(1000, 3));
    let log = OpLog::from_ops(
        &root,
        sequential(vec![
            create(&root, "f", 0),
            write(0, 0, &first),
            DurableOp::SyncFile { file: 0 },
            DurableOp::SyncDir { dir: root.clone() },
            write(0, 500, &second),
        ]),
    );
    for seed in 0..SEEDS {
        let got = &log.crash_image(5, seed).files[Path::new("f")];
        assert_eq!(got.len(), first.len(), "seed {seed}");
        assert_eq!(got[..500], first[..500], "seed {seed}");
        assert_eq!(got[1500..], first[1500..], "seed {seed}");
        for (i, b) in got[500..1500].iter().enumerate() {
            assert!(
                *b == first[500 + i] || *b == second[i],
                "seed {seed} at {i}"
            );
        }
    }
}

#[test]
fn an_unsynced_rename_happens_as_a_unit() {
    let root = PathBuf::from("/r");
    let data = pattern(2000, 4);
    let log = OpLog::from_ops(
        &root,
        sequential(vec![
            create(&root, "tmp", 0),
            write(0, 0, &data),
            DurableOp::SyncFile { file: 0 },
            DurableOp::SyncDir { dir: root.clone() },
            rename(&root, 0, "tmp", "final", false),
        ]),
    );
    let mut names = HashSet::new();
    for seed in 0..SEEDS {
        let image = log.crash_image(5, seed);
        assert_eq!(
            image.files.len(),
            1,
            "seed {seed}: {:?}",
            image.files.keys()
        );
        let (name, got) = image.files.iter().next().unwrap();
        assert_eq!(got, &data, "seed {seed}");
        names.insert(name.clone());
    }
    assert_eq!(names.len(), 2, "both outcomes occur: {names:?}");
}

#[test]
fn a_file_whose_creation_is_not_synced_may_vanish_but_never_shows_foreign_data() {
    let root = PathBuf::from("/r");
    let data = pattern(1500, 5);
    let log = OpLog::from_ops(
        &root,
        sequential(vec![
            create(&root, "f", 0),
            write(0, 0, &data),
            DurableOp::SyncFile { file: 0 },
        ]),
    );
    let (mut present, mut absent) = (0, 0);
    for seed in 0..SEEDS {
        match log.crash_image(3, seed).files.get(Path::new("f")) {
            Some(got) => {
                assert_eq!(got, &data, "seed {seed}");
                present += 1;
            }
            None => absent += 1,
        }
    }
    assert!(
        present > 0 && absent > 0,
        "{present} present, {absent} absent"
    );
    // a rename that depends on the unsynced create: never visible without it
    let mut ops = log.ops().to_vec();
    ops.push(LoggedOp {
        op: rename(&root, 0, "f", "g", true),
        issued: 3,
    });
    let log = OpLog::from_ops(&root, ops);
    for seed in 0..SEEDS {
        let image = log.crash_image(4, seed);
        assert!(image.files.len() <= 1, "seed {seed}");
    }
}

#[test]
fn ops_in_flight_at_the_cut_may_have_happened() {
    let root = PathBuf::from("/r");
    // the write was issued before the directory fsync completed, and completed after it
    let ops = vec![
        LoggedOp {
            op: create(&root, "f", 0),
            issued: 0,
        },
        LoggedOp {
            op: DurableOp::SyncDir { dir: root.clone() },
            issued: 1,
        },
        LoggedOp {
            op: write(0, 0, &[1u8; 512]),
            issued: 1,
        },
    ];
    let log = OpLog::from_ops(&root, ops);
    let lens: HashSet<usize> = (0..SEEDS)
        .map(|seed| log.crash_image(2, seed).files[Path::new("f")].len())
        .collect();
    assert_eq!(lens, HashSet::from([0, 512]));
    // a cut before it was issued: never there
    let log0 = OpLog::from_ops(&root, log.ops()[..2].to_vec());
    assert!((0..SEEDS).all(|s| log0.crash_image(2, s).files[Path::new("f")].is_empty()));
}

#[test]
fn unsynced_directory_ops_happen_as_a_prefix_or_each_on_its_own() {
    let root = PathBuf::from("/r");
    let log = OpLog::from_ops(
        &root,
        sequential(vec![create(&root, "a", 0), create(&root, "b", 1)]),
    );
    let (mut prefix_b_only, mut independent_b_only) = (0, 0);
    for seed in 0..SEEDS {
        let image = log.crash_image(2, seed);
        let (a, b) = (
            image.files.contains_key(Path::new("a")),
            image.files.contains_key(Path::new("b")),
        );
        match image.dir_order {
            DirOrder::Prefix => prefix_b_only += usize::from(b && !a),
            DirOrder::Independent => independent_b_only += usize::from(b && !a),
        }
    }
    assert_eq!(prefix_b_only, 0, "a prefix never skips the first create");
    assert!(independent_b_only > 0, "independent ops do");
}

#[tokio::test]
async fn a_file_removed_around_the_engine_and_created_again_is_a_new_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().to_owned();
    let rec = Arc::new(Recorder::new(&root));
    let e = IoEngine::hooked(IoEngine::std_fs(), rec.clone());
    let a = root.join("a");
    let flags = libc::O_RDWR | libc::O_CREAT | libc::O_TRUNC;
    drop(e.open(&a, flags, 0o644).await.unwrap());
    std::fs::remove_file(&a).unwrap();
    drop(e.open(&a, flags, 0o644).await.unwrap());
    // opened again: the same file, truncated
    drop(e.open(&a, flags, 0o644).await.unwrap());
    let ops: Vec<_> = rec.log().ops().iter().map(|o| o.op.clone()).collect();
    assert_eq!(
        ops,
        vec![
            create(&root, "a", 0),
            unlink(&root, "a", 0),
            create(&root, "a", 1),
            DurableOp::SetLen { file: 1, len: 0 },
        ]
    );
}
