//! Setting up one ring: `io_uring_setup` with a submission queue of two entries per slot (an op and a
//! cancel request) and a completion queue twice that, `dontfork`, the opcode probe, the completion
//! eventfd, and whether the kernel has `cq_off.flags` (the eventfd on/off switch).

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use io_uring::{opcode, IoUring, Probe};

use crate::engine::error::EngineStartError;

/// Opcodes the engine cannot work without (Linux 5.6+), with their names for the error.
const REQUIRED: [(u8, &str); 7] = [
    (opcode::Read::CODE, "IORING_OP_READ"),
    (opcode::Write::CODE, "IORING_OP_WRITE"),
    (opcode::Readv::CODE, "IORING_OP_READV"),
    (opcode::Writev::CODE, "IORING_OP_WRITEV"),
    (opcode::Fsync::CODE, "IORING_OP_FSYNC"),
    (opcode::OpenAt::CODE, "IORING_OP_OPENAT"),
    (opcode::Fallocate::CODE, "IORING_OP_FALLOCATE"),
];

/// A ring ready for use, its eventfd (registered), whether `IORING_OP_FTRUNCATE` is supported, and
/// whether the eventfd can be switched off (`cq_off.flags`).
pub(super) struct NewRing {
    pub(super) ring: IoUring,
    pub(super) eventfd: OwnedFd,
    pub(super) ftruncate_op: bool,
    pub(super) eventfd_window: bool,
}

/// The kernel's `struct io_uring_params` (`include/uapi/linux/io_uring.h`), to read `cq_off.flags`,
/// which the `io-uring` crate uses but does not expose.
#[repr(C)]
struct RawParams {
    sq_entries: u32,
    cq_entries: u32,
    flags: u32,
    sq_thread_cpu: u32,
    sq_thread_idle: u32,
    features: u32,
    wq_fd: u32,
    resv: [u32; 3],
    sq_off: [u32; 10],
    cq_off: RawCqOffsets,
}

/// `struct io_cqring_offsets`.
#[repr(C)]
struct RawCqOffsets {
    head: u32,
    tail: u32,
    ring_mask: u32,
    ring_entries: u32,
    overflow: u32,
    cqes: u32,
    /// Linux 5.8+; before, this field is reserved and 0.
    flags: u32,
    resv1: u32,
    user_addr: u64,
}

const _: () = assert!(std::mem::size_of::<RawParams>() == 120);
const _: () = assert!(std::mem::size_of::<io_uring::Parameters>() == 120);
const _: () =
    assert!(std::mem::align_of::<io_uring::Parameters>() >= std::mem::align_of::<RawParams>());

/// The raw parameters the kernel returned for `ring`.
fn raw_params(ring: &IoUring) -> &RawParams {
    let params: *const io_uring::Parameters = ring.params();
    // SAFETY: `io_uring::Parameters` is `#[repr(transparent)]` over the kernel's `io_uring_params`
    // (documented by the crate as laid out like the kernel's struct), which `RawParams` mirrors field for
    // field (same size, checked above; only `u32`/`u64` fields, so every bit pattern is valid), and is
    // at least as aligned as `RawParams` (checked above).
    unsafe { &*params.cast::<RawParams>() }
}

/// Whether `IORING_CQ_EVENTFD_DISABLED` may be set: only where the kernel reports the offset of the
/// completion queue's flags word. Before Linux 5.8 that field is reserved and 0, and the `io-uring`
/// crate's `disable_eventfd` would then write at offset 0 of the rings: into the submission queue's head.
/// (No real flags word is at offset 0: the rings start with the SQ head.)
fn has_cq_flags(cq_flags_offset: u32) -> bool {
    cq_flags_offset != 0
}

/// Sets up a ring with `slots` slots: `2 * slots` submission entries, `4 * slots` completion entries.
pub(super) fn new_ring(slots: u32) -> Result<NewRing, EngineStartError> {
    let entries = slots.saturating_mul(2);
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
    let raw = raw_params(&ring);
    let eventfd_window = has_cq_flags(raw.cq_off.flags);
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
    tracing::debug!(sq, cq, ftruncate_op, eventfd_window, "io_uring ring set up");
    Ok(NewRing {
        ring,
        eventfd,
        ftruncate_op,
        eventfd_window,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_raw_params_mirror_reads_what_the_crate_reads() {
        let Ok(mut ring) = IoUring::new(8) else {
            assert!(
                !crate::env::require_uring(),
                "io_uring is required here but cannot be set up"
            );
            eprintln!("skipped: io_uring cannot be set up here");
            return;
        };
        let (p, raw) = (ring.params(), raw_params(&ring));
        assert_eq!(
            (raw.sq_entries, raw.cq_entries),
            (p.sq_entries(), p.cq_entries())
        );
        assert_eq!(raw.flags & 1 != 0, p.is_setup_sqpoll());
        assert_eq!(raw.features & (1 << 1) != 0, p.is_feature_nodrop());
        assert!(
            raw.cq_off.cqes > raw.cq_off.overflow,
            "offsets of the CQ ring"
        );
        assert!(raw.cq_off.tail > raw.cq_off.head, "offsets of the CQ ring");
        // Whether it is 0 depends on the kernel; where it is not, the crate's own flag accessor works.
        if has_cq_flags(raw.cq_off.flags) {
            ring.completion().disable_eventfd();
            assert!(ring.completion().eventfd_disabled());
            ring.completion().enable_eventfd();
            assert!(!ring.completion().eventfd_disabled());
        }
    }

    #[test]
    fn no_cq_flags_offset_means_no_eventfd_window() {
        // Linux 5.6 / 5.7: the field is reserved and 0.
        assert!(!has_cq_flags(0));
        assert!(has_cq_flags(280));
    }
}
