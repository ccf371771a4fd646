//! What each shutdown mode leaves in the file, with the numbers spelled out.

use rstest::rstest;

use super::*;

const CAP: usize = 1024;

/// Writes `len` pattern bytes from `start`, shuts down in `mode`, and returns the data, the returned end,
/// and the mock (for its records).
async fn write_and_shut_down(
    start: u64,
    len: usize,
    mode: ShutdownMode,
) -> (Vec<u8>, u64, MockFile) {
    let file = MockFile::new();
    let mut w = writer(&file, CAP, 2, start);
    let data = pattern(len as u64 ^ start, len);
    w.write_buffered(&data).await.unwrap();
    let (end, returned) = w.shutdown(mode).await.unwrap();
    assert_eq!(
        returned.handles(),
        file.handles(),
        "the same file comes back"
    );
    drop(returned);
    assert_eq!(file.handles(), 1, "the flush task is gone");
    let (want_end, want_contents) = expected_after_shutdown(start, &data, CAP, mode);
    assert_eq!(end, want_end, "{mode:?}: returned end");
    assert_eq!(
        file.state().contents,
        want_contents,
        "{mode:?}: file contents"
    );
    check_write_shapes(&file.state().writes, CAP, start, true);
    (data, end, file)
}

#[rstest]
#[tokio::test]
async fn drop_tail(#[values(0, 8192)] start: u64) {
    let (data, end, file) = write_and_shut_down(start, 3 * CAP + 700, ShutdownMode::DropTail).await;
    assert_eq!(end, start + 3 * CAP as u64);
    let state = file.state();
    assert_eq!(state.writes.len(), 3);
    assert_eq!(state.contents.len() as u64, start + 3 * CAP as u64);
    assert_eq!(&state.contents[start as usize..], &data[..3 * CAP]);
    assert!(state.set_lens.is_empty());
}

#[rstest]
#[tokio::test]
async fn zero_pad_to_next_multiple(#[values(0, 8192)] start: u64) {
    // 3772 bytes; the end rounded up to 4096 (absolute offset) is 4096 from 0, 12288 from 8192.
    let (data, end, file) = write_and_shut_down(
        start,
        3 * CAP + 700,
        ShutdownMode::ZeroPadToNextMultiple(4096),
    )
    .await;
    let padded = if start == 0 { 4096 } else { 12288 };
    assert_eq!(end, padded);
    let state = file.state();
    assert_eq!(state.writes.len(), 4);
    assert_eq!(state.writes[3].offset, start + 3 * CAP as u64);
    assert_eq!(
        state.writes[3].bytes.len() as u64,
        padded - (start + 3 * CAP as u64)
    );
    assert_eq!(state.contents.len() as u64, padded);
    let logical_end = start as usize + data.len();
    assert_eq!(&state.contents[start as usize..logical_end], &data[..]);
    assert!(state.contents[logical_end..].iter().all(|&b| b == 0));
    assert!(state.set_lens.is_empty());
}

#[rstest]
#[tokio::test]
async fn zero_pad_to_a_multiple_larger_than_the_buffer(#[values(0, 8192)] start: u64) {
    let (_, end, file) =
        write_and_shut_down(start, CAP + 10, ShutdownMode::ZeroPadToNextMultiple(16384)).await;
    assert_eq!(end, 16384);
    let state = file.state();
    assert_eq!(state.writes.len(), 2);
    assert_eq!(
        state.writes[1].bytes.len() as u64,
        16384 - start - CAP as u64
    );
}

#[rstest]
#[tokio::test]
async fn pad_then_truncate(#[values(0, 8192)] start: u64) {
    let (data, end, file) =
        write_and_shut_down(start, 3 * CAP + 700, ShutdownMode::PadThenTruncate).await;
    let logical_end = start + data.len() as u64;
    assert_eq!(end, logical_end);
    let state = file.state();
    assert_eq!(state.writes.len(), 4);
    // 700 bytes padded to the alignment (512), not to the capacity: 3772 -> 4096.
    assert_eq!(state.writes[3].bytes.len(), 1024);
    assert_eq!(&state.writes[3].bytes[..700], &data[3 * CAP..]);
    assert_eq!(state.set_lens, vec![logical_end]);
    assert_eq!(state.contents.len() as u64, logical_end);
    assert_eq!(&state.contents[start as usize..], &data[..]);
}

#[rstest]
#[tokio::test]
async fn pad_then_truncate_pads_to_the_alignment_only(#[values(0, 8192)] start: u64) {
    let (_, _, file) =
        write_and_shut_down(start, 2 * CAP + 10, ShutdownMode::PadThenTruncate).await;
    assert_eq!(file.state().writes[2].bytes.len(), ALIGN);
}

/// A stream that ends at a buffer boundary has no tail; only `ZeroPadToNextMultiple` to a multiple past
/// the boundary writes, and it writes zeros only.
#[rstest]
#[tokio::test]
async fn stream_ending_at_a_boundary(
    #[values(0, 8192)] start: u64,
    #[values(
        ShutdownMode::DropTail,
        ShutdownMode::ZeroPadToNextMultiple(512),
        ShutdownMode::ZeroPadToNextMultiple(4096),
        ShutdownMode::PadThenTruncate,
        ShutdownMode::Discard
    )]
    mode: ShutdownMode,
) {
    let (_, end, file) = write_and_shut_down(start, 2 * CAP, mode).await;
    let state = file.state();
    let boundary = start + 2 * CAP as u64;
    match mode {
        ShutdownMode::ZeroPadToNextMultiple(4096) => {
            // 2048 -> 4096 from 0; 10240 -> 12288 from 8192.
            assert_eq!(end, if start == 0 { 4096 } else { 12288 });
            assert_eq!(state.writes.len(), 3);
            assert!(state.writes[2].bytes.iter().all(|&b| b == 0));
        }
        _ => {
            assert_eq!(end, boundary);
            assert_eq!(state.writes.len(), 2);
        }
    }
}

#[rstest]
#[tokio::test]
async fn empty_stream(
    #[values(0, 8192)] start: u64,
    #[values(
        ShutdownMode::DropTail,
        ShutdownMode::ZeroPadToNextMultiple(512),
        ShutdownMode::PadThenTruncate,
        ShutdownMode::Discard
    )]
    mode: ShutdownMode,
) {
    let (_, end, file) = write_and_shut_down(start, 0, mode).await;
    assert_eq!(end, start);
    let state = file.state();
    assert!(state.writes.is_empty());
    let want_set_len: &[u64] = if mode == ShutdownMode::PadThenTruncate {
        &[start]
    } else {
        &[]
    };
    assert_eq!(state.set_lens, want_set_len);
}
