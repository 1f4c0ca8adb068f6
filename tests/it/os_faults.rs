//! Real operating-system faults: a store on a full filesystem (ENOSPC) and on
//! a read-only one (EROFS), each a small tmpfs mounted for the test.
//!
//! Mounting needs root (or CAP_SYS_ADMIN). Where the mount fails, each test
//! prints why and passes without checking anything: the simulated
//! filesystem's injected ENOSPC and EIO cover the same code paths
//! everywhere; these tests prove that the real kernel's errors reach the
//! caller the same way.

use crate::util::opts;
use statewal::__internal::verify::verify;
use statewal::{ErrorKind, Options, Store, Task};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The filesystem's size: small, so filling it takes a moment.
const TMPFS_SIZE: &str = "size=2m";
/// Task ids are drawn from this many, so the journal fills with versions
/// while the state (and a checkpoint of it) stays small.
const IDS: usize = 20;

/// A mounted tmpfs, unmounted on drop (also when a test fails).
struct Mount {
    point: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mount {
    /// Mounts a fresh tmpfs, or says why it cannot.
    fn tmpfs() -> Result<Mount, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let point = dir.path().join("mnt");
        std::fs::create_dir(&point).map_err(|e| e.to_string())?;
        mount(&["-t", "tmpfs", "-o", TMPFS_SIZE, "tmpfs"], &point)?;
        Ok(Mount { point, _dir: dir })
    }

    fn remount(&self, how: &str) {
        mount(&["-o", &format!("remount,{how}")], &self.point)
            .unwrap_or_else(|e| panic!("remount {how}: {e}"));
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        let ok = Command::new("umount")
            .arg(&self.point)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds a file open: detach it lazily so the
            // temporary directory can go.
            let _ = Command::new("umount").arg("-l").arg(&self.point).status();
        }
    }
}

fn mount(args: &[&str], point: &Path) -> Result<(), String> {
    let out = Command::new("mount")
        .args(args)
        .arg(point)
        .output()
        .map_err(|e| format!("cannot run mount: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "mount {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn mount_or_skip(test: &str) -> Option<Mount> {
    match Mount::tmpfs() {
        Ok(m) => Some(m),
        Err(why) => {
            eprintln!("{test}: skipped, no tmpfs could be mounted: {why}");
            None
        }
    }
}

fn fs_opts(dir: &Path) -> Options {
    // A small preallocation step, so the segment grows in steps a 2 MiB
    // filesystem can refuse partway.
    opts(dir)
        .journal_preallocate_bytes(64 * 1024)
        .checkpoint_on_drop(false)
}

/// Version `ver` of task `k{i}`: about 2 KiB, with the version inside.
fn versioned(i: usize, ver: u64) -> Task {
    let mut t = Task::new(format!("k{i}"));
    t.set_description(format!("version {ver}"));
    t.set("ver", ver).unwrap();
    t.set("pad", "p".repeat(2000)).unwrap();
    t
}

/// Checks that every id holds exactly its latest acknowledged version.
#[track_caller]
fn check_acknowledged(store: &Store, acked: &BTreeMap<usize, u64>) {
    for (&i, &ver) in acked {
        let got = store.get_task(&format!("k{i}")).unwrap();
        assert_eq!(got, Some(versioned(i, ver)), "task k{i}");
    }
    assert_eq!(
        store.list_tasks().unwrap().len(),
        acked.len(),
        "no task invented"
    );
}

// Guards: ENOSPC from the real kernel reaches the caller as StorageFull
// with a message naming the file; everything acknowledged before it
// survives a reopen on the still-full filesystem; and once space is freed,
// a reopened store writes again.
#[test]
fn full_filesystem() {
    let Some(mnt) = mount_or_skip("full_filesystem") else {
        return;
    };
    let dir = mnt.point.join("state");
    let filler = mnt.point.join("filler");
    std::fs::write(&filler, vec![7u8; 256 * 1024]).unwrap();
    let store = Store::open(fs_opts(&dir)).unwrap();
    let mut acked = BTreeMap::new();
    let mut err = None;
    let mut puts = 0;
    for ver in 1..20_000u64 {
        let i = ver as usize % IDS;
        match store.put_task(versioned(i, ver)) {
            Ok(_) => {
                acked.insert(i, ver);
                puts += 1;
            }
            Err(e) => {
                err = Some(e);
                break;
            }
        }
    }
    let err = err.expect("a 2 MiB filesystem fills up");
    assert_eq!(err.kind(), ErrorKind::StorageFull, "{err}");
    let msg = err.to_string();
    assert!(
        msg.contains("No space left on device") && msg.contains(&dir.display().to_string()),
        "the message says what and where: {msg}"
    );
    // A failed write poisons the journal (fsyncgate: a failed write or sync
    // is never retried as if it had worked), so this store refuses writes
    // from now on, even once space is freed.
    let again = store.put_task(versioned(0, 1_000_000)).unwrap_err();
    assert_eq!(again.kind(), ErrorKind::Poisoned, "{again}");
    drop(store);

    // Reopened on the still-full filesystem (the same mount: a tmpfs loses
    // its files when unmounted), everything acknowledged is there.
    let store = Store::open(fs_opts(&dir)).expect("a full filesystem still opens");
    check_acknowledged(&store, &acked);
    assert!(verify_clean_or_torn(&dir), "verify after ENOSPC");
    let poisoned = match store.put_task(versioned(0, 2_000_000)) {
        Ok(_) => {
            acked.insert(0, 2_000_000);
            false
        }
        Err(e) => {
            assert_eq!(e.kind(), ErrorKind::StorageFull, "{e}");
            let still = store.put_task(versioned(0, 2_000_001)).unwrap_err();
            assert_eq!(still.kind(), ErrorKind::Poisoned, "{still}");
            true
        }
    };
    // Freeing space does not revive this store's journal if that write
    // failed: writes succeed again only in a store reopened after the
    // space was freed. That is the promise tested below.
    std::fs::remove_file(&filler).unwrap();
    if poisoned {
        let after = store.put_task(versioned(0, 2_000_002)).unwrap_err();
        assert_eq!(after.kind(), ErrorKind::Poisoned, "{after}");
    }
    drop(store);

    let store = Store::open(fs_opts(&dir)).expect("reopen after freeing space");
    check_acknowledged(&store, &acked);
    for ver in 3_000_000..3_000_000 + IDS as u64 {
        let i = ver as usize % IDS;
        store
            .put_task(versioned(i, ver))
            .expect("writes succeed again");
        acked.insert(i, ver);
    }
    store
        .checkpoint()
        .expect("a checkpoint fits once space is freed");
    drop(store);
    let store = Store::open(fs_opts(&dir)).unwrap();
    check_acknowledged(&store, &acked);
    println!(
        "full filesystem: {puts} puts acknowledged before ENOSPC, the latest version of each of \
         {IDS} tasks kept; error: {msg}; the reopened store's write on the full filesystem {}",
        if poisoned { "failed too" } else { "fit" }
    );
}

// Guards: on a read-only filesystem the open or the first write fails with
// an Io error naming the path, and nothing on disk is lost or changed.
#[test]
fn read_only_filesystem() {
    let Some(mnt) = mount_or_skip("read_only_filesystem") else {
        return;
    };
    let dir = mnt.point.join("state");
    let store = Store::open(fs_opts(&dir)).unwrap();
    let mut acked = BTreeMap::new();
    for ver in 1..=30u64 {
        let i = ver as usize % IDS;
        if ver == 15 {
            store.checkpoint().unwrap();
        }
        store.put_task(versioned(i, ver)).unwrap();
        acked.insert(i, ver);
    }
    drop(store);
    let before = crate::util::tree(&dir);
    mnt.remount("ro");
    assert!(verify_clean_or_torn(&dir), "verify reads a read-only store");
    let failure = match Store::open(fs_opts(&dir)) {
        Err(e) => e,
        Ok(store) => {
            check_acknowledged(&store, &acked);
            store
                .put_task(versioned(0, 99))
                .expect_err("a write on a read-only filesystem fails")
        }
    };
    assert_eq!(failure.kind(), ErrorKind::Io, "{failure}");
    let msg = failure.to_string();
    assert!(
        msg.contains(&dir.display().to_string()) && msg.contains("Read-only file system"),
        "the message says what and where: {msg}"
    );
    mnt.remount("rw");
    assert_eq!(
        crate::util::tree(&dir),
        before,
        "nothing appeared or vanished"
    );
    let store = Store::open(fs_opts(&dir)).unwrap();
    check_acknowledged(&store, &acked);
    println!("read-only filesystem: {msg}");
}

/// True when `verify` finds nothing or only torn tails.
fn verify_clean_or_torn(dir: &Path) -> bool {
    let fs = statewal::__internal::fs::RealFs::existing(dir).unwrap();
    let report = verify(&fs).unwrap();
    report
        .findings
        .iter()
        .all(|f| f.class == statewal::__internal::verify::FindingClass::TornTail)
}

// Regression: the writer whose record was in a journal write that failed
// with ENOSPC got `Poisoned`, not `StorageFull`, so no caller (and no stdio
// client, whose protocol names `storage_full`) could tell that the disk was
// full. The failing write must carry its own kind; only later writes are
// refused as `Poisoned`. Runs everywhere, on the simulated filesystem.
#[test]
fn enospc_in_a_journal_write_is_storage_full() {
    use statewal::sim::{FaultKind, SimFs};
    let fs = SimFs::new(7);
    let opts = Options::new("sim")
        .checkpoint_interval(None)
        .checkpoint_on_drop(false);
    let store = Store::open_with_fs(opts, std::sync::Arc::new(fs.clone()), None).unwrap();
    store.put_task(versioned(1, 1)).unwrap();
    fs.fail_at(fs.ops() + 1, FaultKind::Enospc, true);
    let full = store.put_task(versioned(2, 1)).unwrap_err();
    assert_eq!(full.kind(), ErrorKind::StorageFull, "{full}");
    let later = store.put_task(versioned(3, 1)).unwrap_err();
    assert_eq!(later.kind(), ErrorKind::Poisoned, "{later}");
}
