//! [`SimFs`]: a deterministic, in-memory filesystem that models power loss
//! and injects I/O errors, for crash tests and fuzz harnesses.
//!
//! Compiled with the `sim` cargo feature. statewal's own crash tests run on
//! it, and a downstream crate can crash-test its own use of statewal with it:
//!
//! ```toml
//! [dev-dependencies]
//! statewal = { version = "0.1", features = ["sim"] }
//! ```
//!
//! # The model
//!
//! Each file has *durable* contents and the writes and length changes made
//! since its last [`FsFile::sync_data`]. Each directory has *durable* entries
//! and the creations, renames and removals made since its last
//! [`Fs::sync_dir`] (a directory created by [`Fs::create_dir`] is an entry of
//! its parent like any other). Reads always see the latest state, as a
//! running process does.
//!
//! [`SimFs::crash_with`] returns the filesystem as it could be after power
//! loss. Every *pending item* (a file with unsynced writes, or one unsynced
//! directory operation) gets an [`Outcome`]:
//!
//! - a file's unsynced writes are [`Outcome::Lost`], [`Outcome::Kept`], or
//!   [`Outcome::Torn`]: the first `at` bytes of them (in the order they were
//!   written) survive and the rest of the write being cut is left alone,
//!   zero-filled, or filled with garbage ([`TearFill`]);
//! - a directory operation survives or not; a rename is atomic (the entry
//!   carries the old or the new name, never neither because of the rename
//!   itself). Operations that survive are applied in the order they were made.
//!
//! A directory whose own entry does not survive disappears with everything
//! in it. [`SimFs::crash`] picks every outcome at random from the seed.
//!
//! # Fault injection
//!
//! Every [`Fs`] and [`FsFile`] operation except [`Fs::describe`] is counted
//! ([`SimFs::ops`]), starting at 1. [`SimFs::fail_at`] makes the k-th
//! operation fail with EIO, ENOSPC or a short write, once or from then on.
//! [`SimFs::crash_after_ops`] makes every operation after the n-th fail, as
//! if the process died there: the state is then exactly the state after `n`
//! operations, ready for [`SimFs::crash_with`].
//!
//! # A crash test, in short
//!
//! ```
//! use statewal::sim::{Outcome, SimFs};
//! use statewal::{Options, Store, Task};
//! use std::sync::Arc;
//!
//! # fn main() -> statewal::Result<()> {
//! let opts = || Options::new("sim").checkpoint_interval(None).checkpoint_on_drop(false);
//! // Count the operations of the workload once...
//! let probe = SimFs::new(1);
//! let store = Store::open_with_fs(opts(), Arc::new(probe.clone()), None)?;
//! store.put_task(Task::new("a"))?;
//! drop(store);
//! // ...then kill it after every one of them and try every power-loss outcome.
//! for n in 0..=probe.ops() {
//!     let fs = SimFs::new(1);
//!     fs.crash_after_ops(n);
//!     let acked = Store::open_with_fs(opts(), Arc::new(fs.clone()), None)
//!         .and_then(|s| s.put_task(Task::new("a")))
//!         .is_ok();
//!     let items = fs.pending().len();
//!     for subset in 0u32..1 << items.min(10) {
//!         let after = fs.crash_with(|item| {
//!             if subset >> item.index & 1 == 1 { Outcome::Kept } else { Outcome::Lost }
//!         });
//!         let store = Store::open_with_fs(opts(), Arc::new(after), None)?;
//!         assert!(!acked || store.get_task("a")?.is_some(), "an acknowledged put was lost");
//!     }
//! }
//! # Ok(())
//! # }
//! ```

use super::{Bytes, Fs, FsFile, FsMap, OpenMode, check_rel};
use crate::error::{Error, ErrorKind, Result};
use parking_lot::Mutex;
use std::collections::BTreeMap;
use std::sync::Arc;

/// The size of a disk sector: tears at these boundaries are the common case.
pub const SECTOR_BYTES: u64 = 512;

/// Where the simulated clock starts: 2026-12-01T00:00:00Z.
const SIM_CLOCK_START_NS: i128 = 1_796_083_200 * 1_000_000_000;
/// How far it moves at each operation, by default: 1 ms.
const SIM_CLOCK_STEP_NS: i128 = 1_000_000;

/// An injected error, see [`SimFs::fail_at`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// EIO: the operation fails and changes nothing.
    Eio,
    /// ENOSPC: the operation fails and changes nothing.
    Enospc,
    /// A write stores the first half of its bytes and then fails (EIO).
    /// Any other operation fails as with [`FaultKind::Eio`].
    ShortWrite,
}

/// What power loss does to one pending item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The unsynced writes, or the directory operation, are gone.
    Lost,
    /// The unsynced writes, or the directory operation, survive whole.
    Kept,
    /// The first `at` bytes of the file's unsynced writes survive and the
    /// write that was cut leaves `fill` behind. For a directory operation
    /// this is the same as [`Outcome::Kept`].
    Torn {
        /// Bytes of the unsynced writes, counted in write order, that survive.
        at: u64,
        /// What the rest of the write that was cut holds.
        fill: TearFill,
    },
}

/// What is left of a write cut by power loss, past the bytes that survive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TearFill {
    /// Nothing: the file ends where the surviving bytes end (or keeps its
    /// old, longer length with the old bytes).
    Nothing,
    /// Zeros: the file's size was updated but its data was not.
    Zeros,
    /// Garbage bytes, derived from the seed.
    Garbage,
}

/// One thing power loss may keep or lose, listed by [`SimFs::pending`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingItem {
    /// Its position in [`SimFs::pending`], as given to [`SimFs::crash_with`].
    pub index: usize,
    /// A file's unsynced writes, or a directory operation.
    pub kind: PendingKind,
    /// For messages: `"write journal/1.wal (84 bytes)"`, `"rename a -> b"`.
    pub description: String,
}

/// The two kinds of [`PendingItem`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PendingKind {
    /// Unsynced writes to a file.
    FileData {
        /// Bytes written since the last sync (the range of [`Outcome::Torn`]'s `at`).
        bytes: u64,
        /// A handful of interesting tear points: the start and end of each
        /// write, a byte into it, its middle, and sector boundaries.
        tear_points: Vec<u64>,
    },
    /// A creation, rename or removal not yet made durable by a directory sync.
    DirEntry,
}

/// The deterministic, fault-injecting in-memory filesystem. Clones share one
/// filesystem, so a test keeps a clone to crash the one a store is using.
#[derive(Clone)]
pub struct SimFs {
    inner: Arc<Mutex<Inner>>,
}

impl SimFs {
    /// An empty filesystem (the state directory exists and is empty) whose
    /// random choices follow `seed`.
    pub fn new(seed: u64) -> SimFs {
        let mut dirs = BTreeMap::new();
        dirs.insert(String::new(), Dir::default());
        SimFs::from_inner(Inner {
            nodes: BTreeMap::new(),
            next_ino: 1,
            dirs,
            dir_ops: Vec::new(),
            ops: 0,
            faults: Vec::new(),
            crash_after: None,
            locked: false,
            seed,
            rng: SplitMix64(seed),
            boot_base: SplitMix64(seed ^ 0xb007_b007_b007_b007).next_u64() | 1,
            boot: 0,
            clock_ns: SIM_CLOCK_START_NS,
            clock_step_ns: SIM_CLOCK_STEP_NS,
            traced: None,
        })
    }

    /// Starts recording the path of every operation from now on, for
    /// [`SimFs::traced`]: a fault-injection test finds which operations
    /// touch which file.
    pub fn trace(&self) {
        self.inner.lock().traced.get_or_insert_with(Vec::new);
    }

    /// Each operation counted since [`SimFs::trace`], as its number (as
    /// [`SimFs::fail_at`] takes it) and the path it was given (for a
    /// rename, the source; for an open file, the path it was opened by).
    pub fn traced(&self) -> Vec<(u64, String)> {
        self.inner.lock().traced.clone().unwrap_or_default()
    }

    /// The number of operations made so far.
    pub fn ops(&self) -> u64 {
        self.inner.lock().ops
    }

    /// Makes operation number `op` (counting from 1) fail with `kind`, and,
    /// if `persistent`, every operation after it too.
    pub fn fail_at(&self, op: u64, kind: FaultKind, persistent: bool) {
        self.inner.lock().faults.push(Fault {
            at: op,
            kind,
            persistent,
        });
    }

    /// Sets how far the simulated clock moves at each operation (default
    /// 1 ms). 0 stops it: every write then gets the same modification time,
    /// as writes within one tick of a real filesystem's clock do.
    pub fn set_clock_step(&self, step: std::time::Duration) {
        self.inner.lock().clock_step_ns = step.as_nanos() as i128;
    }

    /// Moves the simulated clock by `by` at once (and backwards with
    /// `back`), as a clock step or a long pause would.
    pub fn shift_clock(&self, by: std::time::Duration, back: bool) {
        let by = by.as_nanos() as i128;
        self.inner.lock().clock_ns += if back { -by } else { by };
    }

    /// Makes every operation after the `n`-th fail, as if the process died
    /// there: the filesystem stays exactly as `n` operations left it.
    pub fn crash_after_ops(&self, n: u64) {
        self.inner.lock().crash_after = Some(n);
    }

    /// Removes every injected fault and the crash point.
    pub fn clear_faults(&self) {
        let mut g = self.inner.lock();
        g.faults.clear();
        g.crash_after = None;
    }

    /// Whether a simulated crash point was reached (an operation was refused
    /// because of [`SimFs::crash_after_ops`]).
    pub fn crashed(&self) -> bool {
        let g = self.inner.lock();
        g.crash_after.is_some_and(|n| g.ops > n)
    }

    /// The filesystem a new process finds after this one was killed (kill
    /// -9, a panic, `crash_after_ops`) while the machine kept running: every
    /// write is kept, unsynced ones included (the page cache is intact), and
    /// the boot id is the same. The same as [`SimFs::fork`]; named for what
    /// a crash test means by it.
    pub fn restart(&self) -> SimFs {
        self.fork()
    }

    /// An independent copy of the filesystem as it is now, unsynced state
    /// included, with no faults, no lock held and the operation count at 0.
    /// It keeps the boot id: no power was lost.
    pub fn fork(&self) -> SimFs {
        let g = self.inner.lock();
        let mut inner = g.clone();
        inner.reset_after_copy();
        SimFs::from_inner(inner)
    }

    /// What power loss may keep or lose now, in a stable order.
    pub fn pending(&self) -> Vec<PendingItem> {
        self.inner.lock().pending()
    }

    /// The filesystem after power loss, with `choose` deciding each pending
    /// item. The result has everything durable, no faults, no lock held and
    /// the operation count at 0, and a new boot id (the machine restarted).
    /// `self` is not changed.
    pub fn crash_with(&self, mut choose: impl FnMut(&PendingItem) -> Outcome) -> SimFs {
        let g = self.inner.lock();
        let items = g.pending();
        let outcomes: Vec<Outcome> = items.iter().map(&mut choose).collect();
        SimFs::from_inner(g.crash(&outcomes))
    }

    /// The filesystem after power loss, every outcome drawn from the seed
    /// (each call draws anew), with a new boot id.
    pub fn crash(&self) -> SimFs {
        let mut g = self.inner.lock();
        let items = g.pending();
        let mut outcomes = Vec::with_capacity(items.len());
        for item in &items {
            let o = match (g.rng.below(3), &item.kind) {
                (0, _) => Outcome::Lost,
                (1, _) | (_, PendingKind::DirEntry) => Outcome::Kept,
                (_, PendingKind::FileData { bytes, .. }) => {
                    let at = g.rng.below(bytes + 1);
                    let fill = [TearFill::Nothing, TearFill::Zeros, TearFill::Garbage]
                        [g.rng.below(3) as usize];
                    Outcome::Torn { at, fill }
                }
            };
            outcomes.push(o);
        }
        let mut after = g.crash(&outcomes);
        after.seed = g.rng.next_u64();
        after.rng = SplitMix64(after.seed);
        SimFs::from_inner(after)
    }

    /// Replaces a file's contents, durably, without counting an operation:
    /// for tests that corrupt a file on purpose. Returns false if there is
    /// no such file.
    pub fn corrupt(&self, rel: &str, edit: impl FnOnce(&mut Vec<u8>)) -> bool {
        let mut g = self.inner.lock();
        let Ok(Some(ino)) = g.lookup_file(rel) else {
            return false;
        };
        let node = g.nodes.get_mut(&ino).expect("entries point at nodes");
        edit(&mut node.current);
        node.durable = node.current.clone();
        node.pending.clear();
        true
    }

    fn from_inner(inner: Inner) -> SimFs {
        SimFs {
            inner: Arc::new(Mutex::new(inner)),
        }
    }

    /// The names in directory `rel` whose entry passes `keep`, sorted (the
    /// keys of a BTreeMap already are); a missing directory lists nothing.
    /// Backs [`Fs::list`] and [`Fs::list_dirs`].
    fn list_where(&self, rel: &str, keep: fn(&Entry) -> bool) -> Result<Vec<String>> {
        let mut g = self.inner.lock();
        g.begin(rel, "list")?;
        let Some(dir) = g.dirs.get(rel) else {
            return Ok(Vec::new());
        };
        Ok(dir
            .current
            .iter()
            .filter(|(_, e)| keep(e))
            .map(|(n, _)| n.clone())
            .collect())
    }
}

impl std::fmt::Debug for SimFs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let g = self.inner.lock();
        f.debug_struct("SimFs")
            .field("seed", &g.seed)
            .field("ops", &g.ops)
            .finish_non_exhaustive()
    }
}

impl Fs for SimFs {
    fn describe(&self, rel: &str) -> String {
        format!("sim:/{rel}")
    }

    fn create_dir(&self, rel: &str) -> Result<()> {
        let mut g = self.inner.lock();
        g.begin(rel, "create directory")?;
        let (parent, name) = g.parent_of(rel)?;
        match g.dirs[&parent].current.get(&name) {
            Some(Entry::Dir) => return Ok(()),
            Some(Entry::File(_)) => {
                return Err(Error::new(
                    ErrorKind::InvalidInput,
                    format!("sim:/{rel} exists and is not a directory"),
                ));
            }
            None => {}
        }
        g.dirs.insert(rel.to_string(), Dir::default());
        g.link(&parent, &name, Entry::Dir);
        Ok(())
    }

    fn open(&self, rel: &str, mode: OpenMode) -> Result<Box<dyn FsFile>> {
        let mut g = self.inner.lock();
        g.begin(rel, "open")?;
        let existing = g.lookup_file(rel)?;
        let ino = match (existing, mode) {
            (Some(_), OpenMode::CreateNew) => {
                return Err(io_error("open", rel, std::io::ErrorKind::AlreadyExists));
            }
            (Some(ino), _) => ino,
            (None, OpenMode::Existing) => {
                return Err(io_error("open", rel, std::io::ErrorKind::NotFound));
            }
            (None, _) => {
                let (parent, name) = g.parent_of(rel)?;
                let ino = g.next_ino;
                g.next_ino += 1;
                let mtime_ns = g.clock_ns;
                g.nodes.insert(
                    ino,
                    Node {
                        mtime_ns,
                        ctime_ns: mtime_ns,
                        ..Node::default()
                    },
                );
                g.link(&parent, &name, Entry::File(ino));
                ino
            }
        };
        Ok(Box::new(SimFile {
            fs: self.inner.clone(),
            ino,
            rel: rel.to_string(),
        }))
    }

    fn read(&self, rel: &str) -> Result<Option<Bytes>> {
        let mut g = self.inner.lock();
        g.begin(rel, "read")?;
        Ok(g.lookup_file(rel)?
            .map(|ino| Bytes::Owned(g.nodes[&ino].current.clone())))
    }

    fn is_dir(&self, rel: &str) -> Result<bool> {
        let mut g = self.inner.lock();
        g.begin(rel, "stat")?;
        Ok(rel.is_empty() || matches!(g.entry(rel)?, Some(Entry::Dir)))
    }

    fn file_len(&self, rel: &str) -> Result<Option<u64>> {
        let mut g = self.inner.lock();
        g.begin(rel, "stat")?;
        Ok(g.lookup_file(rel)?
            .map(|ino| g.nodes[&ino].current.len() as u64))
    }

    fn rename(&self, from: &str, to: &str) -> Result<()> {
        let mut g = self.inner.lock();
        g.begin(from, "rename")?;
        check_rel(to)?;
        let ino = g
            .lookup_file(from)?
            .ok_or_else(|| io_error("rename", from, std::io::ErrorKind::NotFound))?;
        if matches!(g.entry(to)?, Some(Entry::Dir)) {
            return Err(Error::new(
                ErrorKind::InvalidInput,
                format!("sim:/{to} is a directory"),
            ));
        }
        let ((from_dir, from_name), (to_dir, to_name)) = (g.parent_of(from)?, g.parent_of(to)?);
        // A rename changes the renamed file's status-change time, as on
        // ext4, xfs, btrfs and tmpfs.
        let now = g.clock_ns;
        g.nodes
            .get_mut(&ino)
            .expect("entries point at nodes")
            .ctime_ns = now;
        if from_dir == to_dir {
            g.dirs
                .get_mut(&from_dir)
                .expect("parent exists")
                .current
                .remove(&from_name);
            g.dirs
                .get_mut(&to_dir)
                .expect("parent exists")
                .current
                .insert(to_name.clone(), Entry::File(ino));
            let desc = format!("rename {from} -> {to}");
            g.dir_ops.push(DirOp {
                dir: from_dir,
                op: EntryOp::Rename {
                    from: from_name,
                    to: to_name,
                    ino,
                },
                desc,
            });
        } else {
            // Across directories: two operations, each made durable by its
            // own directory's sync, as on the weakest real filesystems.
            g.link(&to_dir, &to_name, Entry::File(ino));
            g.unlink(&from_dir, &from_name);
        }
        Ok(())
    }

    fn remove(&self, rel: &str) -> Result<()> {
        let mut g = self.inner.lock();
        g.begin(rel, "remove")?;
        if g.lookup_file(rel)?.is_some() {
            let (parent, name) = g.parent_of(rel)?;
            g.unlink(&parent, &name);
        }
        Ok(())
    }

    fn sync_dir(&self, rel: &str) -> Result<()> {
        let mut g = self.inner.lock();
        g.begin(rel, "fsync directory")?;
        if !g.dirs.contains_key(rel) {
            return Err(io_error(
                "open directory",
                rel,
                std::io::ErrorKind::NotFound,
            ));
        }
        let ops = std::mem::take(&mut g.dir_ops);
        let (mine, others): (Vec<DirOp>, Vec<DirOp>) = ops.into_iter().partition(|o| o.dir == rel);
        g.dir_ops = others;
        let dir = g.dirs.get_mut(rel).expect("checked above");
        for o in &mine {
            o.op.apply(&mut dir.durable);
        }
        Ok(())
    }

    fn list(&self, rel: &str) -> Result<Vec<String>> {
        self.list_where(rel, |e| matches!(e, Entry::File(_)))
    }

    fn list_all(&self, rel: &str) -> Result<Option<Vec<String>>> {
        self.list_where(rel, |_| true).map(Some)
    }

    fn list_typed(&self, rel: &str) -> Result<Option<super::Listing>> {
        let mut g = self.inner.lock();
        g.begin(rel, "list")?;
        let mut out = super::Listing::default();
        if let Some(dir) = g.dirs.get(rel) {
            for (name, e) in &dir.current {
                match e {
                    Entry::File(_) => out.files.push(name.clone()),
                    Entry::Dir => out.others.push(name.clone()),
                }
            }
        }
        Ok(Some(out))
    }

    fn stat(&self, rel: &str) -> Result<Option<super::FileStat>> {
        let mut g = self.inner.lock();
        g.begin(rel, "stat")?;
        Ok(g.lookup_file(rel)?.map(|ino| g.stat_of(ino)))
    }

    fn read_at_stat(
        &self,
        rel: &str,
        offset: u64,
        len: u64,
    ) -> Result<Option<(Vec<u8>, Option<super::FileStat>)>> {
        let mut g = self.inner.lock();
        g.begin(rel, "read")?;
        Ok(g.lookup_file(rel)?.map(|ino| {
            let bytes = super::part_of(&g.nodes[&ino].current, offset, len);
            (bytes, Some(g.stat_of(ino)))
        }))
    }

    fn now(&self) -> std::time::SystemTime {
        let ns = self.inner.lock().clock_ns;
        std::time::UNIX_EPOCH + std::time::Duration::from_nanos(ns.max(0) as u64)
    }

    fn list_dirs(&self, rel: &str) -> Result<Vec<String>> {
        self.list_where(rel, |e| matches!(e, Entry::Dir))
    }

    fn boot_id(&self) -> Option<[u8; 16]> {
        let g = self.inner.lock();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&g.boot_base.to_le_bytes());
        id[8..].copy_from_slice(&g.boot.to_le_bytes());
        Some(id)
    }

    fn lock(&self) -> Result<Box<dyn Send + Sync>> {
        let mut g = self.inner.lock();
        g.begin("", "lock")?;
        if g.locked {
            return Err(Error::new(
                ErrorKind::Locked,
                "the simulated state directory is locked by another store",
            ));
        }
        g.locked = true;
        Ok(Box::new(LockGuard(self.inner.clone())))
    }
}

struct LockGuard(Arc<Mutex<Inner>>);

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.0.lock().locked = false;
    }
}

struct SimFile {
    fs: Arc<Mutex<Inner>>,
    ino: u64,
    rel: String,
}

impl FsFile for SimFile {
    fn write_all_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        let mut g = self.fs.lock();
        let short = g.begin_write(&self.rel)?;
        let now = g.clock_ns;
        let node = g
            .nodes
            .get_mut(&self.ino)
            .expect("open files keep their node");
        node.mtime_ns = now;
        node.ctime_ns = now;
        match short {
            None => {
                node.write(offset, data);
                Ok(())
            }
            Some(e) => {
                node.write(offset, &data[..data.len() / 2]);
                Err(e)
            }
        }
    }

    fn sync_data(&mut self) -> Result<()> {
        let mut g = self.fs.lock();
        g.begin(&self.rel, "fsync")?;
        let node = g
            .nodes
            .get_mut(&self.ino)
            .expect("open files keep their node");
        node.durable = node.current.clone();
        node.pending.clear();
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> Result<()> {
        let mut g = self.fs.lock();
        g.begin(&self.rel, "set length of")?;
        let now = g.clock_ns;
        let node = g
            .nodes
            .get_mut(&self.ino)
            .expect("open files keep their node");
        node.mtime_ns = now;
        node.ctime_ns = now;
        node.current.resize(len as usize, 0);
        node.pending.push(FileOp::SetLen(len));
        Ok(())
    }

    fn len(&self) -> Result<u64> {
        let mut g = self.fs.lock();
        g.begin(&self.rel, "stat")?;
        Ok(g.nodes[&self.ino].current.len() as u64)
    }

    fn set_modified(&mut self, time: std::time::SystemTime) -> Result<()> {
        let mut g = self.fs.lock();
        g.begin(&self.rel, "set the modification time of")?;
        let now = g.clock_ns;
        let node = g
            .nodes
            .get_mut(&self.ino)
            .expect("open files keep their node");
        node.mtime_ns = super::FileStat::ns_of(time);
        // A metadata change: the status-change time is now, as a kernel sets it.
        node.ctime_ns = now;
        Ok(())
    }

    fn stat(&self) -> Result<Option<super::FileStat>> {
        let mut g = self.fs.lock();
        g.begin(&self.rel, "stat")?;
        Ok(Some(g.stat_of(self.ino)))
    }

    fn map(&mut self, len: u64) -> Result<Option<Box<dyn FsMap>>> {
        let mut g = self.fs.lock();
        g.begin(&self.rel, "map")?;
        let have = g.nodes[&self.ino].current.len() as u64;
        assert!(
            len <= have,
            "mapping {len} bytes of sim:/{} which holds {have}",
            self.rel
        );
        Ok(Some(Box::new(SimMap {
            file: SimFile {
                fs: self.fs.clone(),
                ino: self.ino,
                rel: self.rel.clone(),
            },
            len,
        })))
    }
}

/// A shared mapping of a simulated file. A store through it lands in the
/// page cache exactly as a write does: it is kept when the process is
/// killed ([`SimFs::restart`]), and lost or torn by power loss unless a
/// sync came after it. Each store counts as an operation, so a crash point
/// can fall before or after it, and an injected fault makes it fail (a
/// short write keeps half of it: a process killed mid-copy).
struct SimMap {
    file: SimFile,
    len: u64,
}

impl FsMap for SimMap {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> Result<()> {
        assert!(
            offset + data.len() as u64 <= self.len,
            "a store past the end of the map would fault"
        );
        self.file.write_all_at(offset, data)
    }

    fn len(&self) -> u64 {
        self.len
    }
}

#[derive(Debug, Clone, Copy)]
struct Fault {
    at: u64,
    kind: FaultKind,
    persistent: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Entry {
    File(u64),
    Dir,
}

#[derive(Debug, Clone, Default)]
struct Dir {
    durable: BTreeMap<String, Entry>,
    current: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
enum FileOp {
    Write { offset: u64, data: Vec<u8> },
    SetLen(u64),
}

#[derive(Debug, Clone, Default)]
struct Node {
    durable: Vec<u8>,
    current: Vec<u8>,
    /// Writes and length changes since the last sync, in order.
    pending: Vec<FileOp>,
    /// The modification time (the simulated clock at the last write,
    /// length change or creation, unless set since). Not modelled through
    /// power loss: a crash keeps the current one.
    mtime_ns: i128,
    /// The status-change time: the simulated clock at the last write,
    /// length change, modification-time change, rename or creation; never
    /// set by a caller. Kept through power loss, as `mtime_ns` is.
    ctime_ns: i128,
}

impl Node {
    fn write(&mut self, offset: u64, data: &[u8]) {
        write_into(&mut self.current, offset, data);
        self.pending.push(FileOp::Write {
            offset,
            data: data.to_vec(),
        });
    }

    /// The contents after power loss cut the unsynced writes after `at` bytes.
    fn torn(&self, at: u64, fill: TearFill, garbage: &mut SplitMix64) -> Vec<u8> {
        let mut out = self.durable.clone();
        let mut left = at;
        for op in &self.pending {
            match op {
                FileOp::SetLen(len) => out.resize(*len as usize, 0),
                FileOp::Write { offset, data } if left >= data.len() as u64 => {
                    write_into(&mut out, *offset, data);
                    left -= data.len() as u64;
                }
                FileOp::Write { offset, data } => {
                    let kept = left as usize;
                    let mut rest = data[kept..].to_vec();
                    match fill {
                        TearFill::Nothing => rest.clear(),
                        TearFill::Zeros => rest.fill(0),
                        TearFill::Garbage => {
                            rest.iter_mut().for_each(|b| *b = garbage.next_u64() as u8)
                        }
                    }
                    write_into(&mut out, *offset, &data[..kept]);
                    write_into(&mut out, offset + left, &rest);
                    return out;
                }
            }
        }
        out
    }

    fn tear_points(&self) -> Vec<u64> {
        let mut points = Vec::new();
        let mut start = 0;
        for op in &self.pending {
            let FileOp::Write { offset, data } = op else {
                continue;
            };
            let len = data.len() as u64;
            points.extend([
                start,
                start + 1,
                start + len / 2,
                start + len.saturating_sub(1),
            ]);
            // Sector boundaries, the first and last few of a long write.
            let first = (offset / SECTOR_BYTES + 1) * SECTOR_BYTES;
            let boundaries: Vec<u64> = (first..offset + len)
                .step_by(SECTOR_BYTES as usize)
                .collect();
            let n = boundaries.len();
            let keep = |i: usize| i < 4 || i + 4 >= n;
            points.extend(
                boundaries
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| keep(*i))
                    .map(|(_, b)| start + b - offset),
            );
            start += len;
        }
        points.retain(|&p| p < start);
        points.sort_unstable();
        points.dedup();
        points
    }

    fn pending_bytes(&self) -> u64 {
        self.pending
            .iter()
            .map(|op| {
                if let FileOp::Write { data, .. } = op {
                    data.len() as u64
                } else {
                    0
                }
            })
            .sum()
    }
}

fn write_into(buf: &mut Vec<u8>, offset: u64, data: &[u8]) {
    let (start, end) = (offset as usize, offset as usize + data.len());
    if buf.len() < end {
        buf.resize(end, 0);
    }
    buf[start..end].copy_from_slice(data);
}

#[derive(Debug, Clone)]
enum EntryOp {
    Link { name: String, entry: Entry },
    Unlink { name: String, entry: Entry },
    Rename { from: String, to: String, ino: u64 },
}

impl EntryOp {
    fn apply(&self, entries: &mut BTreeMap<String, Entry>) {
        match self {
            EntryOp::Link { name, entry } => {
                entries.insert(name.clone(), *entry);
            }
            EntryOp::Unlink { name, entry } => {
                if entries.get(name) == Some(entry) {
                    entries.remove(name);
                }
            }
            EntryOp::Rename { from, to, ino } => {
                if entries.get(from) == Some(&Entry::File(*ino)) {
                    entries.remove(from);
                }
                entries.insert(to.clone(), Entry::File(*ino));
            }
        }
    }

    fn file(&self) -> Option<u64> {
        match self {
            EntryOp::Link {
                entry: Entry::File(ino),
                ..
            }
            | EntryOp::Rename { ino, .. } => Some(*ino),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
struct DirOp {
    dir: String,
    op: EntryOp,
    desc: String,
}

#[derive(Clone)]
struct Inner {
    nodes: BTreeMap<u64, Node>,
    next_ino: u64,
    /// Every directory that exists now, by path ("" is the root).
    dirs: BTreeMap<String, Dir>,
    /// Directory operations not yet made durable, in the order they were made.
    dir_ops: Vec<DirOp>,
    ops: u64,
    faults: Vec<Fault>,
    crash_after: Option<u64>,
    locked: bool,
    seed: u64,
    rng: SplitMix64,
    /// Boot ids are derived from this and [`Inner::boot`].
    boot_base: u64,
    /// How many simulated power losses led to this filesystem: its boot.
    boot: u64,
    /// The simulated clock, in nanoseconds since the Unix epoch: it
    /// advances by `clock_step_ns` at every counted operation, and stamps
    /// each file's modification time.
    clock_ns: i128,
    clock_step_ns: i128,
    /// The operations counted since [`SimFs::trace`], with their paths.
    traced: Option<Vec<(u64, String)>>,
}

impl Inner {
    /// Counts an operation and decides whether it fails.
    fn begin(&mut self, rel: &str, what: &str) -> Result<()> {
        match self.begin_write(rel)? {
            None => Ok(()),
            Some(mut e) => {
                e = e.context(format!("{what} failed"));
                Err(e)
            }
        }
    }

    /// Like [`Inner::begin`], but a short-write fault is returned as `Ok(Some)`
    /// so the write can store half of its bytes first.
    fn begin_write(&mut self, rel: &str) -> Result<Option<Error>> {
        check_rel(rel)?;
        self.ops += 1;
        self.clock_ns += self.clock_step_ns;
        let n = self.ops;
        if let Some(t) = &mut self.traced {
            t.push((n, rel.to_string()));
        }
        if self.crash_after.is_some_and(|c| n > c) {
            return Err(Error::new(
                ErrorKind::Io,
                format!("simulated crash: the process died before operation {n} (sim:/{rel})"),
            ));
        }
        let fault = self
            .faults
            .iter()
            .find(|f| f.at == n || (f.persistent && n > f.at))
            .map(|f| f.kind);
        let errno = |code: i32| {
            Error::io(
                &format!("injected fault at operation {n}:"),
                format!("sim:/{rel}"),
                std::io::Error::from_raw_os_error(code),
            )
        };
        match fault {
            None => Ok(None),
            Some(FaultKind::Eio) => Err(errno(libc::EIO)),
            Some(FaultKind::Enospc) => Err(errno(libc::ENOSPC)),
            Some(FaultKind::ShortWrite) => Ok(Some(errno(libc::EIO).context("short write"))),
        }
    }

    /// The [`super::FileStat`] of node `ino`.
    fn stat_of(&self, ino: u64) -> super::FileStat {
        let node = &self.nodes[&ino];
        super::FileStat {
            ino,
            len: node.current.len() as u64,
            mtime_ns: node.mtime_ns,
            ctime_ns: node.ctime_ns,
        }
    }

    /// The parent directory and the name of `rel`; the parent must exist.
    fn parent_of(&self, rel: &str) -> Result<(String, String)> {
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p.to_string(), n.to_string()),
            None => (String::new(), rel.to_string()),
        };
        if name.is_empty() || !self.dirs.contains_key(&parent) {
            return Err(io_error("resolve", rel, std::io::ErrorKind::NotFound));
        }
        Ok((parent, name))
    }

    fn entry(&self, rel: &str) -> Result<Option<Entry>> {
        if rel.is_empty() {
            return Ok(Some(Entry::Dir));
        }
        let (parent, name) = match rel.rsplit_once('/') {
            Some((p, n)) => (p, n),
            None => ("", rel),
        };
        Ok(self
            .dirs
            .get(parent)
            .and_then(|d| d.current.get(name).copied()))
    }

    fn lookup_file(&self, rel: &str) -> Result<Option<u64>> {
        check_rel(rel)?;
        match self.entry(rel)? {
            None => Ok(None),
            Some(Entry::File(ino)) => Ok(Some(ino)),
            Some(Entry::Dir) => Err(Error::new(
                ErrorKind::InvalidInput,
                format!("sim:/{rel} is not a regular file"),
            )),
        }
    }

    fn link(&mut self, dir: &str, name: &str, entry: Entry) {
        self.dirs
            .get_mut(dir)
            .expect("parent exists")
            .current
            .insert(name.to_string(), entry);
        let desc = format!("create {}", super::join(dir, name));
        self.dir_ops.push(DirOp {
            dir: dir.to_string(),
            op: EntryOp::Link {
                name: name.to_string(),
                entry,
            },
            desc,
        });
    }

    fn unlink(&mut self, dir: &str, name: &str) {
        let entry = self
            .dirs
            .get_mut(dir)
            .expect("parent exists")
            .current
            .remove(name)
            .expect("caller checked");
        let desc = format!("remove {}", super::join(dir, name));
        self.dir_ops.push(DirOp {
            dir: dir.to_string(),
            op: EntryOp::Unlink {
                name: name.to_string(),
                entry,
            },
            desc,
        });
    }

    /// Files whose unsynced writes could matter: reachable through a durable
    /// entry or one a pending operation may create.
    fn candidate_files(&self) -> Vec<u64> {
        let mut inos: Vec<u64> = self
            .dirs
            .values()
            .flat_map(|d| d.durable.values())
            .filter_map(|e| match e {
                Entry::File(ino) => Some(*ino),
                Entry::Dir => None,
            })
            .collect();
        inos.extend(self.dir_ops.iter().filter_map(|o| o.op.file()));
        inos.sort_unstable();
        inos.dedup();
        inos.retain(|ino| !self.nodes[ino].pending.is_empty());
        inos
    }

    fn pending(&self) -> Vec<PendingItem> {
        self.pending_with_files().0
    }

    /// The pending items, and the file behind each of the leading file items.
    fn pending_with_files(&self) -> (Vec<PendingItem>, Vec<u64>) {
        let mut items = Vec::new();
        let files = self.candidate_files();
        for &ino in &files {
            let node = &self.nodes[&ino];
            let bytes = node.pending_bytes();
            let name = self.name_of(ino);
            items.push(PendingItem {
                index: items.len(),
                kind: PendingKind::FileData {
                    bytes,
                    tear_points: node.tear_points(),
                },
                description: format!("write {name} ({bytes} bytes)"),
            });
        }
        for op in &self.dir_ops {
            items.push(PendingItem {
                index: items.len(),
                kind: PendingKind::DirEntry,
                description: op.desc.clone(),
            });
        }
        (items, files)
    }

    /// A name of a file, for messages.
    fn name_of(&self, ino: u64) -> String {
        for (path, dir) in &self.dirs {
            for (name, e) in dir.current.iter().chain(dir.durable.iter()) {
                if *e == Entry::File(ino) {
                    return super::join(path, name);
                }
            }
        }
        format!("inode {ino}")
    }

    /// The state after power loss with `outcomes[i]` for `items[i]`.
    fn crash(&self, outcomes: &[Outcome]) -> Inner {
        let files = self.candidate_files();
        let n_files = files.len();
        debug_assert_eq!(
            outcomes.len(),
            n_files + self.dir_ops.len(),
            "one outcome per pending item"
        );
        let mut durable: BTreeMap<String, BTreeMap<String, Entry>> = self
            .dirs
            .iter()
            .map(|(p, d)| (p.clone(), d.durable.clone()))
            .collect();
        for (op, outcome) in self.dir_ops.iter().zip(&outcomes[n_files..]) {
            if *outcome != Outcome::Lost
                && let Some(entries) = durable.get_mut(&op.dir)
            {
                op.op.apply(entries);
            }
        }
        // Keep the directories reachable from the root; parents sort first.
        let mut dirs = BTreeMap::new();
        for (path, entries) in durable {
            let reachable = path.is_empty() || {
                let (parent, name) = path.rsplit_once('/').unwrap_or(("", &path));
                dirs.get(parent)
                    .is_some_and(|d: &Dir| d.durable.get(name) == Some(&Entry::Dir))
            };
            if reachable {
                dirs.insert(
                    path,
                    Dir {
                        durable: entries.clone(),
                        current: entries,
                    },
                );
            }
        }
        let mut nodes = BTreeMap::new();
        for entries in dirs.values().map(|d| &d.durable) {
            for e in entries.values() {
                let Entry::File(ino) = *e else { continue };
                let node = &self.nodes[&ino];
                let outcome = files
                    .iter()
                    .position(|&f| f == ino)
                    .map_or(Outcome::Lost, |i| outcomes[i]);
                let mut garbage = SplitMix64(self.seed ^ ino.wrapping_mul(0x9e37_79b9_7f4a_7c15));
                let contents = match outcome {
                    Outcome::Lost => node.durable.clone(),
                    Outcome::Kept => node.current.clone(),
                    Outcome::Torn { at, fill } => node.torn(at, fill, &mut garbage),
                };
                nodes.insert(
                    ino,
                    Node {
                        durable: contents.clone(),
                        current: contents,
                        pending: Vec::new(),
                        mtime_ns: node.mtime_ns,
                        ctime_ns: node.ctime_ns,
                    },
                );
            }
        }
        let mut after = Inner {
            nodes,
            dirs,
            dir_ops: Vec::new(),
            // Power was lost: the machine boots anew.
            boot: self.boot + 1,
            ..self.clone()
        };
        after.reset_after_copy();
        after
    }

    fn reset_after_copy(&mut self) {
        self.ops = 0;
        self.faults.clear();
        self.crash_after = None;
        self.locked = false;
        self.traced = None;
    }
}

fn io_error(what: &str, rel: &str, kind: std::io::ErrorKind) -> Error {
    Error::io(what, format!("sim:/{rel}"), std::io::Error::from(kind))
}

/// splitmix64: a tiny, seedable generator. [`SimFs`] draws its crash
/// outcomes and torn bytes from it; tests and harnesses use the same one, so
/// a failing run replays from the seed it prints. Predictable by design: not
/// for anything that must not be guessed.
#[derive(Debug, Clone)]
pub struct SplitMix64(u64);

impl SplitMix64 {
    /// A generator whose sequence is fixed by `seed`.
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    /// The next number of the sequence.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `0..n` (0 if `n` is 0).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 { 0 } else { self.next_u64() % n }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(fs: &SimFs, rel: &str, data: &[u8], sync: bool) {
        let mut f = fs.open(rel, OpenMode::CreateOrOpen).unwrap();
        let at = f.len().unwrap();
        f.write_all_at(at, data).unwrap();
        if sync {
            f.sync_data().unwrap();
        }
    }

    fn contents(fs: &SimFs, rel: &str) -> Option<Vec<u8>> {
        fs.read(rel).unwrap().map(|b| b.to_vec())
    }

    #[test]
    fn synced_data_and_entries_survive_and_the_rest_may_not() {
        let fs = SimFs::new(7);
        write(&fs, "a", b"durable", true);
        fs.sync_dir("").unwrap();
        write(&fs, "a", b"+more", false);
        write(&fs, "b", b"new", true);
        // Pending: the unsynced write to a, the creation of b.
        let items = fs.pending();
        assert_eq!(items.len(), 2, "{items:?}");
        let lost = fs.crash_with(|_| Outcome::Lost);
        assert_eq!(contents(&lost, "a").unwrap(), b"durable");
        assert_eq!(contents(&lost, "b"), None);
        let kept = fs.crash_with(|_| Outcome::Kept);
        assert_eq!(contents(&kept, "a").unwrap(), b"durable+more");
        assert_eq!(contents(&kept, "b").unwrap(), b"new");
        assert!(kept.pending().is_empty());
        let torn = fs.crash_with(|i| match i.kind {
            PendingKind::FileData { .. } => Outcome::Torn {
                at: 2,
                fill: TearFill::Zeros,
            },
            PendingKind::DirEntry => Outcome::Lost,
        });
        assert_eq!(contents(&torn, "a").unwrap(), b"durable+m\0\0\0");
        let torn = fs.crash_with(|_| Outcome::Torn {
            at: 2,
            fill: TearFill::Nothing,
        });
        assert_eq!(contents(&torn, "a").unwrap(), b"durable+m");
    }

    #[test]
    fn renames_are_atomic_and_lost_directories_take_their_files() {
        let fs = SimFs::new(1);
        fs.create_dir("d").unwrap();
        write(&fs, "d/x.tmp", b"v2", true);
        fs.rename("d/x.tmp", "d/x").unwrap();
        fs.sync_dir("d").unwrap();
        // d's own entry in the root was never synced.
        assert_eq!(fs.pending().len(), 1);
        assert_eq!(
            fs.crash_with(|_| Outcome::Lost).list("d").unwrap(),
            Vec::<String>::new()
        );
        fs.sync_dir("").unwrap();
        write(&fs, "d/y.tmp", b"v3", true);
        fs.rename("d/y.tmp", "d/x").unwrap();
        let before = fs.crash_with(|_| Outcome::Lost);
        assert_eq!(contents(&before, "d/x").unwrap(), b"v2");
        let after = fs.crash_with(|i| {
            if i.description.starts_with("rename") {
                Outcome::Kept
            } else {
                Outcome::Lost
            }
        });
        assert_eq!(contents(&after, "d/x").unwrap(), b"v3");
        assert_eq!(after.list("d").unwrap(), ["x"]);
    }

    #[test]
    fn faults_and_crash_points_count_every_operation() {
        let fs = SimFs::new(3);
        fs.fail_at(3, FaultKind::Enospc, false);
        let mut f = fs.open("a", OpenMode::CreateNew).unwrap();
        f.write_all_at(0, b"x").unwrap();
        let e = f.write_all_at(1, b"y").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::StorageFull, "{e}");
        f.write_all_at(1, b"z").unwrap(); // once, not persistent
        fs.fail_at(5, FaultKind::ShortWrite, true);
        assert!(f.write_all_at(2, b"abcd").is_err());
        assert!(f.sync_data().is_err());
        assert_eq!(contents(&fs.fork(), "a").unwrap(), b"xzab");

        let fs = SimFs::new(3);
        fs.crash_after_ops(1);
        let mut f = fs.open("a", OpenMode::CreateNew).unwrap();
        assert!(!fs.crashed());
        assert!(f.write_all_at(0, b"x").is_err());
        assert!(fs.crashed());
        assert_eq!(contents(&fs.fork(), "a").unwrap(), b"");
    }

    #[test]
    fn random_crashes_are_reproducible_from_the_seed() {
        let run = |seed| {
            let fs = SimFs::new(seed);
            for i in 0..8 {
                write(&fs, &format!("f{i}"), &[i as u8; 700], i % 2 == 0);
            }
            let after = fs.crash();
            (0..8)
                .map(|i| contents(&after, &format!("f{i}")))
                .collect::<Vec<_>>()
        };
        assert_eq!(run(11), run(11));
        assert_ne!(run(11), run(12));
    }

    #[test]
    fn mapped_writes_survive_a_kill_and_need_a_sync_to_survive_power_loss() {
        let fs = SimFs::new(9);
        let mut f = fs.open("seg", OpenMode::CreateNew).unwrap();
        f.write_all_at(0, &[0u8; 64]).unwrap();
        f.sync_data().unwrap();
        fs.sync_dir("").unwrap();
        let mut map = f.map(64).unwrap().expect("SimFs offers a map");
        assert_eq!(map.len(), 64);
        map.write_at(8, b"synced").unwrap();
        f.sync_data().unwrap();
        map.write_at(14, b"+pending").unwrap();
        // Reads see the store at once, as through the page cache.
        assert_eq!(&contents(&fs, "seg").unwrap()[8..22], b"synced+pending");
        // A kill keeps it; power loss keeps only what a sync covered.
        assert_eq!(
            &contents(&fs.restart(), "seg").unwrap()[8..22],
            b"synced+pending"
        );
        let lost = fs.crash_with(|_| Outcome::Lost);
        assert_eq!(
            &contents(&lost, "seg").unwrap()[8..22],
            b"synced\0\0\0\0\0\0\0\0"
        );
        let torn = fs.crash_with(|_| Outcome::Torn {
            at: 3,
            fill: TearFill::Zeros,
        });
        assert_eq!(
            &contents(&torn, "seg").unwrap()[8..22],
            b"synced+pe\0\0\0\0\0"
        );
    }

    #[test]
    fn the_lock_is_exclusive_until_dropped() {
        let fs = SimFs::new(0);
        let guard = fs.lock().unwrap();
        assert_eq!(fs.lock().err().map(|e| e.kind()), Some(ErrorKind::Locked));
        drop(guard);
        drop(fs.lock().unwrap());
    }
}
