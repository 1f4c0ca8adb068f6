//! One process (one store) at a time per directory.

use crate::util::*;
use statewal::{ErrorKind, Store};

// Guards: a second open of a directory that is open fails with Locked and a
// message saying why, and succeeds once the first store is gone.
#[test]
fn second_open_is_locked_until_the_first_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let first = open_crashy(dir.path());
    first.put_task(task("a")).unwrap();

    let msg = check_err(try_open(crash_opts(dir.path())), ErrorKind::Locked);
    assert!(msg.contains("locked by another process"), "{msg}");
    // The refused open must not have disturbed the first store.
    first.put_task(task("b")).unwrap();
    drop(first);

    let second =
        Store::open(crash_opts(dir.path())).expect("open after the first store is dropped");
    check_tasks(&second, &["a".to_string(), "b".to_string()]);
    drop(second);

    // shutdown() also releases the lock.
    let third = open_crashy(dir.path());
    third.shutdown().unwrap();
    let _fourth = open_crashy(dir.path());
}
