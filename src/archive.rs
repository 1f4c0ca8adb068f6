//! Cleaning up: [`crate::Store::clean`] moves finished tasks older than a threshold
//! into `archive/tasks-<YYYY>-<MM>.jsonl`, one JSON line each, through the
//! journal.
//!
//! **Invariant:** an archived task is written to the archive exactly once and
//! is never lost. Each task travels in one `archive_task` record that both
//! removes it from the state and carries its line with the byte offset the
//! line starts at; the checkpoint writes the line at exactly that offset and
//! syncs the archive before `state.json` stops holding the task. Replaying
//! the record after a crash writes the same bytes at the same place.

use crate::engine::Engine;
use crate::engine::journal::{JournalEngine, Pending};
use crate::error::{ErrorKind, Result};
use crate::model::{Task, TaskStatus};
use serde::Serialize;
use std::time::Duration;
use time::OffsetDateTime;

/// The statuses [`crate::Store::clean`] archives when given none.
pub const CLEAN_STATUSES_DEFAULT: [TaskStatus; 3] = [
    TaskStatus::Completed,
    TaskStatus::Failed,
    TaskStatus::Cancelled,
];

/// What [`crate::Store::clean`] archived, or with `dry_run` would archive.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct CleanReport {
    /// The ids of the tasks archived, sorted.
    pub archived: Vec<String>,
    /// Bytes of JSON lines written to the archive.
    pub bytes: u64,
    /// Nothing was changed; `archived` and `bytes` say what would have been.
    pub dry_run: bool,
    /// The archive file the lines go to, relative to the state directory.
    pub archive_file: String,
}

/// `now - older_than`, or the earliest time there is when that lies before
/// it: then no task is old enough and nothing is archived.
//
// Regression (issue 8, part 5): `Store::clean` with a huge `Duration` (and
// `statewal clean --older-than 1000000w`) panicked on the subtraction's
// overflow.
fn cutoff(now: OffsetDateTime, older_than: Duration) -> OffsetDateTime {
    time::Duration::try_from(older_than)
        .ok()
        .and_then(|d| now.checked_sub(d))
        .unwrap_or(time::PrimitiveDateTime::MIN.assume_utc())
}

/// Whether an age reaches back no further than the earliest time a task can
/// carry (year 0000, where RFC 3339 starts), counted from now. `statewal
/// clean` refuses a longer one as out of range.
pub fn age_in_range(older_than: Duration) -> bool {
    let earliest = time::macros::datetime!(0000-01-01 0:00 UTC);
    cutoff(OffsetDateTime::now_utc(), older_than) >= earliest
}

/// When a task last moved, for cleaning: its `completed_at`, else its
/// `updated_at`, else its `created_at`. `None` when the first of them that is
/// present is not a time [`Task::time`] reads, or none is: such a task is
/// never archived.
pub fn task_age_reference(task: &Task) -> Option<OffsetDateTime> {
    let key = ["completed_at", "updated_at", "created_at"]
        .into_iter()
        .find(|k| task.get(k).is_some_and(|v| !v.is_null()))?;
    task.time(key)
}

impl JournalEngine {
    /// [`crate::Store::clean`] on the journal engine.
    pub(crate) fn clean(
        &self,
        older_than: Duration,
        statuses: &[TaskStatus],
        dry_run: bool,
    ) -> Result<CleanReport> {
        let statuses = if statuses.is_empty() {
            &CLEAN_STATUSES_DEFAULT[..]
        } else {
            statuses
        };
        let now = OffsetDateTime::now_utc();
        let cutoff = cutoff(now, older_than);
        let old: Vec<Task> = Engine::list_tasks(self)?
            .into_iter()
            .filter(|t| statuses.contains(&t.status()))
            .filter(|t| task_age_reference(t).is_some_and(|at| at < cutoff))
            .collect();
        let mut report = CleanReport {
            archived: Vec::new(),
            bytes: 0,
            dry_run,
            archive_file: crate::fs::join(
                crate::layout::ARCHIVE_DIR,
                &crate::layout::archive_file(now.year(), now.month() as u8),
            ),
        };
        if dry_run {
            for task in old {
                let line = serde_json::to_vec(&task).expect("serializing a task cannot fail");
                report.bytes += line.len() as u64 + 1;
                report.archived.push(task.id().to_string());
            }
            return Ok(report);
        }
        let mut last: Option<Pending<'_>> = None;
        for task in old {
            match self.submit_archive(task.id()) {
                Ok((pending, bytes)) => {
                    report.bytes += bytes;
                    report.archived.push(task.id().to_string());
                    last = Some(pending);
                }
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            }
        }
        // Records are durable in order, so waiting for the last one waits
        // for them all with a single sync.
        if let Some(pending) = last {
            pending.wait()?;
            self.checkpoint()?;
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Regression (issue 8, part 5): a huge age overflowed the subtraction.
    #[test]
    fn huge_ages_saturate() {
        let now = OffsetDateTime::now_utc();
        for age in [Duration::MAX, Duration::from_secs(1_000_000 * 7 * 86_400)] {
            assert_eq!(cutoff(now, age), time::PrimitiveDateTime::MIN.assume_utc());
            assert!(!age_in_range(age));
        }
        assert!(age_in_range(Duration::from_secs(52 * 7 * 86_400)));
    }

    #[test]
    fn the_first_timestamp_present_counts() {
        let mut t = Task::new("a");
        assert!(task_age_reference(&t).is_none());
        t.set("created_at", "2020-01-01T00:00:00Z").unwrap();
        t.set("completed_at", "2026-01-01T00:00:00.000Z").unwrap();
        assert_eq!(task_age_reference(&t).unwrap().year(), 2026);
        t.set("completed_at", "yesterday").unwrap();
        assert!(task_age_reference(&t).is_none());
    }
}
