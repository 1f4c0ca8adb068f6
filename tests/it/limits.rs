//! Size limits are enforced before anything is journaled.

use crate::util::*;
use statewal::{ErrorKind, Store};

// Guards: a task larger than task_bytes_max is refused with TooLarge and
// leaves nothing behind: not in memory, not in the journal, not after reopen.
#[test]
fn oversized_task_is_refused_and_not_stored() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(crash_opts(dir.path()).task_bytes_max(1024)).unwrap();
    store.put_task(task("small")).unwrap();
    let records = store.stats().unwrap().records;

    let mut big = task("big");
    big.set_description("x".repeat(2048));
    let msg = check_err(store.put_task(big.clone()), ErrorKind::TooLarge);
    assert!(
        msg.contains("1024"),
        "the message should name the limit: {msg}"
    );
    assert_eq!(store.get_task("big").unwrap(), None);
    assert_eq!(
        store.stats().unwrap().records,
        records,
        "the oversized task was journaled"
    );

    // Replacing an existing task with an oversized one keeps the old one.
    let mut big_small = big.clone();
    big_small.set("id", "small").unwrap();
    check_err(store.put_task(big_small), ErrorKind::TooLarge);
    assert_eq!(store.get_task("small").unwrap(), Some(task("small")));
    check_err(
        store.append_log("s", &"y".repeat(2048)),
        ErrorKind::TooLarge,
    );
    store.checkpoint().unwrap();
    drop(store);

    assert!(!dir.path().join("tasks/big.json").exists());
    assert!(!dir.path().join("logs/session_s.log").exists());
    let store = Store::open(crash_opts(dir.path()).task_bytes_max(1024)).unwrap();
    check_tasks(&store, &["small".to_string()]);
}
