//! Crash testing and fuzzing (feature `sim`): a simulated, fault-injecting
//! filesystem, the filesystem seam it plugs into, and the bodies of the
//! crate's fuzz targets.
//!
//! [`SimFs`] keeps every file in memory, separates what was written from
//! what was synced, and on [`SimFs::crash`] keeps, drops or tears each
//! unsynced write as power loss could. [`SimFs::fail_at`] makes one I/O
//! operation (or every one from then on) fail with EIO or ENOSPC.
//! [`crate::Store::open_with_fs`] opens a store on it.
//!
//! ```
//! use statewal::sim::SimFs;
//! use statewal::{Options, Store, Task};
//! use std::sync::Arc;
//!
//! let sim = SimFs::new(42); // The seed picks every random choice.
//! let opts = Options::new("sim").checkpoint_interval(None).checkpoint_on_drop(false);
//! let store = Store::open_with_fs(opts.clone(), Arc::new(sim.clone()), None)?;
//! store.put_task(Task::new("t1"))?; // Acknowledged: the journal is synced.
//! drop(store); // The process dies here (no checkpoint on drop)...
//! let after = sim.crash(); // ...and the power goes.
//! let store = Store::open_with_fs(opts, Arc::new(after), None)?;
//! assert!(store.get_task("t1")?.is_some());
//! # Ok::<(), statewal::Error>(())
//! ```

pub use crate::fs::sim::{
    FaultKind, Outcome, PendingItem, PendingKind, SECTOR_BYTES, SimFs, SplitMix64, TearFill,
};
pub use crate::fs::{Bytes, FileStat, Fs, FsFile, FsMap, MTIME_SETTLED_NS, OpenMode, RealFs};

/// The bodies of the fuzz targets in `fuzz/`, for `cargo fuzz` and for
/// downstream harnesses; each takes the fuzzer's bytes.
pub mod fuzz {
    pub use crate::fuzzing::*;
}
