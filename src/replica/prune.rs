//! Retention in the bucket: what is older than the window goes, while a
//! restore to any moment inside the window keeps working. The design, and
//! why the deletes come in this order, is `docs/replication.md`,
//! "Retention in the bucket".
//!
//! Time is the listing's `last_modified` (the bucket's clock); the cutoff
//! is `now - retention`. Per generation:
//!
//! - the *base* generation is the newest that began before the cutoff
//!   (its oldest object is older): every moment inside the window is in it
//!   or in a newer one, so generations older than it whose newest object
//!   is older than the cutoff go whole;
//! - inside a generation kept, the *base checkpoint* is the newest
//!   checkpoint older than the cutoff. Every record inside the window
//!   follows it, so the checkpoints before it go, and so do the segments
//!   whose records all precede it: those below the segment whose header's
//!   `first_seq` is at most the base's `journal_seq + 1` (a restore from
//!   the base starts there). A segment is deleted whole or not at all.
//!
//! Deletes come oldest first: whole generations, then the segments below
//! the base (each segment's objects from its last to its first, so what a
//! crash leaves of one still joins from byte 0), then the checkpoints
//! before the base; last, the opens' epoch objects older than the window
//! but the newest. A crash between two deletes leaves a bucket that every
//! restore inside the window reads, and the next prune finishes the work.

use super::layout::{self, Inventory, Range};
use super::runtime::{Bucket, Listed};
use crate::error::Result;
use crate::journal::record::{SEGMENT_HEADER_LEN, SegmentHeader};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, SystemTime};

/// What a prune deleted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// The objects deleted, in the order they were deleted.
    pub deleted: Vec<String>,
    /// Objects that were due but left for the next prune (`max_deletes`).
    pub left: usize,
}

/// The first sequence number of segments, by object name: a segment's
/// header never changes, so each is read from the bucket once.
pub(crate) type HeaderCache = HashMap<String, Option<u64>>;

/// Deletes what the bucket holds beyond `retention` as of `now`, at most
/// `max_deletes` objects, in the order the module's comment gives.
pub(crate) fn run(
    bucket: &Bucket,
    retention: Duration,
    now: SystemTime,
    max_deletes: usize,
    headers: &mut HeaderCache,
) -> Result<PruneReport> {
    let Some(cutoff) = now.checked_sub(retention) else {
        return Ok(PruneReport::default()); // A window longer than time.
    };
    let listing = bucket.list_meta()?;
    let due = plan(&listing, cutoff, |r| first_seq(bucket, r, headers))?;
    let mut report = PruneReport::default();
    for name in due {
        if report.deleted.len() >= max_deletes {
            report.left += 1;
            continue;
        }
        bucket.delete(&name)?;
        report.deleted.push(name);
    }
    Ok(report)
}

/// The `first_seq` in the header of the segment whose first object is
/// `r`; `None` when it cannot be read (then nothing at or after it is
/// judged covered).
pub(crate) fn first_seq(
    bucket: &Bucket,
    r: &Range,
    headers: &mut HeaderCache,
) -> Result<Option<u64>> {
    if let Some(&known) = headers.get(&r.name) {
        return Ok(known);
    }
    let len = (r.end - r.start).min(SEGMENT_HEADER_LEN as u64);
    let bytes = bucket.get_range(&r.name, 0..len)?;
    let seq = bytes.and_then(|b| SegmentHeader::decode(&b).ok().map(|h| h.first_seq));
    headers.insert(r.name.clone(), seq);
    Ok(seq)
}

/// The names to delete, in order, for a bucket listed as `listing` and a
/// window that begins at `cutoff`. `first_seq` reads a segment's header
/// from its first object.
pub(crate) fn plan(
    listing: &[Listed],
    cutoff: SystemTime,
    mut first_seq: impl FnMut(&Range) -> Result<Option<u64>>,
) -> Result<Vec<String>> {
    let inv = Inventory::of(listing.iter().map(|l| l.name.as_str()));
    let modified: HashMap<&str, SystemTime> = listing
        .iter()
        .map(|l| (l.name.as_str(), l.modified))
        .collect();
    let when = |name: &str| {
        modified
            .get(name)
            .copied()
            .unwrap_or(SystemTime::UNIX_EPOCH)
    };
    let span = |g: &layout::Generation| {
        let times = names_of(g).into_iter().map(|n| when(&n));
        times.fold(None, |acc: Option<(SystemTime, SystemTime)>, t| {
            Some(acc.map_or((t, t), |(lo, hi)| (lo.min(t), hi.max(t))))
        })
    };
    let spans: BTreeMap<&str, Option<(SystemTime, SystemTime)>> = inv
        .generations
        .iter()
        .map(|(id, g)| (id.as_str(), span(g)))
        .collect();
    // The newest generation that began before the window.
    let base = spans
        .iter()
        .rev()
        .find(|(_, s)| s.is_some_and(|(oldest, _)| oldest < cutoff))
        .map(|(id, _)| *id);
    let mut due = Vec::new();
    for (id, g) in &inv.generations {
        let older_than_base = base.is_some_and(|b| id.as_str() < b);
        let all_old = spans[id.as_str()].is_none_or(|(_, newest)| newest < cutoff);
        if older_than_base && all_old {
            due.extend(names_of(g));
        }
    }
    for (id, g) in &inv.generations {
        if base.is_some_and(|b| id.as_str() >= b) {
            due.extend(covered(g, cutoff, &when, &mut first_seq)?);
        }
    }
    // The opens' epochs older than the window, except the newest: the next
    // open takes the one after it, and a live shipper looks only for the
    // one after its own.
    let newest = inv.epochs.last().copied();
    due.extend(
        inv.epochs
            .iter()
            .filter(|&&e| Some(e) != newest)
            .map(|&e| layout::epoch_object(e))
            .filter(|name| when(name) < cutoff),
    );
    Ok(due)
}

/// Every object of a generation, in the order they may be deleted.
fn names_of(g: &layout::Generation) -> Vec<String> {
    let mut names = Vec::new();
    for ranges in g.segments.values() {
        names.extend(ranges.iter().rev().map(|r| r.name.clone()));
    }
    names.extend(g.checkpoints.iter().map(|c| c.name.clone()));
    names
}

/// Inside a generation kept: the segments whose records all precede its
/// newest checkpoint older than the window, then the checkpoints before
/// that one.
fn covered(
    g: &layout::Generation,
    cutoff: SystemTime,
    when: &impl Fn(&str) -> SystemTime,
    first_seq: &mut impl FnMut(&Range) -> Result<Option<u64>>,
) -> Result<Vec<String>> {
    let Some(base) = g.checkpoints.iter().rev().find(|c| when(&c.name) < cutoff) else {
        return Ok(Vec::new());
    };
    // The segment a restore from the base starts in: the last one whose
    // first record is at most the one after the base. Those below it hold
    // only records the base covers.
    let mut keep_from = None;
    for (&segment, ranges) in &g.segments {
        let Some(first) = ranges.first().filter(|r| r.start == 0) else {
            break; // Its header is not in the bucket: nothing is proven.
        };
        match first_seq(first)? {
            Some(seq) if seq <= base.seq.saturating_add(1) => keep_from = Some(segment),
            _ => break,
        }
    }
    let mut due = Vec::new();
    if let Some(keep_from) = keep_from {
        for ranges in g.segments.range(..keep_from).map(|(_, r)| r) {
            due.extend(ranges.iter().rev().map(|r| r.name.clone()));
        }
    }
    due.extend(
        g.checkpoints
            .iter()
            .take_while(|c| c.seq < base.seq)
            .map(|c| c.name.clone()),
    );
    Ok(due)
}

/// How often a live replica prunes: once an hour, or once per window when
/// the window is shorter.
pub(crate) fn interval(retention: Duration) -> Duration {
    retention.min(Duration::from_secs(3600))
}
