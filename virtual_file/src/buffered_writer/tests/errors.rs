//! Injected write and `set_len` errors: reported once with the durable length, then `Poisoned`; nothing
//! acknowledged is lost; nothing is written past the failed write; no panic.

use rstest::rstest;

use super::*;
use crate::buffered_writer::{Error, ReadPlanError};

fn errno_of(err: &std::io::Error) -> Option<i32> {
    err.raw_os_error()
}

#[rstest]
#[tokio::test]
async fn a_failed_flush_is_reported_once_then_the_writer_is_poisoned(
    #[values(libc::ENOSPC, libc::EIO)] errno: i32,
    #[values(0, 8192)] start: u64,
) {
    let cap = 1024;
    let file = MockFile::new();
    file.state().fail_write = Some((2, errno));
    let mut w = writer(&file, cap, 2, start);
    let data = pattern(errno as u64, 5 * cap + 100);
    // The failure surfaces in the write that notices it, or at the latest in the flush after it.
    let first = match w.write_buffered(&data).await {
        Err(err) => err,
        Ok(_) => w.flush().await.expect_err("the third write failed"),
    };
    match &first {
        Error::Flush {
            offset,
            len,
            durable_len,
            source,
        } => {
            assert_eq!(*offset, start + 2 * cap as u64);
            assert_eq!(*len, cap);
            assert_eq!(*durable_len, 2 * cap as u64);
            assert_eq!(errno_of(source), Some(errno));
        }
        other => panic!("expected Error::Flush, got {other:?}"),
    }
    assert_eq!(first.durable_len(), Some(2 * cap as u64));
    assert!(first.to_string().contains("2048 bytes"), "{first}");

    let poisoned = |err: Error<std::io::Error>| match err {
        Error::Poisoned {
            durable_len,
            failed_offset,
        } => {
            assert_eq!(durable_len, 2 * cap as u64);
            assert_eq!(failed_offset, start + 2 * cap as u64);
        }
        other => panic!("expected Error::Poisoned, got {other:?}"),
    };
    poisoned(w.write_buffered(b"more").await.unwrap_err());
    poisoned(w.write_owned(owned(&[0; 4096], true)).await.unwrap_err());
    poisoned(w.flush().await.unwrap_err());

    // The durable bytes are still readable through the writer; nothing beyond them.
    let plan = w.read_plan(start, 2 * cap).unwrap();
    assert_eq!(plan.execute(&file).await.unwrap(), &data[..2 * cap]);
    assert!(matches!(
        w.read_plan(start + 2 * cap as u64 - 1, 2),
        Err(ReadPlanError::Poisoned { durable_len, .. }) if durable_len == 2 * cap as u64
    ));
    assert_eq!(w.durable_end(), start + 2 * cap as u64);

    poisoned(w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap_err());
    let state = file.state();
    assert_eq!(
        state.writes.len(),
        3,
        "nothing is written after the failed write"
    );
    assert!(state.writes[..2].iter().all(|w| w.ok));
    assert!(!state.writes[2].ok);
    assert!(state.set_lens.is_empty());
    let durable = start as usize..start as usize + 2 * cap;
    assert_eq!(
        &state.contents[durable],
        &data[..2 * cap],
        "acknowledged bytes intact"
    );
}

#[tokio::test]
async fn the_next_write_reports_a_failure_that_happened_in_between() {
    let cap = 512;
    let file = MockFile::new();
    file.state().fail_write = Some((0, libc::EIO));
    let mut w = writer(&file, cap, 2, 0);
    w.write_buffered(&pattern(1, cap)).await.unwrap();
    while file.state().writes.is_empty() {
        tokio::task::yield_now().await;
    }
    let err = w.write_buffered(b"x").await.unwrap_err();
    assert!(
        matches!(&err, Error::Flush { offset: 0, durable_len: 0, source, .. } if errno_of(source) == Some(libc::EIO)),
        "{err:?}"
    );
    assert!(matches!(
        w.write_buffered(b"x").await,
        Err(Error::Poisoned { durable_len: 0, .. })
    ));
}

#[rstest]
#[tokio::test]
async fn a_failed_tail_write_fails_shutdown(
    #[values(
        ShutdownMode::ZeroPadToNextMultiple(4096),
        ShutdownMode::PadThenTruncate
    )]
    mode: ShutdownMode,
) {
    let cap = 1024;
    let file = MockFile::new();
    file.state().fail_write = Some((1, libc::ENOSPC));
    let mut w = writer(&file, cap, 2, 8192);
    let data = pattern(3, cap + 100);
    w.write_buffered(&data).await.unwrap();
    let err = w.shutdown(mode).await.unwrap_err();
    assert!(
        matches!(&err, Error::Flush { offset: 9216, durable_len: 1024, source, .. } if errno_of(source) == Some(libc::ENOSPC)),
        "{err:?}"
    );
    let state = file.state();
    assert!(state.set_lens.is_empty(), "no set_len after a failed write");
    assert_eq!(&state.contents[8192..9216], &data[..cap]);
}

#[tokio::test]
async fn a_failed_set_len_fails_shutdown() {
    let file = MockFile::new();
    file.state().fail_set_len = Some(libc::EIO);
    let mut w = writer(&file, 512, 2, 0);
    let data = pattern(8, 700);
    w.write_buffered(&data).await.unwrap();
    let err = w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap_err();
    assert!(
        matches!(&err, Error::SetLen { len: 700, source } if errno_of(source) == Some(libc::EIO)),
        "{err:?}"
    );
    let state = file.state();
    assert_eq!(state.set_lens, vec![700]);
    assert_eq!(
        &state.contents[..700],
        &data[..],
        "the data itself was written"
    );
}
