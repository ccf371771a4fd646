//! Errors of choosing and starting an engine, kept apart from the `io::Error`s of single ops.

use std::io;

use super::kind::IoEngineKind;
use crate::env::{EnvSettingError, IO_ENGINE};

/// The io_uring engine could not start. Each variant names the cause a person can act on.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineStartError {
    /// `/proc/sys/kernel/io_uring_disabled` forbids io_uring for this process.
    #[error(
        "io_uring is disabled: /proc/sys/kernel/io_uring_disabled = {setting} \
         (1 = only for members of kernel.io_uring_group, 2 = for everyone)"
    )]
    Disabled {
        /// The value read from `/proc/sys/kernel/io_uring_disabled`.
        setting: u8,
    },
    /// `io_uring_setup` failed with `EPERM` for another reason (a seccomp filter or a container policy).
    #[error("io_uring_setup is not permitted (EPERM; seccomp filter or container policy?)")]
    PermissionDenied(#[source] io::Error),
    /// The kernel has no io_uring (`ENOSYS`).
    #[error("this kernel does not support io_uring (ENOSYS)")]
    Unsupported(#[source] io::Error),
    /// Not enough memory for the rings (`ENOMEM`): on kernels before 5.12 ring memory is charged to
    /// `RLIMIT_MEMLOCK`, later to the memory cgroup.
    #[error("io_uring_setup ran out of memory (ENOMEM); raise RLIMIT_MEMLOCK or use fewer/smaller rings")]
    OutOfMemory(#[source] io::Error),
    /// Any other failure of `io_uring_setup`.
    #[error("io_uring_setup failed")]
    Setup(#[source] io::Error),
    /// The kernel's io_uring lacks an opcode this engine needs.
    #[error("the kernel's io_uring does not support {opcode}")]
    MissingOpcode {
        /// Name of the opcode.
        opcode: &'static str,
    },
    /// Creating or registering the completion `eventfd` failed.
    #[error("could not set up the completion eventfd")]
    Eventfd(#[source] io::Error),
    /// The engine must be launched from inside a tokio runtime (its reaper task runs there).
    #[error("the io_uring engine must be launched inside a tokio runtime (with IO enabled)")]
    NoRuntime(#[source] io::Error),
    /// The configuration is invalid.
    #[error("invalid io_uring engine configuration: {0}")]
    Config(String),
}

impl EngineStartError {
    /// Classifies an error of `io_uring_setup`. `EPERM` is reported as [`Self::Disabled`] when
    /// `/proc/sys/kernel/io_uring_disabled` is non-zero.
    pub fn from_setup_error(err: io::Error) -> Self {
        match err.raw_os_error() {
            Some(libc::EPERM) => match read_io_uring_disabled() {
                Some(setting) if setting != 0 => Self::Disabled { setting },
                _ => Self::PermissionDenied(err),
            },
            Some(libc::ENOSYS) => Self::Unsupported(err),
            Some(libc::ENOMEM) => Self::OutOfMemory(err),
            _ => Self::Setup(err),
        }
    }
}

/// `/proc/sys/kernel/io_uring_disabled`, if the kernel has it.
fn read_io_uring_disabled() -> Option<u8> {
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Choosing the engine from the environment failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EngineSelectError {
    /// The environment variable holds a value that is not an engine name.
    #[error(transparent)]
    Env(#[from] EnvSettingError),
    /// The engine named explicitly could not start (an explicit choice never falls back).
    #[error("{IO_ENGINE}={kind} was requested, but the engine cannot start")]
    Start {
        /// The engine that was asked for.
        kind: IoEngineKind,
        /// Why it did not start.
        #[source]
        source: EngineStartError,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_setup_errors() {
        let e = |errno| EngineStartError::from_setup_error(io::Error::from_raw_os_error(errno));
        assert!(matches!(e(libc::ENOSYS), EngineStartError::Unsupported(_)));
        assert!(matches!(e(libc::ENOMEM), EngineStartError::OutOfMemory(_)));
        assert!(matches!(e(libc::EINVAL), EngineStartError::Setup(_)));
        match (e(libc::EPERM), read_io_uring_disabled()) {
            (EngineStartError::Disabled { setting }, Some(s)) => assert_eq!(setting, s),
            (EngineStartError::PermissionDenied(_), None | Some(0)) => {}
            (other, s) => panic!("EPERM with io_uring_disabled={s:?} gave {other:?}"),
        }
        let msg = e(libc::ENOMEM).to_string();
        assert!(msg.contains("RLIMIT_MEMLOCK"), "{msg}");
    }
}
