//! The event stream of `statewal serve --stdio`: the `subscribe` op and
//! the unsolicited `task_changed` (and, on PostgreSQL, `changes_missed`)
//! lines that follow it.
//!
//! The store calls a subscriber on a thread of its own choosing (on the
//! journal engine, the thread whose write committed, which in `serve` is
//! the answer writer; on PostgreSQL, the listener's), so the subscriber
//! must never wait for the client: it only queues the line. A thread of
//! this module writes the queue out, under the lock of the output that the
//! answer writer shares, so an event line never lands inside an answer.
//!
//! **Policy for a client that does not read.** The lines queued and not
//! yet written are bounded by `--max-event-bytes` ([`EVENT_BYTES_QUEUED`]
//! by default). When a change would
//! go past it, the subscription ends: the lines already queued are still
//! written, then one `{"event":"subscription_ended","error":{...}}` line
//! (kind `too_large`), and later changes are not queued. Blocking instead
//! would stall the journal's committing thread (the answer writer itself:
//! a deadlock) or the PostgreSQL listener. A client that subscribes again
//! gets the changes from then on; what it missed in between it reads back
//! (`get_task`, `list_tasks`).

use crate::serve::Output;
use parking_lot::{Condvar, Mutex};
use serde_json::{Value, json};
use statewal::{Event, Store, Subscription};
use std::collections::VecDeque;
use std::io::Write;
use std::sync::Arc;

/// The default of `serve --max-event-bytes`: bytes of event lines queued
/// and not yet written, at most (about 30,000 changes). Past it the
/// subscription ends (see the module doc).
pub const EVENT_BYTES_QUEUED: usize = 4 << 20;
// `serve --help` states the default in bytes.
const _: () = assert!(EVENT_BYTES_QUEUED == 4_194_304);

/// The subscription of one `serve` process and the queue of its lines.
pub struct EventStream {
    shared: Arc<Shared>,
    subscription: Mutex<Option<Subscription>>,
}

struct Shared {
    /// `--max-event-bytes`.
    max: usize,
    queue: Mutex<Queue>,
    ready: Condvar,
}

#[derive(Default)]
struct Queue {
    lines: VecDeque<Vec<u8>>,
    /// Bytes of `lines` and of lines taken by the writer and not yet written.
    bytes: usize,
    /// Which subscription is live: a callback of an earlier one queues nothing.
    generation: u64,
    /// Whether the live subscription still queues changes.
    open: bool,
    /// Lines wait until the `subscribe` answer is written, so no event
    /// line comes before it.
    held: bool,
    /// The server is ending: write what is queued and stop.
    closed: bool,
}

impl EventStream {
    pub fn new(max: usize) -> EventStream {
        EventStream {
            shared: Arc::new(Shared {
                max,
                queue: Mutex::default(),
                ready: Condvar::new(),
            }),
            subscription: Mutex::new(None),
        }
    }

    /// Starts (or restarts) the subscription; its lines wait until
    /// [`EventStream::release`] says the answer is out. Returns the
    /// generation to release.
    pub fn subscribe(&self, store: &Store) -> u64 {
        let generation = {
            let mut q = self.shared.queue.lock();
            q.generation += 1;
            q.open = true;
            q.held = true;
            q.generation
        };
        let shared = Arc::clone(&self.shared);
        let subscription = store.subscribe(move |event| {
            let line = match event {
                Event::TaskChanged(c) => json!({
                    "event": "task_changed",
                    "id": c.id,
                    "kind": c.kind.as_str(),
                    "version": c.version,
                    "seq": c.seq,
                    "origin": c.origin,
                }),
                // PostgreSQL pruned changes before they were read: the
                // client must reload, so it is told, never left to skip.
                Event::ChangesMissed => json!({"event": "changes_missed"}),
                // The replica (--replicate): loud, since the bucket's copy
                // is what a lost machine is restored from.
                Event::ReplicaGap {
                    backlog_bytes,
                    backlog_bytes_max,
                } => json!({
                    "event": "replica_gap",
                    "backlog_bytes": backlog_bytes,
                    "backlog_bytes_max": backlog_bytes_max,
                }),
                Event::ReplicaFailing(error) => {
                    json!({"event": "replica_failing", "error": error})
                }
                Event::ReplicaRecovered => json!({"event": "replica_recovered"}),
                _ => return,
            };
            shared.push(generation, encode(&line));
        });
        // Replacing the guard ends the earlier subscription.
        *self.subscription.lock() = Some(subscription);
        generation
    }

    /// The `subscribe` answer of `generation` is written: its lines may go.
    pub fn release(&self, generation: u64) {
        let mut q = self.shared.queue.lock();
        if q.generation == generation {
            q.held = false;
            self.shared.ready.notify_all();
        }
    }

    /// Ends the subscription and lets [`EventStream::write_events`] return
    /// once it has written what is queued.
    pub fn close(&self) {
        drop(self.subscription.lock().take());
        let mut q = self.shared.queue.lock();
        q.closed = true;
        q.held = false;
        self.shared.ready.notify_all();
    }

    /// Writes the queued lines to `out` until [`EventStream::close`]. A
    /// failed write ends the subscription (the client is gone).
    pub fn write_events(&self, out: &Output) {
        loop {
            let lines = {
                let mut q = self.shared.queue.lock();
                while (q.lines.is_empty() || q.held) && !q.closed {
                    self.shared.ready.wait(&mut q);
                }
                if q.lines.is_empty() {
                    return;
                }
                std::mem::take(&mut q.lines)
            };
            let written: usize = lines.iter().map(Vec::len).sum();
            let result = {
                let mut o = out.lock();
                lines
                    .iter()
                    .try_for_each(|l| o.write_all(l).and_then(|()| o.write_all(b"\n")))
                    .and_then(|()| o.flush())
            };
            let mut q = self.shared.queue.lock();
            q.bytes -= written;
            if let Err(e) = result {
                tracing::warn!(error = %e, "serve: writing events failed; the subscription ends");
                q.open = false;
                q.lines.clear();
                q.bytes = 0;
                return;
            }
        }
    }
}

impl Shared {
    /// Queues one event line of subscription `generation`; never waits.
    fn push(&self, generation: u64, line: Vec<u8>) {
        let mut q = self.queue.lock();
        if !q.open || q.generation != generation || q.closed {
            return;
        }
        if q.bytes + line.len() > self.max {
            q.open = false;
            let message = format!(
                "the client left more than {} bytes of events unread (serve \
                 --max-event-bytes); the subscription ended (subscribe again, then read \
                 back what changed)",
                self.max
            );
            let end = encode(&json!({
                "event": "subscription_ended",
                "error": {"kind": "too_large", "message": message},
            }));
            q.bytes += end.len();
            q.lines.push_back(end);
        } else {
            q.bytes += line.len();
            q.lines.push_back(line);
        }
        self.ready.notify_all();
    }
}

fn encode(v: &Value) -> Vec<u8> {
    // A `Value` with string keys always serializes.
    serde_json::to_vec(v).unwrap_or_default()
}
