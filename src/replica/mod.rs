//! Replication to object storage (feature `replicate`): a shipper that
//! copies the journal's synced bytes and each checkpoint's `state.json`
//! into a bucket, and a restore that rebuilds a directory from it. The
//! design, the bucket layout and what survives what are in
//! `docs/replication.md`.
//!
//! - `layout`: object names and what a listing says (pure, no I/O).
//! - `runtime`: the bucket behind a synchronous handle, on a tokio runtime
//!   of the replica's own thread.
//! - `shipper`: the thread that ships, and the retention gate it gives the
//!   checkpoint.
//! - `restore`: rebuilding a directory.
//! - `prune`: retention in the bucket.
//!
//! **Invariant:** the journal modules (`src/journal/`, `checkpoint.rs`,
//! `recovery.rs`) never import this one; the journal engine attaches it,
//! and the checkpoint sees it only as a `RetentionGate` (`src/checkpoint.rs`).

pub(crate) mod layout;
pub(crate) mod prune;
mod restore;
pub(crate) mod runtime;
pub(crate) mod shipper;

pub use prune::PruneReport;
pub use restore::{RestoreReport, RestoreTarget};
pub use shipper::ReplicaStatus;

use crate::error::Result;
use std::path::Path;

/// Rebuilds, in `dir` (which must not hold a store), the store shipped to
/// `url`, up to `target`: the newest checkpoint at or before it, then the
/// shipped journal after that checkpoint, every object checked against the
/// CRC-32 in its name. Credentials and endpoints come from the environment
/// as for [`crate::Options::replicate_to`]; [`restore_with`] takes settings
/// too. A corrupt object stops the restore before it, and the report names
/// it. The directory then opens with [`crate::Store::open`].
pub fn restore(url: &str, dir: impl AsRef<Path>, target: RestoreTarget) -> Result<RestoreReport> {
    restore::restore_with(url, &[], dir.as_ref(), target, Default::default())
}

/// [`restore`] with settings for the bucket (`aws_endpoint`, ...), as
/// [`crate::Options::replica_setting`] takes them.
pub fn restore_with(
    url: &str,
    settings: &[(String, String)],
    dir: impl AsRef<Path>,
    target: RestoreTarget,
) -> Result<RestoreReport> {
    restore::restore_with(url, settings, dir.as_ref(), target, Default::default())
}

/// [`restore_with`] from the replica of an encrypted store (features
/// `replicate` and `encryption`): its checkpoints are opened with `key`,
/// and the restored store is encrypted under it. A replica sealed under
/// another key, or a plain one, is refused ([`crate::ErrorKind::Key`],
/// [`crate::ErrorKind::InvalidInput`]) before the directory is made.
#[cfg(feature = "encryption")]
pub fn restore_encrypted(
    url: &str,
    settings: &[(String, String)],
    dir: impl AsRef<Path>,
    target: RestoreTarget,
    key: crate::crypto::Key,
) -> Result<RestoreReport> {
    let key = restore::Unseal::with_key(key);
    restore::restore_with(url, settings, dir.as_ref(), target, key)
}

/// [`restore_with`] into the root of `fs`, which must be empty, such as a
/// [`crate::sim::SimFs`] (feature `sim`): what a crash test of a restore
/// needs. The restore's files are durable on `fs` when it returns.
#[cfg(feature = "sim")]
pub fn restore_to_fs(
    url: &str,
    settings: &[(String, String)],
    fs: std::sync::Arc<dyn crate::fs::Fs>,
    target: RestoreTarget,
) -> Result<RestoreReport> {
    restore::restore_to_fs(url, settings, fs, target)
}

/// Deletes from the bucket at `url` what is older than `retention` as of
/// `now`, as a replicated store does on its own once an hour
/// ([`crate::Options::replica_retention`]): whole generations that ended
/// before the window, and inside a generation the checkpoints and
/// segments older than its newest checkpoint that is itself older than
/// the window. A restore to any moment inside the window keeps working,
/// and so it does after a prune stopped at any point (a crash, or
/// `max_deletes` objects deleted). Times are the bucket's `last_modified`.
pub fn prune(
    url: &str,
    settings: &[(String, String)],
    retention: std::time::Duration,
    now: std::time::SystemTime,
    max_deletes: usize,
) -> Result<PruneReport> {
    let bucket = runtime::Bucket::open(url, settings)?;
    prune::run(
        &bucket,
        retention,
        now,
        max_deletes,
        &mut prune::HeaderCache::new(),
    )
}

/// One generation in a bucket, as [`inspect`] reads it from a listing.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct GenerationInfo {
    /// Its id (24 hex digits; sorts by the time it began).
    pub id: String,
    /// The `journal_seq` of each checkpoint object, ascending.
    pub checkpoints: Vec<u64>,
    /// Each segment: its id, where its joined objects end, how many
    /// objects it has, and the first object that does not join, if any.
    pub segments: Vec<SegmentInfo>,
    /// The newest last-modified time of its objects (Unix milliseconds,
    /// the bucket's clock); 0 when it has none.
    pub last_modified_ms: u64,
}

/// One segment of a generation.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct SegmentInfo {
    /// The segment id.
    pub id: u64,
    /// Where the objects that join from byte 0 end.
    pub shipped_end: u64,
    /// Objects of this segment.
    pub objects: usize,
    /// The first object that does not start where the one before ends.
    pub gap_at: Option<String>,
    /// The newest last-modified time of its objects (Unix milliseconds,
    /// the bucket's clock).
    pub last_modified_ms: u64,
}

/// What the bucket at `url` holds, generation by generation (oldest
/// first), from one listing: nothing is downloaded or checked. Names under
/// the prefix that statewal does not write are left out.
pub fn inspect(url: &str, settings: &[(String, String)]) -> Result<Vec<GenerationInfo>> {
    let bucket = runtime::Bucket::open(url, settings)?;
    let listed = bucket.list_modified()?;
    let modified: std::collections::HashMap<&str, u64> =
        listed.iter().map(|(n, _, m)| (n.as_str(), *m)).collect();
    let newest = |names: &mut dyn Iterator<Item = &str>| {
        names
            .filter_map(|n| modified.get(n).copied())
            .max()
            .unwrap_or(0)
    };
    let inv = layout::Inventory::of(listed.iter().map(|(n, ..)| n.as_str()));
    Ok(inv
        .generations
        .iter()
        .map(|(id, g)| {
            let segments: Vec<SegmentInfo> = g
                .segments
                .iter()
                .map(|(&seg, ranges)| SegmentInfo {
                    id: seg,
                    shipped_end: g.shipped_end(seg),
                    objects: ranges.len(),
                    gap_at: g.joined(seg).1.map(|r| r.name.clone()),
                    last_modified_ms: newest(&mut ranges.iter().map(|r| r.name.as_str())),
                })
                .collect();
            let checkpoints = newest(&mut g.checkpoints.iter().map(|c| c.name.as_str()));
            GenerationInfo {
                id: id.clone(),
                checkpoints: g.checkpoints.iter().map(|c| c.seq).collect(),
                last_modified_ms: segments
                    .iter()
                    .map(|s| s.last_modified_ms)
                    .fold(checkpoints, u64::max),
                segments,
            }
        })
        .collect())
}
