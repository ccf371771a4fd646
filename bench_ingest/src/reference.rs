//! The reference every row is compared with: the same number of bytes written by a plain loop of
//! `pwrite`s of one block size, then one `fsync`, on the same file system, in the same run.

use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

/// Writes `bytes` bytes to a new file at `path` with `pwrite`s of `block` bytes through the page cache, then
/// `fsync`s it. Returns the elapsed time. The file is removed afterwards.
pub fn pwrite_fsync(path: &Path, bytes: u64, block: usize) -> io::Result<Duration> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(path)?;
    let buf: Vec<u8> = (0..block).map(|i| (i * 31 % 251) as u8).collect();
    let start = Instant::now();
    let mut off = 0u64;
    while off < bytes {
        let n = (bytes - off).min(block as u64) as usize;
        file.write_all_at(&buf[..n], off)?;
        off += n as u64;
    }
    file.sync_all()?;
    let elapsed = start.elapsed();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(elapsed)
}

/// `fsync`s a directory (used to settle the file system between cases).
pub fn sync_dir(dir: &Path) -> io::Result<()> {
    let d = std::fs::File::open(dir)?;
    // SAFETY: plain syscall on a valid descriptor.
    if unsafe { libc::fsync(d.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_and_removes() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ref");
        let t = pwrite_fsync(&p, 100_000, 8192).unwrap();
        assert!(t > Duration::ZERO);
        assert!(!p.exists());
    }
}
