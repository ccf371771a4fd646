//! A hook written by a user of the crate (not one of the two the crate ships): it sees every op before
//! and after, as it ran; it can fail an op, delay it, cut a transfer short and hand a ticket from
//! `before` to `after`.

mod common;

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use io_engine::{Completed, EngineHook, EngineOp, FullSlice, IoEngine, IoEngineKind, Proceed};
use rstest::rstest;

/// What the hook saw of one op.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Seen {
    op: &'static str,
    /// For transfers: the bytes the op asked for when it ran.
    len: Option<usize>,
    /// `Ok(bytes moved)` for transfers, `Ok(0)` for other ops, or the errno.
    result: Result<usize, i32>,
    /// The ticket `before` handed over: the op's number.
    ticket: usize,
}

/// Records every op; fails `unlink` with `EACCES`; delays `fdatasync`; cuts every read to 3 bytes.
#[derive(Debug, Default)]
struct Recording {
    seen: Mutex<Vec<Seen>>,
    started: Mutex<usize>,
}

const DELAY: Duration = Duration::from_millis(20);

impl EngineHook for Recording {
    type Ticket = usize;

    fn before(&self, op: &EngineOp<'_>) -> io::Result<Proceed<usize>> {
        let ticket = {
            let mut started = self.started.lock().unwrap();
            *started += 1;
            *started
        };
        Ok(match op {
            EngineOp::Unlink { .. } => return Err(io::Error::from_raw_os_error(libc::EACCES)),
            EngineOp::Fdatasync { .. } => Proceed::new(ticket).after_delay(DELAY),
            EngineOp::ReadAt { .. } | EngineOp::ReadvAt { .. } => {
                Proceed::new(ticket).transfer_at_most(3)
            }
            _ => Proceed::new(ticket),
        })
    }

    fn after(&self, op: &EngineOp<'_>, ticket: usize, result: Result<Completed<'_>, &io::Error>) {
        let result = match result {
            Ok(Completed::Transferred(n)) => Ok(n),
            Ok(_) => Ok(0),
            Err(e) => Err(e.raw_os_error().unwrap_or(-1)),
        };
        let seen = Seen {
            op: op.name(),
            len: op.transfer_len(),
            result,
            ticket,
        };
        self.seen.lock().unwrap().push(seen);
    }
}

fn seen(op: &'static str, len: Option<usize>, result: Result<usize, i32>, ticket: usize) -> Seen {
    Seen {
        op,
        len,
        result,
        ticket,
    }
}

#[rstest]
#[tokio::test]
async fn a_users_hook_sees_fails_delays_and_shortens_ops(
    #[values(IoEngineKind::StdFs, IoEngineKind::TokioEpollUring)] kind: IoEngineKind,
) {
    let inner = match IoEngine::launch(kind) {
        Ok(e) => e,
        Err(e) => return common::skip_without_uring(e),
    };
    let hook = Arc::new(Recording::default());
    let e = IoEngine::hooked(inner, hook.clone());
    assert_eq!(e.kind(), kind);
    let (_dir, path, fd) = common::create_temp_file(&e, "f").await;
    let (_, n) = e
        .write_at(&fd, 0, FullSlice::new(b"abcdefgh".to_vec()))
        .await;
    assert_eq!(n.unwrap(), 8);

    // cut to 3 bytes: the window comes back whole, with 3 bytes read
    assert_eq!(common::read_cut_window(&e, &fd, 8).await, b"abc");

    // a vectored read cut inside its second window: both windows come back, the third untouched
    let (w, n) = e.readv_at(&fd, 0, common::vec_windows(&[2, 4, 4])).await;
    assert_eq!(n.unwrap(), 3);
    let lens: Vec<_> = w.iter().map(|s| (s.len(), s.get_ref().len())).collect();
    assert_eq!(lens, [(2, 2), (4, 1), (4, 0)], "(window, bytes filled)");

    let started = Instant::now();
    e.fdatasync(&fd).await.unwrap();
    assert!(started.elapsed() >= DELAY, "delayed");

    let err = e.unlink(&path).await.unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    assert!(
        path.exists(),
        "the failed op never reached the inner engine"
    );

    assert_eq!(
        *hook.seen.lock().unwrap(),
        [
            seen("open", None, Ok(0), 1),
            seen("write_at", Some(8), Ok(8), 2),
            seen("read_at", Some(3), Ok(3), 3),
            seen("readv_at", Some(3), Ok(3), 4),
            seen("fdatasync", None, Ok(0), 5),
            // the unlink (6) failed in `before`: no `after`
        ]
    );
    assert_eq!(*hook.started.lock().unwrap(), 6);
}
