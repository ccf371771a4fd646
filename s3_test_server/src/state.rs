//! [`State`]: what every connection of one server shares, over restarts: the request counters, the
//! armed faults ([`KillSignal`], [`HeldGet`]), one lock per object (see the crate docs on conditional
//! writes) and the data directory.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{oneshot, Notify, RwLock};

/// Locks `mutex`, also when a panicking holder poisoned it (every value kept here stays valid).
pub(crate) fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(|p| p.into_inner())
}

/// Takes the value out of `slot`, leaving `None`.
pub(crate) fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    lock(slot).take()
}

/// Fires when an armed fault killed the server.
pub struct KillSignal(oneshot::Receiver<()>);

impl KillSignal {
    /// Waits until the fault fired (the server is down by then). Returns `false` if the server was
    /// dropped without the fault firing.
    pub async fn fired(self) -> bool {
        self.0.await.is_ok()
    }
}

/// A held object `GET`: [`arrived`](Self::arrived) fires when it reaches the server, which answers it
/// only after [`release`](Self::release).
pub struct HeldGet {
    arrived: oneshot::Receiver<()>,
    release: Arc<Notify>,
}

impl HeldGet {
    /// Waits until the held request arrived. Returns `false` if the server was dropped first.
    pub async fn arrived(&mut self) -> bool {
        (&mut self.arrived).await.is_ok()
    }

    /// Lets the server answer the held request.
    pub fn release(&self) {
        self.release.notify_one();
    }
}

/// The held `GET`'s side: tell the test it arrived, then wait for the release.
pub(crate) struct Hold {
    arrived: oneshot::Sender<()>,
    release: Arc<Notify>,
}

impl Hold {
    /// Signals the arrival and waits until the test releases the request.
    pub(crate) async fn wait(self) {
        let _ = self.arrived.send(());
        self.release.notified().await;
    }
}

/// Counts requests and holds the armed faults; shared by every connection.
pub(crate) struct State {
    upload_parts: AtomicU64,
    requests: AtomicU64,
    /// `(n, signal)`: kill at the `n`th `UploadPart` counted from arming.
    kill_at_part: Mutex<Option<(u64, oneshot::Sender<()>)>>,
    /// Wakes the accept loop to kill the server.
    kill_now: Notify,
    /// Sent by the accept loop once the server the fault killed is down.
    fired: Mutex<Option<oneshot::Sender<()>>>,
    /// Holds the next object `GET`: signals its arrival, then waits for the release.
    hold_get: Mutex<Option<Hold>>,
    /// One lock per object path (`/bucket/key`), see the crate docs on conditional writes.
    key_locks: Mutex<HashMap<String, Arc<RwLock<()>>>>,
    /// The server's data directory (a bucket is a directory in it).
    data_dir: PathBuf,
}

impl State {
    pub(crate) fn new(data_dir: &Path) -> Self {
        State {
            upload_parts: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            kill_at_part: Mutex::new(None),
            kill_now: Notify::new(),
            fired: Mutex::new(None),
            hold_get: Mutex::new(None),
            key_locks: Mutex::new(HashMap::new()),
            data_dir: data_dir.to_owned(),
        }
    }

    /// Requests received since start (over restarts).
    pub(crate) fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// `UploadPart` requests received since start (over restarts).
    pub(crate) fn upload_parts(&self) -> u64 {
        self.upload_parts.load(Ordering::Relaxed)
    }

    /// Counts a request.
    pub(crate) fn count_request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts an `UploadPart`; true if the armed fault fires on it: the accept loop is then told to
    /// kill the server, and the request must get no answer.
    pub(crate) fn upload_part_kills(&self) -> bool {
        let seen = self.upload_parts.fetch_add(1, Ordering::Relaxed) + 1;
        let armed = lock(&self.kill_at_part).take_if(|(n, _)| seen >= *n);
        let Some((_, signal)) = armed else {
            return false;
        };
        tracing::info!(part = seen, "s3 test server: killed by the armed fault");
        *lock(&self.fired) = Some(signal);
        self.kill_now.notify_one();
        true
    }

    /// Arms the fault: the `n`th `UploadPart` from now (`n >= 1`) kills the server.
    pub(crate) fn kill_at_upload_part(&self, n: u64) -> KillSignal {
        let (tx, rx) = oneshot::channel();
        *lock(&self.kill_at_part) = Some((self.upload_parts() + n.max(1), tx));
        KillSignal(rx)
    }

    /// Waits until an armed fault asks for the kill.
    pub(crate) async fn kill_requested(&self) {
        self.kill_now.notified().await;
    }

    /// Once the killed server is down: fires the [`KillSignal`] of the fault that killed it, if any.
    pub(crate) fn report_fired(&self) {
        if let Some(fired) = take(&self.fired) {
            let _ = fired.send(());
        }
    }

    /// Holds the next object `GET` until [`HeldGet::release`].
    pub(crate) fn hold_next_object_get(&self) -> HeldGet {
        let (tx, rx) = oneshot::channel();
        let release = Arc::new(Notify::new());
        *lock(&self.hold_get) = Some(Hold {
            arrived: tx,
            release: Arc::clone(&release),
        });
        HeldGet {
            arrived: rx,
            release,
        }
    }

    /// The hold armed for the next object `GET` (taken: it holds one request).
    pub(crate) fn take_hold(&self) -> Option<Hold> {
        take(&self.hold_get)
    }

    /// True if the bucket's directory exists.
    pub(crate) fn has_bucket(&self, bucket: &str) -> bool {
        self.data_dir.join(bucket).is_dir()
    }

    /// The lock of the object at `path` (`/bucket/key`).
    pub(crate) fn key_lock(&self, path: &str) -> Arc<RwLock<()>> {
        Arc::clone(lock(&self.key_locks).entry(path.to_owned()).or_default())
    }
}
