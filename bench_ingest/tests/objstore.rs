//! `bench_ingest objstore` end to end through its library entry, with tiny sizes: every store and phase
//! has a row, the byte counts are those of the objects, every figure is finite, and `--json FILE` holds
//! the settings and the same rows. Timings are never asserted.

use bench_ingest::args::{Args, Command};
use clap::Parser as _;

#[test]
fn objstore_rows_cover_every_store_and_phase() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_str().expect("a UTF-8 temp path");
    let json = tmp.path().join("rows.json");
    let args = Args::parse_from([
        "bench_ingest",
        "objstore",
        "--dir",
        dir,
        "--objects",
        "2",
        "--object-mib",
        "4",
        "--part-mib",
        "1",
        "--parts-in-flight",
        "2",
        "--range-reads",
        "20",
        "--io-mode",
        "direct-rw",
        "--io-engine",
        "std-fs",
        "--json",
        json.to_str().unwrap(),
    ]);
    let Some(Command::Objstore(o)) = args.command else {
        panic!("objstore parses as the subcommand");
    };
    let rows = bench_ingest::objstore::run(o).unwrap_or_else(|m| panic!("objstore: {m}"));

    let text = std::fs::read_to_string(&json).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let settings = &lines[0]["settings"];
    assert_eq!(settings["objects"], 2);
    assert_eq!(settings["part_mib"], 1);
    let file_rows = &lines[1..];
    assert_eq!(file_rows.len(), rows.len());

    let stores = ["local_fs", "device_limit"];
    for store in stores {
        for (phase, bytes, ops) in [
            ("put", 8u64 << 20, 8u64),
            ("get", 8 << 20, 2),
            ("get_range", 20 * (64 << 10), 20),
        ] {
            let matching: Vec<&serde_json::Value> = file_rows
                .iter()
                .filter(|r| r["store"] == store && r["phase"] == phase)
                .collect();
            assert_eq!(matching.len(), 1, "{store} {phase}: {text}");
            let r = matching[0];
            assert_eq!(r["bytes"], bytes, "{store} {phase}");
            assert_eq!(r["ops"], ops, "{store} {phase}");
            for field in [
                "seconds",
                "mib_per_s",
                "ops_per_s",
                "cpu_s_per_gib",
                "page_cache_growth_mib",
                "ratio_to_local_fs",
                "ratio_to_device_limit",
            ] {
                let v = r[field]
                    .as_f64()
                    .unwrap_or_else(|| panic!("{store} {phase}: {field} is a number: {r}"));
                assert!(v.is_finite() && v >= 0.0, "{store} {phase}: {field} = {v}");
            }
        }
    }
    let local_put = file_rows
        .iter()
        .find(|r| r["store"] == "local_fs" && r["phase"] == "put")
        .unwrap();
    assert_eq!(local_put["ratio_to_local_fs"], 1.0);
    assert_eq!(local_put["io_mode"], "buffered");
    let device_get = file_rows
        .iter()
        .find(|r| r["store"] == "device_limit" && r["phase"] == "get")
        .unwrap();
    assert_eq!(device_get["ratio_to_device_limit"], 1.0);
    assert_eq!(device_get["io_mode"], "direct-rw");
    // every store removed its objects and the run its directory
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        1,
        "only rows.json is left"
    );
}
