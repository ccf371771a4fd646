//! [`UringStats`]: the counters of a running engine, summed over its rings.

use std::sync::Arc;

use super::health::EngineHealth;
use super::system::System;

/// Counters of a running engine, for tests and benchmarks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UringStats {
    /// Number of rings.
    pub rings: usize,
    /// Slots per ring: the most ops a ring has in flight at once.
    pub slots_per_ring: usize,
    /// The most ops that were ever in flight at once on any one ring.
    pub max_in_flight: usize,
    /// Ops in flight now (their CQE not processed yet), on all rings; includes `parked_slots`.
    pub in_flight: usize,
    /// Slots held now by ops whose future was dropped before their completion.
    pub parked_slots: usize,
    /// `IORING_OP_ASYNC_CANCEL` requests sent so far (for dropped futures and at shutdown).
    pub cancels_submitted: u64,
    /// Ops submitted to the rings so far (reads served by the `RWF_NOWAIT` fast path do not count).
    pub submitted: u64,
    /// Whether `ftruncate` goes through the ring (`IORING_OP_FTRUNCATE`, Linux 6.9) or `ftruncate(2)`.
    pub ftruncate_op: bool,
    /// Whether the eventfd is switched off around inline-likely submits (the kernel has
    /// `cq_off.flags`, Linux 5.8+).
    pub eventfd_window: bool,
    /// A ring broke (permanent `io_uring_enter` error): new ops run on `std-fs`.
    pub downgraded: bool,
    /// How many rings broke.
    pub broken_rings: usize,
}

impl UringStats {
    /// The counters of the rings `systems` (at least one) of an engine whose health is `health`.
    pub(super) fn of(systems: &[Arc<System>], health: &EngineHealth) -> Self {
        let counters: Vec<_> = systems.iter().map(|s| s.counters()).collect();
        Self {
            rings: systems.len(),
            slots_per_ring: systems[0].slots(),
            max_in_flight: counters.iter().map(|c| c.max_in_flight).max().unwrap_or(0),
            in_flight: counters.iter().map(|c| c.in_flight).sum(),
            parked_slots: counters.iter().map(|c| c.parked).sum(),
            cancels_submitted: counters.iter().map(|c| c.cancels_submitted).sum(),
            submitted: counters.iter().map(|c| c.submitted).sum(),
            ftruncate_op: systems[0].has_ftruncate_op(),
            eventfd_window: systems.iter().all(|s| s.has_eventfd_window()),
            downgraded: health.is_downgraded(),
            broken_rings: health.broken_rings(),
        }
    }
}
