//! The read-only open (`Options::read_only`): it creates nothing where there
//! is no store, takes no lock, writes nothing at all, migrates in memory
//! only, and reads beside a running writer without faulting or reporting a
//! checkpoint's segment removal as damage.

use crate::util::*;
use statewal::__internal::fs::{Bytes, Fs, FsFile, OpenMode, RealFs};
use statewal::{ErrorKind, Options, Store};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Read-only options for `dir`.
fn ro(dir: &Path) -> Options {
    Options::new(dir).read_only(true)
}

/// Every file under `dir` with its bytes, and every directory (as `None`).
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    tree(dir)
        .into_iter()
        .map(|rel| {
            let path = dir.join(&rel);
            let bytes = path.is_file().then(|| std::fs::read(&path).unwrap());
            (rel, bytes)
        })
        .collect()
}

/// An `Fs` over the real one that writes nothing: every call that would
/// write, create, sync or lock is recorded and refused. The proof that a
/// read-only store writes nothing, since the tests run as root and
/// permission bits would not stop a write.
struct NoWrites {
    inner: RealFs,
    attempts: Mutex<Vec<String>>,
}

impl NoWrites {
    fn new(dir: &Path) -> Arc<NoWrites> {
        Arc::new(NoWrites {
            inner: RealFs::existing(dir).unwrap(),
            attempts: Mutex::new(Vec::new()),
        })
    }

    fn refuse<T>(&self, what: &str, rel: &str) -> statewal::Result<T> {
        self.attempts.lock().unwrap().push(format!("{what} {rel}"));
        Err(statewal::Error::new(
            ErrorKind::Io,
            format!("test: {what} {rel} is a write"),
        ))
    }

    fn attempts(&self) -> Vec<String> {
        self.attempts.lock().unwrap().clone()
    }
}

impl Fs for NoWrites {
    fn describe(&self, rel: &str) -> String {
        self.inner.describe(rel)
    }
    fn create_dir(&self, rel: &str) -> statewal::Result<()> {
        self.refuse("create_dir", rel)
    }
    fn open(&self, rel: &str, _mode: OpenMode) -> statewal::Result<Box<dyn FsFile>> {
        self.refuse("open", rel)
    }
    fn read(&self, rel: &str) -> statewal::Result<Option<Bytes>> {
        self.inner.read(rel)
    }
    fn read_unmapped(&self, rel: &str) -> statewal::Result<Option<Vec<u8>>> {
        self.inner.read_unmapped(rel)
    }
    fn is_dir(&self, rel: &str) -> statewal::Result<bool> {
        self.inner.is_dir(rel)
    }
    fn file_len(&self, rel: &str) -> statewal::Result<Option<u64>> {
        self.inner.file_len(rel)
    }
    fn rename(&self, from: &str, _to: &str) -> statewal::Result<()> {
        self.refuse("rename", from)
    }
    fn remove(&self, rel: &str) -> statewal::Result<()> {
        self.refuse("remove", rel)
    }
    fn sync_dir(&self, rel: &str) -> statewal::Result<()> {
        self.refuse("sync_dir", rel)
    }
    fn list(&self, rel: &str) -> statewal::Result<Vec<String>> {
        self.inner.list(rel)
    }
    fn lock(&self) -> statewal::Result<Box<dyn Send + Sync>> {
        self.refuse("lock", "")
    }
    fn sync_files(&self, rels: &[String]) -> statewal::Result<()> {
        self.refuse("sync_files", &rels.join(","))
    }
}

/// A store with tasks `a0..a9` durable and `a10`'s record torn in half (its
/// second half zeroed, as a write cut short leaves it), nothing checkpointed
/// past `a0..a4`. Returns the ids a reader must see.
fn store_with_torn_tail(dir: &Path) -> Vec<String> {
    let store = open_crashy(dir);
    put_all(&store, &ids("a", 5));
    store.checkpoint().unwrap();
    put_all(&store, &ids("a", 11)[5..]);
    drop(store);
    let seg = segments(dir).pop().unwrap();
    let (start, end) = *record_spans(&seg).last().unwrap();
    let mut bytes = std::fs::read(&seg).unwrap();
    let mid = ((start + end) / 2) as usize;
    // An interrupted write: the record stops halfway and the sync marker
    // that would follow it was never written (zeros to the end), the only
    // damage a kill leaves in the same boot (docs/recovery.md).
    bytes[mid..].fill(0);
    std::fs::write(&seg, bytes).unwrap();
    std::fs::remove_file(dir.join(".statewal.lock")).unwrap();
    ids("a", 10)
}

// Guards: a read (`list`, `get-task`, ...) of a mistyped or missing directory
// created it, with a whole empty store inside, and even created missing
// parents (`/nonexistent/x/y`).
#[test]
fn read_only_open_of_no_store_creates_nothing() {
    let root = tempfile::tempdir().unwrap();
    let missing = root.path().join("x/y");
    let msg = check_err(try_open(ro(&missing)), ErrorKind::NotFound);
    assert!(msg.contains("no statewal store at"), "{msg}");
    assert!(
        !root.path().join("x").exists(),
        "a read created a directory"
    );

    let empty = root.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    let msg = check_err(try_open(ro(&empty)), ErrorKind::NotFound);
    assert!(msg.contains("no statewal store at"), "{msg}");
    assert!(
        tree(&empty).is_empty(),
        "a read wrote into an empty directory"
    );
    assert!(!statewal::__internal::layout::is_store(&empty).unwrap());

    // Any one of the markers of CONTRACTS section 6 makes a store.
    std::fs::create_dir(empty.join("tasks")).unwrap();
    assert!(statewal::__internal::layout::is_store(&empty).unwrap());
    let store = Store::open(ro(&empty)).expect("tasks/ alone is a store");
    assert!(store.list_tasks().unwrap().is_empty());
}

// Guards: a read-only store wrote: the lock file, the layout directories,
// the truncation of a torn tail, segment syncs, a checkpoint on drop. Every
// write goes through `NoWrites`, which records it and fails it.
#[test]
fn read_only_store_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let want = store_with_torn_tail(dir.path());
    let before = snapshot(dir.path());

    let fs = NoWrites::new(dir.path());
    let store = statewal::__internal::open_with_fs(ro(dir.path()), fs.clone(), None)
        .expect("read-only open");
    // The state as of the last whole record: the torn one is where reading ends.
    check_tasks(&store, &want);
    assert_eq!(store.recovery_report().unwrap().bytes_truncated, 0);
    check_err(store.put_task(task("new")), ErrorKind::ReadOnly);
    check_err(store.delete_task("a1"), ErrorKind::ReadOnly);
    check_err(store.checkpoint(), ErrorKind::ReadOnly);
    check_err(store.append_log("s", "text"), ErrorKind::ReadOnly);
    store.metrics().expect("metrics read only");
    drop(store);
    assert_eq!(
        fs.attempts(),
        Vec::<String>::new(),
        "the read-only store wrote"
    );
    assert_eq!(snapshot(dir.path()), before, "the directory changed");

    // The same through Store::open on the real filesystem: no lock file, and
    // the torn tail is still there for the owner to cut.
    let store = Store::open(ro(dir.path())).unwrap();
    check_tasks(&store, &want);
    store.shutdown().unwrap();
    assert_eq!(snapshot(dir.path()), before, "the directory changed");
    let owner = Store::open(opts(dir.path())).unwrap();
    assert!(owner.recovery_report().unwrap().bytes_truncated > 0);
}

// Guards: a read-only open took the directory lock, so it failed beside a
// running writer (`statewal list` while `serve` runs).
#[test]
fn read_only_open_works_beside_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let writer = Store::open(opts(dir.path())).unwrap();
    put_all(&writer, &ids("w", 20));
    check_err(try_open(opts(dir.path())), ErrorKind::Locked);
    let reader = Store::open(ro(dir.path())).expect("read-only beside the writer");
    check_tasks(&reader, &ids("w", 20));
    put_all(&writer, &ids("w", 30)[20..]);
    drop(reader);
    let reader = Store::open(ro(dir.path())).unwrap();
    check_tasks(&reader, &ids("w", 30));
}

// Guards: a read-only open needs write permission. (The tests run as root,
// where mode 0500 stops no write: `read_only_store_writes_nothing` is the
// proof that nothing is written; this one checks the open on such a
// directory, which is what an unprivileged user meets.)
#[test]
fn read_only_open_works_in_an_unwritable_directory() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let want = store_with_torn_tail(dir.path());
    let before = snapshot(dir.path());
    let set_mode = |mode: u32| {
        for rel in tree(dir.path()).into_iter().chain([PathBuf::new()]) {
            let path = dir.path().join(rel);
            if path.is_dir() {
                std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
            }
        }
    };
    set_mode(0o500);
    let result = Store::open(ro(dir.path())).map(|s| s.list_tasks().unwrap().len());
    set_mode(0o700);
    assert_eq!(result.expect("read-only open"), want.len());
    assert_eq!(snapshot(dir.path()), before);
}

// Guards: a read-only open of an older state.json (the original server's)
// either migrated it on disk or, had it skipped migration, took it for
// corrupt and fell back to tasks/, losing the sessions.
#[test]
fn read_only_open_migrates_in_memory_only() {
    let dir = tempfile::tempdir().unwrap();
    copy_dir(
        Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/fixtures/ts-server-v0"
        )),
        dir.path(),
    );
    let before = snapshot(dir.path());
    let fs = NoWrites::new(dir.path());
    let store = statewal::__internal::open_with_fs(ro(dir.path()), fs.clone(), None).unwrap();
    assert_eq!(
        store.recovery_report().unwrap().loaded_from,
        statewal::report::LoadedFrom::StateFile
    );
    assert_eq!(
        store.list_sessions().unwrap().len(),
        2,
        "sessions of the migrated state"
    );
    assert!(!store.list_tasks().unwrap().is_empty());
    drop(store);
    assert_eq!(fs.attempts(), Vec::<String>::new());
    assert_eq!(snapshot(dir.path()), before, "the migration was written");
}

// Guards: beside a writer that appends and checkpoints in a loop, a reader
// (1) memory-mapped segments the writer then truncated (SIGBUS), and (2)
// read state.json, then found the segments after it removed by a
// checkpoint, and reported the gap as damage. Every load must succeed and
// see a prefix of the writes that only grows.
#[test]
fn read_only_opens_beside_a_checkpointing_writer_see_a_growing_prefix() {
    let dir = tempfile::tempdir().unwrap();
    // Small segments: every checkpoint rotates and removes what it covers.
    let writer = Store::open(opts(dir.path()).journal_preallocate_bytes(64 * 1024)).unwrap();
    writer.put_task(task("w00000")).unwrap();
    let done = std::sync::atomic::AtomicBool::new(false);
    let (loads, raced) = std::thread::scope(|s| {
        let reader = s.spawn(|| {
            let (mut last, mut loads) = (0usize, 0u32);
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                let store = Store::open(ro(dir.path())).expect("read-only open beside the writer");
                let seen: Vec<String> = task_ids(&store).into_iter().collect();
                let n = seen.len();
                assert_eq!(
                    seen,
                    (0..n).map(|i| format!("w{i:05}")).collect::<Vec<_>>(),
                    "not a prefix of the writes"
                );
                assert!(n >= last, "the count went back from {last} to {n}");
                for id in &seen {
                    assert_eq!(store.get_task(id).unwrap().unwrap(), task(id));
                }
                last = n;
                loads += 1;
            }
            (loads, last)
        });
        for i in 1..400 {
            writer.put_task(task(&format!("w{i:05}"))).unwrap();
            if i % 4 == 0 {
                writer.checkpoint().unwrap();
            }
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
        reader.join().expect("the reader")
    });
    assert!(loads >= 10, "only {loads} loads ran beside the writer");
    assert!(raced > 0);
}

// Guards: a read-only open memory-mapped large segments, and a writer that
// truncates one (as an owner's open cuts a torn tail) killed the reader with
// SIGBUS. Here a thread cuts the segment to half and grows it back in a
// loop while the reader opens; loads may fail (the file is being mangled),
// but the process must not fault.
#[test]
fn read_only_open_survives_a_segment_truncated_under_it() {
    let dir = tempfile::tempdir().unwrap();
    let seg = store_with_a_large_segment(dir.path());
    truncated_and_regrown_while(&seg, || {
        // Ok or an error: what matters is that this process is alive.
        let _ = Store::open(ro(dir.path()).recovery_mode(statewal::RecoveryMode::Salvage));
    });
}

// Regression (found by review): `verify`, `dump-journal`, `health` and
// `backups` read through a `RealFs` that holds no lock, and `RealFs::read`
// memory-mapped every file of 64 KiB or more, on the premise that the
// reading process held the directory lock. Beside a writer that truncates a
// segment (an owner's open cutting a torn tail), `verify` died of SIGBUS.
// Now a `RealFs` maps only while it holds the lock. Here a thread cuts the
// segment to half and grows it back while `verify` and a plain read run;
// their results do not matter, only that the process does not fault.
#[test]
fn unlocked_reads_survive_a_segment_truncated_under_them() {
    let dir = tempfile::tempdir().unwrap();
    let seg = store_with_a_large_segment(dir.path());
    let rel = format!("journal/{}", seg.file_name().unwrap().to_str().unwrap());
    let fs = RealFs::existing(dir.path()).unwrap();
    // Unlocked: copied, never mapped.
    assert!(matches!(fs.read(&rel).unwrap(), Some(Bytes::Owned(_))));
    truncated_and_regrown_while(&seg, || {
        let _ = statewal::__internal::verify::verify(&fs);
        if let Ok(Some(bytes)) = fs.read(&rel) {
            // Touch every page, as a scan does.
            let sum: u64 = bytes.iter().step_by(4096).map(|&b| u64::from(b)).sum();
            std::hint::black_box(sum);
        }
    });
    // The lock holder still maps (recovery and checkpoints read fast).
    let _lock = fs.lock().unwrap();
    assert!(matches!(fs.read(&rel).unwrap(), Some(Bytes::Mapped(_))));
}

// Regression (found by review): `health` beside a running writer reported
// "backup state.backup.<stamp>.json is invalid: missing" and exit 1 whenever
// a checkpoint pruned a backup between health's listing and its read: a
// backup rotated away is not a broken one (`backups` already skipped it).
#[test]
fn health_beside_a_checkpointing_writer_reports_no_vanished_backup() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(opts(dir.path())).unwrap();
    for id in ids("t", 200) {
        let mut t = task(&id);
        t.set_description("x".repeat(500));
        store.put_task(t).unwrap();
    }
    let done = std::sync::atomic::AtomicBool::new(false);
    let mut problems = Vec::new();
    std::thread::scope(|s| {
        s.spawn(|| {
            // Each checkpoint makes a backup and prunes the oldest.
            let mut n = 0;
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                n += 1;
                store.put_task(task(&format!("c{}", n % 10))).unwrap();
                store.checkpoint().unwrap();
            }
        });
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(2) && problems.is_empty() {
            problems = statewal::health(dir.path()).problems;
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
    assert!(problems.is_empty(), "{problems:?}");
}

/// A store in `dir` whose last segment is large enough to be memory-mapped
/// (3,000 puts of about 1 KiB, OS-buffered); returns that segment's path.
fn store_with_a_large_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let store = Store::open(crash_opts(dir).sync_policy(statewal::SyncPolicy::OsBuffered)).unwrap();
    for id in ids("t", 3000) {
        let mut t = task(&id);
        t.set_description("x".repeat(1000));
        store.put_task(t).unwrap();
    }
    drop(store);
    let seg = segments(dir).pop().unwrap();
    let len = std::fs::metadata(&seg).unwrap().len();
    assert!(len > 2 << 20, "a segment large enough to be mapped");
    seg
}

/// Runs `body` over and over for 2 s while another thread cuts `seg` to half
/// its length and grows it back, as a writer's truncation would.
fn truncated_and_regrown_while(seg: &std::path::Path, mut body: impl FnMut()) {
    let len = std::fs::metadata(seg).unwrap().len();
    let done = std::sync::atomic::AtomicBool::new(false);
    std::thread::scope(|s| {
        s.spawn(|| {
            let file = std::fs::OpenOptions::new().write(true).open(seg).unwrap();
            while !done.load(std::sync::atomic::Ordering::Relaxed) {
                file.set_len(len / 2).unwrap();
                file.set_len(len).unwrap();
            }
        });
        let started = std::time::Instant::now();
        while started.elapsed() < std::time::Duration::from_secs(2) {
            body();
        }
        done.store(true, std::sync::atomic::Ordering::Relaxed);
    });
}
