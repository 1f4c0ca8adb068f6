//! Change events: what a subscriber hears of this store's task changes.

use super::Backend;
use statewal::{Change, ChangeKind, Event, Store, Task};
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
    let mut seqs = vec![
        store.put_task(Task::new("a")).unwrap(),
        store.put_task(Task::new("a")).unwrap(),
    ];
    store.put_task_if(Task::new("a"), Some(7)).unwrap_err();
    let batch = store
        .transaction(|tx| {
            tx.put_task(Task::new("b")).delete_task("a");
            Ok(())
        })
        .unwrap();
    store.delete_task("missing").unwrap_err();
    seqs.push(store.put_task_if(Task::new("b"), Some(1)).unwrap());
    seqs.push(store.archive_task("b").unwrap());
    store.put_session(serde_json::json!({"id": "s"})).unwrap();
    seqs.push(store.put_task(Task::new("a")).unwrap());
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
    // A single write's change carries the position the write returned; a
    // batch's changes end at the batch's position (on the journal they
    // share it, on PostgreSQL each has its own).
    let (alone, in_batch): (Vec<&Change>, Vec<&Change>) = got
        .iter()
        .partition(|c| !(2..4).contains(&position(&got, c)));
    assert_eq!(alone.iter().map(|c| c.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(in_batch.last().map(|c| c.seq), Some(batch));
    assert!(in_batch.iter().all(|c| c.seq <= batch && c.seq > seqs[1]));
}

/// Where `c` is in `all`.
fn position(all: &[Change], c: &Change) -> usize {
    all.iter()
        .position(|x| std::ptr::eq(x, c))
        .expect("one of them")
}

/// A subscriber given at open hears the store's own task changes.
pub fn a_subscriber_given_at_open_hears_changes(b: &Backend) {
    let (tx, rx) = mpsc::channel();
    let tx = Mutex::new(tx);
    let store = Store::open_with_subscriber(b.options(), move |e| {
        if let Event::TaskChanged(c) = e {
            let _ = tx.lock().unwrap().send(c.clone());
        }
    })
    .unwrap();
    store.put_task(Task::new("x")).unwrap();
    let got = collect(&rx, 1);
    assert_eq!((got[0].id.as_str(), got[0].version), ("x", Some(1)));
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
