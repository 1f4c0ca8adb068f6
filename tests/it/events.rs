//! Subscribers see the original design's events.

use crate::util::*;
use statewal::{Event, Store, Task};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn recorder() -> (
    Arc<Mutex<Vec<String>>>,
    impl Fn(&Event) + Send + Sync + 'static,
) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let sink = seen.clone();
    (seen, move |e: &Event| {
        sink.lock().unwrap().push(e.name().to_string())
    })
}

// Guards: a subscriber sees "state:saved" when a checkpoint finishes, and
// only then.
#[test]
fn subscriber_sees_state_saved() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    let (seen, f) = recorder();
    let _subscription = store.subscribe(f);
    store.put_task(task("a")).unwrap();
    assert!(
        !seen.lock().unwrap().iter().any(|n| n == "state:saved"),
        "saved before any checkpoint: {:?}",
        seen.lock().unwrap()
    );
    store.checkpoint().unwrap();
    assert_eq!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|n| *n == "state:saved")
            .count(),
        1,
        "{:?}",
        seen.lock().unwrap()
    );
}

// Guards: a subscriber given at open sees "state:loaded" with the recovery
// report.
#[test]
fn open_with_subscriber_sees_state_loaded() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    put_all(&store, &ids("t", 3));
    drop(store);

    let replayed = Arc::new(Mutex::new(None));
    let sink = replayed.clone();
    let (seen, f) = recorder();
    let store = Store::open_with_subscriber(crash_opts(dir.path()), move |e| {
        if let Event::StateLoaded(r) = e {
            *sink.lock().unwrap() = Some(r.records_replayed);
        }
        f(e);
    })
    .unwrap();
    assert_eq!(
        seen.lock().unwrap().first().map(String::as_str),
        Some("state:loaded"),
        "{:?}",
        seen.lock().unwrap()
    );
    assert_eq!(*replayed.lock().unwrap(), Some(3));
    assert_eq!(store.recovery_report().records_replayed, 3);
}

// Guards: dropping the guard `subscribe` returns, or `unsubscribe`, removes
// the subscriber (issue 14: there was no way to remove one).
#[test]
fn dropping_the_subscription_unsubscribes() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_crashy(dir.path());
    let (first, f) = recorder();
    let (second, g) = recorder();
    let kept = store.subscribe(f);
    let dropped = store.subscribe(g);
    store.checkpoint().unwrap();
    drop(dropped);
    store.put_task(task("a")).unwrap();
    store.checkpoint().unwrap();
    assert_eq!(*first.lock().unwrap(), ["state:saved", "state:saved"]);
    assert_eq!(*second.lock().unwrap(), ["state:saved"]);
    kept.unsubscribe();
    store.put_task(task("b")).unwrap();
    store.checkpoint().unwrap();
    assert_eq!(first.lock().unwrap().len(), 2);
}

/// Runs `body` on a thread and fails the test if it has not finished in
/// `secs` seconds: a deadlock fails rather than hangs. (The stuck thread is
/// left behind; the test process ends with the failure.)
fn within(secs: u64, body: impl FnOnce() + Send + 'static) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        body();
        done.send(()).ok();
    });
    match finished.recv_timeout(Duration::from_secs(secs)) {
        Ok(()) => worker.join().unwrap(),
        // The body panicked: join to report its message.
        Err(mpsc::RecvTimeoutError::Disconnected) => worker.join().unwrap(),
        Err(mpsc::RecvTimeoutError::Timeout) => {
            panic!("no answer after {secs} s: a subscriber that calls into the store deadlocked")
        }
    }
}

// Guards: events were sent while the checkpoint held its lock, so a
// subscriber that called back into the store (a read, a put, a checkpoint
// of its own) deadlocked (issue 14). Events are now queued under the locks
// and delivered after.
#[test]
fn a_subscriber_may_call_back_into_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().to_path_buf();
    within(60, move || {
        let store = Arc::new(open_crashy(&path));
        store.put_task(task("a")).unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (inner, sink) = (Arc::downgrade(&store), seen.clone());
        let _subscription = store.subscribe(move |e| {
            let Some(store) = inner.upgrade() else { return };
            if let Event::StateSaved(stats) = e {
                // Read, write and checkpoint from inside the callback. The
                // nested checkpoint's own `state:saved` comes back here, so
                // only the first one writes.
                let a = store.get_task("a").unwrap().expect("a was put");
                sink.lock().unwrap().push((stats.seq, a.id().to_string()));
                if store.get_task("from_subscriber").unwrap().is_none() {
                    store.put_task(Task::new("from_subscriber")).unwrap();
                    store.checkpoint().unwrap();
                }
            }
        });
        store.checkpoint().unwrap();
        assert!(store.get_task("from_subscriber").unwrap().is_some());
        assert_eq!(seen.lock().unwrap().len(), 2, "{:?}", seen.lock().unwrap());
    });
}

// Guards: `state:save-error` carried only the message; it now carries the
// checkpoint's `Error`, its kind and path included (issue 14).
#[cfg(feature = "sim")]
#[test]
fn save_error_carries_the_error() {
    use statewal::ErrorKind;
    use statewal::sim::{FaultKind, SimFs};
    let sim = SimFs::new(7);
    let opts = statewal::Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false);
    let store = Store::open_with_fs(opts, Arc::new(sim.clone()), None).unwrap();
    let kinds = Arc::new(Mutex::new(Vec::new()));
    let sink = kinds.clone();
    let _subscription = store.subscribe(move |e| {
        if let Event::StateSaveError(err) = e {
            sink.lock().unwrap().push(err.kind());
        }
    });
    store.put_task(task("a")).unwrap();
    sim.fail_at(sim.ops(), FaultKind::Enospc, true);
    let err = store.checkpoint().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::StorageFull);
    assert_eq!(*kinds.lock().unwrap(), [ErrorKind::StorageFull]);
}
