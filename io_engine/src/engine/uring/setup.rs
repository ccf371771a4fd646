//! Setting up one ring: `io_uring_setup` with a completion queue twice the submission queue,
//! `dontfork`, the opcode probe, and the completion eventfd.

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, IoUring, Probe};

use crate::engine::error::EngineStartError;

/// Opcodes the engine cannot work without (Linux 5.6+), with their names for the error.
const REQUIRED: [(u8, &str); 8] = [
    (opcode::Read::CODE, "IORING_OP_READ"),
    (opcode::Write::CODE, "IORING_OP_WRITE"),
    (opcode::Readv::CODE, "IORING_OP_READV"),
    (opcode::Writev::CODE, "IORING_OP_WRITEV"),
    (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
    (opcode::OpenAt::CODE, "IORING_OP_OPENAT"),
    (opcode::Statx::CODE, "IORING_OP_STATX"),
    (opcode::Fallocate::CODE, "IORING_OP_FALLOCATE"),
];

/// A ring ready for use, its eventfd (registered), and whether `IORING_OP_FTRUNCATE` is supported.
pub(super) struct NewRing {
    pub(super) ring: IoUring,
    pub(super) eventfd: OwnedFd,
    pub(super) ftruncate_op: bool,
}

/// Sets up a ring of `entries` submission entries (twice as many completion entries).
pub(super) fn new_ring(entries: u32) -> Result<NewRing, EngineStartError> {
    let ring = IoUring::builder()
        // A forked child must not inherit the mappings of a ring whose buffers it does not own.
        .dontfork()
        .setup_cqsize(entries.saturating_mul(2))
        .build(entries)
        .map_err(EngineStartError::from_setup_error)?;
    let (sq, cq) = (ring.params().sq_entries(), ring.params().cq_entries());
    if cq < sq.saturating_mul(2) {
        return Err(EngineStartError::Config(format!(
            "the kernel gave {cq} completion entries for {sq} submission entries; need twice as many"
        )));
    }
    let mut probe = Probe::new();
    ring.submitter()
        .register_probe(&mut probe)
        .map_err(EngineStartError::Setup)?;
    if let Some(&(_, opcode)) = REQUIRED.iter().find(|(code, _)| !probe.is_supported(*code)) {
        return Err(EngineStartError::MissingOpcode { opcode });
    }
    let ftruncate_op = probe.is_supported(opcode::Ftruncate::CODE);
    // SAFETY: plain syscall; no pointers.
    let raw = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
    if raw < 0 {
        return Err(EngineStartError::Eventfd(std::io::Error::last_os_error()));
    }
    // SAFETY: `eventfd` succeeded, so `raw` is a new descriptor that nothing else owns.
    let eventfd = unsafe { OwnedFd::from_raw_fd(raw) };
    ring.submitter()
        .register_eventfd(eventfd.as_raw_fd())
        .map_err(EngineStartError::Eventfd)?;
    tracing::debug!(sq, cq, ftruncate_op, "io_uring ring set up");
    Ok(NewRing {
        ring,
        eventfd,
        ftruncate_op,
    })
}
