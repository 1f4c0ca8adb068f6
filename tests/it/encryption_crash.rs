//! `encrypt` and `decrypt` in place, cut by power loss at every operation
//! (issue 13): the store left opens, with the key or without it as the
//! point reached says, and holds everything it held before. Run on
//! `SimFs` with each power-loss outcome drawn from the seed, and with
//! every unsynced write lost.

use serde_json::json;
use statewal::crypto::{Key, convert_with_fs};
use statewal::sim::{Fs, Outcome, SimFs};
use statewal::{ErrorKind, Options, Store, Task};
use std::collections::BTreeMap;
use std::sync::Arc;

type View = (BTreeMap<String, Vec<u8>>, Vec<String>, Vec<u8>);

fn opts() -> Options {
    Options::new("sim").checkpoint_interval(None)
}

fn view(store: &Store) -> View {
    let tasks = store
        .list_tasks()
        .unwrap()
        .into_iter()
        .map(|t| (t.id().to_string(), t.to_json()))
        .collect();
    let sessions = store
        .list_sessions()
        .unwrap()
        .into_iter()
        .map(|s| s.to_value().to_string())
        .collect();
    let log = store.read_log("session_s.log", ..).unwrap_or_default();
    (tasks, sessions, log)
}

/// A store with tasks, a session, a log and a report, part of it only in
/// the journal; returns its view.
fn fill(sim: &SimFs, key: Option<&Key>) -> View {
    let o = match key {
        Some(k) => opts().encryption_key(k.clone()),
        None => opts(),
    };
    let store = Store::open_with_fs(
        o.clone().checkpoint_on_drop(false),
        Arc::new(sim.clone()),
        None,
    )
    .unwrap();
    for i in 0..4 {
        let mut t = Task::new(format!("t{i}"));
        t.set_description(format!("secret {i}"));
        store.put_task(t).unwrap();
    }
    store.put_session(json!({"id": "s", "n": 1})).unwrap();
    store.append_log("s", "first line\n").unwrap();
    store.checkpoint().unwrap();
    store.save_report("r", json!({"ok": true})).unwrap();
    store.append_log("s", "second line\n").unwrap();
    store.delete_task("t1").unwrap();
    let v = view(&store);
    drop(store);
    v
}

/// Opens what power loss left: with the key if the store (or an unfinished
/// conversion) needs it, else without. Returns the view and whether it is
/// encrypted.
fn open_either(fs: SimFs, key: &Key) -> (View, bool) {
    let keyed = opts().encryption_key(key.clone());
    match Store::open_with_fs(keyed, Arc::new(fs.clone()), None) {
        Ok(store) => {
            let encrypted = fs
                .read_unmapped("state.json")
                .unwrap()
                .is_some_and(|b| b.starts_with(b"SWSEALED"));
            (view(&store), encrypted)
        }
        Err(e)
            if e.kind() == ErrorKind::InvalidInput && e.to_string().contains("not encrypted") =>
        {
            let store = Store::open_with_fs(opts(), Arc::new(fs), None)
                .unwrap_or_else(|e| panic!("the plain store does not open: {e}"));
            (view(&store), false)
        }
        Err(e) => panic!("neither with the key nor without: {e}"),
    }
}

fn sweep(encrypt: bool) {
    let key = Key::generate().unwrap();
    let base = SimFs::new(11);
    let before = fill(&base, (!encrypt).then_some(&key));
    let keyed = opts().encryption_key(key.clone());
    let probe = base.fork();
    let report = convert_with_fs(keyed.clone(), Arc::new(probe.clone()), encrypt).unwrap();
    assert!(
        report.files >= 5 && report.segments_removed >= 1,
        "{report:?}"
    );
    let ops = probe.ops();
    let (after, encrypted) = open_either(probe.fork(), &key);
    assert_eq!((after, encrypted), (before.clone(), encrypt));
    // Once it returned, power loss keeps it done: no marker comes back
    // (which would ask a decrypted store for its key again).
    let lost = probe.crash_with(|_| Outcome::Lost);
    assert!(
        lost.read_unmapped(".statewal.converting")
            .unwrap()
            .is_none()
    );
    assert_one_form(&lost, ops);
    let mut finished = 0;
    for n in 0..ops {
        for lose_all in [false, true] {
            let sim = base.fork();
            sim.crash_after_ops(n);
            let _ = convert_with_fs(keyed.clone(), Arc::new(sim.clone()), encrypt);
            let after = match lose_all {
                true => sim.crash_with(|_| Outcome::Lost),
                false => sim.crash(),
            };
            assert_one_form(&after, n);
            let (seen, encrypted) = open_either(after, &key);
            assert_eq!(
                seen, before,
                "power loss at op {n} of {ops} (lose all: {lose_all})"
            );
            finished += usize::from(encrypted == encrypt);
        }
    }
    // Both outcomes were reached: some crashes came before the marker, most
    // after it (and the open finished the conversion).
    assert!(
        finished > 0 && finished < 2 * ops as usize,
        "{finished} of {}",
        2 * ops
    );
}

/// Without the conversion's marker, every layout file and every journal
/// segment is in one form: all sealed or all plain (a plain segment left
/// in an encrypted store keeps its records in clear).
fn assert_one_form(fs: &SimFs, n: u64) {
    if fs.read_unmapped(".statewal.converting").unwrap().is_some() {
        return;
    }
    let mut forms = BTreeMap::new();
    for dir in [
        "", "tasks", "sessions", "logs", "reports", "archive", "journal",
    ] {
        for name in fs.list(dir).unwrap() {
            // Not the lock, temp files, or the caches (written unsynced,
            // so power loss may leave them torn: rebuilt when they are).
            let skip = [".statewal.lock", ".statewal-task-stats", "state.snapshot"];
            if skip.contains(&name.as_str()) || name.ends_with(".tmp") {
                continue;
            }
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let bytes = fs.read_unmapped(&rel).unwrap().unwrap_or_default();
            let sealed = if dir == "journal" {
                // The cipher code in the segment header.
                bytes.len() > 72 && bytes[72] != 0
            } else {
                bytes.starts_with(b"SWSEALED")
            };
            forms.insert(rel, sealed);
        }
    }
    let sealed = forms.values().filter(|&&s| s).count();
    assert!(
        sealed == 0 || sealed == forms.len(),
        "op {n}: a mix of sealed and plain files without a marker: {forms:#?}"
    );
}

#[test]
fn encrypt_cut_anywhere_leaves_a_store_that_opens() {
    sweep(true);
}

#[test]
fn decrypt_cut_anywhere_leaves_a_store_that_opens() {
    sweep(false);
}

/// Opens an encrypted store with the first of `keys` it takes; returns its
/// view and the id of the key `state.json` is sealed with afterwards.
fn open_with_any(fs: SimFs, keys: &[&Key]) -> (View, String) {
    let mut errors = Vec::new();
    for key in keys {
        match Store::open_with_fs(
            opts().encryption_key((*key).clone()),
            Arc::new(fs.clone()),
            None,
        ) {
            Ok(store) => {
                let head = fs.read_unmapped("state.json").unwrap().unwrap_or_default();
                let id = u32::from_le_bytes(head[12..16].try_into().unwrap());
                return (view(&store), format!("{id:08x}"));
            }
            Err(e) if e.kind() == ErrorKind::Key => errors.push(e.to_string()),
            Err(e) => panic!("{e}"),
        }
    }
    panic!("no key opens it: {errors:#?}");
}

/// The key id each sealed layout file and each segment is sealed with.
fn key_ids(fs: &SimFs) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for dir in [
        "", "tasks", "sessions", "logs", "reports", "archive", "journal",
    ] {
        for name in fs.list(dir).unwrap() {
            let rel = if dir.is_empty() {
                name.clone()
            } else {
                format!("{dir}/{name}")
            };
            let head = fs.read_unmapped(&rel).unwrap().unwrap_or_default();
            let id = if head.starts_with(b"SWSEALED") {
                u32::from_le_bytes(head[12..16].try_into().unwrap())
            } else if dir == "journal" && head.len() >= 80 {
                u32::from_le_bytes(head[76..80].try_into().unwrap())
            } else {
                continue;
            };
            out.push((rel, format!("{id:08x}")));
        }
    }
    out
}

/// `rekey` cut by power loss at every operation: the store opens with the
/// old key (the change not begun) or only the new one (begun: the old key
/// is kept in the keyring), and holds what it held; a `rekey` run again
/// goes on with the change it began.
#[test]
fn rekey_cut_anywhere_leaves_a_store_that_opens() {
    let old = Key::generate().unwrap();
    let new = Key::generate().unwrap();
    let base = SimFs::new(12);
    let before = fill(&base, Some(&old));
    let keyed = opts().encryption_key(old.clone());
    let probe = base.fork();
    let report =
        statewal::crypto::rekey_with_fs(keyed.clone(), Arc::new(probe.clone()), new.clone())
            .unwrap();
    assert!(report.files >= 5, "{report:?}");
    let ops = probe.ops();
    let lost = probe.crash_with(|_| Outcome::Lost);
    // Every layout file is under the new key once it returns.
    for (rel, id) in key_ids(&lost) {
        if !rel.starts_with("journal/") {
            assert_eq!(id, new.id().to_string(), "{rel}");
        }
    }
    // The old key no longer opens it.
    let e = Store::open_with_fs(keyed.clone(), Arc::new(lost.fork()), None).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    assert!(e.to_string().contains(&new.id().to_string()), "{e}");
    assert_eq!(
        open_with_any(lost, &[&new]),
        (before.clone(), new.id().to_string())
    );
    let mut moved = 0;
    for n in 0..ops {
        let sim = base.fork();
        sim.crash_after_ops(n);
        let _ = statewal::crypto::rekey_with_fs(keyed.clone(), Arc::new(sim.clone()), new.clone());
        let after = sim.crash();
        let begun = after.read_unmapped(".statewal-keyring").unwrap().is_some();
        let (seen, _) = open_with_any(after.fork(), &[&new, &old]);
        assert_eq!(seen, before, "power loss at op {n} of {ops}");
        moved += usize::from(begun);
        // Run again (with the old key, as the first run was), it goes on
        // with the change, or begins it.
        let again =
            statewal::crypto::rekey_with_fs(keyed.clone(), Arc::new(after.clone()), new.clone())
                .unwrap_or_else(|e| panic!("op {n}: {e}"));
        assert_eq!(again.resumed, begun, "op {n}");
        assert_eq!(open_with_any(after, &[&new]).0, before, "op {n}");
    }
    assert!(moved > 0 && moved < ops as usize, "{moved} of {ops}");
}

/// A key change finishes at the checkpoints that follow it: new writes
/// are sealed under the new key at once, the segments under the old one go
/// once no backup needs them, and then the keyring goes and `health` stops
/// reporting the change.
#[test]
fn a_key_change_finishes_at_the_following_checkpoints() {
    let old = Key::generate().unwrap();
    let new = Key::generate().unwrap();
    let sim = SimFs::new(13);
    let before = fill(&sim, Some(&old));
    let keyed = opts().encryption_key(old.clone());
    let report =
        statewal::crypto::rekey_with_fs(keyed, Arc::new(sim.clone()), new.clone()).unwrap();
    assert!(!report.finished && report.segments_left > 0, "{report:?}");
    assert!(sim.read_unmapped(".statewal-keyring").unwrap().is_some());
    let o = opts().encryption_key(new.clone()).backups_kept(2);
    let store = Store::open_with_fs(o.clone(), Arc::new(sim.clone()), None).unwrap();
    assert_eq!(view(&store).0, before.0);
    for i in 0..5 {
        store.put_task(Task::new(format!("n{i}"))).unwrap();
        store.checkpoint().unwrap();
        // What the store writes is under the new key from the start.
        let newest = key_ids(&sim)
            .into_iter()
            .rfind(|(rel, _)| rel.starts_with("journal/"))
            .unwrap();
        assert_eq!(newest.1, new.id().to_string(), "{newest:?}");
    }
    drop(store);
    assert!(
        sim.read_unmapped(".statewal-keyring").unwrap().is_none(),
        "{:#?}",
        key_ids(&sim)
    );
    for (rel, id) in key_ids(&sim) {
        assert_eq!(id, new.id().to_string(), "{rel}");
    }
    let store = Store::open_with_fs(o, Arc::new(sim.clone()), None).unwrap();
    assert_eq!(store.list_tasks().unwrap().len(), before.0.len() + 5);
}
