//! The read-back commands: `get-report`, `list-reports`, `list-logs`,
//! `read-log`, `get-session`, and the JSON the stdio protocol answers them
//! with. They only read: the store is opened read-only, as `list` and
//! `show` do, so they take no lock, create nothing and see the journal.

use crate::Cli;
use crate::commands::{open_readonly, pretty};
use serde_json::{Value, json};
use statewal::{Error, ErrorKind, LogInfo, ReportInfo, Result};
use std::io::Write;
use std::process::ExitCode;

/// How much of a log `read-log` reads at a time, so that a large log is
/// printed without being held in memory whole.
const READ_CHUNK_BYTES: u64 = 1 << 20;

/// `get-report ID`: the report's JSON, pretty-printed (compact with `--json`).
pub fn get_report(cli: &Cli, id: &str, json: bool) -> Result<ExitCode> {
    let store = open_readonly(cli)?;
    let report = store
        .get_report(id)?
        .ok_or_else(|| not_found("report", id))?;
    print_value(&report, json)
}

/// `get-session ID`: the session record's JSON, pretty-printed (compact with `--json`).
pub fn get_session(cli: &Cli, id: &str, json: bool) -> Result<ExitCode> {
    let store = open_readonly(cli)?;
    let session = store
        .get_session(id)?
        .ok_or_else(|| not_found("session", id))?;
    print_value(&session.to_value(), json)
}

/// `list-reports`: a table, or JSON Lines with `--json`.
pub fn list_reports(cli: &Cli, json: bool) -> Result<ExitCode> {
    let store = open_readonly(cli)?;
    let reports = store.list_reports()?;
    if json {
        for r in &reports {
            outln!("{}", report_json(r));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let w = width(reports.iter().map(|r| r.id.as_str()));
    outln!(
        "{:<w$}  {:<9}  {:>10}  {:<7}  FILE",
        "ID",
        "ORIGIN",
        "BYTES",
        "STATE"
    );
    for r in &reports {
        outln!(
            "{:<w$}  {:<9}  {:>10}  {:<7}  reports/{}",
            r.id,
            r.origin.as_str(),
            r.size,
            state_word(r.pending),
            r.file_name
        );
    }
    outln!("{}", crate::out::count(reports.len(), "report"));
    Ok(ExitCode::SUCCESS)
}

/// `list-logs`: a table, or JSON Lines with `--json`.
pub fn list_logs(cli: &Cli, json: bool) -> Result<ExitCode> {
    let store = open_readonly(cli)?;
    let logs = store.list_logs()?;
    if json {
        for l in &logs {
            outln!("{}", log_json(l));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let w = width(logs.iter().map(|l| l.session.as_str()));
    outln!(
        "{:<w$}  {:<9}  {:<13}  {:>10}  {:<7}  FILE",
        "SESSION",
        "ORIGIN",
        "STAMP_MS",
        "BYTES",
        "STATE"
    );
    for l in &logs {
        let stamp = l.stamp_ms.map_or("-".to_string(), |s| s.to_string());
        outln!(
            "{:<w$}  {:<9}  {:<13}  {:>10}  {:<7}  logs/{}",
            l.session,
            l.origin.as_str(),
            stamp,
            l.size,
            state_word(l.pending),
            l.file_name
        );
    }
    outln!("{}", crate::out::count(logs.len(), "log"));
    Ok(ExitCode::SUCCESS)
}

/// `read-log FILE [--offset N] [--length N]`: the bytes as they are on
/// standard output, or one JSON object with `--json`.
pub fn read_log(
    cli: &Cli,
    file_name: &str,
    offset: u64,
    length: Option<u64>,
    json: bool,
) -> Result<ExitCode> {
    let store = open_readonly(cli)?;
    let end = length.map(|n| offset.saturating_add(n));
    if json {
        let bytes = store.read_log(file_name, offset..end.unwrap_or(u64::MAX))?;
        outln!("{}", read_log_json(file_name, offset, &bytes));
        return Ok(ExitCode::SUCCESS);
    }
    // In chunks, each a consistent read: a log only grows, so they join up.
    let mut out = std::io::stdout().lock();
    let mut at = offset;
    loop {
        let want = end.map_or(READ_CHUNK_BYTES, |e| (e - at).min(READ_CHUNK_BYTES));
        let bytes = store.read_log(file_name, at..at.saturating_add(want))?;
        out.write_all(&bytes)
            .map_err(|e| Error::io("write", "standard output", e))?;
        at += bytes.len() as u64;
        if (bytes.len() as u64) < want || end == Some(at) {
            break;
        }
    }
    out.flush()
        .map_err(|e| Error::io("write", "standard output", e))?;
    Ok(ExitCode::SUCCESS)
}

/// A report's listing entry, as `list-reports --json` and the protocol's
/// `list_reports` give it.
pub fn report_json(r: &ReportInfo) -> Value {
    json!({"id": r.id, "file_name": r.file_name, "origin": r.origin.as_str(), "size": r.size,
           "on_disk": r.on_disk, "pending": r.pending})
}

/// A log's listing entry, as `list-logs --json` and the protocol's
/// `list_logs` give it.
pub fn log_json(l: &LogInfo) -> Value {
    json!({"session": l.session, "file_name": l.file_name, "origin": l.origin.as_str(),
           "stamp_ms": l.stamp_ms, "size": l.size, "on_disk": l.on_disk, "pending": l.pending})
}

/// What `read-log --json` prints and the protocol's `read_log` answers:
/// the bytes as `text` when they are UTF-8, else as `base64` (standard
/// alphabet, padded), so nothing is lost either way. See docs/decisions.md.
pub fn read_log_json(file_name: &str, offset: u64, bytes: &[u8]) -> Value {
    let mut v = json!({"file_name": file_name, "offset": offset, "length": bytes.len()});
    match std::str::from_utf8(bytes) {
        Ok(text) => v["text"] = json!(text),
        Err(_) => v["base64"] = json!(base64(bytes)),
    }
    v
}

/// The NotFound error of a read-back command.
pub fn not_found(what: &str, id: &str) -> Error {
    Error::new(ErrorKind::NotFound, format!("no {what} with id {id:?}"))
}

fn print_value(v: &Value, compact: bool) -> Result<ExitCode> {
    if compact {
        outln!("{v}");
    } else {
        outln!("{}", pretty(v));
    }
    Ok(ExitCode::SUCCESS)
}

/// `pending` when some of it is journaled but not yet in its file.
fn state_word(pending: bool) -> &'static str {
    if pending { "pending" } else { "on_disk" }
}

fn width<'a>(ids: impl Iterator<Item = &'a str>) -> usize {
    ids.map(|s| s.chars().count()).max().unwrap_or(0).max(7)
}

/// Standard base64 (RFC 4648, section 4) with padding.
fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i)) as usize & 63] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    // The test vectors of RFC 4648, section 10.
    #[test]
    fn base64_matches_the_rfc() {
        let cases = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in cases {
            assert_eq!(base64(plain.as_bytes()), encoded, "{plain:?}");
        }
    }
}
