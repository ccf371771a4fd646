//! Each crate is a stack of floors: a module uses only its own floor and the floors below it, and
//! nothing below the crate root imports through the root's re-exports. The tables, lowest floor first,
//! sit next to this file, one per crate; the floor order is also written in each crate's docs.
//!
//! The check reads the source with `syn` (no compiler needed): every `use` and every path that starts
//! with `crate`, `super` or `self`, outside `#[cfg(test)]` code.

mod checker;
// one table per crate, lowest floor first
mod bench_ingest;
mod io_engine;
mod layer_writers;
mod remote_storage;
mod s3_test_server;
mod test_runner;
mod virtual_file;
mod virtual_file_store;

use std::path::{Path, PathBuf};

use checker::CrateModules;

fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("test_runner sits in the workspace")
        .to_path_buf()
}

/// Checks one crate against its table.
fn assert_floors(crate_dir: &str, floors: &[&[&str]]) {
    let src = workspace_root().join(crate_dir).join("src");
    let modules =
        CrateModules::read(&src).unwrap_or_else(|e| panic!("reading {}: {e}", src.display()));
    let problems = modules.check(floors);
    assert!(
        problems.is_empty(),
        "{crate_dir}: {} floor problem(s):\n{}\nmodules found:\n{}",
        problems.len(),
        problems.join("\n"),
        modules.describe()
    );
}

/// The checker itself, on a small crate written to a temp dir: it must find each kind of violation.
#[test]
fn checker_finds_upward_imports_and_root_reexports() {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path();
    std::fs::create_dir_all(src.join("upper")).unwrap();
    let files = [
        (
            "lib.rs",
            "mod lower;\nmod top;\nmod upper;\npub use upper::Top;\npub use lower::Low;\n",
        ),
        (
            "lower.rs",
            "pub struct Low;\nfn f(_: crate::upper::thing::Top) {}\nuse crate::Low as _L;\n\
             #[cfg(test)]\nmod tests { use crate::upper::thing::Top; }\n",
        ),
        // through the hub `upper`, whose one child is on floor 1: fine from floor 2
        ("top.rs", "use crate::upper::Top;\npub fn g(_: Top) {}\n"),
        ("upper/mod.rs", "mod thing;\npub use thing::Top;\n"),
        (
            "upper/thing.rs",
            "use super::super::lower::Low;\npub struct Top(Low);\n",
        ),
    ];
    for (name, text) in files {
        std::fs::write(src.join(name), text).unwrap();
    }

    let modules = CrateModules::read(src).unwrap();
    let problems = modules.check(&[&["lower"], &["upper::thing"], &["top"]]);
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0].contains("`lower` (floor 0") && problems[0].contains("upper::thing"),
        "{problems:#?}"
    );
    assert!(
        problems[1].contains("through the re-exports of `the crate root`"),
        "{problems:#?}"
    );

    // the same crate with the floors the other way round is clean apart from the root re-export
    let problems = modules.check(&[&["upper::thing"], &["lower"], &["top"]]);
    assert_eq!(
        problems.len(),
        2,
        "thing uses lower, which is now above it: {problems:#?}"
    );

    // the hub sits on its highest child's floor: above `top` here
    let problems = modules.check(&[&["lower"], &["top"], &["upper::thing"]]);
    assert!(
        problems
            .iter()
            .any(|p| p.starts_with("`top` (floor 1") && p.contains("`upper` on floor 2")),
        "{problems:#?}"
    );

    // an uncovered module with code of its own, and a table entry that is no module
    let problems = modules.check(&[&["upper::thing", "nothing"]]);
    assert!(
        problems
            .iter()
            .any(|p| p.contains("`nothing`, which is no module")),
        "{problems:#?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("module `lower`") && p.contains("on no floor")),
        "{problems:#?}"
    );
}

/// Every crate of the workspace against its table.
#[rstest::rstest]
#[case::io_engine("io_engine", io_engine::FLOORS)]
#[case::virtual_file("virtual_file", virtual_file::FLOORS)]
#[case::layer_writers("layer_writers", layer_writers::FLOORS)]
#[case::remote_storage("remote_storage", remote_storage::FLOORS)]
#[case::s3_test_server("s3_test_server", s3_test_server::FLOORS)]
#[case::bench_ingest("bench_ingest", bench_ingest::FLOORS)]
#[case::test_runner("test_runner", test_runner::FLOORS)]
#[case::virtual_file_store("virtual_file_store", virtual_file_store::FLOORS)]
fn crate_keeps_its_floors(#[case] crate_dir: &str, #[case] floors: &[&[&str]]) {
    assert_floors(crate_dir, floors);
}
