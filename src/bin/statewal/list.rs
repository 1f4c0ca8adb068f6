//! `list`: the tasks a [`TaskQuery`] selects, as a table or JSON Lines.
//! The flags map one to one onto the query's fields, so every backend
//! answers the same flags the same way, in the query's one order.

use crate::Cli;
use crate::out::{count, json_line};
use clap::Args;
use statewal::{Result, Task, TaskQuery, TaskStatus};
use std::process::ExitCode;
use time::OffsetDateTime;

/// `list`'s filters and paging.
#[derive(Args, Debug, Clone, Default)]
pub struct ListArgs {
    /// Only tasks with these statuses, comma-separated (e.g. completed,failed).
    #[arg(long, value_name = "S1,S2", value_delimiter = ',', value_parser = crate::values::status())]
    pub status: Vec<TaskStatus>,
    /// Only tasks whose "tool" is exactly T.
    #[arg(long, value_name = "T")]
    pub tool: Option<String>,
    /// Only tasks updated strictly after this time (RFC 3339, e.g. 2026-12-01T00:00:00Z).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub updated_after: Option<OffsetDateTime>,
    /// Only tasks updated strictly before this time (RFC 3339).
    #[arg(long, value_name = "RFC3339", value_parser = parse_rfc3339)]
    pub updated_before: Option<OffsetDateTime>,
    /// Print at most N tasks.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_count)]
    pub limit: Option<usize>,
    /// Skip the first N tasks of the order.
    #[arg(long, value_name = "N", allow_hyphen_values = true, value_parser = parse_count, default_value_t = 0)]
    pub offset: usize,
}

impl ListArgs {
    /// The query these flags describe.
    pub fn query(&self) -> TaskQuery {
        let mut q = TaskQuery::new().offset(self.offset);
        for s in &self.status {
            q = q.status(*s);
        }
        if let Some(tool) = &self.tool {
            q = q.tool(tool.clone());
        }
        if let Some(t) = self.updated_after {
            q = q.updated_after(t);
        }
        if let Some(t) = self.updated_before {
            q = q.updated_before(t);
        }
        if let Some(n) = self.limit {
            q = q.limit(n);
        }
        q
    }
}

/// Prints the selected tasks: JSON Lines with `json` (one task per line, so
/// `jq` and `grep` take them one at a time), else a table.
pub fn run(cli: &Cli, json: bool, args: &ListArgs) -> Result<ExitCode> {
    let store = crate::commands::open_readonly(cli)?;
    let tasks = store.query_tasks(&args.query())?;
    if json {
        for t in &tasks {
            json_line(t)?;
        }
    } else {
        print_table(&tasks)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// An RFC 3339 time for `--updated-after` and `--updated-before` (clap
/// names the flag in front of the message).
pub fn parse_rfc3339(s: &str) -> std::result::Result<OffsetDateTime, String> {
    OffsetDateTime::parse(s.trim(), &time::format_description::well_known::Rfc3339).map_err(|e| {
        format!("not an RFC 3339 time ({e}); write it like 2026-12-01T00:00:00Z or 2026-12-01T09:30:00.5+01:00")
    })
}

/// A count of tasks for `--limit` and `--offset`.
fn parse_count(s: &str) -> std::result::Result<usize, String> {
    s.trim()
        .parse()
        .map_err(|_| "not a count of tasks: give a whole number, 0 or more".to_string())
}

/// One line per task, columns padded by characters. Kept by hand rather than
/// through a table crate (docs/decisions.md): one line per task is what
/// `grep` and `awk` want, and `--json` is there for anything more.
fn print_table(tasks: &[Task]) -> Result<()> {
    let w = tasks
        .iter()
        .map(|t| t.id().chars().count())
        .max()
        .unwrap_or(2)
        .max(2);
    // As wide as the longest stamp: writers differ in precision.
    let u = tasks
        .iter()
        .filter_map(|t| t.updated_at_str())
        .map(|s| s.chars().count())
        .max()
        .unwrap_or(0)
        .max(7);
    outln!(
        "{:<w$}  {:<11}  {:<u$}  DESCRIPTION",
        "ID",
        "STATUS",
        "UPDATED"
    );
    for t in tasks {
        // A line feed or tab in a description would break the one-line rows;
        // control characters are shown escaped.
        let mut desc = String::new();
        for c in t.description().unwrap_or("").chars().take(60) {
            if c.is_control() {
                desc.extend(c.escape_default());
            } else {
                desc.push(c);
            }
        }
        outln!(
            "{:<w$}  {:<11}  {:<u$}  {}",
            t.id(),
            t.status().as_str(),
            t.updated_at_str().unwrap_or("-"),
            desc
        );
    }
    outln!("{}", count(tasks.len(), "task"));
    Ok(())
}
