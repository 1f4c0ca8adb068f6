//! Growing the active segment ahead of the writers, on a thread the journal
//! owns.
//!
//! A segment is created with `journal_preallocate_bytes` of zeros after its
//! header, written and synced before the segment is renamed into place. When
//! the records come within half a step of the end of that space, the writer
//! asks this thread for the next step. The thread appends the zeros in
//! [`CHUNK_BYTES`] pieces, syncing each, and hands the new end back; the
//! writer adopts it at its next write. The group-commit leader therefore
//! never writes zeros, and its `fdatasync` flushes only records into blocks
//! that are already allocated and written: on ext4 a data-only flush, with
//! no allocation to journal. (Measured in `docs/decisions.md`, "2026-12-02,
//! issue 10: the journal's write path".)
//!
//! **Invariant:** zeros are written only past the end the writer has
//! adopted, and the writer writes records only below it. A region is
//! handed over once, after its zeros are written: the writer never writes
//! where the thread does, and the thread never writes where records are.
//!
//! Where the filesystem says no ([`crate::fs::Fs::background_io`]: the
//! simulated one, whose operation count must stay deterministic) or the
//! thread cannot be started, the leader grows the segment itself, inline,
//! as before.

use crate::fs::{Fs, OpenMode};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Zeros are written and synced this many bytes at a time, so that a
/// writer's `fdatasync` meanwhile flushes at most this many of them.
pub const CHUNK_BYTES: u64 = 1024 * 1024;

/// One step of growth: zeros for `from..to` of the segment at `path`.
#[derive(Debug, Clone)]
struct Step {
    segment: u64,
    path: String,
    from: u64,
    to: u64,
}

#[derive(Default)]
struct State {
    /// A step asked for and not yet taken by the thread.
    asked: Option<Step>,
    /// The step the thread is writing now.
    busy: Option<u64>,
    /// The last step done: the segment and its new end.
    done: Option<(u64, u64)>,
    stop: bool,
}

/// The background grower: its state, shared with its thread.
pub(super) struct Grower {
    shared: Arc<(Mutex<State>, Condvar)>,
    thread: Mutex<Option<JoinHandle<()>>>,
    /// False when the filesystem wants no background I/O, or the thread
    /// could not be started: the writer then grows inline.
    enabled: std::sync::atomic::AtomicBool,
    fs: Arc<dyn Fs>,
}

impl Grower {
    pub(super) fn new(fs: Arc<dyn Fs>) -> Grower {
        Grower {
            shared: Arc::default(),
            thread: Mutex::new(None),
            enabled: std::sync::atomic::AtomicBool::new(fs.background_io()),
            fs,
        }
    }

    /// Whether growth happens on the thread.
    pub(super) fn enabled(&self) -> bool {
        self.enabled.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// The new end of `segment` if the thread has grown it since the last
    /// call, to be adopted by the writer.
    pub(super) fn take_done(&self, segment: u64) -> Option<u64> {
        let mut g = self.shared.0.lock();
        match g.done {
            Some((s, to)) if s == segment => {
                g.done = None;
                Some(to)
            }
            _ => None,
        }
    }

    /// Whether a step for `segment` is asked for or being written.
    pub(super) fn pending(&self, segment: u64) -> bool {
        let g = self.shared.0.lock();
        g.asked.as_ref().is_some_and(|s| s.segment == segment) || g.busy == Some(segment)
    }

    /// Waits until no step for `segment` is asked for or being written,
    /// then returns the new end if one was made.
    pub(super) fn wait(&self, segment: u64) -> Option<u64> {
        let (lock, cv) = &*self.shared;
        let mut g = lock.lock();
        while g.asked.as_ref().is_some_and(|s| s.segment == segment) || g.busy == Some(segment) {
            cv.wait(&mut g);
        }
        match g.done {
            Some((s, to)) if s == segment => {
                g.done = None;
                Some(to)
            }
            _ => None,
        }
    }

    /// Asks the thread to write zeros for `from..to` of `segment` (file
    /// `path`), starting the thread on first use. Returns false (and
    /// disables background growth) if the thread cannot be started.
    pub(super) fn ask(&self, segment: u64, path: String, from: u64, to: u64) -> bool {
        debug_assert!(from < to, "a step grows the segment");
        {
            let mut thread = self.thread.lock();
            if thread.is_none() {
                let shared = self.shared.clone();
                let fs = self.fs.clone();
                let spawned = std::thread::Builder::new()
                    .name("statewal-journal-grow".into())
                    .spawn(move || run(&*fs, &shared));
                match spawned {
                    Ok(handle) => *thread = Some(handle),
                    Err(e) => {
                        tracing::warn!(error = %e, "cannot start the journal's growth thread; growing segments inline");
                        self.enabled
                            .store(false, std::sync::atomic::Ordering::Relaxed);
                        return false;
                    }
                }
            }
        }
        let (lock, cv) = &*self.shared;
        lock.lock().asked = Some(Step {
            segment,
            path,
            from,
            to,
        });
        cv.notify_all();
        true
    }

    /// Forgets a step asked for `segment` that the thread has not taken
    /// yet (the segment was sealed by a rotation).
    pub(super) fn forget(&self, segment: u64) {
        let mut g = self.shared.0.lock();
        if g.asked.as_ref().is_some_and(|s| s.segment == segment) {
            g.asked = None;
            self.shared.1.notify_all();
        }
    }
}

impl Drop for Grower {
    fn drop(&mut self) {
        {
            let (lock, cv) = &*self.shared;
            lock.lock().stop = true;
            cv.notify_all();
        }
        // Joined, so no zeros land in a segment after its store is gone.
        if let Some(handle) = self.thread.lock().take() {
            let _ = handle.join();
        }
    }
}

/// The thread: takes each step, writes and syncs its zeros, reports it done.
fn run(fs: &dyn Fs, shared: &(Mutex<State>, Condvar)) {
    let (lock, cv) = shared;
    loop {
        let step = {
            let mut g = lock.lock();
            loop {
                if g.stop {
                    return;
                }
                if let Some(step) = g.asked.take() {
                    g.busy = Some(step.segment);
                    break step;
                }
                cv.wait(&mut g);
            }
        };
        // A panic (a bug in a filesystem layer) must not leave `busy` set:
        // a writer waiting for this step would wait for ever.
        let result =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| write_zeros(fs, &step)));
        let mut g = lock.lock();
        g.busy = None;
        match result {
            Ok(Ok(())) => g.done = Some((step.segment, step.to)),
            // The writer grows inline when it finds no new end; what was
            // written here is zeros past its records either way.
            Ok(Err(e)) => tracing::warn!(error = %e, "growing a journal segment ahead failed"),
            Err(_) => tracing::error!("growing a journal segment ahead panicked"),
        }
        cv.notify_all();
    }
}

/// Writes zeros over `from..to`, a chunk at a time, each synced.
fn write_zeros(fs: &dyn Fs, step: &Step) -> crate::Result<()> {
    let mut file = fs.open(&step.path, OpenMode::Existing)?;
    let zeros = vec![0u8; CHUNK_BYTES.min(step.to - step.from) as usize];
    let mut at = step.from;
    while at < step.to {
        let n = (step.to - at).min(CHUNK_BYTES);
        file.write_all_at(at, &zeros[..n as usize])?;
        // Sync each chunk: the zeros become allocated, written blocks, so
        // the records written over them later need data-only syncs, and a
        // writer's sync meanwhile never has more than a chunk of them to
        // flush. (Not a durability step: zeros carry nothing.)
        file.sync_data()?;
        at += n;
    }
    Ok(())
}
