//! Property test: random sequences of writes (copied and owned, aligned and not) and flushes, over
//! capacities from 512 bytes to 1 MiB, both start offsets and every shutdown mode. Checks the `O_DIRECT`
//! shape of every write, the offsets returned, and the file contents against the input.

use proptest::prelude::*;

use super::*;

#[derive(Debug, Clone)]
enum Size {
    /// A small record, bytes.
    Small(usize),
    /// Per mille of the capacity (0 to 2.5 buffers).
    PerMille(usize),
    /// Whole buffers: hits the zero-copy path exactly.
    Buffers(usize),
}

impl Size {
    fn bytes(&self, capacity: usize) -> usize {
        match *self {
            Size::Small(n) => n,
            Size::PerMille(p) => capacity * p / 1000,
            Size::Buffers(k) => capacity * k,
        }
    }
}

#[derive(Debug, Clone)]
enum Op {
    Buffered(Size),
    Owned { size: Size, aligned: bool },
    Flush,
}

fn capacity() -> impl Strategy<Value = usize> {
    prop_oneof![
        (0usize..=11).prop_map(|shift| 512 << shift),
        (1usize..=64).prop_map(|k| k * 512),
    ]
}

fn size() -> impl Strategy<Value = Size> {
    prop_oneof![
        (0usize..700).prop_map(Size::Small),
        (0usize..=2500).prop_map(Size::PerMille),
        (1usize..=3).prop_map(Size::Buffers),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => size().prop_map(Op::Buffered),
        2 => (size(), any::<bool>()).prop_map(|(size, aligned)| Op::Owned { size, aligned }),
        1 => Just(Op::Flush),
    ]
}

fn mode() -> impl Strategy<Value = ShutdownMode> {
    prop_oneof![
        Just(ShutdownMode::DropTail),
        Just(ShutdownMode::PadThenTruncate),
        (1u64..=32).prop_map(|k| ShutdownMode::ZeroPadToNextMultiple(k * 512)),
        Just(ShutdownMode::ZeroPadToNextMultiple(1 << 20)),
    ]
}

async fn run_case(capacity: usize, depth: usize, start: u64, ops: Vec<Op>, mode: ShutdownMode) {
    let file = MockFile::new();
    let mut w = writer(&file, capacity, depth, start);
    let mut model = Vec::new();
    for (i, op) in ops.iter().enumerate() {
        let at = start + model.len() as u64;
        match op {
            Op::Buffered(size) => {
                let data = pattern(i as u64, size.bytes(capacity));
                assert_eq!(w.write_buffered(&data).await.unwrap(), at);
                model.extend_from_slice(&data);
            }
            Op::Owned { size, aligned } => {
                let data = pattern(i as u64, size.bytes(capacity));
                assert_eq!(w.write_owned(owned(&data, *aligned)).await.unwrap(), at);
                model.extend_from_slice(&data);
            }
            Op::Flush => {
                w.flush().await.unwrap();
                let full = model.len() / capacity * capacity;
                assert_eq!(
                    w.durable_end(),
                    start + full as u64,
                    "flush writes every full buffer"
                );
                assert_eq!(w.buffered_len(), model.len() - full, "and only those");
                assert_eq!(file.state().writes.len(), full / capacity);
            }
        }
        assert_eq!(w.end_offset(), start + model.len() as u64);
    }
    let (end, _) = w.shutdown(mode).await.unwrap();
    let (want_end, want_contents) = expected_after_shutdown(start, &model, capacity, mode);
    assert_eq!(end, want_end, "returned end");
    let state = file.state();
    check_write_shapes(&state.writes, capacity, start, true);
    assert!(state.writes.iter().all(|w| w.ok));
    assert!(
        state.contents == want_contents,
        "file contents differ (len {} vs {})",
        state.contents.len(),
        want_contents.len()
    );
    let want_set_lens: &[u64] = match mode {
        ShutdownMode::PadThenTruncate => &[start + model.len() as u64],
        _ => &[],
    };
    assert_eq!(state.set_lens, want_set_lens);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn random_write_sequences(
        capacity in capacity(),
        depth in 2usize..=4,
        start in prop_oneof![Just(0u64), Just(8192u64)],
        ops in proptest::collection::vec(op(), 0..16),
        mode in mode(),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime");
        runtime.block_on(run_case(capacity, depth, start, ops, mode));
    }
}
