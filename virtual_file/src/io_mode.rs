//! [`IoMode`]: where `O_DIRECT` is used, and whether buffered IO is uncached (`RWF_DONTCACHE`).

use io_engine::env::{parse_setting, setting_from_env, EnvSettingError};

/// The environment variable that selects the IO mode.
pub const IO_MODE_ENV: &str = io_engine::env::IO_MODE;

/// Where `O_DIRECT` is used. Strings: `buffered`, `direct`, `direct-rw`, `buffered-dontcache`.
///
/// | mode | read-only opens | opens with write |
/// |---|---|---|
/// | `buffered` | page cache | page cache |
/// | `direct` | `O_DIRECT` | page cache |
/// | `direct-rw` | `O_DIRECT` | `O_DIRECT` |
/// | `buffered-dontcache` | page cache, `RWF_DONTCACHE` | page cache, `RWF_DONTCACHE` |
///
/// `buffered-dontcache` is uncached buffered IO (Linux 6.14+): no alignment rules, the kernel's
/// readahead and write-back kept, and every read and write passes `RWF_DONTCACHE`, so its pages leave
/// the page cache once the IO (for a write: its write-back) is done. Where the kernel or the file
/// system refuses the flag, the file falls back to plain buffered IO (see `docs/CONFIGURATION.md`).
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
    /// Everything through the page cache with `RWF_DONTCACHE`: pages are dropped after each IO.
    BufferedDontcache,
}

impl IoMode {
    /// The one place that decides `O_DIRECT`: whether a file opened in this mode, for writing or not,
    /// uses it.
    pub fn uses_direct(self, opened_for_write: bool) -> bool {
        match self {
            IoMode::Buffered => false,
            IoMode::Direct => !opened_for_write,
            IoMode::DirectRw => true,
            IoMode::BufferedDontcache => false,
        }
    }

    /// True if reads and writes of files opened in this mode pass `RWF_DONTCACHE` (never together with
    /// `O_DIRECT`).
    pub fn uses_dontcache(self) -> bool {
        match self {
            IoMode::BufferedDontcache => true,
            IoMode::Buffered | IoMode::Direct | IoMode::DirectRw => false,
        }
    }

    /// True if reads of files opened in this mode leave nothing in the kernel's page cache (`O_DIRECT`
    /// read-only opens, or `RWF_DONTCACHE`), so the context's own page cache should keep what is read
    /// again soon (written-through pages of the ephemeral file, layer values).
    pub fn reads_bypass_page_cache(self) -> bool {
        self.uses_direct(false) || self.uses_dontcache()
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
        assert!(!IoMode::BufferedDontcache.uses_direct(false));
        assert!(!IoMode::BufferedDontcache.uses_direct(true));
        assert!(!IoMode::Buffered.reads_bypass_page_cache());
        assert!(IoMode::BufferedDontcache.reads_bypass_page_cache());
        assert!(IoMode::Direct.reads_bypass_page_cache());
        for mode in <IoMode as strum::VariantArray>::VARIANTS {
            assert_eq!(
                mode.uses_dontcache(),
                *mode == IoMode::BufferedDontcache,
                "{mode}"
            );
        }
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
        assert!(
            msg.contains("buffered, direct, direct-rw, buffered-dontcache"),
            "{msg}"
        );
        assert_eq!(
            IoMode::parse_env_value(Some("buffered-dontcache")).unwrap(),
            Some(IoMode::BufferedDontcache)
        );
    }
}
