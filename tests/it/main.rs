//! Integration tests: the store against real temporary directories.

mod basics;
mod cli;
mod cli_backups;
mod cli_ops;
mod cli_progress;
mod cli_signals;
mod corruption;
mod crash;
mod durability;
mod events;
mod fallback;
mod fields;
mod fuzz_corpus;
mod group_commit;
mod ids;
mod io_errors;
mod kill;
mod limits;
mod lock;
mod logs;
mod model;
mod modes;
mod os_faults;
mod sweeps;
mod torn_tail;
mod util;
