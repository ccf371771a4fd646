//! Construction, offsets, `flush`, the zero-copy path, back-pressure and dropping without shutdown.

use std::time::Duration;

use super::*;
use crate::buffered_writer::{ConfigError, Error, DEFAULT_CAPACITY, DEFAULT_DEPTH};

#[test]
fn defaults() {
    let opts = BufferedWriterOptions::default();
    assert_eq!(opts.capacity, DEFAULT_CAPACITY);
    assert_eq!(opts.capacity, 64 * 1024);
    assert_eq!(opts.depth, DEFAULT_DEPTH);
    assert_eq!(opts.depth, 2);
    assert_eq!(opts.start_offset, 0);
}

#[tokio::test]
async fn bad_settings_are_typed_errors() {
    let cases = [
        (
            options(0, 2, 0),
            ConfigError::Capacity {
                capacity: 0,
                align: ALIGN,
            },
        ),
        (
            options(1000, 2, 0),
            ConfigError::Capacity {
                capacity: 1000,
                align: ALIGN,
            },
        ),
        (
            options(4096, 2, 100),
            ConfigError::StartOffset {
                start_offset: 100,
                align: ALIGN,
            },
        ),
        (options(4096, 1, 0), ConfigError::Depth { depth: 1 }),
    ];
    for (opts, want) in cases {
        match BufferedWriter::<MockFile, TestAlign>::new(MockFile::new(), opts) {
            Err(Error::Config(got)) => assert_eq!(got, want, "{opts:?}"),
            other => panic!("{opts:?}: expected {want:?}, got {other:?}"),
        }
    }
    // A 4096-aligned writer rejects a capacity that is fine for 512.
    let err = BufferedWriter::<MockFile, io_engine::ConstAlign<4096>>::new(
        MockFile::new(),
        options(512, 2, 0),
    )
    .unwrap_err();
    assert!(matches!(
        err,
        Error::Config(ConfigError::Capacity { align: 4096, .. })
    ));

    for n in [0, 100, 4095] {
        let file = MockFile::new();
        let mut w = writer(&file, 1024, 2, 0);
        w.write_buffered(&pattern(1, 3000)).await.unwrap();
        let err = w
            .shutdown(ShutdownMode::ZeroPadToNextMultiple(n))
            .await
            .unwrap_err();
        assert!(
            matches!(err, Error::Config(ConfigError::PadMultiple { multiple, align: ALIGN }) if multiple == n),
            "{err:?}"
        );
    }
}

#[test]
fn new_outside_a_runtime_is_an_error() {
    let err = BufferedWriter::<MockFile, TestAlign>::new(MockFile::new(), options(512, 2, 0))
        .unwrap_err();
    assert!(
        matches!(err, Error::Config(ConfigError::NoRuntime)),
        "{err:?}"
    );
}

#[tokio::test]
async fn writes_return_their_offsets_and_flush_leaves_the_tail_buffered() {
    for start in [0, 8192] {
        let cap = 1024;
        let file = MockFile::new();
        let mut w = writer(&file, cap, 2, start);
        let data = pattern(start, 2 * cap + cap / 2);
        let (a, b) = data.split_at(700);
        assert_eq!(w.write_buffered(a).await.unwrap(), start);
        assert_eq!(w.write_owned(owned(b, true)).await.unwrap(), start + 700);
        assert_eq!(w.end_offset(), start + data.len() as u64);
        assert_eq!(w.bytes_written(), data.len() as u64);
        w.flush().await.unwrap();
        assert_eq!(w.durable_end(), start + 2 * cap as u64);
        assert_eq!(w.buffered_len(), cap / 2);
        assert_eq!(
            file.state().writes.len(),
            2,
            "only full buffers before shutdown"
        );
        check_write_shapes(&file.state().writes, cap, start, false);
        assert_eq!(written_part(&file, start), &data[..2 * cap]);
        // An empty write is accepted and changes nothing.
        assert_eq!(w.write_buffered(&[]).await.unwrap(), w.end_offset());
        let (end, _) = w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap();
        assert_eq!(end, start + data.len() as u64);
        assert_eq!(written_part(&file, start), data);
    }
}

#[tokio::test]
async fn owned_buffers_at_a_boundary_are_written_without_a_copy() {
    let cap = 4096;
    let file = MockFile::new();
    let mut w = writer(&file, cap, 2, 8192);
    let data = pattern(9, 3 * cap + 100);
    let buf = owned(&data, true);
    let base = buf.as_ptr() as usize;
    w.write_owned(buf).await.unwrap();
    w.flush().await.unwrap();
    {
        let state = file.state();
        assert_eq!(state.writes.len(), 3);
        for (k, write) in state.writes.iter().enumerate() {
            assert_eq!(
                write.ptr,
                base + k * cap,
                "chunk {k} is a slice of the caller's buffer"
            );
        }
    }
    assert_eq!(w.buffered_len(), 100, "the remainder is copied");
    let (_, _) = w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap();
    let state = file.state();
    assert!(
        !(base..base + data.len()).contains(&state.writes[3].ptr),
        "the tail went through a pool buffer"
    );
    check_write_shapes(&state.writes, cap, 8192, true);
    assert_eq!(&state.contents[8192..], &data[..]);
}

#[tokio::test]
async fn owned_buffers_off_a_boundary_or_misaligned_are_copied() {
    let cap = 1024;
    for (lead, aligned) in [(10, true), (0, false)] {
        let file = MockFile::new();
        let mut w = writer(&file, cap, 2, 0);
        let data = pattern(5, lead + 4 * cap);
        w.write_buffered(&data[..lead]).await.unwrap();
        let buf = owned(&data[lead..], aligned);
        let range = buf.as_ptr() as usize..buf.as_ptr() as usize + buf.len();
        w.write_owned(buf).await.unwrap();
        w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap();
        let state = file.state();
        assert!(state.writes.iter().all(|w| !range.contains(&w.ptr)));
        check_write_shapes(&state.writes, cap, 0, true);
        assert_eq!(state.contents, data);
    }
}

#[tokio::test]
async fn a_writer_with_every_buffer_in_flight_waits() {
    let cap = 512;
    let depth = 3;
    let (file, gate) = MockFile::gated();
    let mut w = writer(&file, cap, depth, 0);
    let data = pattern(2, depth * cap + 1);
    // a generous bound for what must not wait (a loaded machine can be slow), a short one for what
    // must wait (while the gate is shut it cannot complete, so this check never fails spuriously)
    tokio::time::timeout(
        Duration::from_secs(10),
        w.write_buffered(&data[..depth * cap]),
    )
    .await
    .expect("depth buffers fit without waiting")
    .unwrap();
    assert!(
        tokio::time::timeout(
            Duration::from_millis(50),
            w.write_buffered(&data[depth * cap..])
        )
        .await
        .is_err(),
        "one more byte needs a buffer back from the flush task"
    );
    assert_eq!(
        w.end_offset(),
        (depth * cap) as u64,
        "the cancelled write took nothing"
    );
    gate.add_permits(1);
    tokio::time::timeout(
        Duration::from_secs(5),
        w.write_buffered(&data[depth * cap..]),
    )
    .await
    .expect("a written buffer comes back")
    .unwrap();
    gate.add_permits(usize::MAX >> 4);
    w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap();
    assert_eq!(file.state().contents, data);
}

#[tokio::test]
async fn dropping_the_writer_ends_the_flush_task() {
    let cap = 512;
    let file = MockFile::new();
    let mut w = writer(&file, cap, 2, 0);
    let data = pattern(4, 3 * cap + 10);
    w.write_buffered(&data).await.unwrap();
    assert_eq!(file.handles(), 2, "the flush task owns a handle");
    drop(w);
    tokio::time::timeout(Duration::from_secs(5), async {
        while file.handles() > 1 {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the flush task ends and drops the file");
    let state = file.state();
    assert_eq!(
        state.writes.len(),
        3,
        "queued full buffers were still written"
    );
    assert_eq!(state.contents, data[..3 * cap]);
}

#[tokio::test]
async fn the_writer_and_its_futures_are_send() {
    fn is_send<T: Send>(_: &T) {}
    let file = MockFile::new();
    let mut w = writer(&file, 512, 2, 0);
    is_send(&w);
    is_send(&w.write_buffered(b"abc"));
    is_send(&w.write_owned(owned(b"abc", true)));
    is_send(&w.flush());
    let plan = w.read_plan(0, 0).unwrap();
    is_send(&plan.execute(&file));
    let shutdown = w.shutdown(ShutdownMode::DropTail);
    is_send(&shutdown);
    let (end, _) = shutdown.await.unwrap();
    assert_eq!(
        end, 0,
        "the futures above were dropped unpolled and wrote nothing"
    );
}
