//! Floors of s3_test_server, lowest first (a module may use its own floor and those below it).
pub const FLOORS: &[&[&str]] = &[
    &["credentials", "error", "loopback", "request", "response"], // floor 0: module paths relative to the crate root
    &["state"],
    &["service"],
    &["server"],
];
