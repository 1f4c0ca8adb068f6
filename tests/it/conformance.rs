//! One conformance suite of store behaviour, written once, run against
//! every engine (`../shared/STYLE.md`; issue 12, "One conformance suite of
//! store behaviour runs against both backends").
//!
//! Each behaviour is a function of a [`Backend`]: a fresh, empty store's
//! options and what keeps it alive (a temporary directory, a test
//! database). [`conformance!`] makes one `#[test]` per behaviour and
//! engine, named `conformance::<engine>::<behaviour>`, so
//! `cargo test --all-features --test it conformance::postgres` runs one
//! engine and `cargo test ... put_then_get` one behaviour on each.
//!
//! An engine is one line of the macro's `engines` list and one function
//! here that makes its [`Backend`] (or `None`, after printing why the test
//! is skipped). A behaviour an engine does not offer is asserted as the
//! documented difference ([`Backend::offers_journal_operations`]), never
//! left out.

mod bad_input;
mod events;
mod query;
mod records;
mod tasks;

use statewal::{Options, Store, Task};
use std::any::Any;

/// A fresh, empty store on one engine, opened as many times as a
/// behaviour needs, with what the store lives in kept until it is dropped.
pub struct Backend {
    /// The engine's name, for messages.
    pub name: &'static str,
    /// The options every open starts from.
    opts: Options,
    /// The CLI's arguments that name this store (`--dir D`,
    /// `--database URL`).
    pub cli_args: Vec<String>,
    /// Whether the engine offers the journal's own operations
    /// (checkpoints, backups, `submit`, ...); elsewhere they are refused
    /// with `Unsupported` (`docs/postgres.md`).
    pub offers_journal_operations: bool,
    /// Whether a write that fails may still have used up positions in the
    /// change order (`StoreStats::last_seq` then grows though nothing was
    /// written): on PostgreSQL positions come from a sequence, which a
    /// rolled-back transaction does not give back (`docs/postgres.md`).
    /// On the journal a refused write takes none.
    pub failed_writes_take_positions: bool,
    /// Whether several instances may open the store for writing at once
    /// (PostgreSQL); the journal's directory has one writer, and a second
    /// open fails with `Locked`.
    pub shared_by_instances: bool,
    /// The temporary directory or database, removed on drop (after every
    /// store a behaviour opened, which it declares later).
    _keep: Box<dyn Any>,
}

impl Backend {
    /// Opens the store.
    pub fn open(&self) -> Store {
        self.open_with(|o| o)
    }

    /// The options every open starts from.
    pub fn options(&self) -> Options {
        self.opts.clone()
    }

    /// Opens the store with options changed by `f` (a size limit, read
    /// only). Open it again after dropping the last store to test what a
    /// reopen finds.
    pub fn open_with(&self, f: impl FnOnce(Options) -> Options) -> Store {
        Store::open(f(self.options()))
            .unwrap_or_else(|e| panic!("open the {} store: {e}", self.name))
    }
}

/// The ids of `tasks`, in their order.
pub fn ids<'a>(tasks: impl IntoIterator<Item = &'a Task>) -> Vec<String> {
    tasks.into_iter().map(|t| t.id().to_string()).collect()
}

/// The journal engine in a temporary directory.
pub fn journal() -> Option<Backend> {
    let dir = crate::util::scratch();
    Some(Backend {
        name: "journal",
        opts: Options::new(dir.path()),
        cli_args: vec!["--dir".into(), dir.path().display().to_string()],
        offers_journal_operations: true,
        failed_writes_take_positions: false,
        shared_by_instances: false,
        _keep: Box::new(dir),
    })
}

/// The journal engine with encryption at rest (feature `encryption`): a
/// fresh key in a 0600 file beside the store, given to the CLI as
/// `--key-file`.
#[cfg(feature = "encryption")]
pub fn encrypted() -> Option<Backend> {
    let dir = crate::util::scratch();
    let key_file = dir.path().join("key");
    let key = statewal::crypto::Key::generate_file(&key_file).expect("keygen");
    let store = dir.path().join("store");
    Some(Backend {
        name: "encrypted",
        opts: Options::new(&store).encryption_key(key),
        cli_args: vec![
            "--dir".into(),
            store.display().to_string(),
            "--key-file".into(),
            key_file.display().to_string(),
        ],
        offers_journal_operations: true,
        failed_writes_take_positions: false,
        shared_by_instances: false,
        _keep: Box::new(dir),
    })
}

/// The PostgreSQL engine on a fresh database of the test server
/// (`pg.rs`); `None` where there is none (the reason is printed).
#[cfg(feature = "postgres")]
pub fn postgres() -> Option<Backend> {
    let db = crate::pg::database()?;
    Some(Backend {
        name: "postgres",
        opts: Options::new("/nonexistent-statewal-pg-dir").database(&db.url),
        cli_args: vec!["--database".into(), db.url.clone()],
        offers_journal_operations: false,
        failed_writes_take_positions: true,
        shared_by_instances: true,
        _keep: Box::new(db),
    })
}

/// One `#[test]` per engine and behaviour: `mod <engine>` holds a test
/// named after each behaviour, which makes the engine's [`Backend`] and
/// runs the behaviour on it.
macro_rules! conformance {
    (
        engines { $($(#[$cfg:meta])* $engine:ident;)* }
        behaviours $behaviours:tt
    ) => {
        $(
            $(#[$cfg])*
            mod $engine {
                conformance!(@tests $engine $behaviours);
            }
        )*
    };
    (@tests $engine:ident [$($module:ident::$behaviour:ident),* $(,)?]) => {
        $(
            #[test]
            fn $behaviour() {
                let Some(backend) = crate::conformance::$engine() else { return };
                crate::conformance::$module::$behaviour(&backend);
            }
        )*
    };
}

conformance! {
    engines {
        journal;
        #[cfg(feature = "encryption")]
        encrypted;
        #[cfg(feature = "postgres")]
        postgres;
    }
    behaviours [
        tasks::put_then_get,
        tasks::the_json_is_kept_byte_exact,
        tasks::versions_count_puts,
        tasks::put_task_if_conflicts_and_writes_nothing,
        tasks::deleting_what_is_missing_is_not_found,
        tasks::a_batch_is_all_or_nothing,
        tasks::archived_tasks_are_gone,
        tasks::data_survives_close_and_reopen,
        tasks::stats_and_health,
        tasks::a_read_only_open_refuses_writes,
        tasks::journal_operations_are_the_journals_own,
        records::sessions_round_trip,
        records::logs_append_list_and_read,
        records::reports_save_get_and_list,
        query::time_bounds_are_exclusive,
        query::untimed_tasks_come_last_and_match_no_bound,
        query::ties_go_by_id,
        query::filters_combine,
        query::a_nul_in_the_tool_is_kept_and_found,
        query::pages_never_overlap_or_skip,
        query::ids_sort_in_byte_order,
        query::queries_select_and_order_by_the_definition,
        query::query_sees_new_writes_and_survives_a_reopen,
        events::subscribers_see_changes_in_commit_order,
        events::a_subscriber_given_at_open_hears_changes,
        tasks::a_second_writer_shares_or_is_locked_out,
        bad_input::invalid_ids_are_refused_everywhere,
        bad_input::oversized_input_is_too_large,
        bad_input::malformed_json_is_refused,
        bad_input::the_cli_refuses_bad_input_alike,
    ]
}
