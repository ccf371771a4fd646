//! Floors of test_runner, lowest first (a module may use its own floor and those below it).
pub const FLOORS: &[&[&str]] = &[
    &["layer_set"], // floor 0: the deterministic layer set (the only module; lib.rs re-exports nothing)
];
