//! The tasks every engine writes: the same 512-byte JSON per put, built the
//! way `statewal bench` builds them (`benches/baselines.rs`).

use crate::baselines;
use crate::engines::Result;

/// The size of every task, in bytes of JSON.
pub const TASK_BYTES: usize = 512;
/// Task ids each writer cycles through in W1 to W3, so most puts are
/// updates (as in `statewal bench`).
pub const IDS_PER_WRITER: usize = 1000;

/// One task as each engine takes it.
#[derive(Clone, Copy)]
pub struct TaskRef<'a> {
    pub id: &'a str,
    /// The task's JSON: the value the key-value engines store.
    pub json: &'a [u8],
    /// The id and the JSON framed as one log record (a little-endian `u16`
    /// id length, the id, the JSON), for the logs that store no key of
    /// their own (okaywal).
    pub record: &'a [u8],
    /// The task as statewal's API takes it. statewal gets a clone per put,
    /// as `statewal bench` does, and serializes it itself.
    pub task: &'a statewal::Task,
}

struct Item {
    id: String,
    json: Vec<u8>,
    record: Vec<u8>,
    task: statewal::Task,
}

/// `writers` × `IDS_PER_WRITER` tasks, built before any clock starts.
pub struct TaskSet {
    items: Vec<Vec<Item>>,
}

impl TaskSet {
    pub fn new(writers: usize) -> Result<TaskSet> {
        let items = (0..writers)
            .map(|w| {
                (0..IDS_PER_WRITER)
                    .map(|i| item(format!("w{w}-{i}")))
                    .collect::<Result<Vec<_>>>()
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(TaskSet { items })
    }

    /// The task writer `w` puts at its `i`-th put.
    pub fn get(&self, w: usize, i: usize) -> TaskRef<'_> {
        let item = &self.items[w][i % IDS_PER_WRITER];
        TaskRef {
            id: &item.id,
            json: &item.json,
            record: &item.record,
            task: &item.task,
        }
    }
}

fn item(id: String) -> Result<Item> {
    let json = baselines::task_json(&id, TASK_BYTES).into_bytes();
    let task = statewal::Task::from_json(&json)?;
    let record = frame(&id, &json);
    Ok(Item {
        id,
        json,
        record,
        task,
    })
}

/// The W4 task with index `i`: distinct ids, so 100k puts make 100k tasks.
pub fn w4_id(i: usize) -> String {
    format!("task-{i:07}")
}

/// A log record holding `id` and `json`; see [`TaskRef::record`].
pub fn frame(id: &str, json: &[u8]) -> Vec<u8> {
    let len = u16::try_from(id.len()).expect("task ids are short");
    let mut record = Vec::with_capacity(2 + id.len() + json.len());
    record.extend_from_slice(&len.to_le_bytes());
    record.extend_from_slice(id.as_bytes());
    record.extend_from_slice(json);
    record
}

/// The id and JSON of a record made by [`frame`], or `None` if it is not one.
pub fn unframe(record: &[u8]) -> Option<(&str, &[u8])> {
    let len = u16::from_le_bytes(record.get(..2)?.try_into().ok()?) as usize;
    let id = std::str::from_utf8(record.get(2..2 + len)?).ok()?;
    Some((id, &record[2 + len..]))
}
