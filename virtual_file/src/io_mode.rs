//! [`IoMode`]: where `O_DIRECT` is used.

use io_engine::env::{parse_setting, setting_from_env, EnvSettingError};

/// The environment variable that selects the IO mode.
pub const IO_MODE_ENV: &str = io_engine::env::IO_MODE;

/// Where `O_DIRECT` is used. Strings: `buffered`, `direct`, `direct-rw`.
///
/// | mode | read-only opens | opens with write |
/// |---|---|---|
/// | `buffered` | page cache | page cache |
/// | `direct` | `O_DIRECT` | page cache |
/// | `direct-rw` | `O_DIRECT` | `O_DIRECT` |
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
pub enum IoMode {
    /// Everything through the page cache.
    Buffered,
    /// `O_DIRECT` for files opened read-only; writes go through the page cache.
    Direct,
    /// `O_DIRECT` for every open.
    DirectRw,
}

impl IoMode {
    /// The one place that decides `O_DIRECT`: whether a file opened in this mode, for writing or not,
    /// uses it.
    pub fn uses_direct(self, opened_for_write: bool) -> bool {
        match self {
            IoMode::Buffered => false,
            IoMode::Direct => !opened_for_write,
            IoMode::DirectRw => true,
        }
    }

    /// The mode named by [`IO_MODE_ENV`], or `None` if unset or empty.
    pub fn from_env() -> Result<Option<Self>, EnvSettingError> {
        setting_from_env(IO_MODE_ENV)
    }

    /// Parses a value as if it were the content of [`IO_MODE_ENV`].
    pub fn parse_env_value(value: Option<&str>) -> Result<Option<Self>, EnvSettingError> {
        parse_setting(IO_MODE_ENV, value)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table() {
        assert!(!IoMode::Buffered.uses_direct(false));
        assert!(!IoMode::Buffered.uses_direct(true));
        assert!(IoMode::Direct.uses_direct(false));
        assert!(!IoMode::Direct.uses_direct(true));
        assert!(IoMode::DirectRw.uses_direct(false));
        assert!(IoMode::DirectRw.uses_direct(true));
    }

    #[test]
    fn strings_and_env() {
        assert_eq!(IoMode::DirectRw.to_string(), "direct-rw");
        assert_eq!(
            IoMode::parse_env_value(Some("direct")).unwrap(),
            Some(IoMode::Direct)
        );
        assert_eq!(IoMode::parse_env_value(None).unwrap(), None);
        let msg = IoMode::parse_env_value(Some("odirect"))
            .unwrap_err()
            .to_string();
        assert!(msg.contains("VIRTUAL_FILE_IO_MODE"), "{msg}");
        assert!(msg.contains("buffered, direct, direct-rw"), "{msg}");
    }
}
