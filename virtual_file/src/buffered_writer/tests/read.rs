//! Read while writing: random ranges, planned while buffers are in flight and executed later, read back
//! exactly what was written.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use super::*;
use crate::buffered_writer::ReadPlanError;

#[derive(Default, Debug)]
struct Seen {
    disk: usize,
    in_flight: usize,
    buffered: usize,
}

#[tokio::test]
async fn random_reads_while_flushes_are_in_flight() {
    for (cap, depth, start) in [(512, 2, 0), (4096, 3, 8192), (1536, 4, 512)] {
        let (file, gate) = MockFile::gated();
        let mut w = writer(&file, cap, depth, start);
        // Writes trickle through the gate, so buffers stay in flight for a while.
        let stop = Arc::new(AtomicBool::new(false));
        let releaser = tokio::spawn({
            let (gate, stop) = (Arc::clone(&gate), Arc::clone(&stop));
            async move {
                while !stop.load(Ordering::Relaxed) {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                    gate.add_permits(1);
                }
            }
        });
        let mut rng = StdRng::seed_from_u64(cap as u64);
        let mut model: Vec<u8> = Vec::new();
        let mut seen = Seen::default();
        let mut pending = Vec::new();
        for i in 0..120u64 {
            let data = pattern(i, rng.random_range(1..2 * cap));
            if rng.random_bool(0.3) {
                w.write_owned(owned(&data, true)).await.unwrap();
            } else {
                w.write_buffered(&data).await.unwrap();
            }
            model.extend_from_slice(&data);
            // Plans made before the last write run after it: they stay valid as flushes complete.
            for (plan, want) in pending.drain(..) {
                let plan: crate::buffered_writer::ReadPlan<TestAlign> = plan;
                assert_eq!(plan.execute(&file).await.unwrap(), want);
            }
            for _ in 0..4 {
                let a = rng.random_range(0..=model.len());
                let b = rng.random_range(a..=model.len().min(a + 3 * cap));
                let plan = w.read_plan(start + a as u64, b - a).unwrap();
                assert_eq!(plan.offset(), start + a as u64);
                assert_eq!(plan.len(), b - a);
                if let Some(disk) = plan.disk_range() {
                    assert_eq!(disk.start, plan.offset());
                    assert!(disk.end <= w.durable_end());
                    seen.disk += (disk.end - disk.start) as usize;
                }
                seen.in_flight += plan.in_flight_len();
                seen.buffered += plan.buffered_len();
                pending.push((plan, model[a..b].to_vec()));
            }
        }
        assert!(
            seen.disk > 0 && seen.in_flight > 0 && seen.buffered > 0,
            "every source was exercised: {seen:?}"
        );

        let end = w.end_offset();
        assert_eq!(
            w.read_plan(start + 1, model.len()).unwrap_err(),
            ReadPlanError::BeyondEnd {
                offset: start + 1,
                len: model.len(),
                end_offset: end
            }
        );
        assert!(matches!(
            w.read_plan(u64::MAX, 2),
            Err(ReadPlanError::BeyondEnd { .. })
        ));
        if start > 0 {
            assert!(matches!(
                w.read_plan(start - 1, 1),
                Err(ReadPlanError::BeforeStart { .. })
            ));
        }
        let plan = w.read_plan(end, 0).unwrap();
        assert!(plan.is_empty());
        assert!(plan.execute(&file).await.unwrap().is_empty());

        stop.store(true, Ordering::Relaxed);
        releaser.await.unwrap();
        gate.add_permits(usize::MAX >> 4);
        w.flush().await.unwrap();
        // After the flush, everything but the tail comes from the file.
        let full = model.len() / cap * cap;
        let plan = w.read_plan(start, model.len()).unwrap();
        assert_eq!(plan.disk_range(), Some(start..start + full as u64));
        assert_eq!(plan.in_flight_len(), 0);
        assert_eq!(plan.execute(&file).await.unwrap(), model);
        w.shutdown(ShutdownMode::PadThenTruncate).await.unwrap();
        assert_eq!(&file.state().contents[start as usize..], &model[..]);
    }
}

/// A plan whose file part the reader cannot deliver reports it.
#[tokio::test]
async fn a_failed_disk_read_is_reported() {
    let file = MockFile::new();
    let mut w = writer(&file, 512, 2, 0);
    w.write_buffered(&pattern(1, 1024)).await.unwrap();
    w.flush().await.unwrap();
    let plan = w.read_plan(100, 800).unwrap();
    let empty = MockFile::new();
    let err = plan.execute(&empty).await.unwrap_err();
    assert!(
        matches!(
            &err,
            crate::buffered_writer::ReadError::Read { offset: 0, len: 1024, source }
                if source.kind() == std::io::ErrorKind::UnexpectedEof
        ),
        "{err:?}"
    );
}
