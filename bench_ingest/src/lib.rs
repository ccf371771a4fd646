//! The ingest harness, the project's main job: it writes layers over the IO mode x IO engine matrix and
//! reports MiB/s against a plain `pwrite` reference measured in the same run.
//!
//! Nothing is implemented here yet; see the project's open issues.
