//! The project's binaries as child processes under every `VIRTUAL_FILE_IO_MODE` x
//! `VIRTUAL_FILE_IO_ENGINE`: each run succeeds and what it wrote reads back right; the same input gives
//! byte-identical layers in every mode and engine; bad settings are clear errors with a non-zero exit.

mod common;

use common::{binary, check, layer_tool, ENGINES, MODES};
use io_engine::IoEngineKind;
use rstest::rstest;
use virtual_file::IoMode;

const SEED: &str = "4242";

/// `layer_tool write` of `layers` layers of `entries` entries each of [`SEED`] into `dir` under `mode` x
/// `engine`; its output, checked.
fn write_layers(
    mode: IoMode,
    engine: IoEngineKind,
    dir: &str,
    layers: u64,
    entries: u64,
) -> std::process::Output {
    let (layers, entries) = (layers.to_string(), entries.to_string());
    let args = [
        "write",
        "--dir",
        dir,
        "--seed",
        SEED,
        "--layers",
        &layers,
        "--entries",
        &entries,
    ];
    let out = layer_tool(mode, engine, &args);
    check(&out, &format!("layer_tool write ({mode}, {engine})"));
    out
}

#[rstest]
fn layer_tool_writes_and_verifies(
    #[values(
        IoMode::Buffered,
        IoMode::Direct,
        IoMode::DirectRw,
        IoMode::BufferedDontcache
    )]
    mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] engine: IoEngineKind,
) {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let out = write_layers(mode, engine, d, 3, 300);
    assert_eq!(String::from_utf8_lossy(&out.stdout).lines().count(), 3);
    let out = layer_tool(mode, engine, &["verify", "--dir", d, "--entries", "300"]);
    check(&out, &format!("layer_tool verify ({mode}, {engine})"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("verified 3 layers, 900 entries"),
        "{stdout}"
    );
    assert!(
        stdout.contains(&format!("io mode {mode}, engine {engine}")),
        "the settings were applied: {stdout}"
    );
}

#[rstest]
fn bench_ingest_runs_and_verifies(
    #[values(
        IoMode::Buffered,
        IoMode::Direct,
        IoMode::DirectRw,
        IoMode::BufferedDontcache
    )]
    mode: IoMode,
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] engine: IoEngineKind,
) {
    // the environment alone selects the mode and engine; the run reads a sample of keys back and fails
    // on any difference, so success means the layers read back right
    let dir = tempfile::tempdir().unwrap();
    let out = binary(
        "bench_ingest",
        Some(&mode.to_string()),
        Some(&engine.to_string()),
    )
    .args([
        "--dir",
        dir.path().to_str().unwrap(),
        "--volume-mib",
        "2",
        "--key-size",
        "100,8192",
        "--read-secs",
        "0.2",
        "--readers",
        "4",
        "--json",
    ])
    .output()
    .unwrap();
    check(&out, &format!("bench_ingest ({mode}, {engine})"));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let rows: Vec<&str> = stdout.lines().collect();
    assert_eq!(rows.len(), 2, "one row per value size: {stdout}");
    for row in rows {
        assert!(row.contains(&format!("\"io_mode\":\"{mode}\"")), "{row}");
        assert!(
            row.contains(&format!("\"io_engine\":\"{engine}\"")),
            "{row}"
        );
        assert!(row.contains("\"verified_keys\":"), "{row}");
        assert!(!row.contains("\"verified_keys\":0"), "{row}");
        assert!(row.contains("\"warm_lookups_per_s\":"), "{row}");
    }
    assert_eq!(
        std::fs::read_dir(dir.path()).unwrap().count(),
        0,
        "bench_ingest cleans up after itself"
    );
}

#[test]
fn layers_are_byte_identical_across_modes_and_engines() {
    let mut reference: Option<(String, Vec<Vec<u8>>)> = None;
    for mode in MODES {
        for engine in ENGINES {
            let dir = tempfile::tempdir().unwrap();
            let d = dir.path().to_str().unwrap();
            write_layers(mode, engine, d, 2, 500);
            let mut names: Vec<_> = std::fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            names.sort();
            let files: Vec<Vec<u8>> = names.iter().map(|p| std::fs::read(p).unwrap()).collect();
            assert_eq!(files.len(), 2);
            let label = format!("{mode}/{engine}");
            match &reference {
                None => reference = Some((label, files)),
                Some((ref_label, ref_files)) => {
                    for (i, (a, b)) in ref_files.iter().zip(&files).enumerate() {
                        assert!(a == b, "layer {i} written under {label} differs from the one under {ref_label}");
                    }
                }
            }
        }
    }
}

#[test]
fn bad_settings_are_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_str().unwrap();
    let cases = [
        (
            Some("odirect"),
            None,
            "VIRTUAL_FILE_IO_MODE",
            "buffered, direct, direct-rw, buffered-dontcache",
        ),
        (
            None,
            Some("uring"),
            "VIRTUAL_FILE_IO_ENGINE",
            "std-fs, tokio-epoll-uring",
        ),
    ];
    for (mode, engine, var, accepted) in cases {
        let tool = "layer_tool";
        let out = binary(tool, mode, engine)
            .args(["verify", "--dir", d])
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{tool} accepted a bad {var}");
        assert!(
            stderr.contains(var) && stderr.contains(accepted),
            "{tool}: {stderr}"
        );
        assert!(!stderr.contains("panicked"), "{tool}: {stderr}");
    }
}
