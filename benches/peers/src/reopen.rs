//! W4: reopen after 100k un-checkpointed puts. One child process fills a
//! fresh directory and closes the engine; a second, fresh one opens it and
//! reports how long it took to serve a `get`, how long to read every record
//! back, and how much resident memory that took.
//!
//! "Un-checkpointed" means that whatever the engine keeps in a log stays
//! there: statewal is closed without its checkpoint on drop, okaywal never
//! reaches its checkpoint size, fjall's memtable is raised so nothing is
//! flushed to a table. The B-trees (SQLite, redb, LMDB) have no log to
//! replay once closed: their figure is the open, and the read of all
//! records.

use crate::baselines;
use crate::engines::{self, Kind, Result};
use crate::tasks::{self, TASK_BYTES};
use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The engines W4 measures.
pub const KINDS: [Kind; 6] = [
    Kind::Statewal,
    Kind::Okaywal,
    Kind::Fjall,
    Kind::Sqlite,
    Kind::Redb,
    Kind::Lmdb,
];

/// okaywal's segment size for W4: large enough that 100k records fit in one
/// preallocated file and no checkpoint is triggered.
const OKAYWAL_SEGMENT_BYTES: u32 = 128 << 20;
/// fjall's memtable size for W4: 100k records stay in the journal.
const FJALL_MEMTABLE_BYTES: u64 = 1 << 30;
/// Writers filling okaywal, whose every commit syncs: group commit makes
/// the fill take seconds rather than tens of seconds.
const OKAYWAL_FILL_WRITERS: usize = 16;

/// What one reopen measured, printed by the child as one JSON line.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub struct Reopened {
    /// From the start of the open until a `get` of the last task returned it.
    pub ready_ms: f64,
    /// Reading every record back after that.
    pub read_all_ms: f64,
    pub records_read: u64,
    /// Resident memory the open added, and the open plus the read of all.
    pub rss_ready_bytes: u64,
    pub rss_read_all_bytes: u64,
    /// statewal only: records replayed and its own journal replay time.
    pub replayed: Option<u64>,
    pub journal_ms: Option<f64>,
}

/// The child's `w4-fill`: `n` puts of distinct tasks into `dir`, then a close.
pub fn fill(kind: Kind, dir: &Path, n: usize) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let json = |i: usize| baselines::task_json(&tasks::w4_id(i), TASK_BYTES).into_bytes();
    match kind {
        Kind::Statewal => {
            let store = statewal::Store::open(
                engines::statewal_options(dir, false).checkpoint_journal_bytes(u64::MAX),
            )?;
            for i in 0..n {
                store.put_task(statewal::Task::from_json(&json(i))?)?;
            }
        }
        Kind::Okaywal => {
            let wal = okaywal_config(dir).open(engines::NoCheckpoint)?;
            std::thread::scope(|s| -> Result<()> {
                let handles: Vec<_> = (0..OKAYWAL_FILL_WRITERS)
                    .map(|w| {
                        let wal = &wal;
                        s.spawn(move || -> Result<()> {
                            for i in (w..n).step_by(OKAYWAL_FILL_WRITERS) {
                                let mut entry = wal.begin_entry()?;
                                entry.write_chunk(&tasks::frame(&tasks::w4_id(i), &json(i)))?;
                                entry.commit()?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .try_for_each(|h| h.join().expect("writers do not panic"))
            })?;
            wal.shutdown()?;
        }
        Kind::Fjall => {
            let f = engines::fjall_open(dir, false, Some(FJALL_MEMTABLE_BYTES))?;
            for i in 0..n {
                f.tasks.insert(tasks::w4_id(i), json(i))?;
            }
            f.db.persist(fjall::PersistMode::SyncAll)?;
        }
        Kind::Sqlite => {
            let conn = engines::sqlite_open(dir, false)?;
            for i in 0..n {
                conn.prepare_cached(engines::SQLITE_PUT)?
                    .execute((tasks::w4_id(i), json(i)))?;
            }
        }
        Kind::Redb => {
            let r = engines::redb_open(dir, false)?;
            for i in 0..n {
                r.commit_one(&tasks::w4_id(i), &json(i), false)?;
            }
            r.sync()?;
        }
        Kind::Lmdb => {
            let l = engines::lmdb_open(dir, false)?;
            for i in 0..n {
                let mut wtxn = l.env.write_txn()?;
                l.db.put(&mut wtxn, &tasks::w4_id(i), &json(i))?;
                wtxn.commit()?;
            }
            l.env.force_sync()?;
        }
        _ => return Err(format!("W4 does not measure {}", kind.name()).into()),
    }
    Ok(())
}

/// The child's `w4-reopen`: opens what [`fill`] left and measures.
pub fn reopen(kind: Kind, dir: &Path, n: usize) -> Result<Reopened> {
    let last = tasks::w4_id(n - 1);
    let rss0 = rss_bytes();
    let t0 = Instant::now();
    let mut out = Reopened {
        ready_ms: 0.0,
        read_all_ms: 0.0,
        records_read: 0,
        rss_ready_bytes: 0,
        rss_read_all_bytes: 0,
        replayed: None,
        journal_ms: None,
    };
    // Each arm opens, serves one get (`ready`), then reads everything.
    let ready = |found: bool, out: &mut Reopened| -> Result<Instant> {
        if !found {
            return Err(format!("{}: task {last} missing after reopen", kind.name()).into());
        }
        out.ready_ms = t0.elapsed().as_secs_f64() * 1e3;
        out.rss_ready_bytes = rss_bytes().saturating_sub(rss0);
        Ok(Instant::now())
    };
    let (t1, read, touched) = match kind {
        Kind::Statewal => {
            let store = statewal::Store::open(
                engines::statewal_options(dir, true).checkpoint_journal_bytes(u64::MAX),
            )?;
            let t1 = ready(store.get_task(&last)?.is_some(), &mut out)?;
            let report = store.recovery_report().unwrap();
            out.replayed = Some(report.records_replayed);
            out.journal_ms = Some(report.journal_duration.as_secs_f64() * 1e3);
            let all = store.list_tasks().unwrap();
            let touched = all.iter().map(|t| t.id().len() as u64).sum();
            (t1, all.len() as u64, touched)
        }
        Kind::Okaywal => {
            let map = Arc::new(Mutex::new(HashMap::new()));
            let wal = okaywal_config(dir).open(Collect(map.clone()))?;
            let map = map.lock().expect("no panic while recovering");
            let t1 = ready(map.contains_key(&last), &mut out)?;
            let touched = map.values().map(|v: &Vec<u8>| last_byte(v)).sum();
            let read = map.len() as u64;
            drop(map);
            drop(wal);
            (t1, read, touched)
        }
        Kind::Fjall => {
            let f = engines::fjall_open(dir, true, Some(FJALL_MEMTABLE_BYTES))?;
            let t1 = ready(f.tasks.get(&last)?.is_some(), &mut out)?;
            let (mut read, mut touched) = (0, 0);
            for kv in f.tasks.iter() {
                let (_, v) = kv.into_inner()?;
                read += 1;
                touched += last_byte(&v);
            }
            (t1, read, touched)
        }
        Kind::Sqlite => {
            let conn = engines::sqlite_open(dir, true)?;
            let found = conn
                .query_row(
                    "SELECT length(json) FROM tasks WHERE id = ?1",
                    [&last],
                    |r| r.get::<_, i64>(0),
                )
                .is_ok();
            let t1 = ready(found, &mut out)?;
            let mut stmt = conn.prepare("SELECT json FROM tasks")?;
            let mut rows = stmt.query([])?;
            let (mut read, mut touched) = (0, 0);
            while let Some(row) = rows.next()? {
                read += 1;
                touched += last_byte(row.get_ref(0)?.as_blob()?);
            }
            (t1, read, touched)
        }
        Kind::Redb => {
            use redb::{ReadableDatabase, ReadableTable};
            let r = engines::redb_open(dir, true)?;
            let tx = r.db.begin_read()?;
            let table = tx.open_table(engines::REDB_TASKS)?;
            let t1 = ready(table.get(last.as_str())?.is_some(), &mut out)?;
            let (mut read, mut touched) = (0, 0);
            for kv in table.iter()? {
                let (_, v) = kv?;
                read += 1;
                touched += last_byte(v.value());
            }
            (t1, read, touched)
        }
        Kind::Lmdb => {
            let l = engines::lmdb_open(dir, true)?;
            let rtxn = l.env.read_txn()?;
            let t1 = ready(l.db.get(&rtxn, &last)?.is_some(), &mut out)?;
            let (mut read, mut touched) = (0, 0);
            for kv in l.db.iter(&rtxn)? {
                let (_, v) = kv?;
                read += 1;
                touched += last_byte(v);
            }
            (t1, read, touched)
        }
        _ => return Err(format!("W4 does not measure {}", kind.name()).into()),
    };
    out.read_all_ms = t1.elapsed().as_secs_f64() * 1e3;
    out.rss_read_all_bytes = rss_bytes().saturating_sub(rss0);
    out.records_read = read;
    if read != n as u64 || touched == 0 {
        return Err(format!("{}: read {read} records back, expected {n}", kind.name()).into());
    }
    Ok(out)
}

fn okaywal_config(dir: &Path) -> okaywal::Configuration {
    okaywal::Configuration::default_for(dir)
        .preallocate_bytes(OKAYWAL_SEGMENT_BYTES)
        .checkpoint_after_bytes(u64::MAX)
}

/// Recovers okaywal's entries into a map of id to record, as a store built
/// on okaywal would: the bytes are copied, checked by okaywal's CRC, and
/// not parsed.
#[derive(Debug)]
struct Collect(Arc<Mutex<HashMap<String, Vec<u8>>>>);

impl okaywal::LogManager for Collect {
    fn recover(&mut self, entry: &mut okaywal::Entry<'_>) -> std::io::Result<()> {
        let Some(chunks) = entry.read_all_chunks()? else {
            return Ok(()); // An aborted entry: nothing was acknowledged.
        };
        let mut map = self.0.lock().expect("no panic while recovering");
        for record in chunks {
            let id = tasks::unframe(&record)
                .ok_or_else(|| std::io::Error::other("not a framed record"))?
                .0
                .to_owned();
            map.insert(id, record);
        }
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

/// Reads a value's last byte, so that reading all records touches each one.
fn last_byte(v: &[u8]) -> u64 {
    v.last().copied().unwrap_or(0) as u64
}

/// This process's resident memory, from `/proc/self/status` (0 elsewhere).
pub fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or(0, |kb| kb * 1024)
}
