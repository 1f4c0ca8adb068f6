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
    assert_eq!(store.list_tasks().len(), 9);
    assert!(dir.path().join("tasks/t1.json").exists());
    assert!(!dir.path().join("tasks/t3.json").exists());
}
