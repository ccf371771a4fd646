//! The write protocol's visible states: while writing and after an unfinished writer, only a temp file (or
//! nothing) exists, never a file under the final name; `remove_temp_files` clears leftovers of every temp
//! name pattern; two writers of one layer name each write their own temp file, and the second `finish`
//! does not replace the first layer unless asked.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{context, context_and_dir, io_matrix};
use io_engine::IoEngineKind;
use layer_writers::{
    is_temp_file_name, remove_temp_files, DeltaLayerReader, DeltaLayerWriter, ImageLayerWriter,
    Key, LayerError, Lsn, TEMP_SUFFIX,
};
use rstest::rstest;
use rstest_reuse::apply;
use virtual_file::IoMode;

fn names(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

/// True for the temp file name of layer `layer`: `<layer>.<16 hex digits>.___temp`.
fn is_temp_of(name: &str, layer: &str) -> bool {
    name.strip_prefix(layer)
        .and_then(|n| n.strip_prefix('.'))
        .and_then(|n| n.strip_suffix(TEMP_SUFFIX))
        .is_some_and(|hex| hex.len() == 16 && hex.bytes().all(|c| c.is_ascii_hexdigit()))
}

/// Waits (bounded) until no file in `dir` is a temp file of `layer`: a dropped writer's flush task removes
/// its file once its last write is done.
async fn temp_file_removed(dir: &Path, layer: &str) {
    tokio::time::timeout(Duration::from_secs(30), async {
        while names(dir).iter().any(|n| is_temp_of(n, layer)) {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the dropped writer's flush task removes its temp file");
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
    let while_writing = names(dir.path());
    assert!(
        while_writing.len() == 1 && is_temp_of(&while_writing[0], "layer"),
        "{while_writing:?}"
    );
    drop(w);
    let left = names(dir.path());
    assert!(
        left.iter().all(|n| n.ends_with(TEMP_SUFFIX)),
        "a dropped writer left {left:?}"
    );
    assert!(!dir.path().join("layer").exists());
    temp_file_removed(dir.path(), "layer").await;

    // A writer that never gets to finish or drop (a crash): its temp file stays, until start-up removes it.
    let mut w = ImageLayerWriter::new(&ctx, dir.path(), "img", Lsn(3))
        .await
        .unwrap();
    w.put_image(Key::from_u128(1), &[7; 50_000]).await.unwrap();
    std::mem::forget(w);
    assert!(names(dir.path()).iter().any(|n| is_temp_of(n, "img")));
    assert!(!dir.path().join("img").exists());

    // A finished layer next to leftovers: only the leftovers are removed.
    let w = one_value_layer(&ctx, dir.path(), "done", b"v", false).await;
    let info = w.finish().await.unwrap();
    // every temp pattern, old and new, next to names that only look similar
    for leftover in [
        format!("other{TEMP_SUFFIX}"),
        format!("other.0123456789abcdef{TEMP_SUFFIX}"),
        format!("ephemeral-3.fedcba9876543210{TEMP_SUFFIX}"),
        "ephemeral-12".to_owned(),
    ] {
        assert!(is_temp_file_name(&leftover), "{leftover}");
        std::fs::write(dir.path().join(leftover), b"junk").unwrap();
    }
    for keep in ["unrelated", "ephemeral-x", "ephemeral-"] {
        assert!(!is_temp_file_name(keep), "{keep}");
        std::fs::write(dir.path().join(keep), b"keep").unwrap();
    }
    assert_eq!(
        remove_temp_files(dir.path()).unwrap(),
        5,
        "img's and four leftovers"
    );
    assert_eq!(
        names(dir.path()),
        ["done", "ephemeral-", "ephemeral-x", "unrelated"]
    );
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
    let between = names(dir.path());
    assert!(
        between.len() == 2 && between[0] == "a" && is_temp_of(&between[1], "b"),
        "{between:?}"
    );
    let b = b.finish().await.unwrap();
    assert_eq!(names(dir.path()), ["a", "b"]);
    assert_ne!(
        std::fs::read(&a.path).unwrap(),
        std::fs::read(&b.path).unwrap()
    );
}

/// A delta layer writer of `name` holding one value, not finished.
async fn one_value_layer(
    ctx: &virtual_file::IoContext,
    dir: &Path,
    name: &str,
    value: &[u8],
    replace: bool,
) -> DeltaLayerWriter {
    let mut w = DeltaLayerWriter::new(ctx, dir, name)
        .await
        .unwrap()
        .replace_existing(replace);
    w.put_value(Key::from_u128(1), Lsn(1), true, value)
        .await
        .unwrap();
    w
}

#[apply(io_matrix)]
#[tokio::test]
async fn two_writers_of_one_name_never_share_or_replace(mode: IoMode, kind: IoEngineKind) {
    let Some((ctx, dir)) = context_and_dir(mode, kind) else {
        return;
    };
    tokio::time::timeout(Duration::from_secs(60), async {
        let first = one_value_layer(&ctx, dir.path(), "same", b"first", false).await;
        let second = one_value_layer(&ctx, dir.path(), "same", b"second", false).await;
        let temps: Vec<String> = names(dir.path());
        assert_eq!(temps.len(), 2, "two temp files: {temps:?}");
        assert!(temps.iter().all(|n| is_temp_of(n, "same")), "{temps:?}");
        let info = first.finish().await.unwrap();
        let err = second.finish().await.unwrap_err();
        match &err {
            LayerError::Io { path, source } => {
                assert_eq!(path, &info.path);
                assert!(
                    matches!(source, virtual_file::Error::AlreadyExists { .. }),
                    "{source:?}"
                );
            }
            other => panic!("{mode}/{kind}: expected AlreadyExists, got {other:?}"),
        }
        assert_eq!(
            names(dir.path()),
            ["same"],
            "the refused temp file is removed"
        );
        let r = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
        let scanned = r.scan().await.unwrap();
        assert_eq!(scanned[0].3, b"first", "the first layer is untouched");
        drop(r);

        // asked to replace: the second layer takes the name
        let third = one_value_layer(&ctx, dir.path(), "same", b"third", true).await;
        let info = third.finish().await.unwrap();
        assert_eq!(names(dir.path()), ["same"]);
        let r = DeltaLayerReader::open(&ctx, &info.path).await.unwrap();
        assert_eq!(r.scan().await.unwrap()[0].3, b"third");
    })
    .await
    .expect("test timed out");
}
