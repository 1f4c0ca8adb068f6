//! Events for subscribers: the original design's `state:saved`,
//! `state:loaded`, `state:save-error` and `autosave:triggered`.

use crate::checkpoint::CheckpointStats;
use crate::recovery::RecoveryReport;
use parking_lot::{Mutex, RwLock};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Weak};

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
    /// store was open (each a [`crate::Action::SetAside`]),
    /// before its `state:saved` or `state:save-error`.
    Reconciled(Vec<crate::Decision>),
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
        }
    }
}

/// A subscriber callback. It runs on a thread of the store's (the one whose
/// call caused the event, or the auto-save thread) after the store has
/// released its locks, so it may call back into the store, `get_task`,
/// `put_task` and `checkpoint` included. It should still return quickly: the
/// call that caused the event returns only after its subscribers did. Events
/// from one thread arrive in the order they happened.
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
    next_id: AtomicU64,
    queue: Mutex<Vec<Event>>,
}

impl Subscribers {
    pub fn add(&self, f: Subscriber) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        self.list.write().push((id, Arc::from(f)));
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
        self.list.write().retain(|(i, _)| *i != id);
    }

    /// Queues `event` for the next [`Subscribers::deliver`]; nothing when
    /// there is no subscriber.
    pub fn emit(&self, event: Event) {
        if !self.list.read().is_empty() {
            self.queue.lock().push(event);
        }
    }

    /// Calls every subscriber with the queued events. The caller must hold
    /// none of the store's locks; this holds none while a subscriber runs.
    pub fn deliver(&self) {
        loop {
            let events = std::mem::take(&mut *self.queue.lock());
            if events.is_empty() {
                return;
            }
            let subscribers: Vec<Shared> =
                self.list.read().iter().map(|(_, f)| f.clone()).collect();
            for event in &events {
                for f in &subscribers {
                    f(event);
                }
            }
        }
    }
}
