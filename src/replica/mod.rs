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
//!
//! **Invariant:** the journal modules (`src/journal/`, `checkpoint.rs`,
//! `recovery.rs`) never import this one; the journal engine attaches it,
//! and the checkpoint sees it only as a [`crate::checkpoint::RetentionGate`].

pub(crate) mod layout;
mod restore;
pub(crate) mod runtime;
pub(crate) mod shipper;

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
    restore::restore_with(url, &[], dir.as_ref(), target)
}

/// [`restore`] with settings for the bucket (`aws_endpoint`, ...), as
/// [`crate::Options::replica_setting`] takes them.
pub fn restore_with(
    url: &str,
    settings: &[(String, String)],
    dir: impl AsRef<Path>,
    target: RestoreTarget,
) -> Result<RestoreReport> {
    restore::restore_with(url, settings, dir.as_ref(), target)
}
