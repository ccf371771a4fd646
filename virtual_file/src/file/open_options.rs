//! [`OpenOptions`]: how a [`VirtualFile`](super::VirtualFile) is opened.

/// Options for [`VirtualFile::open_with_options`](super::VirtualFile::open_with_options), as in `std`.
/// Whether the file uses `O_DIRECT` is not an option: the context's [`IoMode`](crate::IoMode) decides it
/// from whether the file is opened for writing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct OpenOptions {
    read: bool,
    write: bool,
    create: bool,
    create_new: bool,
    truncate: bool,
}

impl OpenOptions {
    /// All options off.
    pub fn new() -> Self {
        Self::default()
    }
    setters! {
        /// Open for reading.
        fn read(read: bool);
        /// Open for writing.
        fn write(write: bool);
        /// Create the file if it does not exist (needs `write`).
        fn create(create: bool);
        /// Create the file, failing if it exists (needs `write`).
        fn create_new(create_new: bool);
        /// Truncate the file to 0 at open (needs `write`).
        fn truncate(truncate: bool);
    }

    /// True if the file is opened for writing (this decides `O_DIRECT` together with the mode).
    pub fn is_write(&self) -> bool {
        self.write
    }

    /// Whether the open creates the file exclusively (`O_CREAT | O_EXCL`).
    pub fn is_create_new(&self) -> bool {
        self.create_new
    }

    /// The `open(2)` flags without `O_DIRECT`, or an error message for a combination that makes no sense.
    pub(crate) fn flags(&self) -> Result<libc::c_int, &'static str> {
        let access = match (self.read, self.write) {
            (true, false) => libc::O_RDONLY,
            (false, true) => libc::O_WRONLY,
            (true, true) => libc::O_RDWR,
            (false, false) => return Err("neither read nor write access requested"),
        };
        if (self.create || self.create_new || self.truncate) && !self.write {
            return Err("create, create_new and truncate need write access");
        }
        let mut flags = access;
        if self.create_new {
            flags |= libc::O_CREAT | libc::O_EXCL;
        } else if self.create {
            flags |= libc::O_CREAT;
        }
        if self.truncate {
            flags |= libc::O_TRUNC;
        }
        Ok(flags)
    }
}

/// The flags for reopening a file after eviction from the cache: as at first open, less the ones that
/// create or truncate.
pub(crate) fn reopen_flags(flags: libc::c_int) -> libc::c_int {
    flags & !(libc::O_CREAT | libc::O_EXCL | libc::O_TRUNC)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_combinations() {
        assert_eq!(OpenOptions::new().read(true).flags(), Ok(libc::O_RDONLY));
        assert_eq!(
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .flags(),
            Ok(libc::O_WRONLY | libc::O_CREAT | libc::O_TRUNC)
        );
        assert!(OpenOptions::new().flags().is_err());
        assert!(OpenOptions::new().read(true).create(true).flags().is_err());
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .flags()
            .unwrap();
        assert_eq!(
            reopen_flags(f | libc::O_DIRECT),
            libc::O_RDWR | libc::O_DIRECT
        );
    }
}
