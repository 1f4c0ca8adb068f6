//! The engines under test for W1 to W3, each behind one small trait: a put
//! that returns when the engine acknowledges it, in a durable or an
//! OS-buffered mode.

use crate::baselines;
use crate::tasks::TaskRef;
use std::path::Path;
use std::sync::Mutex;

pub type Error = Box<dyn std::error::Error + Send + Sync>;
pub type Result<T> = std::result::Result<T, Error>;

/// What an acknowledged put has survived.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// On stable storage: survives power loss.
    Durable,
    /// Handed to the operating system: survives a process crash only.
    Buffered,
}

/// Every engine the benchmark knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Statewal,
    DirectAtomic,
    DirectNaive,
    RawAppend,
    RawAppendWrap,
    Sqlite,
    Redb,
    Fjall,
    Lmdb,
    Okaywal,
}

/// The size of `raw-append`'s file: it wraps only after 256 MiB, as in
/// `statewal bench`.
pub const RAW_APPEND_BYTES: u64 = 256 << 20;
/// The size of `raw-append-wrap`'s file: okaywal's default segment size,
/// so its syncs keep rewriting the same few, already-written blocks.
pub const RAW_WRAP_BYTES: u64 = 1 << 20;

impl Kind {
    pub const ALL: [Kind; 10] = [
        Kind::Statewal,
        Kind::DirectAtomic,
        Kind::DirectNaive,
        Kind::RawAppend,
        Kind::RawAppendWrap,
        Kind::Sqlite,
        Kind::Redb,
        Kind::Fjall,
        Kind::Lmdb,
        Kind::Okaywal,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Statewal => "statewal",
            Kind::DirectAtomic => "direct-atomic",
            Kind::DirectNaive => "direct-naive",
            Kind::RawAppend => "raw-append",
            Kind::RawAppendWrap => "raw-append-wrap",
            Kind::Sqlite => "sqlite",
            Kind::Redb => "redb",
            Kind::Fjall => "fjall",
            Kind::Lmdb => "lmdb",
            Kind::Okaywal => "okaywal",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s)
    }

    /// Whether the engine is a baseline rather than a store one would pick.
    pub fn is_baseline(self) -> bool {
        matches!(
            self,
            Kind::DirectAtomic | Kind::DirectNaive | Kind::RawAppend | Kind::RawAppendWrap
        )
    }

    /// How the engine is set up in `mode`, or `None` if it has no such mode.
    pub fn setup(self, mode: Mode) -> Option<&'static str> {
        use Mode::*;
        Some(match (self, mode) {
            (Kind::Statewal, Durable) => "SyncPolicy::SyncBeforeAck (group commit)",
            (Kind::Statewal, Buffered) => "SyncPolicy::OsBuffered",
            (Kind::DirectAtomic, Durable) => "temp file, fdatasync, rename, fsync dir",
            (Kind::DirectNaive, Buffered) => "overwrite tasks/<id>.json, no sync",
            (Kind::RawAppend, Durable) => "pwrite into a 256 MiB zero-filled file, fdatasync",
            (Kind::RawAppendWrap, Durable) => {
                "pwrite into a 1 MiB synced file, wrapping, fdatasync"
            }
            (Kind::Sqlite, Durable) => "WAL, synchronous=FULL, one connection behind a mutex",
            (Kind::Sqlite, Buffered) => "WAL, synchronous=OFF, one connection behind a mutex",
            (Kind::Redb, Durable) => "Durability::Immediate, one write txn at a time",
            (Kind::Redb, Buffered) => {
                "Durability::None; one Immediate commit per slice, one write txn at a time"
            }
            (Kind::Fjall, Durable) => "insert, then persist(PersistMode::SyncData)",
            (Kind::Fjall, Buffered) => "insert (journal flushed to the OS per write)",
            (Kind::Lmdb, Durable) => "heed, default flags (sync per commit), LMDB's writer lock",
            (Kind::Lmdb, Buffered) => "heed, EnvFlags::NO_SYNC, LMDB's writer lock",
            (Kind::Okaywal, Durable) => "begin_entry, write_chunk, commit (group commit)",
            _ => return None,
        })
    }
}

/// One engine, open in one mode.
pub trait Engine: Send + Sync {
    /// Puts `task` and returns once the engine acknowledges it.
    fn put(&self, task: &TaskRef<'_>) -> Result<()>;

    /// Runs at the end of each slice, inside its time.
    fn end_slice(&self) -> Result<()> {
        Ok(())
    }
}

/// Opens `kind` in `mode` in the empty directory `dir`.
pub fn open(kind: Kind, mode: Mode, dir: &Path) -> Result<Box<dyn Engine>> {
    std::fs::create_dir_all(dir)?;
    let durable = mode == Mode::Durable;
    Ok(match kind {
        Kind::Statewal => Box::new(Statewal(statewal::Store::open(statewal_options(
            dir, durable,
        ))?)),
        Kind::DirectAtomic | Kind::DirectNaive => {
            Box::new(Direct(baselines::direct_dir(dir)?, kind))
        }
        Kind::RawAppend => Box::new(Raw(baselines::RawAppend::create(
            &dir.join("raw.dat"),
            RAW_APPEND_BYTES,
        )?)),
        Kind::RawAppendWrap => Box::new(Raw(baselines::RawAppend::create(
            &dir.join("raw.dat"),
            RAW_WRAP_BYTES,
        )?)),
        Kind::Sqlite => Box::new(Sqlite(Mutex::new(sqlite_open(dir, durable)?))),
        Kind::Redb => Box::new(redb_open(dir, durable)?),
        Kind::Fjall => Box::new(fjall_open(dir, durable, None)?),
        Kind::Lmdb => Box::new(lmdb_open(dir, durable)?),
        Kind::Okaywal => Box::new(Okaywal(
            okaywal::Configuration::default_for(dir).open(NoCheckpoint)?,
        )),
    })
}

/// statewal as `statewal bench` opens it: no timed checkpoints, the
/// size-triggered one (64 MiB of journal) left on.
pub fn statewal_options(dir: &Path, durable: bool) -> statewal::Options {
    statewal::Options::new(dir)
        .sync_policy(if durable {
            statewal::SyncPolicy::SyncBeforeAck
        } else {
            statewal::SyncPolicy::OsBuffered
        })
        .checkpoint_interval(None)
        .checkpoint_on_drop(false)
}

struct Statewal(statewal::Store);

impl Engine for Statewal {
    fn put(&self, t: &TaskRef<'_>) -> Result<()> {
        self.0.put_task(t.task.clone())?;
        Ok(())
    }
}

struct Direct(std::path::PathBuf, Kind);

impl Engine for Direct {
    fn put(&self, t: &TaskRef<'_>) -> Result<()> {
        if self.1 == Kind::DirectAtomic {
            baselines::direct_atomic_put(&self.0, t.id, t.json)?;
        } else {
            baselines::direct_naive_put(&self.0, t.id, t.json)?;
        }
        Ok(())
    }
}

struct Raw(baselines::RawAppend);

impl Engine for Raw {
    fn put(&self, t: &TaskRef<'_>) -> Result<()> {
        self.0.append(t.json)?;
        Ok(())
    }
}

/// SQLite in WAL mode. A connection is not `Sync`, and SQLite runs one
/// write transaction at a time anyway, so writers share one connection
/// behind a mutex (16 connections would instead wait in SQLite's busy
/// handler, which sleeps).
pub struct Sqlite(pub Mutex<rusqlite::Connection>);

pub fn sqlite_open(dir: &Path, durable: bool) -> Result<rusqlite::Connection> {
    let conn = rusqlite::Connection::open(dir.join("tasks.sqlite"))?;
    let mode: String = conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get(0))?;
    if mode != "wal" {
        return Err(format!("SQLite refused WAL mode ({mode})").into());
    }
    conn.pragma_update(None, "synchronous", if durable { "FULL" } else { "OFF" })?;
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS tasks (id TEXT PRIMARY KEY, json BLOB NOT NULL)",
    )?;
    Ok(conn)
}

pub const SQLITE_PUT: &str = "INSERT OR REPLACE INTO tasks (id, json) VALUES (?1, ?2)";

impl Engine for Sqlite {
    fn put(&self, t: &TaskRef<'_>) -> Result<()> {
        let conn = self.0.lock().expect("no writer panics");
        conn.prepare_cached(SQLITE_PUT)?.execute((t.id, t.json))?;
        Ok(())
    }
}

pub const REDB_TASKS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("tasks");

/// redb: one write transaction per put. `begin_write` waits for the
/// running one, so redb serializes the writers itself.
pub struct Redb {
    pub db: redb::Database,
    pub durable: bool,
}

pub fn redb_open(dir: &Path, durable: bool) -> Result<Redb> {
    let db = redb::Database::create(dir.join("tasks.redb"))?;
    Ok(Redb { db, durable })
}

impl Redb {
    pub fn commit_one(&self, id: &str, json: &[u8], durable: bool) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(if durable {
            redb::Durability::Immediate
        } else {
            redb::Durability::None
        })?;
        {
            let mut table = tx.open_table(REDB_TASKS)?;
            table.insert(id, json)?;
        }
        tx.commit()?;
        Ok(())
    }

    /// An empty durable commit: makes the non-durable ones durable, which
    /// is also when redb can reuse the pages they freed.
    pub fn sync(&self) -> Result<()> {
        let mut tx = self.db.begin_write()?;
        tx.set_durability(redb::Durability::Immediate)?;
        tx.commit()?;
        Ok(())
    }
}

impl Engine for Redb {
    fn put(&self, t: &TaskRef<'_>) -> Result<()> {
        self.commit_one(t.id, t.json, self.durable)
    }

    fn end_slice(&self) -> Result<()> {
        // Without a durable commit now and then, Durability::None never
        // frees a page and the file grows without bound.
        if self.durable { Ok(()) } else { self.sync() }
    }
}

/// fjall: concurrent inserts; in the durable mode each put also persists
/// the journal with `PersistMode::SyncData` (there is no group commit).
pub struct Fjall {
    pub db: fjall::Database,
    pub tasks: fjall::Keyspace,
    pub durable: bool,
}

/// Opens fjall in `dir`; `memtable_bytes` overrides the keyspace's
/// memtable size (W4 raises it so that 100k puts stay in the journal).
pub fn fjall_open(dir: &Path, durable: bool, memtable_bytes: Option<u64>) -> Result<Fjall> {
    let db = fjall::Database::builder(dir).open()?;
    let tasks = db.keyspace("tasks", || {
        let opts = fjall::KeyspaceCreateOptions::default();
        match memtable_bytes {
            Some(bytes) => opts.max_memtable_size(bytes),
            None => opts,
        }
    })?;
    Ok(Fjall { db, tasks, durable })
}

impl Engine for Fjall {
    fn put(&self, t: &TaskRef<'_>) -> Result<()> {
        self.tasks.insert(t.id, t.json)?;
        if self.durable {
            self.db.persist(fjall::PersistMode::SyncData)?;
        }
        Ok(())
    }
}

/// LMDB through heed: one write transaction per put; LMDB's writer lock
/// serializes the writers.
pub struct Lmdb {
    pub env: heed::Env,
    pub db: heed::Database<'static, heed::types::Str, heed::types::Bytes>,
}

/// The most an LMDB map may grow to here.
const LMDB_MAP_BYTES: usize = 4 << 30;

pub fn lmdb_open(dir: &Path, durable: bool) -> Result<Lmdb> {
    let mut opts = heed::EnvOpenOptions::new();
    opts.map_size(LMDB_MAP_BYTES).max_dbs(1);
    if !durable {
        // SAFETY: NO_SYNC only gives up durability on power loss, which is
        // what the buffered mode measures.
        unsafe {
            opts.flags(heed::EnvFlags::NO_SYNC);
        }
    }
    // SAFETY: nothing else maps or modifies this directory's files while
    // the benchmark runs.
    let env = unsafe { opts.open(dir)? };
    let wtxn = env.write_txn()?;
    let db = env
        .create_databases_and_commit(wtxn, |opener, wtxn| {
            opener
                .create_database(wtxn, Some("tasks"))
                .map(heed::CommitOrAbort::<_, ()>::Commit)
        })?
        .unwrap_commit();
    Ok(Lmdb { env, db })
}

impl Engine for Lmdb {
    fn put(&self, t: &TaskRef<'_>) -> Result<()> {
        let mut wtxn = self.env.write_txn()?;
        self.db.put(&mut wtxn, t.id, t.json)?;
        wtxn.commit()?;
        Ok(())
    }
}

/// okaywal with its default configuration: 1 MiB preallocated segments,
/// checkpointed after 768 KiB and then recycled. Nothing here keeps the
/// checkpointed entries: W1 and W2 measure the log's write path only.
struct Okaywal(okaywal::WriteAheadLog);

#[derive(Debug)]
pub struct NoCheckpoint;

impl okaywal::LogManager for NoCheckpoint {
    fn recover(&mut self, _entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        Ok(())
    }

    fn checkpoint_to(
        &mut self,
        _last: okaywal::EntryId,
        _entries: &mut okaywal::SegmentReader,
        _wal: &okaywal::WriteAheadLog,
    ) -> std::io::Result<()> {
        Ok(())
    }
}

impl Engine for Okaywal {
    fn put(&self, t: &TaskRef<'_>) -> Result<()> {
        let mut entry = self.0.begin_entry()?;
        entry.write_chunk(t.record)?;
        entry.commit()?;
        Ok(())
    }
}
