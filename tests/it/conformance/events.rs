//! Change events: what a subscriber hears of this store's task changes.

use super::Backend;
use statewal::{Change, ChangeKind, Event, Task};
use std::sync::{Mutex, mpsc};
use std::time::Duration;

/// How long a change may take to arrive (PostgreSQL delivers from its
/// listener's thread, after the write returned).
const ARRIVAL_TIMEOUT: Duration = Duration::from_secs(20);

/// Every task change reaches a subscriber once, with the task's version
/// after it, in commit order per task, carrying this store's origin; an
/// archive is a delete, and a failed write is never announced.
pub fn subscribers_see_changes_in_commit_order(b: &Backend) {
    let store = b.open();
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let _sub = store.subscribe(move |e| {
        if let Event::TaskChanged(c) = e {
            let _ = tx.lock().unwrap().send(c.clone());
        }
    });
    store.put_task(Task::new("a")).unwrap();
    store.put_task(Task::new("a")).unwrap();
    store.put_task_if(Task::new("a"), Some(7)).unwrap_err();
    store
        .transaction(|tx| {
            tx.put_task(Task::new("b")).delete_task("a");
            Ok(())
        })
        .unwrap();
    store.delete_task("missing").unwrap_err();
    store.put_task_if(Task::new("b"), Some(1)).unwrap();
    store.archive_task("b").unwrap();
    store.put_session(serde_json::json!({"id": "s"})).unwrap();
    store.put_task(Task::new("a")).unwrap();
    let got = collect(&rx, 7);
    assert!(
        rx.recv_timeout(Duration::from_millis(300)).is_err(),
        "{}: more changes than writes",
        b.name
    );
    let of = |id: &str| -> Vec<(ChangeKind, Option<u64>)> {
        got.iter()
            .filter(|c| c.id == id)
            .map(|c| (c.kind, c.version))
            .collect()
    };
    use ChangeKind::{Delete, Put};
    assert_eq!(
        of("a"),
        [
            (Put, Some(1)),
            (Put, Some(2)),
            (Delete, None),
            (Put, Some(1))
        ]
    );
    assert_eq!(of("b"), [(Put, Some(1)), (Put, Some(2)), (Delete, None)]);
    assert!(
        got.iter().all(|c| c.origin == store.instance_id()),
        "{got:?}"
    );
    assert!(
        got.windows(2).all(|w| w[0].seq <= w[1].seq),
        "{}: in commit order: {got:?}",
        b.name
    );
}

/// Waits until `n` changes have arrived, or fails after a while.
fn collect(rx: &mpsc::Receiver<Change>, n: usize) -> Vec<Change> {
    let mut got = Vec::new();
    while got.len() < n {
        match rx.recv_timeout(ARRIVAL_TIMEOUT) {
            Ok(c) => got.push(c),
            Err(_) => panic!("only {} of {n} changes arrived: {got:?}", got.len()),
        }
    }
    got
}
