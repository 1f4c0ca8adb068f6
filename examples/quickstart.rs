//! The library in one screen: open a store, write tasks (each durable when
//! its call returns), read them back, batch two writes atomically, and
//! reopen to see that everything survived.
//!
//! Run it with `cargo run --example quickstart`.

use statewal::{Options, Store, Task, TaskQuery, TaskStatus};

fn main() -> statewal::Result<()> {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let opts = Options::new(dir.path()).stamp_times(true);

    let store = Store::open(opts.clone())?;
    let mut task = Task::new("build");
    task.set_description("Compile the project");
    task.set_status(TaskStatus::InProgress);
    let seq = store.put_task(task)?;
    println!("put build: durable at sequence {seq}");

    // Both writes or neither, even across a crash.
    store.transaction(|tx| {
        tx.put_task(Task::new("test"));
        tx.put_task(Task::new("deploy"));
        Ok(())
    })?;

    let running = store.query_tasks(&TaskQuery::new().status(TaskStatus::InProgress))?;
    println!(
        "in progress: {:?}",
        running.iter().map(|t| t.id()).collect::<Vec<_>>()
    );
    store.shutdown()?; // A final checkpoint: tasks/<id>.json, state.json.

    let store = Store::open(opts)?;
    for task in store.list_tasks()? {
        println!("after reopening: {} ({})", task.id(), task.status());
    }
    println!("the layout is plain JSON in {}", dir.path().display());
    Ok(())
}
