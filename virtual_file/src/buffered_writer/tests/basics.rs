//! Construction, offsets, `flush`, the zero-copy path, back-pressure and dropping without shutdown.

use std::time::Duration;

use super::*;
use crate::buffered_writer::{
    ConfigError, Error, OwnedAsyncWriter, DEFAULT_CAPACITY, DEFAULT_DEPTH,
};

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

/// The writer's file, wrapped so the test learns when the flush task drops it: the drop is where a temp
/// file removes itself.
struct SignalsDrop {
    file: MockFile,
    dropped: Option<tokio::sync::oneshot::Sender<usize>>,
}

impl OwnedAsyncWriter for SignalsDrop {
    type Error = std::io::Error;

    async fn write_all_at<B: io_engine::IoBuf>(
        &self,
        buf: io_engine::FullSlice<B>,
        offset: u64,
    ) -> (io_engine::FullSlice<B>, Result<(), std::io::Error>) {
        self.file.write_all_at(buf, offset).await
    }

    async fn set_len(&self, len: u64) -> Result<(), std::io::Error> {
        self.file.set_len(len).await
    }
}

impl Drop for SignalsDrop {
    fn drop(&mut self) {
        // Reports the writes made before the file is dropped.
        let writes = self.file.state().writes.len();
        if let Some(tx) = self.dropped.take() {
            let _ = tx.send(writes);
        }
    }
}

#[tokio::test]
async fn dropping_the_writer_stops_the_flush_task_before_the_file_is_dropped() {
    let cap = 512;
    let (file, gate) = MockFile::gated();
    let (tx, dropped) = tokio::sync::oneshot::channel();
    let signalling = SignalsDrop {
        file: file.clone(),
        dropped: Some(tx),
    };
    let mut w: BufferedWriter<SignalsDrop, TestAlign> =
        BufferedWriter::new(signalling, options(cap, 2, 0)).unwrap();
    let data = pattern(4, 2 * cap);
    // two full buffers: the first is being written (held at the gate), the second queued behind it
    let started = async {
        w.write_buffered(&data).await.unwrap();
        file.wait_writes_started(1).await;
    };
    tokio::time::timeout(Duration::from_secs(10), started)
        .await
        .expect("the first write starts");
    drop(w);
    // the task is stuck in the gated write, so it cannot have dropped the file yet
    let mut dropped = dropped;
    assert!(
        matches!(
            dropped.try_recv(),
            Err(tokio::sync::oneshot::error::TryRecvError::Empty)
        ),
        "the file is dropped only after the write under way"
    );
    gate.add_permits(10);
    let writes_before_drop = tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the abandoned flush task ends")
        .expect("the file is dropped, not leaked");
    assert_eq!(writes_before_drop, 1, "the write under way completed");
    let state = file.state();
    assert_eq!(state.writes.len(), 1, "the queued buffer was not written");
    assert_eq!(state.contents, data[..cap]);
}

#[tokio::test]
async fn dropping_an_idle_writer_drops_the_file() {
    let file = MockFile::new();
    let (tx, dropped) = tokio::sync::oneshot::channel();
    let mut w: BufferedWriter<SignalsDrop, TestAlign> = BufferedWriter::new(
        SignalsDrop {
            file: file.clone(),
            dropped: Some(tx),
        },
        options(512, 2, 0),
    )
    .unwrap();
    w.write_buffered(&pattern(5, 700)).await.unwrap();
    w.flush().await.unwrap();
    drop(w);
    let writes = tokio::time::timeout(Duration::from_secs(10), dropped)
        .await
        .expect("the abandoned flush task ends")
        .expect("the file is dropped, not leaked");
    assert_eq!(writes, 1, "the flushed buffer; the tail is lost");
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
