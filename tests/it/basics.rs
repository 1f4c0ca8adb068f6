use statewal::{Options, Store, Task};

#[test]
fn smoke_put_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Options::new(dir.path())).unwrap();
    for i in 0..10 {
        store.put_task(Task::new(format!("t{i}"))).unwrap();
    }
    store.delete_task("t3").unwrap();
    drop(store);
    let store = Store::open(Options::new(dir.path())).unwrap();
    assert_eq!(store.list_tasks().unwrap().len(), 9);
    assert!(dir.path().join("tasks/t1.json").exists());
    assert!(!dir.path().join("tasks/t3.json").exists());
}

/// Issue 10, target 6: a checkpoint writes task files in proportion to the
/// tasks that changed since the last one, not to the whole state; the task
/// files of unchanged tasks keep their inode (they were not rewritten).
#[test]
fn a_checkpoint_writes_only_the_task_files_that_changed() {
    use std::os::unix::fs::MetadataExt;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(Options::new(dir.path()).checkpoint_interval(None)).unwrap();
    for i in 0..300 {
        store.put_task(Task::new(format!("t{i}"))).unwrap();
    }
    let first = store.checkpoint().unwrap();
    assert_eq!(first.task_files_changed, 300);
    let inode = |i: usize| {
        std::fs::metadata(dir.path().join(format!("tasks/t{i}.json")))
            .unwrap()
            .ino()
    };
    let before: Vec<u64> = (0..300).map(inode).collect();
    for i in [3, 50, 51, 299] {
        let mut t = store.get_task(&format!("t{i}")).unwrap().unwrap();
        t.set_description("changed");
        store.put_task(t).unwrap();
    }
    store.delete_task("t7").unwrap();
    let second = store.checkpoint().unwrap();
    assert_eq!(second.task_files_changed, 5, "4 rewritten and 1 removed");
    assert_eq!(second.tasks_total, 299);
    for (i, ino) in before.iter().enumerate() {
        match i {
            7 => assert!(!dir.path().join("tasks/t7.json").exists()),
            3 | 50 | 51 | 299 => assert_ne!(inode(i), *ino, "t{i} was rewritten"),
            _ => assert_eq!(inode(i), *ino, "t{i} did not change and was rewritten"),
        }
    }
}
