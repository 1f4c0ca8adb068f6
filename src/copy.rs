//! Copying a whole store into an empty one, on any engines: [`copy`], and
//! the digest that verifies it, [`digest`] (`statewal copy`).
//!
//! A copy reads everything the source holds through the public API (tasks,
//! session records, session logs, reports), writes it into the destination
//! in batches, then reads both sides back and compares a [`StoreDigest`]:
//! per kind, a count and a CRC-32 over a canonical stream of the items in
//! id order. Why it copies what it copies (task versions restart, the
//! archive stays behind, no resume): `docs/decisions.md`, "2026-12-02,
//! issue 12: copy".
//!
//! **Invariant:** a copy writes nothing to its source, and writes to a
//! destination only after finding it empty.
//!
//! **Invariant:** a copy returns `Ok` only when both sides' digests, read
//! back after every write, are equal.

use crate::error::{Error, ErrorKind, Result};
use crate::readback::LogInfo;
use crate::store::{Mutation, Store};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The most task and session puts in one destination batch. Default of
/// [`CopyOptions::batch_items`].
pub const COPY_BATCH_ITEMS_DEFAULT: usize = 500;

/// The most JSON bytes in one destination batch (a single larger item goes
/// alone): well under the journal's batch record cap, and small enough
/// that a batch never holds much memory.
const BATCH_BYTES_MAX: usize = 4 * 1024 * 1024;

/// How many bytes of a log are read, and appended, at a time.
const LOG_CHUNK_BYTES: u64 = 1024 * 1024;

/// How a [`copy_with`] runs.
#[derive(Debug, Clone)]
pub struct CopyOptions {
    batch_items: usize,
}

impl Default for CopyOptions {
    fn default() -> CopyOptions {
        CopyOptions {
            batch_items: COPY_BATCH_ITEMS_DEFAULT,
        }
    }
}

impl CopyOptions {
    /// The most task and session puts written to the destination in one
    /// atomic batch (at least 1). A batch also stops at 4 MiB of JSON.
    /// Default: [`COPY_BATCH_ITEMS_DEFAULT`] (500).
    pub fn batch_items(mut self, n: usize) -> CopyOptions {
        self.batch_items = n.max(1);
        self
    }
}

/// One kind's part of a [`StoreDigest`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct KindDigest {
    /// How many items.
    pub count: u64,
    /// Their bytes (the JSON of each task, session record and report, each
    /// log's contents), ids not included.
    pub bytes: u64,
    /// CRC-32 (IEEE) of the kind's canonical stream: for each item in
    /// byte order of its key, the key's length (`u32` LE), the key, the
    /// item's length (`u64` LE) and the CRC-32 of its bytes (`u32` LE).
    pub crc32: u32,
}

/// What a store holds, in four counts and checksums; two stores with the
/// same content have equal digests, whatever their engines.
///
/// The key and the bytes of each kind:
/// - tasks: the id, and the task's compact JSON as the store holds it (keys
///   in the writer's order, strings as written);
/// - sessions: the id, and the record's compact JSON, keys in the
///   writer's order;
/// - logs: the file name (`session_<id>.log`, or the original server's
///   `session_<id>_<ms>.log`), and the log's bytes;
/// - reports: the id, and the compact JSON of the report
///   [`Store::get_report`] returns for it (one per id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StoreDigest {
    /// The tasks.
    pub tasks: KindDigest,
    /// The session records.
    pub sessions: KindDigest,
    /// The session logs.
    pub logs: KindDigest,
    /// The reports.
    pub reports: KindDigest,
}

impl StoreDigest {
    /// Each kind by its snake_case name, in a fixed order.
    pub fn kinds(&self) -> [(&'static str, KindDigest); 4] {
        [
            ("tasks", self.tasks),
            ("sessions", self.sessions),
            ("logs", self.logs),
            ("reports", self.reports),
        ]
    }

    /// Whether the store holds nothing of any kind.
    pub fn is_empty(&self) -> bool {
        self.kinds().iter().all(|(_, k)| k.count == 0)
    }
}

/// What [`copy`] did: both sides' digests, read back after the copy (equal,
/// or the copy would have failed), and what it wrote.
#[non_exhaustive]
#[derive(Debug, Clone)]
pub struct CopyReport {
    /// The source's digest, read again after the copy.
    pub source: StoreDigest,
    /// The destination's digest, read back after the copy.
    pub destination: StoreDigest,
    /// Atomic batches of tasks and sessions written.
    pub batches: u64,
    /// Log appends written (a log is copied in pieces of up to 1 MiB).
    pub log_appends: u64,
    /// The original server's reports (`reports/<id>.json`) not copied
    /// because statewal's own report of the same id shadows them (the
    /// destination holds one report per id: the one `get_report` returns),
    /// by file name.
    pub shadowed_reports: Vec<String>,
    /// How long the copy and its verification took.
    pub duration: Duration,
}

/// Copies everything `from` holds into `to`, which must be empty, then
/// verifies the copy: see [`copy_with`]. Default [`CopyOptions`].
///
/// ```
/// # fn main() -> statewal::Result<()> {
/// # let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
/// use statewal::{Options, Store, Task};
/// let from = Store::open(Options::new(a.path()))?;
/// from.put_task(Task::from_json(br#"{"z":1,"id":"t1","a":"2024-01-01T10:00:00.000Z"}"#)?)?;
/// from.append_log("s1", "started\n")?;
/// let to = Store::open(Options::new(b.path()))?;
/// let report = statewal::copy(&from, &to)?;
/// assert_eq!(report.destination, report.source);
/// assert_eq!(report.destination.tasks.count, 1);
/// assert_eq!(to.get_task("t1")?.unwrap().to_json(), from.get_task("t1")?.unwrap().to_json());
/// # Ok(())
/// # }
/// ```
pub fn copy(from: &Store, to: &Store) -> Result<CopyReport> {
    copy_with(from, to, &CopyOptions::default())
}

/// Copies every task, session record, session log and report of `from`
/// into `to`, then reads both back and compares their [`digest`]s.
///
/// - `to` must hold nothing: otherwise [`ErrorKind::InvalidInput`], naming
///   what it holds, and nothing is written. A copy never merges.
/// - Tasks and session records go in atomic batches of up to
///   [`CopyOptions::batch_items`]; each log in appends of up to 1 MiB;
///   each report on its own. Each task keeps its JSON byte for byte and
///   each session record its keys' order; task versions start again at 1
///   in the destination. The journal engine's archive (`archive/`) and
///   PostgreSQL's archive table are not copied.
/// - `from` is only read: open it with [`crate::Options::read_only`] to be
///   sure. Nothing may write it during the copy (a change shows as a
///   mismatch).
/// - A failure after the first write leaves `to` partly written: the error
///   says so. Such a destination is not empty, so a second copy into it is
///   refused; remove it (the directory, or statewal's tables) and copy
///   again.
/// - Digests that differ after the copy are [`ErrorKind::Corrupt`], each
///   kind that differs named with both counts and checksums.
pub fn copy_with(from: &Store, to: &Store, opts: &CopyOptions) -> Result<CopyReport> {
    copy_checked(from, to, opts, &|_| Ok(()))
}

/// [`copy_with`], calling `before_verify` with the destination once every
/// write is done and before the digests are read: the tests' way to change
/// the destination behind the copy's back and see verification catch it.
pub(crate) fn copy_checked(
    from: &Store,
    to: &Store,
    opts: &CopyOptions,
    before_verify: &dyn Fn(&Store) -> Result<()>,
) -> Result<CopyReport> {
    let started = Instant::now();
    refuse_non_empty(to)?;
    let mut written = Written::default();
    let mut shadowed_reports = Vec::new();
    write_all(from, to, opts, &mut written, &mut shadowed_reports).map_err(|e| {
        if written.any() {
            e.context(format!(
                "the copy stopped after writing {} into the destination, which now holds \
                 part of the source: remove it (the directory, or statewal's tables in the \
                 database) before copying again",
                written.describe()
            ))
        } else {
            e.context("the copy stopped before writing anything into the destination")
        }
    })?;
    before_verify(to)?;
    let source = digest(from).map_err(|e| e.context("reading the source back"))?;
    let destination = digest(to).map_err(|e| e.context("reading the destination back"))?;
    check_equal(&source, &destination)?;
    Ok(CopyReport {
        source,
        destination,
        batches: written.batches,
        log_appends: written.log_appends,
        shadowed_reports,
        duration: started.elapsed(),
    })
}

/// What a copy has written so far, for the message of one that fails.
#[derive(Default)]
struct Written {
    tasks: u64,
    sessions: u64,
    batches: u64,
    log_appends: u64,
    reports: u64,
}

impl Written {
    fn any(&self) -> bool {
        self.batches + self.log_appends + self.reports > 0
    }

    fn describe(&self) -> String {
        format!(
            "{}, {}, {} and {}",
            counted(self.tasks, "task"),
            counted(self.sessions, "session record"),
            counted(self.log_appends, "log piece"),
            counted(self.reports, "report")
        )
    }
}

/// "1 task", "2 tasks".
fn counted(n: u64, what: &str) -> String {
    match n {
        1 => format!("1 {what}"),
        n => format!("{n} {what}s"),
    }
}

/// [`ErrorKind::InvalidInput`] naming what `to` holds, unless it is empty.
pub(crate) fn refuse_non_empty(to: &Store) -> Result<()> {
    let held = [
        (to.stats()?.tasks, "task"),
        (to.session_records()?.len(), "session record"),
        (to.list_logs()?.len(), "session log"),
        (to.list_reports()?.len(), "report"),
    ];
    let named: Vec<String> = held
        .iter()
        .filter(|(n, _)| *n > 0)
        .map(|&(n, what)| counted(n as u64, what))
        .collect();
    if named.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::InvalidInput,
        format!(
            "the destination {} is not empty: it holds {}; copy writes only into an empty \
             store and never merges, so nothing was written",
            where_is(to),
            named.join(", ")
        ),
    ))
}

/// The store's place, for messages: its database (password hidden) or
/// its directory.
fn where_is(store: &Store) -> String {
    let opts = store.options();
    match opts.database_url() {
        Some(url) => crate::options::redacted(url),
        None => opts.dir().display().to_string(),
    }
}

fn write_all(
    from: &Store,
    to: &Store,
    opts: &CopyOptions,
    written: &mut Written,
    shadowed: &mut Vec<String>,
) -> Result<()> {
    let mut batch = Batch::new(opts.batch_items);
    for task in from.load_tasks()? {
        let len = task.to_json().len();
        batch.push(to, Mutation::PutTask(task), len, written)?;
    }
    for session in from.session_records()? {
        let len = compact(&session).len();
        batch.push(to, Mutation::PutSession(session), len, written)?;
    }
    batch.flush(to, written)?;
    for log in from.list_logs()? {
        copy_log(from, to, &log, written)?;
    }
    let (reports, dropped) = report_ids(from)?;
    *shadowed = dropped;
    for id in reports {
        let report = from
            .get_report(&id)?
            .ok_or_else(|| vanished("report", &id))?;
        to.save_report(&id, report)
            .map_err(|e| e.context(format!("writing report {id:?}")))?;
        written.reports += 1;
    }
    Ok(())
}

/// Puts gathered for one atomic batch.
struct Batch {
    items_max: usize,
    mutations: Vec<Mutation>,
    bytes: usize,
}

impl Batch {
    fn new(items_max: usize) -> Batch {
        Batch {
            items_max,
            mutations: Vec::new(),
            bytes: 0,
        }
    }

    fn push(&mut self, to: &Store, m: Mutation, len: usize, written: &mut Written) -> Result<()> {
        if !self.mutations.is_empty()
            && (self.mutations.len() >= self.items_max || self.bytes + len > BATCH_BYTES_MAX)
        {
            self.flush(to, written)?;
        }
        self.mutations.push(m);
        self.bytes += len;
        Ok(())
    }

    fn flush(&mut self, to: &Store, written: &mut Written) -> Result<()> {
        if self.mutations.is_empty() {
            return Ok(());
        }
        let mutations = std::mem::take(&mut self.mutations);
        self.bytes = 0;
        let tasks = mutations
            .iter()
            .filter(|m| matches!(m, Mutation::PutTask(_)))
            .count() as u64;
        let sessions = mutations.len() as u64 - tasks;
        to.transaction(|tx| {
            for m in mutations {
                match m {
                    Mutation::PutTask(t) => tx.put_task(t),
                    Mutation::PutSession(s) => tx.put_session(s),
                    _ => unreachable!("a copy batches only task and session puts"),
                };
            }
            Ok(())
        })
        .map_err(|e| e.context("writing a batch of tasks and session records"))?;
        written.batches += 1;
        written.tasks += tasks;
        written.sessions += sessions;
        Ok(())
    }
}

/// The session id under which `log` is appended in the destination: the
/// part of its file name between `session_` and `.log`, so the copy has
/// the same file name (the original server's `session_<id>_<ms>.log`
/// included).
fn log_key(log: &LogInfo) -> Result<&str> {
    crate::readback::log_name_rest(&log.file_name)
}

/// Copies one log in pieces of [`LOG_CHUNK_BYTES`], each cut where a UTF-8
/// character ends (an append takes text).
fn copy_log(from: &Store, to: &Store, log: &LogInfo, written: &mut Written) -> Result<()> {
    let session = log_key(log)?;
    let mut at = 0u64;
    let mut carry: Vec<u8> = Vec::new();
    loop {
        let mut piece = std::mem::take(&mut carry);
        // Where `piece` starts in the log: the carried bytes came just before.
        let piece_at = at - piece.len() as u64;
        let read = from.read_log(&log.file_name, at..at + LOG_CHUNK_BYTES)?;
        at += read.len() as u64;
        let done = read.is_empty();
        piece.extend_from_slice(&read);
        let text = match std::str::from_utf8(&piece) {
            Ok(text) => text,
            Err(e) if e.error_len().is_none() && !done => {
                // A character cut by the chunk's end: the rest comes next.
                carry = piece.split_off(e.valid_up_to());
                std::str::from_utf8(&piece).expect("valid up to here")
            }
            Err(e) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!(
                        "log {:?} is not UTF-8 text at byte {}, and logs are appended as text, \
                         so it cannot be copied",
                        log.file_name,
                        piece_at + e.valid_up_to() as u64
                    ),
                ));
            }
        };
        if !text.is_empty() {
            to.append_log(session, text)
                .map_err(|e| e.context(format!("writing log {:?}", log.file_name)))?;
            written.log_appends += 1;
        }
        if done {
            return Ok(());
        }
    }
}

/// The report ids to copy, sorted, one per id, and the file names of the
/// original server's reports that statewal's own of the same id shadows.
fn report_ids(store: &Store) -> Result<(Vec<String>, Vec<String>)> {
    let mut ids: Vec<String> = Vec::new();
    let mut shadowed = Vec::new();
    let mut reports = store.list_reports()?;
    // Statewal's own first within an id: it is the one `get_report` returns.
    reports.sort_by(|a, b| (&a.id, a.origin).cmp(&(&b.id, b.origin)));
    for r in reports {
        if ids.last() == Some(&r.id) {
            shadowed.push(r.file_name);
        } else {
            ids.push(r.id);
        }
    }
    Ok((ids, shadowed))
}

fn vanished(what: &str, id: &str) -> Error {
    Error::new(
        ErrorKind::NotFound,
        format!("{what} {id:?} was listed and then gone: the store changed during the copy"),
    )
}

/// The digest of everything `store` holds: see [`StoreDigest`]. Reads
/// every task, session record, log and report.
pub fn digest(store: &Store) -> Result<StoreDigest> {
    let mut tasks = Stream::default();
    for task in store.load_tasks()? {
        tasks.item(task.id(), &task.to_json());
    }
    let mut sessions = Stream::default();
    let mut records: Vec<(String, Vec<u8>)> = Vec::new();
    for s in store.session_records()? {
        let id = crate::journal::op::session_id(&s)
            .unwrap_or_default()
            .to_string();
        records.push((id, compact(&s)));
    }
    records.sort();
    for (id, bytes) in &records {
        sessions.item(id, bytes);
    }
    Ok(StoreDigest {
        tasks: tasks.done(),
        sessions: sessions.done(),
        logs: logs_digest(store)?,
        reports: reports_digest(store)?,
    })
}

fn compact(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).expect("serializing a JSON value cannot fail")
}

fn logs_digest(store: &Store) -> Result<KindDigest> {
    let mut logs = store.list_logs()?;
    logs.sort_by(|a, b| a.file_name.cmp(&b.file_name));
    let mut stream = Stream::default();
    for log in &logs {
        let mut crc = crc32fast::Hasher::new();
        let mut len = 0u64;
        loop {
            let read = store.read_log(&log.file_name, len..len + LOG_CHUNK_BYTES)?;
            if read.is_empty() {
                break;
            }
            crc.update(&read);
            len += read.len() as u64;
        }
        stream.item_crc(&log.file_name, len, crc.finalize());
    }
    Ok(stream.done())
}

fn reports_digest(store: &Store) -> Result<KindDigest> {
    let mut stream = Stream::default();
    for id in report_ids(store)?.0 {
        let report = store
            .get_report(&id)?
            .ok_or_else(|| vanished("report", &id))?;
        stream.item(&id, &compact(&report));
    }
    Ok(stream.done())
}

/// One kind's canonical stream, fed in key order.
#[derive(Default)]
struct Stream {
    crc: crc32fast::Hasher,
    count: u64,
    bytes: u64,
}

impl Stream {
    fn item(&mut self, key: &str, bytes: &[u8]) {
        self.item_crc(key, bytes.len() as u64, crc32fast::hash(bytes));
    }

    fn item_crc(&mut self, key: &str, len: u64, crc: u32) {
        let key_len = u32::try_from(key.len()).expect("an id or log name is short");
        self.crc.update(&key_len.to_le_bytes());
        self.crc.update(key.as_bytes());
        self.crc.update(&len.to_le_bytes());
        self.crc.update(&crc.to_le_bytes());
        self.count += 1;
        self.bytes += len;
    }

    fn done(self) -> KindDigest {
        KindDigest {
            count: self.count,
            bytes: self.bytes,
            crc32: self.crc.finalize(),
        }
    }
}

/// [`ErrorKind::Corrupt`] naming each kind whose digests differ.
fn check_equal(source: &StoreDigest, destination: &StoreDigest) -> Result<()> {
    let differ: Vec<String> = source
        .kinds()
        .iter()
        .zip(destination.kinds())
        .filter(|((_, s), (_, d))| s != d)
        .map(|((name, s), (_, d))| {
            format!(
                "{name}: source {} ({} bytes, crc32 {:08x}), destination {} ({} bytes, crc32 {:08x})",
                s.count, s.bytes, s.crc32, d.count, d.bytes, d.crc32
            )
        })
        .collect();
    if differ.is_empty() {
        return Ok(());
    }
    Err(Error::new(
        ErrorKind::Corrupt,
        format!(
            "the copy does not match its source; {}. Either the source changed during the copy \
             or the destination did not keep what was written; do not use the destination",
            differ.join("; ")
        ),
    ))
}
