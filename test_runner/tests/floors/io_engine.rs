//! Floors of io_engine, lowest first (a module may use its own floor and those below it).
pub const FLOORS: &[&[&str]] = &[
    // floor 0: environment settings, the test helpers (they use nothing of the crate), the buffers' roots
    &["env", "test_support", "buf::align", "buf::range"],
    &["buf::aligned_mut", "buf::frozen"], // each converts into the other
    &["buf::traits"],                     // IoBuf / IoBufMut, implemented for every buffer type
    &["buf::slice"],                      // windows of an IoBuf
    // the values ops take and return, and the errors of choosing and starting an engine
    &[
        "engine::fd",
        "engine::stat",
        "engine::rename",
        "engine::iovec",
        "engine::kind",
        "engine::error",
    ],
    &["engine::std_fs"],
    // the io_uring engine, bottom up
    &[
        "engine::uring::config",
        "engine::uring::faults",
        "engine::uring::nowait",
        "engine::uring::setup",
    ],
    &["engine::uring::health"],
    &["engine::uring::deferred", "engine::uring::slots"], // each names the other's types
    &["engine::uring::ring_core"],
    &["engine::uring::system"],
    &[
        "engine::uring::op",
        "engine::uring::reaper",
        "engine::uring::stats",
    ],
    &["engine::uring::ops"],
    &["engine::uring"], // UringEngine itself (uring/mod.rs)
    // the hooks (feature `testing`)
    &["engine::hook"],
    &["engine::faulty", "engine::power_loss"],
    // the IoEngine handle and the hooked wrapper: they hold each other
    &["engine::dispatch", "engine::hooked"],
];
