//! Subscribers see the original design's events.

use crate::util::*;
use statewal::{Event, Store};
use std::sync::{Arc, Mutex};

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
    store.subscribe(f);
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
