//! End-to-end tests run as a user would: the project's binaries under every IO mode and engine, crash
//! and fault tests. The tests live in `tests/`; this library will hold what they share.
//!
//! Nothing is implemented here yet; see the project's open issues.
