//! [`loopback_ip`]: an address of its own in 127.0.0.0/8 for each server.

/// A loopback address for one server, different for every server of this process (and, with the
/// process id mixed in, most likely from every other process's): `127.a.b.c` with each byte in 1..=254.
///
/// A killed server frees its port until it restarts; on a shared `127.0.0.1`, another server started
/// meanwhile could take that port, and the first server's clients would then talk to it during the
/// outage (a multipart upload created there and continued on the restarted server is unknown to it).
/// An address of its own keeps a server's clients from ever reaching another server.
pub fn loopback_ip() -> std::net::Ipv4Addr {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    // 254^3 addresses: the counter walks them in order from a start that depends on the process id.
    let start = std::process::id().wrapping_mul(2_654_435_761) % (254 * 254 * 254);
    let v = (start + n) % (254 * 254 * 254);
    let byte = |x: u32| (x % 254 + 1) as u8;
    std::net::Ipv4Addr::new(127, byte(v / (254 * 254)), byte(v / 254), byte(v))
}
