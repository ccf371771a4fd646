//! Every environment variable the workspace reads, and the one place that reads the process
//! environment.
//!
//! Each variable is a constant here, and [`ALL`] lists them with their default, what they mean, the
//! values they take and the function that reads them (the table of `docs/CONFIGURATION.md`). The
//! readers:
//! - [`var`]: the raw value, `None` if unset (or not UTF-8); the crate that owns the setting parses it.
//! - [`setting_from_env`] (and [`parse_setting`] for a value from elsewhere): an enum-valued setting,
//!   with an error that names the variable and lists the accepted values. Enum values are matched
//!   exactly (the kebab-case names), after trimming surrounding white space; a value that is not UTF-8
//!   is an error ([`EnvSettingError`]).
//! - [`require_uring`]: whether [`REQUIRE_URING`] asks io_uring tests to fail instead of skip.
//!
//! | variable | default (unset or empty) | meaning | values | read by |
//! |---|---|---|---|---|
//! | `VIRTUAL_FILE_IO_ENGINE` | tokio-epoll-uring where io_uring starts, else std-fs with one warning | the IO engine | std-fs, tokio-epoll-uring | `io_engine::IoEngineKind::from_env` (`IoEngine::from_env`) |
//! | `VIRTUAL_FILE_IO_MODE` | direct-rw, falling back to buffered on a file system without O_DIRECT | where O_DIRECT is used | buffered, direct, direct-rw, buffered-dontcache | `virtual_file::IoMode::from_env` |
//! | `VIRTUAL_FILE_MEMORY_MIB` | 256 | the memory budget (write buffers, page cache), MiB | 1 to 2^30 | `virtual_file::IoContext::from_env` (`parse_memory_mib`); `bench_ingest` without `--memory-mib` |
//! | `VIRTUAL_FILE_MAX_OPEN_FILES` | 100 | slots of the open-file cache | 1 or more | `virtual_file::IoContext::from_env` (`parse_open_files`) |
//! | `VIRTUAL_FILE_REQUIRE_URING` | the test prints `skipped: ...` and passes | tests: io_uring that cannot start fails the test | 1 | `io_engine::env::require_uring` (the tests' helpers) |
//! | `REMOTE_STORAGE_S3_ENDPOINT` | no S3 store from the environment | S3 endpoint URL, e.g. `http://127.0.0.1:9000` | a URL | `remote_storage::S3Config::from_env` |
//! | `REMOTE_STORAGE_S3_BUCKET` | required with the endpoint | the bucket | a name | `remote_storage::S3Config::from_env` |
//! | `REMOTE_STORAGE_S3_ACCESS_KEY_ID` | required with the endpoint | access key id | text | `remote_storage::S3Config::from_env` |
//! | `REMOTE_STORAGE_S3_SECRET_ACCESS_KEY` | required with the endpoint | secret access key | text | `remote_storage::S3Config::from_env` |
//! | `REMOTE_STORAGE_S3_REGION` | us-east-1 | the region to sign for | a region | `remote_storage::S3Config::from_env` |
//!
//! An explicitly set engine or mode is binding: an engine that cannot start, or `O_DIRECT` refused by
//! the file system, is an error rather than a fallback.
//!
//! Not in the table: the replay seeds and sizes of single tests and the knobs of the benchmarks, each
//! documented where it is read.

use std::ffi::OsString;
use std::str::FromStr;

/// The IO engine: `std-fs` or `tokio-epoll-uring`. Read by `IoEngine::from_env`.
pub const IO_ENGINE: &str = "VIRTUAL_FILE_IO_ENGINE";
/// The IO mode: `buffered`, `direct` or `direct-rw`. Read by `virtual_file`.
pub const IO_MODE: &str = "VIRTUAL_FILE_IO_MODE";
/// The memory budget in MiB. Read by `virtual_file`.
pub const MEMORY_MIB: &str = "VIRTUAL_FILE_MEMORY_MIB";
/// The number of open-file cache slots. Read by `virtual_file`.
pub const MAX_OPEN_FILES: &str = "VIRTUAL_FILE_MAX_OPEN_FILES";
/// `1`: io_uring tests fail instead of skip where io_uring cannot start (CI sets it). Read by tests,
/// through [`require_uring`].
pub const REQUIRE_URING: &str = "VIRTUAL_FILE_REQUIRE_URING";
/// The S3 endpoint URL. Read by `remote_storage`.
pub const S3_ENDPOINT: &str = "REMOTE_STORAGE_S3_ENDPOINT";
/// The S3 bucket. Read by `remote_storage`.
pub const S3_BUCKET: &str = "REMOTE_STORAGE_S3_BUCKET";
/// The S3 access key id. Read by `remote_storage`.
pub const S3_ACCESS_KEY_ID: &str = "REMOTE_STORAGE_S3_ACCESS_KEY_ID";
/// The S3 secret access key. Read by `remote_storage`.
pub const S3_SECRET_ACCESS_KEY: &str = "REMOTE_STORAGE_S3_SECRET_ACCESS_KEY";
/// The S3 region (default `us-east-1`). Read by `remote_storage`.
pub const S3_REGION: &str = "REMOTE_STORAGE_S3_REGION";

/// One environment variable: its name, its default and what it does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EnvVar {
    /// The variable's name.
    pub name: &'static str,
    /// What unset (or empty) means.
    pub default: &'static str,
    /// What it sets, in one line.
    pub meaning: &'static str,
    /// The values it accepts.
    pub values: &'static str,
    /// The function that reads it.
    pub read_by: &'static str,
}

/// Every environment variable the workspace reads (single tests' seeds and benchmark knobs aside), in
/// the order of the module's table.
pub const ALL: &[EnvVar] = &[
    EnvVar {
        name: IO_ENGINE,
        default: "tokio-epoll-uring where io_uring starts, else std-fs with one warning",
        meaning: "the IO engine",
        values: "std-fs, tokio-epoll-uring",
        read_by: "`io_engine::IoEngineKind::from_env` (`IoEngine::from_env`)",
    },
    EnvVar {
        name: IO_MODE,
        default: "direct-rw, falling back to buffered on a file system without O_DIRECT",
        meaning: "where O_DIRECT is used",
        values: "buffered, direct, direct-rw, buffered-dontcache",
        read_by: "`virtual_file::IoMode::from_env`",
    },
    EnvVar {
        name: MEMORY_MIB,
        default: "256",
        meaning: "the memory budget (write buffers, page cache), MiB",
        values: "1 to 2^30",
        read_by: "`virtual_file::IoContext::from_env` (`parse_memory_mib`); `bench_ingest` without `--memory-mib`",
    },
    EnvVar {
        name: MAX_OPEN_FILES,
        default: "100",
        meaning: "slots of the open-file cache",
        values: "1 or more",
        read_by: "`virtual_file::IoContext::from_env` (`parse_open_files`)",
    },
    EnvVar {
        name: REQUIRE_URING,
        default: "the test prints `skipped: ...` and passes",
        meaning: "tests: io_uring that cannot start fails the test",
        values: "1",
        read_by: "`io_engine::env::require_uring` (the tests' helpers)",
    },
    EnvVar {
        name: S3_ENDPOINT,
        default: "no S3 store from the environment",
        meaning: "S3 endpoint URL, e.g. `http://127.0.0.1:9000`",
        values: "a URL",
        read_by: "`remote_storage::S3Config::from_env`",
    },
    EnvVar {
        name: S3_BUCKET,
        default: "required with the endpoint",
        meaning: "the bucket",
        values: "a name",
        read_by: "`remote_storage::S3Config::from_env`",
    },
    EnvVar {
        name: S3_ACCESS_KEY_ID,
        default: "required with the endpoint",
        meaning: "access key id",
        values: "text",
        read_by: "`remote_storage::S3Config::from_env`",
    },
    EnvVar {
        name: S3_SECRET_ACCESS_KEY,
        default: "required with the endpoint",
        meaning: "secret access key",
        values: "text",
        read_by: "`remote_storage::S3Config::from_env`",
    },
    EnvVar {
        name: S3_REGION,
        default: "us-east-1",
        meaning: "the region to sign for",
        values: "a region",
        read_by: "`remote_storage::S3Config::from_env`",
    },
];

/// A setting read from an environment variable had a value that is not one of the accepted ones.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}={value:?} is not valid; accepted values: {}", accepted.join(", "))]
pub struct EnvSettingError {
    /// The variable's name.
    pub var: &'static str,
    /// The value found.
    pub value: String,
    /// What would have been accepted.
    pub accepted: Vec<&'static str>,
}

/// The one read of the process environment: `var` as set, `Err` with the value if it is not UTF-8.
fn lookup(var: &str) -> Result<Option<String>, OsString> {
    match std::env::var_os(var) {
        None => Ok(None),
        Some(v) => v.into_string().map(Some),
    }
}

/// `name` from the process environment, as set (not trimmed); `None` if it is unset or not UTF-8. The
/// crate that owns the setting parses it (unset and empty mean the default everywhere).
pub fn var(name: &str) -> Option<String> {
    lookup(name).ok().flatten()
}

/// Parses `value` (the content of `var`, if set) as a `T`. Unset or empty (after trimming) means `None`.
/// Matching is exact (the kebab-case names), after trimming surrounding white space.
pub fn parse_setting<T>(
    var: &'static str,
    value: Option<&str>,
) -> Result<Option<T>, EnvSettingError>
where
    T: FromStr + strum::VariantNames,
{
    let Some(raw) = value else { return Ok(None) };
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Ok(None);
    }
    trimmed.parse().map(Some).map_err(|_| EnvSettingError {
        var,
        value: raw.to_owned(),
        accepted: T::VARIANTS.to_vec(),
    })
}

/// Reads `var` from the process environment and parses it with [`parse_setting`]. A value that is not
/// UTF-8 is an error too.
pub fn setting_from_env<T>(var: &'static str) -> Result<Option<T>, EnvSettingError>
where
    T: FromStr + strum::VariantNames,
{
    match lookup(var) {
        Ok(v) => parse_setting(var, v.as_deref()),
        Err(v) => Err(EnvSettingError {
            var,
            value: v.to_string_lossy().into_owned(),
            accepted: T::VARIANTS.to_vec(),
        }),
    }
}

/// True if [`REQUIRE_URING`] is `1`: a test whose io_uring engine cannot start must fail, not skip.
pub fn require_uring() -> bool {
    lookup(REQUIRE_URING).is_ok_and(|v| v.as_deref() == Some("1"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_constant_is_in_the_table_once() {
        let names = [
            IO_ENGINE,
            IO_MODE,
            MEMORY_MIB,
            MAX_OPEN_FILES,
            REQUIRE_URING,
            S3_ENDPOINT,
            S3_BUCKET,
            S3_ACCESS_KEY_ID,
            S3_SECRET_ACCESS_KEY,
            S3_REGION,
        ];
        let table: Vec<_> = ALL.iter().map(|v| v.name).collect();
        assert_eq!(table, names);
    }

    #[test]
    fn the_module_docs_show_the_table() {
        let source = include_str!("env.rs");
        for v in ALL {
            let row = format!(
                "//! | `{}` | {} | {} | {} | {} |",
                v.name, v.default, v.meaning, v.values, v.read_by
            );
            assert!(source.contains(&row), "missing from the module docs: {row}");
        }
    }

    #[test]
    fn an_unset_variable_reads_as_none() {
        assert_eq!(var("VIRTUAL_FILE_TEST_NEVER_SET_ANYWHERE"), None);
    }
}
