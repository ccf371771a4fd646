//! [`IoEngineKind`]: which engine performs the IO.

use crate::env::{parse_setting, setting_from_env, EnvSettingError, IO_ENGINE};

/// The IO engines. Strings: `std-fs`, `tokio-epoll-uring`.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Hash,
    strum::EnumString,
    strum::Display,
    strum::IntoStaticStr,
    strum::VariantNames,
    strum::VariantArray,
)]
#[strum(serialize_all = "kebab-case")]
pub enum IoEngineKind {
    /// Positional syscalls (`pread`, `pwrite`, ...) on the calling thread.
    StdFs,
    /// Our io_uring engine; completions are driven from tokio's reactor.
    TokioEpollUring,
}

impl IoEngineKind {
    /// The kind named by [`IO_ENGINE`](crate::env::IO_ENGINE), or `None` if it is unset or empty.
    pub fn from_env() -> Result<Option<Self>, EnvSettingError> {
        setting_from_env(IO_ENGINE)
    }

    /// Parses a value as if it were the content of [`IO_ENGINE`](crate::env::IO_ENGINE) (for tests and command lines).
    pub fn parse_env_value(value: Option<&str>) -> Result<Option<Self>, EnvSettingError> {
        parse_setting(IO_ENGINE, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strings() {
        assert_eq!(IoEngineKind::StdFs.to_string(), "std-fs");
        assert_eq!(
            IoEngineKind::TokioEpollUring.to_string(),
            "tokio-epoll-uring"
        );
        assert_eq!(
            "tokio-epoll-uring".parse::<IoEngineKind>().unwrap(),
            IoEngineKind::TokioEpollUring
        );
    }

    #[test]
    fn env_values() {
        assert_eq!(IoEngineKind::parse_env_value(None).unwrap(), None);
        assert_eq!(IoEngineKind::parse_env_value(Some(" ")).unwrap(), None);
        assert_eq!(
            IoEngineKind::parse_env_value(Some("std-fs")).unwrap(),
            Some(IoEngineKind::StdFs)
        );
        let err = IoEngineKind::parse_env_value(Some("uring")).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("VIRTUAL_FILE_IO_ENGINE"), "{msg}");
        assert!(msg.contains("std-fs, tokio-epoll-uring"), "{msg}");
        assert!(msg.contains("\"uring\""), "{msg}");
    }
}
