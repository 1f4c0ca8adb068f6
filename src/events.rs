//! Events for subscribers: the original design's `state:saved`,
//! `state:loaded`, `state:save-error` and `autosave:triggered`.

use crate::checkpoint::CheckpointStats;
use crate::recovery::RecoveryReport;
use parking_lot::RwLock;

/// Something the store did that subscribers may want to know.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum Event {
    /// `state:saved`: a checkpoint finished.
    StateSaved(CheckpointStats),
    /// `state:loaded`: recovery finished (sent to subscribers added with
    /// [`crate::Store::open_with_subscriber`], which exist before the load).
    StateLoaded(Box<RecoveryReport>),
    /// `state:save-error`: a checkpoint failed; the message says why. The
    /// journal still holds every acknowledged write.
    StateSaveError(String),
    /// `autosave:triggered`: the timer started a checkpoint.
    AutosaveTriggered,
    /// `state:reconciled` (statewal's own): the open decided about copies
    /// of tasks it did not write: the original server's state merged over
    /// statewal's history, or edits of `tasks/<id>.json` imported or set
    /// aside. Sent after `state:loaded`, whose report lists the same. Also
    /// sent by a checkpoint that set aside task files edited while the
    /// store was open (each a [`crate::reconcile::Action::SetAside`]),
    /// before its `state:saved` or `state:save-error`.
    Reconciled(Vec<crate::reconcile::Decision>),
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

/// A subscriber callback. It runs on the thread that caused the event, so it
/// should return quickly, and it must not call back into the store's
/// `checkpoint`/`save_state`, `shutdown` or `subscribe`: events are sent
/// while those hold their locks, so such a call would deadlock.
pub type Subscriber = Box<dyn Fn(&Event) + Send + Sync + 'static>;

#[derive(Default)]
pub(crate) struct Subscribers(RwLock<Vec<Subscriber>>);

impl Subscribers {
    pub fn add(&self, f: Subscriber) {
        self.0.write().push(f);
    }

    pub fn emit(&self, event: Event) {
        for f in self.0.read().iter() {
            f(&event);
        }
    }
}
