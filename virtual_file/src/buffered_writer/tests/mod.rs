//! Tests of the buffered writer against the recording [`MockFile`]. Shared helpers live here; each file
//! below covers one concern.

mod basics;
mod errors;
mod props;
mod read;
mod shutdown;

use io_engine::{ConstAlign, IoBuffer, IoBufferMut};

/// These tests exercise the 512-byte alignment (the smallest the writer accepts).
type TestAlign = ConstAlign<512>;

use super::mock::{MockFile, WriteRecord};
use super::{BufferedWriter, BufferedWriterOptions, ShutdownMode};

/// The default buffer alignment the tests run with.
const ALIGN: usize = 512;

/// Deterministic pseudo-random bytes (splitmix64), different for every `seed`, so that a block written at
/// the wrong place or twice shows up in a comparison.
fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
    }
    out.truncate(len);
    out
}

fn options(capacity: usize, depth: usize, start_offset: u64) -> BufferedWriterOptions {
    BufferedWriterOptions::default()
        .with_capacity(capacity)
        .with_depth(depth)
        .with_start_offset(start_offset)
}

fn writer(
    file: &MockFile,
    capacity: usize,
    depth: usize,
    start: u64,
) -> BufferedWriter<MockFile, TestAlign> {
    BufferedWriter::new(file.clone(), options(capacity, depth, start)).expect("valid options")
}

/// `data` in an owned buffer: at an aligned address, or one byte past one.
fn owned(data: &[u8], aligned: bool) -> IoBuffer<TestAlign> {
    if aligned {
        return IoBufferMut::<TestAlign>::from_slice(data).freeze();
    }
    let mut buf = IoBufferMut::<TestAlign>::with_capacity(data.len() + 1);
    buf.extend_from_slice(&[0xAA]);
    buf.extend_from_slice(data);
    buf.freeze().slice(1..)
}

/// The `O_DIRECT` shape of everything the mock saw: every write's address, offset and length are aligned;
/// write `i` is at `start + i * capacity`; all are exactly `capacity` long except, if `tail_allowed`, the
/// last one.
fn check_write_shapes(writes: &[WriteRecord], capacity: usize, start: u64, tail_allowed: bool) {
    for (i, w) in writes.iter().enumerate() {
        assert_eq!(w.offset, start + (i * capacity) as u64, "write {i}: offset");
        assert_eq!(w.offset % ALIGN as u64, 0, "write {i}: offset alignment");
        assert_eq!(w.bytes.len() % ALIGN, 0, "write {i}: length alignment");
        assert_eq!(w.ptr % ALIGN, 0, "write {i}: address alignment");
        assert!(!w.bytes.is_empty(), "write {i}: empty");
        if i + 1 < writes.len() || !tail_allowed {
            assert_eq!(w.bytes.len(), capacity, "write {i}: length");
        }
    }
}

/// What shutdown in `mode` after writing `data` from `start` must return and leave in a fresh file.
fn expected_after_shutdown(
    start: u64,
    data: &[u8],
    capacity: usize,
    mode: ShutdownMode,
) -> (u64, Vec<u8>) {
    let full = data.len() / capacity * capacity;
    let logical_end = start + data.len() as u64;
    let mut file = Vec::new();
    let mut put = |bytes: &[u8]| {
        if !bytes.is_empty() {
            file.resize(start as usize, 0);
            file.extend_from_slice(bytes);
        }
    };
    match mode {
        // not in spill mode, every full buffer was handed to a write before `Discard`: the same bytes
        ShutdownMode::DropTail | ShutdownMode::Discard => {
            put(&data[..full]);
            (start + full as u64, file)
        }
        ShutdownMode::ZeroPadToNextMultiple(n) => {
            let padded = logical_end.next_multiple_of(n);
            let mut bytes = data.to_vec();
            bytes.resize((padded - start) as usize, 0);
            put(&bytes);
            (padded, file)
        }
        ShutdownMode::PadThenTruncate => {
            put(data);
            file.resize(logical_end as usize, 0);
            (logical_end, file)
        }
    }
}

/// The bytes the writer wrote at or after `start` (checked against the whole file elsewhere).
fn written_part(file: &MockFile, start: u64) -> Vec<u8> {
    let state = file.state();
    state.contents.get(start as usize..).unwrap_or(&[]).to_vec()
}

#[test]
fn pattern_is_deterministic_and_seed_dependent() {
    assert_eq!(pattern(1, 100), pattern(1, 100));
    assert_ne!(pattern(1, 100), pattern(2, 100));
    assert_eq!(pattern(3, 13).len(), 13);
    assert_eq!(&pattern(3, 64)[..13], &pattern(3, 13)[..]);
}
