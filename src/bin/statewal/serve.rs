//! `statewal serve --stdio`: the JSON-lines protocol.
//!
//! The reading thread parses each request and journals mutations at once,
//! without waiting; the writing thread answers in request order and waits
//! for each mutation's durability just before writing its `ok`. Requests
//! that arrive while a sync is under way are therefore committed together
//! by the next sync (group commit across one client's pipeline).
//!
//! On PostgreSQL (`--database`) there is no unwaited journal record: each
//! mutation is its own committed transaction, made in turn by the main loop
//! (`apply_now`), and answered like a read. The answers keep the request
//! order either way.
//!
//! SIGINT and SIGTERM end the server like the end of input does: it stops
//! taking requests, answers every request it has taken, checkpoints,
//! releases the lock and exits 0. A request without an answer was not
//! applied. A second signal during that shutdown exits at once with code 1;
//! the journal makes that safe too.

use crate::Cli;
use crate::out::count;
use crate::serve_events::EventStream;
use serde_json::{Value, json};
use signal_hook::consts::signal;
use signal_hook::flag;
use signal_hook::iterator::Signals;
use statewal::{Error, ErrorKind, Mutation, Pending, Result, Store, Task, TaskQuery};
use std::io::{BufRead, Write};
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc;

/// An answer waiting its turn.
enum Answer<'a> {
    /// A mutation: `ok` once durable.
    Durable { req: Value, pending: Pending<'a> },
    /// Anything already decided.
    Ready(Value),
    /// A decided answer already written out, counted against the answer
    /// budget ([`ANSWER_BYTES_QUEUED`]) until the writer has written it.
    Encoded(Vec<u8>),
    /// `stats`, computed when its turn comes, so it counts the syncs of
    /// every mutation answered before it.
    Stats { req: Value, store: &'a Store },
    /// The answer to `subscribe`: once it is written, the subscription's
    /// event lines may follow.
    Subscribed {
        line: Vec<u8>,
        events: &'a EventStream,
        generation: u64,
    },
}

/// Standard output, shared by the answer writer and the event writer
/// ([`EventStream::write_events`]); each writes whole lines under the lock.
pub type Output = parking_lot::Mutex<std::io::BufWriter<std::io::Stdout>>;

/// What the main loop waits for: a request line, the end of input, or a
/// signal to shut down. One channel carries all three, so a signal is seen
/// even while the stdin thread is blocked in `read()`, and lines taken
/// before the signal are still handled in order.
enum Input {
    /// The lines that were already in the read buffer, taken together: one
    /// hand-over per read rather than per line.
    Lines(Vec<Line>),
    End,
    Signal(i32),
}

/// A request line as the reading thread took it.
enum Line {
    Text(String),
    /// A line refused before parsing: not UTF-8, or longer than the cap.
    Refused(Error),
}

impl Line {
    /// What the line counts against [`BYTES_IN_FLIGHT`]: its bytes, plus a
    /// little for its answer, so that many tiny lines are bounded too.
    fn charge(&self) -> usize {
        ANSWER_CHARGE
            + match self {
                Line::Text(text) => text.len(),
                Line::Refused(_) => 0,
            }
    }
}

/// The default cap on a request line, as a multiple of the task size limit:
/// escaping makes a request line longer than the task it carries.
const LINE_CAP_PER_TASK_LIMIT: u64 = 4;

/// Bytes of request lines taken in and not yet answered: read ahead of the
/// main loop, journaled, or waiting for their answer. Bounded, so a client
/// that writes faster than the server answers, or never reads its answers,
/// is held back by the pipe instead of filling this process's memory. It
/// is also the most one sync commits together for one client (about 7,000
/// requests of 600 bytes). A line longer than this is still taken when
/// nothing else is in flight (lines are capped by `--max-line-bytes`).
//
// Regression (review of issue 8): the queues were unbounded. A client that
// pipelined requests without reading the answers (300 000 puts) grew the
// server to 130 MB and on without limit: every request was read, queued and
// journaled into the unflushed group-commit buffer.
//
// Regression (issue 10): the fix above bounded the queues by count, 16 lines
// and 1024 answers, handed over one line at a time. Under a loaded disk a
// sync then committed at most 1024 requests, and each line cost the reading
// and main threads a wake-up; `statewal bench`'s pipelined row fell to about
// half. Lines now go over in batches, bounded by their bytes.
const BYTES_IN_FLIGHT: usize = 4 << 20;

/// What each line counts against [`BYTES_IN_FLIGHT`] beyond its own bytes.
const ANSWER_CHARGE: usize = 64;

/// Bytes of read answers (`get_task`, `list_tasks`, `read_log`, ...) built
/// and not yet written. A line's charge does not cover its answer, and a
/// 20-byte `list_tasks` can answer with megabytes: without this bound a
/// client that sends reads and never reads the answers grew the server to
/// gigabytes (review of issue 10). The main loop waits here, so the waiting
/// is on the writer alone, which always has these answers to write.
const ANSWER_BYTES_QUEUED: usize = 4 << 20;

/// Lines the reading thread gathers into one batch, at most.
const BATCH_BYTES_MAX: usize = 256 << 10;

/// Batches waiting for the main loop (the byte budget is the real bound).
const BATCHES_QUEUED: usize = 64;

/// The byte budget of [`BYTES_IN_FLIGHT`]: the reading thread takes from
/// it before it hands lines over, the answer writer gives back once the
/// answers are written.
struct Budget {
    max: usize,
    used: parking_lot::Mutex<usize>,
    freed: parking_lot::Condvar,
}

impl Budget {
    fn new(max: usize) -> Budget {
        Budget {
            max,
            used: parking_lot::Mutex::new(0),
            freed: parking_lot::Condvar::new(),
        }
    }

    /// Waits until `n` more bytes fit, or nothing is in flight.
    fn take(&self, n: usize) {
        let mut used = self.used.lock();
        while *used > 0 && *used + n > self.max {
            self.freed.wait(&mut used);
        }
        *used += n;
    }

    fn give(&self, n: usize) {
        if n == 0 {
            return;
        }
        let mut used = self.used.lock();
        *used -= n;
        self.freed.notify_one();
    }
}

pub fn run(cli: &Cli, max_line_bytes: Option<u64>, max_event_bytes: usize) -> Result<ExitCode> {
    // Listen before opening, so that a signal during a long recovery still
    // ends in a clean shutdown rather than the default action.
    let (in_tx, in_rx) = mpsc::sync_channel::<Input>(BATCHES_QUEUED);
    listen_for_signals(in_tx.clone())?;
    // The recovery report goes to the log (RUST_LOG=info), not to stderr:
    // the client owns this process's output.
    let store = crate::commands::open_writer(cli)?;
    // Not scoped: on a signal this thread may stay blocked in `read()`, and
    // the process exits without waiting for it.
    let cap = max_line_bytes.unwrap_or_else(|| {
        (store.options().task_limit_bytes() as u64).saturating_mul(LINE_CAP_PER_TASK_LIMIT)
    });
    let cap = usize::try_from(cap).unwrap_or(usize::MAX);
    let budget = Arc::new(Budget::new(BYTES_IN_FLIGHT));
    let answer_budget = Budget::new(ANSWER_BYTES_QUEUED);
    let reader_budget = Arc::clone(&budget);
    std::thread::spawn(move || read_lines(in_tx, cap, &reader_budget));
    // Unbounded: every answer stands for a line the budget let in.
    let (tx, rx) = mpsc::channel::<(Answer<'_>, usize)>();
    let out: Output = parking_lot::Mutex::new(std::io::BufWriter::new(std::io::stdout()));
    let events = EventStream::new(max_event_bytes);
    let (write_result, why) = std::thread::scope(|scope| {
        let event_writer = scope.spawn(|| events.write_events(&out));
        let writer = scope.spawn(|| write_answers(rx, &out, &budget, &answer_budget));
        let why = 'serve: loop {
            match in_rx.recv() {
                Ok(Input::Lines(lines)) => {
                    for line in lines {
                        let charge = line.charge();
                        let answer = match line {
                            Line::Text(text) if text.trim().is_empty() => {
                                budget.give(charge);
                                continue;
                            }
                            Line::Text(text) => handle(&store, &events, &text),
                            // The request's id is in the refused bytes: unknown.
                            Line::Refused(e) => Answer::Ready(error_answer(Value::Null, &e)),
                        };
                        let answer = match answer {
                            Answer::Ready(v) => {
                                let bytes = encode(&v);
                                answer_budget.take(bytes.len());
                                Answer::Encoded(bytes)
                            }
                            other => other,
                        };
                        if tx.send((answer, charge)).is_err() {
                            break 'serve "standard output closed"; // The writer stopped.
                        }
                    }
                }
                Ok(Input::Signal(signal::SIGINT)) => break "SIGINT",
                Ok(Input::Signal(_)) => break "SIGTERM",
                Ok(Input::End) | Err(_) => break "end of input",
            }
        };
        // The writer answers everything already sent before it returns.
        drop(tx);
        let written = writer.join().expect("the answer writer does not panic");
        // Then the events queued so far go out, and no more are taken.
        events.close();
        event_writer
            .join()
            .expect("the event writer does not panic");
        (written, why)
    });
    let stats = store.stats()?;
    // Checkpoint and release the lock.
    store.shutdown()?;
    tracing::info!(
        records = stats.records,
        syncs = stats.journal_syncs,
        "serve: {why}; checkpointed"
    );
    write_result.map_err(|e| Error::io("write", "standard output", e))?;
    Ok(ExitCode::SUCCESS)
}

/// Forwards SIGINT and SIGTERM to the main loop. The first one arms an
/// immediate exit (code 1) for the next, so a stuck shutdown can be cut short.
fn listen_for_signals(tx: mpsc::SyncSender<Input>) -> Result<()> {
    let armed = Arc::new(AtomicBool::new(false));
    let setup = |e: std::io::Error| {
        Error::new(
            ErrorKind::Io,
            format!("installing the SIGINT and SIGTERM handlers failed: {e}"),
        )
    };
    for sig in [signal::SIGINT, signal::SIGTERM] {
        // The exit must be registered before the flag, or the first signal
        // would both arm and fire it.
        flag::register_conditional_shutdown(sig, 1, Arc::clone(&armed)).map_err(setup)?;
        flag::register(sig, Arc::clone(&armed)).map_err(setup)?;
    }
    let mut signals = Signals::new([signal::SIGINT, signal::SIGTERM]).map_err(setup)?;
    std::thread::spawn(move || {
        for sig in signals.forever() {
            if tx.send(Input::Signal(sig)).is_err() {
                break;
            }
        }
    });
    Ok(())
}

/// Reads request lines and hands them to the main loop. A line that is not
/// UTF-8, or is longer than `cap` bytes, is answered with an error and the
/// server goes on.
//
// Regressions (issue 8, part 5): `BufRead::lines` ended the server on one
// line of invalid UTF-8 (every later request went unanswered), and it
// buffered a line whole however long (a 200 MB line took 786 MB resident).
fn read_lines(tx: mpsc::SyncSender<Input>, cap: usize, budget: &Budget) {
    let mut reader = std::io::BufReader::with_capacity(64 << 10, std::io::stdin());
    let mut buf = Vec::new();
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    let mut end = false;
    loop {
        match read_line_capped(&mut reader, cap, &mut buf) {
            Ok(None) => end = true,
            Ok(Some(None)) => batch.push(match String::from_utf8(std::mem::take(&mut buf)) {
                Ok(line) => Line::Text(line),
                Err(e) => Line::Refused(bad(format!(
                    "the line is not UTF-8 (invalid byte at offset {})",
                    e.utf8_error().valid_up_to()
                ))),
            }),
            Ok(Some(Some(len))) => batch.push(Line::Refused(Error::new(
                ErrorKind::TooLarge,
                format!(
                    "the line is {}, more than the limit of {} (serve --max-line-bytes)",
                    count(len, "byte"),
                    count(cap, "byte")
                ),
            ))),
            Err(e) => {
                tracing::error!(error = %e, "reading standard input failed; shutting down");
                end = true;
            }
        }
        batch_bytes += batch.last().map_or(0, Line::charge);
        // Hand the batch over before the next read could block, or once it
        // is large: a client waiting for an answer is never kept waiting.
        if !batch.is_empty()
            && (end || reader.buffer().is_empty() || batch_bytes >= BATCH_BYTES_MAX)
        {
            budget.take(batch_bytes);
            batch_bytes = 0;
            if tx.send(Input::Lines(std::mem::take(&mut batch))).is_err() {
                return;
            }
        }
        if end {
            break;
        }
    }
    let _ = tx.send(Input::End);
}

/// Reads one line into `buf`, without its `\n` (or `\r\n`). `Ok(None)` at the
/// end of input; `Ok(Some(None))` for a line in `buf`; `Ok(Some(Some(len)))`
/// for a line longer than `cap` bytes, which was read to its end and thrown
/// away as it streamed in, so memory never holds more than `cap` of it.
fn read_line_capped(
    r: &mut impl BufRead,
    cap: usize,
    buf: &mut Vec<u8>,
) -> std::io::Result<Option<Option<u64>>> {
    buf.clear();
    let (mut len, mut any, mut over) = (0u64, false, false);
    loop {
        let chunk = match r.fill_buf() {
            Ok(c) => c,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if chunk.is_empty() {
            if !any {
                return Ok(None);
            }
            break; // A last line without a newline.
        }
        any = true;
        let (part, used, ends) = match chunk.iter().position(|&b| b == b'\n') {
            Some(i) => (&chunk[..i], i + 1, true),
            None => (chunk, chunk.len(), false),
        };
        len += part.len() as u64;
        if !over && buf.len() + part.len() > cap {
            over = true;
            // Give the memory back: the line is refused whatever follows.
            *buf = Vec::new();
        }
        if !over {
            buf.extend_from_slice(part);
        }
        r.consume(used);
        if ends {
            break;
        }
    }
    if over {
        return Ok(Some(Some(len)));
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    Ok(Some(None))
}

/// An answer as one compact JSON line, without its newline.
fn encode(v: &Value) -> Vec<u8> {
    // A `Value` always serializes (its keys are strings); the fallback only
    // keeps this free of a panic path.
    serde_json::to_vec(v).unwrap_or_else(|e| {
        serde_json::to_vec(
            &json!({"ok": false, "error": {"kind": "internal", "message": e.to_string()}}),
        )
        .unwrap_or_default()
    })
}

fn write_answers(
    rx: mpsc::Receiver<(Answer<'_>, usize)>,
    out: &Output,
    budget: &Budget,
    answer_budget: &Budget,
) -> std::io::Result<()> {
    let mut next = rx.recv().ok();
    // Bytes of answered lines not yet given back to the budget: given back
    // in one step when the queue runs dry, or every megabyte.
    let mut answered = 0;
    while let Some((answer, charge)) = next {
        let line = match answer {
            Answer::Encoded(bytes) => {
                write_line(out, &bytes)?;
                answer_budget.give(bytes.len());
                None
            }
            Answer::Subscribed {
                line,
                events,
                generation,
            } => {
                write_line(out, &line)?;
                // Flushed before any event line can follow it.
                out.lock().flush()?;
                events.release(generation);
                None
            }
            Answer::Ready(v) => Some(v),
            Answer::Durable { req, pending } => Some(match pending.wait() {
                Ok(seq) => json!({"req": req, "ok": true, "seq": seq}),
                Err(e) => error_answer(req, &e),
            }),
            Answer::Stats { req, store } => Some(match store.stats() {
                Ok(s) => json!({"req": req, "ok": true, "seq": s.last_seq, "records": s.records,
                       "journal_syncs": s.journal_syncs, "tasks": s.tasks}),
                Err(e) => error_answer(req, &e),
            }),
        };
        if let Some(line) = line {
            write_line(out, &encode(&line))?;
        }
        answered += charge;
        if answered >= 1 << 20 {
            budget.give(std::mem::take(&mut answered));
        }
        // Flush when nothing else is queued, so a client waiting on this
        // answer gets it now and a pipelined burst costs one write.
        next = match rx.try_recv() {
            Ok(a) => Some(a),
            Err(_) => {
                out.lock().flush()?;
                budget.give(std::mem::take(&mut answered));
                rx.recv().ok()
            }
        };
    }
    out.lock().flush()
}

fn write_line(out: &Output, line: &[u8]) -> std::io::Result<()> {
    let mut o = out.lock();
    o.write_all(line)?;
    o.write_all(b"\n")
}

fn handle<'a>(store: &'a Store, events: &'a EventStream, line: &str) -> Answer<'a> {
    // A repeated key is refused at every depth: `{"task": {"id": "a", "id": "b"}}`
    // has no one meaning.
    let request: Value = match statewal::__internal::json::parse_str(line) {
        Ok(v) => v,
        Err(e) => {
            return Answer::Ready(error_answer(
                Value::Null,
                &bad(format!("the line is not JSON: {e}")),
            ));
        }
    };
    let req = request.get("req").cloned().unwrap_or(Value::Null);
    match request.get("op").and_then(Value::as_str) {
        Some("stats") => return Answer::Stats { req, store },
        Some("subscribe") => return subscribe(store, events, req),
        _ => {}
    }
    match dispatch(store, &request) {
        Ok(Reply::Durable(pending)) => Answer::Durable { req, pending },
        Ok(Reply::Now(fields)) => {
            let seq = match fields.contains_key("seq") {
                true => None,
                // The position alone: on PostgreSQL, stats() would also
                // count the tasks (a scan) on every read.
                false => match statewal::__internal::last_seq(store) {
                    Ok(seq) => Some(seq),
                    Err(e) => return Answer::Ready(error_answer(req, &e)),
                },
            };
            let mut answer = serde_json::Map::new();
            answer.insert("req".into(), req);
            answer.insert("ok".into(), Value::Bool(true));
            if let Some(seq) = seq {
                answer.insert("seq".into(), json!(seq));
            }
            answer.extend(fields);
            Answer::Ready(Value::Object(answer))
        }
        Err(e) => Answer::Ready(error_answer(req, &e)),
    }
}

/// `subscribe`: `{"req", "ok": true, "seq", "origin"}`, `origin` being
/// this server's instance id (the origin of its own changes); the
/// `task_changed` lines follow it (`serve_events`).
fn subscribe<'a>(store: &'a Store, events: &'a EventStream, req: Value) -> Answer<'a> {
    let seq = match store.stats() {
        Ok(s) => s.last_seq,
        Err(e) => return Answer::Ready(error_answer(req, &e)),
    };
    let generation = events.subscribe(store);
    let line = encode(&json!({"req": req, "ok": true, "seq": seq, "origin": store.instance_id()}));
    Answer::Subscribed {
        line,
        events,
        generation,
    }
}

enum Reply<'a> {
    Durable(Pending<'a>),
    Now(serde_json::Map<String, Value>),
}

fn dispatch<'a>(store: &'a Store, r: &Value) -> Result<Reply<'a>> {
    let op = r
        .get("op")
        .and_then(Value::as_str)
        .ok_or_else(|| bad("the request has no string \"op\"".into()))?;
    let mutation = match op {
        "put_task" => Mutation::PutTask(task_field(r)?),
        "delete_task" => Mutation::DeleteTask(str_field(r, "id")?),
        "append_log" => Mutation::AppendLog {
            session: str_field(r, "session")?,
            text: str_field(r, "text")?,
        },
        "save_report" => Mutation::SaveReport {
            id: str_field(r, "id")?,
            report: field(r, "report")?.clone(),
        },
        "put_session" => Mutation::PutSession(field(r, "session")?.clone()),
        "delete_session" => Mutation::DeleteSession(str_field(r, "id")?),
        "put_task_if" => {
            // No default: a forgotten field must not mean "only if absent".
            let expected = match field(r, "expected_version")? {
                Value::Null => None,
                v => Some(v.as_u64().ok_or_else(|| {
                    bad("\"expected_version\" must be a non-negative integer or null".into())
                })?),
            };
            let seq = store.put_task_if(task_field(r)?, expected)?;
            let version = expected.map_or(1, |v| v + 1);
            return Ok(now([("seq", json!(seq)), ("version", json!(version))]));
        }
        "task_version" => {
            let version = store.task_version(&str_field(r, "id")?)?;
            return Ok(now([("version", json!(version))]));
        }
        "get_task" => {
            let id = str_field(r, "id")?;
            let task = store.get_task(&id)?.ok_or_else(|| {
                Error::new(ErrorKind::NotFound, format!("no task with id {id:?}"))
            })?;
            return Ok(now([(
                "task",
                serde_json::to_value(task).expect("a task serializes"),
            )]));
        }
        "list_tasks" => {
            let tasks = store.query_tasks(&task_query(r)?)?;
            return Ok(now([(
                "tasks",
                serde_json::to_value(tasks).expect("tasks serialize"),
            )]));
        }
        "get_report" => {
            let id = str_field(r, "id")?;
            let report = store
                .get_report(&id)?
                .ok_or_else(|| crate::readback::not_found("report", &id))?;
            return Ok(now([("report", report)]));
        }
        "list_reports" => {
            let reports = store.list_reports()?;
            let reports = reports.iter().map(crate::readback::report_json).collect();
            return Ok(now([("reports", Value::Array(reports))]));
        }
        "list_logs" => {
            let logs = store
                .list_logs()?
                .iter()
                .map(crate::readback::log_json)
                .collect();
            return Ok(now([("logs", Value::Array(logs))]));
        }
        "read_log" => {
            let file = str_field(r, "file_name")?;
            let offset = opt_u64_field(r, "offset")?.unwrap_or(0);
            let end = opt_u64_field(r, "length")?.map_or(u64::MAX, |n| offset.saturating_add(n));
            let bytes = store.read_log(&file, offset..end)?;
            let Value::Object(fields) = crate::readback::read_log_json(&file, offset, &bytes)
            else {
                unreachable!("read_log_json builds an object")
            };
            return Ok(Reply::Now(fields));
        }
        "get_session" => {
            let id = str_field(r, "id")?;
            let session = store
                .get_session(&id)?
                .ok_or_else(|| crate::readback::not_found("session", &id))?;
            return Ok(now([("session", session.into())]));
        }
        "checkpoint" => {
            let s = store.checkpoint()?;
            return Ok(now([
                ("seq", json!(s.seq)),
                ("task_files_changed", json!(s.task_files_changed)),
                ("tasks", json!(s.tasks_total)),
            ]));
        }
        // The live store's, replica included (`--replicate`): what a
        // separate `statewal health` or `metrics` process cannot see.
        "health" => {
            let h = serde_json::to_value(store.health()).map_err(internal_json)?;
            return Ok(now([("health", h)]));
        }
        "metrics" => {
            let m = serde_json::to_value(store.metrics()?).map_err(internal_json)?;
            return Ok(now([("metrics", m)]));
        }
        other => return Err(bad(format!("unknown op {other:?}"))),
    };
    if store.options().database_url().is_some() {
        return Ok(now([("seq", json!(apply_now(store, mutation)?))]));
    }
    Ok(Reply::Durable(store.submit(mutation)?))
}

fn internal_json(e: serde_json::Error) -> statewal::Error {
    statewal::Error::new(
        statewal::ErrorKind::Internal,
        format!("cannot encode the answer as JSON: {e}"),
    )
}

/// A mutation through the calls every engine offers, returning once it is
/// committed: the path for engines without [`Store::submit`] (PostgreSQL).
fn apply_now(store: &Store, m: Mutation) -> Result<u64> {
    match m {
        Mutation::PutTask(task) => store.put_task(task),
        Mutation::DeleteTask(id) => store.delete_task(&id),
        Mutation::PutSession(session) => store.put_session(session),
        Mutation::DeleteSession(id) => store.delete_session(&id),
        Mutation::AppendLog { session, text } => store.append_log(&session, &text),
        Mutation::SaveReport { id, report } => store.save_report(&id, report),
        Mutation::ArchiveTask(id) => store.archive_task(&id),
    }
}

fn now<const N: usize>(fields: [(&str, Value); N]) -> Reply<'static> {
    Reply::Now(
        fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect(),
    )
}

fn field<'v>(r: &'v Value, name: &str) -> Result<&'v Value> {
    r.get(name)
        .ok_or_else(|| bad(format!("the request has no \"{name}\" field")))
}

fn str_field(r: &Value, name: &str) -> Result<String> {
    field(r, name)?
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| bad(format!("\"{name}\" must be a string")))
}

/// An optional non-negative integer field; `null` counts as absent.
fn opt_u64_field(r: &Value, name: &str) -> Result<Option<u64>> {
    match r.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .map(Some)
            .ok_or_else(|| bad(format!("\"{name}\" must be a non-negative integer"))),
    }
}

/// `list_tasks`'s optional filters and paging, as `list`'s flags: `status`
/// (an array of status words, or one word), `tool`, `updated_after` and
/// `updated_before` (RFC 3339), `limit` and `offset`; `null` counts as absent.
fn task_query(r: &Value) -> Result<TaskQuery> {
    let present = |name: &str| r.get(name).filter(|v| !v.is_null());
    let mut q = TaskQuery::new();
    if let Some(v) = present("status") {
        let words = match v {
            Value::String(s) => vec![s.as_str()],
            Value::Array(items) => items
                .iter()
                .map(|w| w.as_str().ok_or_else(|| bad(must_be_statuses())))
                .collect::<Result<_>>()?,
            _ => return Err(bad(must_be_statuses())),
        };
        for w in words {
            let status = w
                .parse()
                .map_err(|e: Error| bad(format!("\"status\": {}", e.message())))?;
            q = q.status(status);
        }
    }
    if present("tool").is_some() {
        q = q.tool(str_field(r, "tool")?);
    }
    if let Some(t) = opt_time_field(r, "updated_after")? {
        q = q.updated_after(t);
    }
    if let Some(t) = opt_time_field(r, "updated_before")? {
        q = q.updated_before(t);
    }
    let count =
        |name| opt_u64_field(r, name).map(|n| n.map(|n| usize::try_from(n).unwrap_or(usize::MAX)));
    if let Some(n) = count("limit")? {
        q = q.limit(n);
    }
    if let Some(n) = count("offset")? {
        q = q.offset(n);
    }
    Ok(q)
}

/// An optional RFC 3339 time field; `null` counts as absent.
fn opt_time_field(r: &Value, name: &str) -> Result<Option<time::OffsetDateTime>> {
    match r.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(_) => crate::list::parse_rfc3339(&str_field(r, name)?)
            .map(Some)
            .map_err(|why| bad(format!("\"{name}\" is {why}"))),
    }
}

fn must_be_statuses() -> String {
    "\"status\" must be a status word or an array of them".into()
}

fn task_field(r: &Value) -> Result<Task> {
    serde_json::from_value(field(r, "task")?.clone())
        .map_err(|e| bad(format!("\"task\" is not a valid task: {e}")))
}

fn bad(message: String) -> Error {
    Error::new(ErrorKind::InvalidInput, message)
}

fn error_answer(req: Value, e: &Error) -> Value {
    json!({"req": req, "ok": false, "error": {"kind": e.kind().as_str(), "message": e.to_string()}})
}
