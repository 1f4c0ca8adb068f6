//! File permissions: the state is private to its owner.

#[cfg(unix)]
use crate::util::*;

// Guards: on Unix every file the store creates is 0600 and every directory
// 0700, including the state directory itself when the store creates it.
#[cfg(unix)]
#[test]
fn created_files_are_private() {
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("nested/state");
    let store = statewal::Store::open(crash_opts(&dir)).unwrap();
    store.put_task(task("t1")).unwrap();
    store.put_session(json!({"id": "s1"})).unwrap();
    store.append_log("s1", "hello\n").unwrap();
    store.save_report("r1", json!({})).unwrap();
    store.checkpoint().unwrap();
    store.put_task(task("t2")).unwrap();
    store.checkpoint().unwrap(); // Leaves a backup too.
    store.put_task(task("t3")).unwrap(); // And a journal segment.
    drop(store);

    let mut checked = 0;
    let mut entries: Vec<_> = tree(&dir).into_iter().map(|p| dir.join(p)).collect();
    entries.push(dir.clone());
    entries.push(tmp.path().join("nested"));
    for path in entries {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.permissions().mode() & 0o777;
        let want = if meta.is_dir() { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{} has mode {mode:o}", path.display());
        checked += 1;
    }
    assert!(checked >= 14, "too few files were checked: {checked}");
    assert!(!backups(&dir).is_empty() && !segments(&dir).is_empty());
}
