//! What a case costs besides wall time: CPU seconds of the process (`getrusage`), the growth of the
//! page cache (`Cached:` in `/proc/meminfo`) and of the process's resident memory (`VmRSS:` in
//! `/proc/self/status`), both sampled on a thread.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

/// User + system CPU time of this process so far.
pub fn cpu_time() -> Duration {
    // SAFETY: `rusage` is plain old data; all-zero is a valid value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: valid out-pointer; RUSAGE_SELF always succeeds.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

/// The page cache's size in bytes (`Cached:` of `/proc/meminfo`), or `None` where it cannot be read.
pub fn page_cache_bytes() -> Option<i64> {
    let info = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = info.lines().find(|l| l.starts_with("Cached:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// The process's resident set size in bytes (`VmRSS:` of `/proc/self/status`), or `None` where it cannot
/// be read.
pub fn rss_bytes() -> Option<i64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    let kib: i64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Samples a quantity (by default the page cache) every few milliseconds and keeps the peak growth over
/// the value at start.
pub struct PageCacheSampler {
    stop: Arc<AtomicBool>,
    peak_growth: Arc<AtomicI64>,
    thread: Option<JoinHandle<()>>,
}

impl PageCacheSampler {
    /// Starts sampling the page cache now.
    pub fn start() -> Self {
        Self::start_with(page_cache_bytes)
    }

    /// Starts sampling the resident set size now.
    pub fn start_rss() -> Self {
        Self::start_with(rss_bytes)
    }

    /// Starts sampling `read` now.
    pub fn start_with(read: fn() -> Option<i64>) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let peak_growth = Arc::new(AtomicI64::new(0));
        let thread = read().map(|base| {
            let (stop, peak) = (stop.clone(), peak_growth.clone());
            std::thread::spawn(move || loop {
                if let Some(now) = read() {
                    peak.fetch_max(now - base, Ordering::Relaxed);
                }
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(5));
            })
        });
        Self {
            stop,
            peak_growth,
            thread,
        }
    }

    /// Stops sampling (after one last sample) and returns the peak growth in bytes, or `None` where the
    /// page cache cannot be read.
    pub fn finish(mut self) -> Option<u64> {
        self.stop.store(true, Ordering::Relaxed);
        let thread = self.thread.take()?;
        thread.join().ok()?;
        Some(self.peak_growth.load(Ordering::Relaxed).max(0) as u64)
    }
}

impl Drop for PageCacheSampler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Wall time, CPU time and peak page-cache growth of one span of work: [`Meter::start`] before it,
/// [`Meter::finish`] after it.
pub struct Meter {
    sampler: PageCacheSampler,
    cpu0: Duration,
    start: std::time::Instant,
}

/// What a [`Meter`] measured.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Span {
    /// Wall time.
    pub wall: Duration,
    /// User + system CPU time of the process.
    pub cpu: Duration,
    /// Peak page-cache growth, bytes (`None` where the page cache cannot be read).
    pub page_cache_growth: Option<u64>,
}

impl Meter {
    /// Starts measuring now.
    pub fn start() -> Self {
        let sampler = PageCacheSampler::start();
        Self {
            sampler,
            cpu0: cpu_time(),
            start: std::time::Instant::now(),
        }
    }

    /// Stops measuring.
    pub fn finish(self) -> Span {
        let wall = self.start.elapsed();
        let cpu = cpu_time().saturating_sub(self.cpu0);
        Span {
            wall,
            cpu,
            page_cache_growth: self.sampler.finish(),
        }
    }
}

/// Asks the kernel to drop the clean page-cache pages of `path` (so one case's cached pages do not count
/// against the next).
pub fn evict_from_page_cache(path: &std::path::Path) {
    let _ = try_evict_from_page_cache(path);
}

/// [`evict_from_page_cache`], with the errors of the open and of `posix_fadvise`.
pub fn try_evict_from_page_cache(path: &std::path::Path) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(path)?;
    // SAFETY: advisory syscall on a valid descriptor, which `f` keeps open for the call.
    let rc = unsafe { libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
    match rc {
        0 => Ok(()),
        errno => Err(std::io::Error::from_raw_os_error(errno)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_time_grows() {
        let a = cpu_time();
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        assert!(cpu_time() > a);
    }

    #[test]
    fn meter_measures_and_eviction_reports_errors() {
        let m = Meter::start();
        let mut x = 0u64;
        for i in 0..2_000_000u64 {
            x = x.wrapping_add(i * i);
        }
        std::hint::black_box(x);
        let span = m.finish();
        assert!(span.wall > Duration::ZERO && span.cpu > Duration::ZERO);
        assert!(span.page_cache_growth.is_some());
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, [7u8; 8192]).unwrap();
        try_evict_from_page_cache(&file).unwrap();
        let err = try_evict_from_page_cache(&dir.path().join("missing")).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }

    #[test]
    fn page_cache_is_readable_here() {
        assert!(page_cache_bytes().unwrap() > 0);
        let s = PageCacheSampler::start();
        assert!(s.finish().is_some());
        assert!(rss_bytes().unwrap() > 0);
        let s = PageCacheSampler::start_rss();
        let grow = vec![1u8; 64 << 20];
        std::thread::sleep(Duration::from_millis(50));
        std::hint::black_box(&grow);
        // The last sample is taken at finish, while `grow` is still resident.
        assert!(s.finish().unwrap() >= 32 << 20);
        drop(grow);
    }
}
