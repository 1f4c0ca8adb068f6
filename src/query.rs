//! [`TaskQuery`]: which tasks `list` returns, and in what order. One
//! definition for every engine: the journal engine filters its in-memory
//! tasks with [`TaskQuery::matches`] and sorts by [`TaskQuery::order_key`];
//! the PostgreSQL engine translates the same fields to SQL.

use crate::model::{Task, TaskStatus};
use time::OffsetDateTime;

/// A selection of tasks: by status, tool and update time, ordered by
/// `(updated_at, id)`, then paged by `offset` and `limit`.
///
/// The order is by the task's [`Task::updated_at`] ascending, tasks without
/// a readable `updatedAt` last, then by id (byte order) to break ties, so
/// pages never overlap or skip while the store is unchanged. The time
/// bounds are exclusive, and a task without a readable `updatedAt` matches
/// no time bound.
///
/// ```
/// use statewal::{TaskQuery, TaskStatus};
/// let q = TaskQuery::new()
///     .status(TaskStatus::Pending)
///     .status(TaskStatus::InProgress)
///     .tool("claude")
///     .limit(10);
/// assert_eq!(q.statuses, [TaskStatus::Pending, TaskStatus::InProgress]);
/// ```
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct TaskQuery {
    /// Only tasks with one of these statuses; empty: any status.
    pub statuses: Vec<TaskStatus>,
    /// Only tasks whose `"tool"` is exactly this.
    pub tool: Option<String>,
    /// Only tasks updated strictly after this moment.
    pub updated_after: Option<OffsetDateTime>,
    /// Only tasks updated strictly before this moment.
    pub updated_before: Option<OffsetDateTime>,
    /// At most this many tasks; `None`: all.
    pub limit: Option<usize>,
    /// Skip this many tasks of the ordered selection first.
    pub offset: usize,
}

impl TaskQuery {
    /// Every task, in `(updated_at, id)` order.
    pub fn new() -> TaskQuery {
        TaskQuery::default()
    }

    /// Adds a status the task may have.
    pub fn status(mut self, status: TaskStatus) -> TaskQuery {
        self.statuses.push(status);
        self
    }

    /// Only tasks run by this tool.
    pub fn tool(mut self, tool: impl Into<String>) -> TaskQuery {
        self.tool = Some(tool.into());
        self
    }

    /// Only tasks updated strictly after `t`.
    pub fn updated_after(mut self, t: OffsetDateTime) -> TaskQuery {
        self.updated_after = Some(t);
        self
    }

    /// Only tasks updated strictly before `t`.
    pub fn updated_before(mut self, t: OffsetDateTime) -> TaskQuery {
        self.updated_before = Some(t);
        self
    }

    /// At most `n` tasks.
    pub fn limit(mut self, n: usize) -> TaskQuery {
        self.limit = Some(n);
        self
    }

    /// Skips the first `n` tasks of the ordered selection.
    pub fn offset(mut self, n: usize) -> TaskQuery {
        self.offset = n;
        self
    }

    /// Whether `task` passes the filters (not the paging).
    pub fn matches(&self, task: &Task) -> bool {
        if !self.statuses.is_empty() && !self.statuses.contains(&task.status()) {
            return false;
        }
        if let Some(tool) = &self.tool
            && task.tool() != Some(tool.as_str())
        {
            return false;
        }
        if self.updated_after.is_none() && self.updated_before.is_none() {
            return true;
        }
        let Some(at) = task.updated_at() else {
            return false;
        };
        self.updated_after.is_none_or(|t| at > t) && self.updated_before.is_none_or(|t| at < t)
    }

    /// The sort key of the query's order: tasks without a readable
    /// `updatedAt` after every task with one, then by id.
    pub fn order_key(task: &Task) -> (bool, Option<OffsetDateTime>, &str) {
        key(task.updated_at(), task)
    }

    /// The whole query over tasks in memory: the ones that match, in the
    /// query's order, then the page. Each task's `updatedAt` is parsed once,
    /// not at every comparison of the sort.
    pub(crate) fn select(&self, tasks: impl IntoIterator<Item = Task>) -> Vec<Task> {
        let mut picked: Vec<(Option<OffsetDateTime>, Task)> = tasks
            .into_iter()
            .filter(|t| self.matches(t))
            .map(|t| (t.updated_at(), t))
            .collect();
        picked.sort_unstable_by(|(a, x), (b, y)| key(*a, x).cmp(&key(*b, y)));
        picked
            .into_iter()
            .skip(self.offset)
            .take(self.limit.unwrap_or(usize::MAX))
            .map(|(_, t)| t)
            .collect()
    }
}

/// [`TaskQuery::order_key`] with the time already read. Ids are unique, so
/// no two tasks have the same key and an unstable sort gives one order.
fn key(at: Option<OffsetDateTime>, task: &Task) -> (bool, Option<OffsetDateTime>, &str) {
    (at.is_none(), at, task.id())
}
