//! The write protocol's visible states: while writing and after an unfinished writer, only a temp file (or
//! nothing) exists, never a file under the final name; `remove_temp_files` clears leftovers.

mod common;

use std::path::Path;

use common::context;
use io_engine::IoEngineKind;
use layer_writers::{
    remove_temp_files, DeltaLayerReader, DeltaLayerWriter, ImageLayerWriter, Key, Lsn, TEMP_SUFFIX,
};
use rstest::rstest;
use virtual_file::IoMode;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[rstest]
#[tokio::test]
async fn unfinished_writers_leave_no_final_file(
    #[values(IoMode::Buffered, IoMode::DirectRw)] mode: IoMode,
) {
    let ctx = context(mode, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut w = DeltaLayerWriter::new(&ctx, dir.path(), "layer")
        .await
        .unwrap();
    for i in 0..300u64 {
        w.put_value(
            Key::from_u128(i as u128),
            Lsn(i + 1),
            false,
            &[i as u8; 1000],
        )
        .await
        .unwrap();
    }
    // While writing: only the temp file.
    assert_eq!(names(dir.path()), [format!("layer{TEMP_SUFFIX}")]);
    drop(w);
    let left = names(dir.path());
    assert!(
        left.iter().all(|n| n.ends_with(TEMP_SUFFIX)),
        "a dropped writer left {left:?}"
    );
    assert!(!dir.path().join("layer").exists());

    // A writer that never gets to finish or drop (a crash): its temp file stays, until start-up removes it.
    let mut w = ImageLayerWriter::new(&ctx, dir.path(), "img", Lsn(3))
        .await
        .unwrap();
    w.put_image(Key::from_u128(1), &[7; 50_000]).await.unwrap();
    std::mem::forget(w);
    assert!(dir.path().join(format!("img{TEMP_SUFFIX}")).exists());
    assert!(!dir.path().join("img").exists());

    // A finished layer next to leftovers: only the leftovers are removed.
    let mut w = DeltaLayerWriter::new(&ctx, dir.path(), "done")
        .await
        .unwrap();
    w.put_value(Key::from_u128(1), Lsn(1), true, b"v")
        .await
        .unwrap();
    let info = w.finish().await.unwrap();
    std::fs::write(dir.path().join(format!("other{TEMP_SUFFIX}")), b"junk").unwrap();
    std::fs::write(dir.path().join("unrelated"), b"keep").unwrap();
    let expected_removed = names(dir.path())
        .iter()
        .filter(|n| n.ends_with(TEMP_SUFFIX))
        .count();
    assert!(expected_removed >= 2);
    assert_eq!(remove_temp_files(dir.path()).unwrap(), expected_removed);
    assert_eq!(names(dir.path()), ["done", "unrelated"]);
    assert_eq!(remove_temp_files(dir.path()).unwrap(), 0);
    let r = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
    assert_eq!(r.scan().await.unwrap().len(), 1);
    assert!(remove_temp_files(&dir.path().join("missing")).is_err());
}

#[tokio::test]
async fn finishing_replaces_nothing_but_its_own_temp_file() {
    let ctx = context(IoMode::Direct, IoEngineKind::StdFs).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut a = DeltaLayerWriter::new(&ctx, dir.path(), "a").await.unwrap();
    let mut b = DeltaLayerWriter::new(&ctx, dir.path(), "b").await.unwrap();
    a.put_value(Key::from_u128(1), Lsn(1), true, b"a")
        .await
        .unwrap();
    b.put_value(Key::from_u128(2), Lsn(2), true, b"b")
        .await
        .unwrap();
    let a = a.finish().await.unwrap();
    assert_eq!(names(dir.path()), ["a", format!("b{TEMP_SUFFIX}").as_str()]);
    let b = b.finish().await.unwrap();
    assert_eq!(names(dir.path()), ["a", "b"]);
    assert_ne!(
        std::fs::read(&a.path).unwrap(),
        std::fs::read(&b.path).unwrap()
    );
}
