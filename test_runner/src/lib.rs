//! End-to-end tests run as a user would: the project's binaries as child processes under every IO mode
//! and engine, crash (`SIGKILL`) and fault-injection tests, corrupt input, and resource limits. The tests
//! live in `tests/`; this library holds what they and the `layer_tool` binary share.

#![warn(missing_docs)]

pub mod layer_set;
