//! Integration tests: the store against real temporary directories.
//!
//! The modules marked `#[cfg(feature = "sim")]` use the simulated filesystem
//! or its seedable generator.
//! In this repository `sim` is always on for tests (the crate is its own
//! dev-dependency with `sim`); `cargo package` drops that dev-dependency, so
//! in a packaged crate plain `cargo test` skips these modules and
//! `cargo test --all-features` runs them. `.ci/run` builds the packaged tests
//! without features to keep this list honest.

#[cfg(feature = "sim")]
mod archive_crash;
mod basics;
#[cfg(feature = "sim")]
mod batch;
mod cli;
mod cli_backups;
mod cli_clean;
mod cli_copy;
mod cli_flags;
mod cli_list;
mod cli_manners;
mod cli_migrate;
mod cli_ops;
#[cfg(feature = "postgres")]
mod cli_pg;
mod cli_progress;
mod cli_read_only;
mod cli_reference;
#[cfg(feature = "replicate")]
mod cli_replica;
mod cli_signals;
mod conformance;
mod corruption;
#[cfg(feature = "sim")]
mod crash;
#[cfg(feature = "sim")]
mod crash_workloads;
mod durability;
#[cfg(feature = "replicate")]
mod emulators;
#[cfg(feature = "replicate")]
mod emulators_smoke;
#[cfg(feature = "encryption")]
mod encryption;
#[cfg(all(feature = "encryption", feature = "sim"))]
mod encryption_crash;
#[cfg(feature = "encryption")]
mod encryption_hostile;
#[cfg(all(feature = "encryption", feature = "replicate"))]
mod encryption_replica;
mod events;
mod fallback;
mod fields;
mod fixtures;
#[cfg(feature = "sim")]
mod fuzz_corpus;
mod group_commit;
mod hostile;
mod ids;
#[cfg(feature = "sim")]
mod io_errors;
#[cfg(feature = "sim")]
mod journal_path;
mod key_order;
#[cfg(feature = "sim")]
mod kill;
mod limits;
#[cfg(feature = "sim")]
mod live_edits;
mod lock;
mod logs;
#[cfg(feature = "sim")]
mod model;
mod modes;
#[cfg(feature = "sim")]
mod os_faults;
#[cfg(feature = "postgres")]
mod pg;
#[cfg(feature = "postgres")]
mod pg_engine;
#[cfg(feature = "postgres")]
mod pg_multi;
#[cfg(feature = "postgres")]
mod pg_store;
mod read_only;
mod readback;
#[cfg(feature = "replicate")]
mod replica;
#[cfg(feature = "replicate")]
mod replica_copies;
#[cfg(all(feature = "replicate", feature = "sim"))]
mod replica_crash;
#[cfg(feature = "replicate")]
mod replica_gcs;
#[cfg(feature = "replicate")]
mod replica_hostile;
#[cfg(feature = "replicate")]
mod replica_observe;
#[cfg(feature = "replicate")]
mod replica_retention;
#[cfg(feature = "sim")]
mod restart;
#[cfg(feature = "sim")]
mod restore_crash;
#[cfg(feature = "sim")]
mod salvage_crash;
#[cfg(any(feature = "postgres", feature = "replicate"))]
mod services;
#[cfg(feature = "sim")]
mod snapshot;
mod special_files;
mod store_identity;
mod sweeps;
#[cfg(feature = "sim")]
mod sync_marker;
mod task_repr;
#[cfg(feature = "sim")]
mod task_stats;
mod torn_tail;
mod ts_backups;
mod ts_fixtures;
mod ts_interop;
mod util;
