//! `SIGKILL` at random points while a child process writes layers: after every kill, every layer visible
//! under its final name is complete and passes its checksums and a byte-for-byte check, the start-up
//! helper removes the leftover temp files, and no final-named partial layer ever exists.

mod common;

use std::time::Duration;

use common::{context, layer_tool, temp_files, ENGINES, MODES};
use rand::{Rng, SeedableRng};
use test_runner::layer_set::verify_dir;

const KILLS: u64 = 24;
const ENTRIES: u64 = 400;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_writers_leave_only_complete_layers() {
    let seed = common::seed_from_env("CRASH_SEED", 0xC0FFEE_u64);
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut layers_seen = 0;
    let mut temp_seen = 0;
    for round in 0..KILLS {
        let mode = MODES[rng.random_range(0..MODES.len())];
        let engine = ENGINES[rng.random_range(0..ENGINES.len())];
        let delay = Duration::from_millis(rng.random_range(5..250));
        let what =
            format!("round {round} (CRASH_SEED={seed}, {mode}, {engine}, kill after {delay:?})");
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path().to_str().unwrap().to_owned();
        let child_seed = (seed + round).to_string();
        let mut child = common::binary(
            "layer_tool",
            Some(&mode.to_string()),
            Some(&engine.to_string()),
        )
        .args([
            "write",
            "--dir",
            &d,
            "--seed",
            &child_seed,
            "--layers",
            "1000",
            "--entries",
            &ENTRIES.to_string(),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn layer_tool");
        tokio::time::sleep(delay).await;
        child.kill().expect("SIGKILL"); // `Child::kill` sends SIGKILL on Unix
        let status = child.wait().unwrap();
        assert!(
            !status.success(),
            "{what}: the writer finished before it was killed; raise --layers"
        );
        temp_seen += temp_files(dir.path()).len();

        // the start-up routine of the next owner of the directory, in-process
        let ctx = context(mode, engine);
        let report = verify_dir(&ctx, dir.path(), ENTRIES)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(
            temp_files(dir.path()).is_empty(),
            "{what}: temp files left after the start-up helper"
        );
        layers_seen += report.layers;
        // also through a child process, as a user would
        let out = layer_tool(
            mode,
            engine,
            &["verify", "--dir", &d, "--entries", &ENTRIES.to_string()],
        );
        common::check(&out, &what);
    }
    // the test means something only if kills landed both between and inside layer writes
    assert!(layers_seen > 0, "no layer was ever finished before a kill");
    assert!(temp_seen > 0, "no kill ever landed inside a layer write");
    eprintln!("crash: {KILLS} kills, {layers_seen} complete layers verified, {temp_seen} temp files cleaned");
}
