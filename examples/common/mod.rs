//! What the benchmark examples share (`crypto_bench`, `replica_bench`,
//! `pg_bench`): the task they put, and the median they report. Included
//! with `#[path]`; not an example of its own.

#![allow(dead_code)]

use statewal::Task;

/// The size of a benchmark task's JSON: about what a coding agent's task
/// with a short description takes.
pub const TASK_BYTES: usize = 512;

/// A task of about [`TASK_BYTES`] bytes with id `id`.
pub fn task(id: &str) -> Task {
    let head =
        format!(r#"{{"id":"{id}","status":"in_progress","tool":"CLAUDECODE","description":""#);
    let pad = TASK_BYTES.saturating_sub(head.len() + 2);
    let json = format!("{head}{}\"}}", "x".repeat(pad));
    Task::from_json(json.as_bytes()).expect("the benchmark task parses")
}

/// The median of `v` (the mean of the two middle values for an even
/// count; NaN for none). Sorts `v`.
pub fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}
