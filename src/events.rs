//! Events for subscribers: the original design's `state:saved`,
//! `state:loaded`, `state:save-error` and `autosave:triggered`, and the
//! per-task changes of issue 12 (`task:changed`).
//!
//! **Invariant:** events reach every subscriber in the order they were
//! queued, whichever thread queued them: one thread delivers at a time.

use crate::checkpoint::CheckpointStats;
use crate::recovery::RecoveryReport;
use parking_lot::{Condvar, Mutex, RwLock};
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::ThreadId;

/// Something the store did that subscribers may want to know.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// `state:saved`: a checkpoint finished.
    StateSaved(CheckpointStats),
    /// `state:loaded`: recovery finished (sent to subscribers added with
    /// [`crate::Store::open_with_subscriber`], which exist before the load).
    StateLoaded(Box<RecoveryReport>),
    /// `state:save-error`: a checkpoint failed, with the error it returned
    /// (its `kind()`, path and `source()` included). The journal still holds
    /// every acknowledged write.
    StateSaveError(crate::Error),
    /// `autosave:triggered`: the timer started a checkpoint.
    AutosaveTriggered,
    /// `state:reconciled` (statewal's own): the open decided about copies
    /// of tasks it did not write: the original server's state merged over
    /// statewal's history, or edits of `tasks/<id>.json` imported or set
    /// aside. Sent after `state:loaded`, whose report lists the same. Also
    /// sent by a checkpoint that set aside task files edited while the
    /// store was open (each a [`crate::report::Action::SetAside`]),
    /// before its `state:saved` or `state:save-error`.
    Reconciled(Vec<crate::report::Decision>),
    /// `task:changed` (statewal's own): a task was put, deleted or
    /// archived, sent once the write is durable under the store's sync
    /// policy (acknowledged), in commit order per task. See [`Change`].
    TaskChanged(Change),
    /// `changes:missed` (statewal's own, PostgreSQL only): task changes
    /// were pruned from the database's outbox before this instance read
    /// them (they were older than [`crate::Options::changes_retention`]
    /// while its delivery was held back, by a long transaction or a lost
    /// connection). Some [`Event::TaskChanged`] will never arrive: reload
    /// the tasks you follow. The changes after the gap are still
    /// delivered, after this event.
    ChangesMissed,
    /// `replica:gap` (statewal's own, feature `replicate`): the replica's
    /// disk budget (`Options::replica_backlog_bytes_max`) was exceeded, so
    /// a checkpoint removed journal segments the replica had not shipped.
    /// The bucket lacks their records: point-in-time restore has a gap,
    /// and the replica begins a new generation at its next tick
    /// (`docs/replication.md`, "Disk budget for unshipped segments").
    /// Sent by the checkpoint that removed them, before its `state:saved`.
    ReplicaGap {
        /// Bytes of sealed segments not shipped when the budget was found
        /// exceeded.
        backlog_bytes: u64,
        /// The budget.
        backlog_bytes_max: u64,
    },
    /// `replica:failing` (statewal's own, feature `replicate`): a shipping
    /// tick failed after one that succeeded (or the first tick failed),
    /// with the error, said for a person. Sent once per run of failures,
    /// from the replica's thread; local writes go on regardless.
    ReplicaFailing(String),
    /// `replica:recovered` (statewal's own, feature `replicate`): a tick
    /// shipped everything it found after a `replica:failing`.
    ReplicaRecovered,
}

/// One committed change of one task, as [`Event::TaskChanged`] carries it.
///
/// A record that changes a task more than once (a batch putting it twice)
/// gives one `Change` with the task's state after the record. A write that
/// fails is never announced, even if it stayed in memory until the store is
/// reopened. Changes are delivered in sequence order: a subscriber never
/// sees a task's versions go backwards. What opening the store writes
/// itself (hand edits imported, a merge) is reported by
/// [`Event::StateLoaded`] and [`Event::Reconciled`] instead.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct Change {
    /// The task's id.
    pub id: String,
    /// What happened to it.
    pub kind: ChangeKind,
    /// The task's version after the change ([`crate::Store::task_version`]);
    /// `None` when it is gone.
    pub version: Option<u64>,
    /// The write's position in the engine's change order: the journal's
    /// sequence number (a batch's changes share one).
    pub seq: u64,
    /// The instance that made the change: a random id per open store
    /// (the same in every change this instance makes).
    pub origin: String,
}

/// What a [`Change`] did to its task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum ChangeKind {
    /// The task was inserted or replaced.
    Put,
    /// The task is gone: deleted, or archived (on the journal engine an
    /// archived task leaves the store for `archive/`).
    Delete,
}

impl ChangeKind {
    /// `put` or `delete`.
    pub fn as_str(self) -> &'static str {
        match self {
            ChangeKind::Put => "put",
            ChangeKind::Delete => "delete",
        }
    }
}

impl Event {
    /// The original design's name for the event.
    pub fn name(&self) -> &'static str {
        match self {
            Event::StateSaved(_) => "state:saved",
            Event::StateLoaded(_) => "state:loaded",
            Event::StateSaveError(_) => "state:save-error",
            Event::AutosaveTriggered => "autosave:triggered",
            Event::Reconciled(_) => "state:reconciled",
            Event::TaskChanged(_) => "task:changed",
            Event::ChangesMissed => "changes:missed",
            Event::ReplicaGap { .. } => "replica:gap",
            Event::ReplicaFailing(_) => "replica:failing",
            Event::ReplicaRecovered => "replica:recovered",
        }
    }
}

/// A subscriber callback. It runs on a thread of the store's (the one whose
/// call caused the event, or the auto-save thread) after the store has
/// released its locks, so it may call back into the store, `get_task`,
/// `put_task` and `checkpoint` included. It should still return quickly: the
/// call that caused the event returns only after its subscribers did (unless
/// the call was made by a subscriber: its events follow once that subscriber
/// returns). Events arrive in the order they were queued, whichever thread
/// queued them: one thread at a time delivers.
///
/// To call back into the store, capture a `Weak` reference to it (from an
/// `Arc<Store>`) and upgrade it in the callback. A strong `Arc` captured by
/// the subscriber is a reference cycle: the store is then never dropped,
/// so it never takes its final checkpoint or releases its directory lock.
/// With a `Weak`, the subscriber may end up holding the last reference, and
/// the store is then dropped, and checkpointed, on the thread that
/// delivered the event.
pub type Subscriber = Box<dyn Fn(&Event) + Send + Sync + 'static>;

/// A subscription made by [`crate::Store::subscribe`]: dropping it, or
/// calling [`Subscription::unsubscribe`], removes the subscriber. Once that
/// returns, the subscriber is not called again, except by a delivery that
/// another thread had already started.
#[must_use = "dropping the Subscription removes the subscriber at once"]
pub struct Subscription {
    subscribers: Weak<Subscribers>,
    id: u64,
}

impl Subscription {
    /// Removes the subscriber now; the same as dropping the guard.
    pub fn unsubscribe(self) {}
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Some(subscribers) = self.subscribers.upgrade() {
            subscribers.remove(self.id);
        }
    }
}

impl std::fmt::Debug for Subscription {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscription")
            .field("id", &self.id)
            .finish()
    }
}

type Shared = Arc<dyn Fn(&Event) + Send + Sync + 'static>;

/// The subscribers and the events waiting for them. Events are queued where
/// they happen, often under the store's locks, and delivered by
/// [`Subscribers::deliver`] once those are released: a subscriber that
/// calls into the store must not deadlock (issue 14).
#[derive(Default)]
pub(crate) struct Subscribers {
    list: RwLock<Vec<(u64, Shared)>>,
    /// `list.len()`, read by writers without the lock.
    count: AtomicUsize,
    next_id: AtomicU64,
    queue: Mutex<Queue>,
    /// Signalled when a delivery ends.
    delivered: Condvar,
}

#[derive(Default)]
struct Queue {
    events: VecDeque<Event>,
    /// Events ever queued, and ever delivered.
    queued: u64,
    delivered: u64,
    /// The thread delivering now, if one is.
    deliverer: Option<ThreadId>,
}

impl std::fmt::Debug for Subscribers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Subscribers")
            .field("count", &self.count.load(Ordering::Relaxed))
            .finish()
    }
}

impl Subscribers {
    pub fn add(&self, f: Subscriber) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let mut list = self.list.write();
        list.push((id, Arc::from(f)));
        self.count.store(list.len(), Ordering::Relaxed);
        id
    }

    /// [`Subscribers::add`] with a guard that removes the subscriber.
    pub fn subscribe(self: &Arc<Self>, f: Subscriber) -> Subscription {
        Subscription {
            id: self.add(f),
            subscribers: Arc::downgrade(self),
        }
    }

    fn remove(&self, id: u64) {
        let mut list = self.list.write();
        list.retain(|(i, _)| *i != id);
        self.count.store(list.len(), Ordering::Relaxed);
    }

    /// Whether anyone subscribes, without taking a lock: writers skip
    /// building events nobody would receive.
    pub fn any(&self) -> bool {
        self.count.load(Ordering::Relaxed) > 0
    }

    /// Queues `event` for the next [`Subscribers::deliver`]; nothing when
    /// there is no subscriber.
    pub fn emit(&self, event: Event) {
        if !self.list.read().is_empty() {
            let mut q = self.queue.lock();
            q.events.push_back(event);
            q.queued += 1;
        }
    }

    /// Calls every subscriber with the queued events, in queue order. The
    /// caller must hold none of the store's locks; this holds none while a
    /// subscriber runs. If another thread is delivering, this waits until
    /// it has delivered every event queued before the call; if this thread
    /// is (a subscriber called into the store), it returns at once and the
    /// outer delivery delivers them next.
    pub fn deliver(&self) {
        let me = std::thread::current().id();
        let mut q = self.queue.lock();
        let target = q.queued;
        loop {
            match q.deliverer {
                Some(t) if t == me => return,
                Some(_) if q.delivered >= target => return,
                Some(_) => {
                    self.delivered.wait(&mut q);
                    continue;
                }
                None if q.events.is_empty() => return,
                None => {}
            }
            q.deliverer = Some(me);
            let mut guard = Delivering { subs: self, q };
            while let Some(event) = guard.q.events.pop_front() {
                let subscribers: Vec<Shared> =
                    self.list.read().iter().map(|(_, f)| f.clone()).collect();
                parking_lot::MutexGuard::unlocked(&mut guard.q, || {
                    for f in &subscribers {
                        f(&event);
                    }
                });
                guard.q.delivered += 1;
            }
            return; // `guard` ends the delivery.
        }
    }
}

/// Ends a delivery, also when a subscriber panics: clears the deliverer
/// and wakes the threads waiting for it.
struct Delivering<'a> {
    subs: &'a Subscribers,
    q: parking_lot::MutexGuard<'a, Queue>,
}

impl Drop for Delivering<'_> {
    fn drop(&mut self) {
        self.q.deliverer = None;
        self.subs.delivered.notify_all();
    }
}
