//! Concurrent writers share journal syncs.

use crate::util::*;
use statewal::Store;
use std::sync::Arc;

const THREADS: usize = 8;
const PUTS: usize = 50;

// Guards: under the default SyncBeforeAck policy, concurrent put_task calls
// are committed in groups (fewer syncs than puts) and every one of them is
// durable: all are present after a crash and reopen.
#[test]
fn concurrent_puts_share_syncs_and_all_survive() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_crashy(dir.path()));
    let handles: Vec<_> = (0..THREADS)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..PUTS {
                    store.put_task(task(&format!("w{t}_{i}"))).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let stats = store.stats().unwrap();
    let total = (THREADS * PUTS) as u64;
    assert_eq!(stats.records, total);
    assert!(
        stats.journal_syncs > 0,
        "acknowledged writes were never synced"
    );
    assert!(
        stats.journal_syncs < total,
        "no group commit: {} syncs for {total} puts",
        stats.journal_syncs
    );
    drop(Arc::try_unwrap(store).expect("threads are done"));

    let store = Store::open(crash_opts(dir.path())).unwrap();
    assert_eq!(store.recovery_report().unwrap().records_replayed, total);
    let expected: Vec<String> = (0..THREADS)
        .flat_map(|t| (0..PUTS).map(move |i| format!("w{t}_{i}")))
        .collect();
    check_tasks(&store, &expected);
}
