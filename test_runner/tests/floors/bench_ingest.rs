//! Floors of bench_ingest, lowest first (a module may use its own floor and those below it).
pub const FLOORS: &[&[&str]] = &[
    &["args", "error", "measure", "reference"], // floor 0: arguments, errors, measurements, the reference
    &["remote", "report"],                      // the object-storage round trip, result rows
    &["read_phase", "scan_phase"],              // point lookups, the scan phase after the write-out
    &["workload"],                              // one case
    &["metrics_file", "plot"],                  // outputs drawn from the rows
    &["cli", "objstore"],                       // the commands: the main job, `objstore`
];
