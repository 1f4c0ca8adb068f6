//! Encryption at rest (issue 13, feature `encryption`): nothing readable
//! without the key, every change detected, and a wrong, missing or
//! exposed key told apart from damage. The conformance suite runs on an
//! encrypted store too (`conformance::encrypted`).

use crate::util::{files_under, run_statewal, scratch, segments, task_ids};
use serde_json::json;
use statewal::__internal::journal::record::{
    REC_KIND_OFFSET, REC_SEQ_OFFSET, REC_SYNCED_DISTANCE_OFFSET, RECORD_HEADER_LEN, RecordKind,
    SegmentHeader, encode_record,
};
use statewal::crypto::{Algorithm, Key};
use statewal::{ErrorKind, Options, RecoveryMode, Store, Task};
use std::path::Path;

pub(crate) const SECRET: &str = "rm -rf the-secret-prompt-4417";

pub(crate) fn keyed(dir: &Path, key: &Key) -> Options {
    Options::new(dir)
        .checkpoint_interval(None)
        .encryption_key(key.clone())
}

/// A store holding `SECRET` in a task, a session, a log and a report,
/// checkpointed twice (so a backup holds it too), with more records after.
fn populated(dir: &Path, key: &Key, cipher: Algorithm) {
    populate(keyed(dir, key).cipher(cipher));
}

/// What [`populated`] writes, through a store opened with `opts`.
pub(crate) fn populate(opts: Options) {
    let store = Store::open(opts).unwrap();
    let mut t = Task::new("t1");
    t.set_description(SECRET);
    store.put_task(t).unwrap();
    store
        .put_session(json!({"id": "s1", "note": SECRET}))
        .unwrap();
    store.append_log("s1", &format!("{SECRET}\n")).unwrap();
    store.save_report("r1", json!({"text": SECRET})).unwrap();
    store.checkpoint().unwrap();
    let mut t = Task::new("t2");
    t.set_description(SECRET);
    store.put_task(t).unwrap();
    store.checkpoint().unwrap();
    let mut t = Task::new("t3");
    t.set_description(SECRET);
    store.put_task(t).unwrap();
    store.archive_task("t2").unwrap();
    drop(store);
}

#[test]
fn nothing_in_the_directory_reads_in_clear() {
    for cipher in Algorithm::ALL {
        let tmp = scratch();
        let dir = tmp.path().join("store");
        let key = Key::generate().unwrap();
        populated(&dir, &key, cipher);
        let all = files_under(&dir);
        assert!(all.len() >= 8, "{all:#?}");
        for f in &all {
            let bytes = std::fs::read(f).unwrap();
            let hit = bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes());
            assert!(!hit, "{cipher}: {} holds the secret in clear", f.display());
        }
        // And with the key everything is there.
        let store = Store::open(keyed(&dir, &key)).unwrap();
        let t1 = store.get_task("t1").unwrap().unwrap();
        assert_eq!(t1.description(), Some(SECRET));
        assert!(store.get_task("t3").unwrap().is_some());
        assert_eq!(
            store.get_session("s1").unwrap().unwrap().to_value()["note"],
            SECRET
        );
        let log = store.read_log("session_s1.log", ..).unwrap();
        assert!(String::from_utf8_lossy(&log).contains(SECRET));
        assert_eq!(store.get_report("r1").unwrap().unwrap()["text"], SECRET);
    }
}

#[test]
fn a_wrong_or_missing_key_is_a_key_error_naming_the_id() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key = Key::generate().unwrap();
    populated(&dir, &key, Algorithm::default());
    let id = key.id().to_string();
    let e = Store::open(Options::new(&dir)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    assert!(e.to_string().contains(&id), "{e}");
    let other = Key::generate().unwrap();
    let e = Store::open(keyed(&dir, &other)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    let m = e.to_string();
    assert!(
        m.contains(&id) && m.contains(&other.id().to_string()),
        "{m}"
    );
    // Read-only alike.
    let e = Store::open(Options::new(&dir).read_only(true)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    // Nothing was changed by the refusals: the key still opens it all.
    let store = Store::open(keyed(&dir, &key)).unwrap();
    assert_eq!(store.list_tasks().unwrap().len(), 2);
}

#[test]
fn a_plain_store_given_a_key_is_refused_untouched() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let store = Store::open(Options::new(&dir)).unwrap();
    store.put_task(Task::new("a")).unwrap();
    drop(store);
    let before = crate::util::tree(&dir);
    let e = Store::open(keyed(&dir, &Key::generate().unwrap())).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("statewal encrypt"), "{e}");
    assert_eq!(crate::util::tree(&dir), before);
    assert!(
        Store::open(Options::new(&dir))
            .unwrap()
            .get_task("a")
            .unwrap()
            .is_some()
    );
}

/// Every bit of every sealed record payload flipped, with the frame's
/// checksum made valid again (what an attacker who knows the format would
/// do): the tag catches each one, and the open fails naming the record.
#[test]
fn a_forged_record_does_not_authenticate() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key = Key::generate().unwrap();
    let store = Store::open(keyed(&dir, &key).checkpoint_on_drop(false)).unwrap();
    store.put_task(Task::new("a")).unwrap();
    store.put_task(Task::new("b")).unwrap();
    drop(store);
    let seg = segments(&dir).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let header = SegmentHeader::decode(&bytes).unwrap();
    assert!(header.cipher.is_some());
    let spans = crate::util::record_spans(&seg);
    assert_eq!(spans.len(), 2);
    let (start, end) = (spans[0].0 as usize, spans[0].1 as usize);
    let frame = &bytes[start..end];
    let le = |at: usize, n: usize| {
        let mut b = [0u8; 8];
        b[..n].copy_from_slice(&frame[at..at + n]);
        u64::from_le_bytes(b)
    };
    let seq = le(REC_SEQ_OFFSET, 8);
    let synced = seq - le(REC_SYNCED_DISTANCE_OFFSET, 4);
    assert_eq!(frame[REC_KIND_OFFSET], RecordKind::PutTask as u8);
    let payload = &frame[RECORD_HEADER_LEN..];
    let mut opened = 0;
    for bit in 0..payload.len() * 8 {
        let mut forged = payload.to_vec();
        forged[bit / 8] ^= 1 << (bit % 8);
        let mut out = bytes[..start].to_vec();
        encode_record(
            &mut out,
            header.salt,
            seq,
            synced,
            RecordKind::PutTask,
            &forged,
        );
        out.extend_from_slice(&bytes[end..]);
        std::fs::write(&seg, &out).unwrap();
        let opts = keyed(&dir, &key)
            .recovery_mode(RecoveryMode::Strict)
            .read_only(true);
        match Store::open(opts) {
            Ok(_) => opened += 1,
            Err(e) => {
                assert_eq!(e.kind(), ErrorKind::Corrupt, "bit {bit}: {e}");
                assert!(
                    e.to_string().contains("does not authenticate"),
                    "bit {bit}: {e}"
                );
            }
        }
    }
    assert_eq!(opened, 0, "forged records opened");
    std::fs::write(&seg, &bytes).unwrap();
    assert_eq!(
        Store::open(keyed(&dir, &key))
            .unwrap()
            .list_tasks()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn the_cli_needs_the_key_and_refuses_an_exposed_key_file() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key_file = tmp.path().join("key");
    let k = key_file.to_str().unwrap();
    let out = run_statewal(tmp.path(), &["keygen", k, "--json"], "", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let made: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = made["key_id"].as_str().unwrap().to_string();
    let task = format!("{{\"id\":\"t\",\"description\":\"{SECRET}\"}}");
    let out = run_statewal(&dir, &["--key-file", k, "put-task", "-"], &task, &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run_statewal(&dir, &["--key-file", k, "get-task", "t"], "", &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(SECRET),
        "{out:?}"
    );
    // The key from the environment, and from a command.
    let line = std::fs::read_to_string(&key_file).unwrap();
    let env = [("STATEWAL_KEY", line.trim())];
    let out = run_statewal(&dir, &["list"], "", &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let cmd = format!("cat {k}");
    let out = run_statewal(&dir, &["--key-command", &cmd, "list"], "", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    // Without it: exit 2, naming the key id, never "corrupt".
    let out = run_statewal(&dir, &["list"], "", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&id) && !err.contains("corrupt"), "{err}");
    // A key file others can read is refused, naming its mode.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = run_statewal(&dir, &["--key-file", k, "list"], "", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("0644"), "{err}");
    // keygen never replaces a key.
    std::fs::set_permissions(&key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = run_statewal(tmp.path(), &["keygen", k], "", &[]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(std::fs::read_to_string(&key_file).unwrap(), line);
}

#[test]
fn no_key_bytes_in_debug_output() {
    let key = Key::generate().unwrap();
    let line = key.to_line();
    let opts = keyed(Path::new("/tmp/x"), &key);
    let shown = format!("{opts:?} {key:?}");
    assert!(!shown.contains(line.trim()), "{shown}");
    assert!(shown.contains(&key.id().to_string()), "{shown}");
}

/// Without the key, `verify` checks every file's checksum and envelope and
/// `dump-journal` every frame: integrity only. A flipped bit in a layout
/// file or a record is a finding; an intact store is clean but says what
/// it could not check.
#[test]
fn verify_and_dump_journal_check_integrity_without_the_key() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key = Key::generate().unwrap();
    populated(&dir, &key, Algorithm::default());
    let report = statewal::verify(&dir).unwrap();
    assert!(report.is_clean(), "{report:?}");
    assert!(report.files_checked >= 8, "{report:?}");
    assert!(report.records_checked >= 2, "{report:?}");
    assert!(
        report
            .warnings
            .iter()
            .any(|w| w.message.contains(&key.id().to_string())),
        "{report:?}"
    );
    let out = run_statewal(&dir, &["dump-journal", "--json"], "", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let lines = crate::util::json_lines(&out.stdout);
    let records: Vec<_> = lines.iter().filter(|l| l["sealed"] == true).collect();
    assert!(!records.is_empty(), "{lines:#?}");
    assert!(
        records
            .iter()
            .all(|l| l["payload_error"].is_null() && l["id"].is_null())
    );
    // A flipped bit in a task file, then in a journal record.
    let task_file = dir.join("tasks/t1.json");
    crate::util::flip_bit(&task_file, 40, 3);
    let report = statewal::verify(&dir).unwrap();
    assert!(
        report.findings.iter().any(|f| f.file.contains("t1.json")),
        "{report:?}"
    );
    crate::util::flip_bit(&task_file, 40, 3);
    assert!(statewal::verify(&dir).unwrap().is_clean());
    let seg = segments(&dir).pop().unwrap();
    let (start, _) = crate::util::record_spans(&seg)[0];
    crate::util::flip_bit(&seg, start + RECORD_HEADER_LEN as u64 + 5, 0);
    let report = statewal::verify(&dir).unwrap();
    assert!(!report.is_clean(), "{report:?}");
}

/// `export` writes an encrypted store out in clear, every file plain JSON
/// again, and says a key is needed without one.
#[test]
fn export_writes_a_plain_copy() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key_file = tmp.path().join("key");
    let key = Key::generate_file(&key_file).unwrap();
    populated(&dir, &key, Algorithm::default());
    let to = tmp.path().join("plain");
    let out = run_statewal(&dir, &["export", "--to", to.to_str().unwrap()], "", &[]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("a key is needed"));
    assert!(!to.exists());
    let k = key_file.to_str().unwrap();
    let out = run_statewal(
        &dir,
        &["--key-file", k, "export", "--to", to.to_str().unwrap()],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let state = std::fs::read(to.join("state.json")).unwrap();
    assert!(serde_json::from_slice::<serde_json::Value>(&state).is_ok());
    assert!(state.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()));
    let plain = Store::open(Options::new(&to)).unwrap();
    assert_eq!(
        plain.get_task("t1").unwrap().unwrap().description(),
        Some(SECRET)
    );
}

/// `health` without the key: an intact encrypted store is healthy (with a
/// warning that says what was not read); a damaged state file is a
/// problem; an interrupted conversion is a problem naming its key.
#[test]
fn health_without_the_key() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key = Key::generate().unwrap();
    populated(&dir, &key, Algorithm::default());
    let h = statewal::health(&dir);
    assert!(h.healthy, "{h:?}");
    assert!(h.backups_valid >= 1 && h.journal_segments >= 1, "{h:?}");
    assert!(
        h.warnings.iter().any(|w| w.contains(&key.id().to_string())),
        "{h:?}"
    );
    crate::util::flip_bit(&dir.join("state.json"), 50, 1);
    let h = statewal::health(&dir);
    assert!(
        !h.healthy && h.problems.iter().any(|p| p.contains("state.json")),
        "{h:?}"
    );
    crate::util::flip_bit(&dir.join("state.json"), 50, 1);
    // A marker as a conversion writes it is sealed; a planted plain one is
    // reported all the same, and an open refuses it as damage.
    std::fs::write(dir.join(".statewal.converting"), "{\"to\":\"plain\"}").unwrap();
    let h = statewal::health(&dir);
    assert!(
        !h.healthy && h.problems.iter().any(|p| p.contains("stopped")),
        "{h:?}"
    );
    let e = Store::open(keyed(&dir, &key)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
}

/// A key with a database is refused, not ignored: PostgreSQL would store
/// in clear what the caller asked to have sealed.
#[cfg(feature = "postgres")]
#[test]
fn a_key_with_a_database_is_refused() {
    let key = Key::generate().unwrap();
    let opts = Options::new("/nonexistent")
        .database("postgres://127.0.0.1:1/nowhere")
        .encryption_key(key.clone());
    let e = Store::open(opts).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Unsupported, "{e}");
    assert!(e.to_string().contains(&key.id().to_string()), "{e}");
}

/// A `state.json` cut short (inside its envelope's header) or overwritten
/// says nothing about whether the store is encrypted: the store is still
/// told to be encrypted by its backups and segments, opens with its key
/// from them, and loses nothing; without the key it is a key error.
#[test]
fn a_damaged_state_json_does_not_make_the_store_plain() {
    for damage in [&b"SWSEAL"[..], &b"\x00\x01garbage"[..]] {
        let tmp = scratch();
        let dir = tmp.path().join("store");
        let key = Key::generate().unwrap();
        populated(&dir, &key, Algorithm::default());
        let held = task_ids(&Store::open(keyed(&dir, &key)).unwrap());
        std::fs::write(dir.join("state.json"), damage).unwrap();
        let e = Store::open(Options::new(&dir).checkpoint_interval(None)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Key, "{e}");
        let store = Store::open(keyed(&dir, &key)).unwrap();
        assert_eq!(task_ids(&store), held);
    }
}

/// Files planted in `tasks/` of an encrypted store (one in clear, one
/// sealed under another name, one the size of a disk) are reported as
/// problems and never read whole; the store opens with what it holds.
#[test]
fn planted_task_files_in_an_encrypted_store() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key = Key::generate().unwrap();
    populated(&dir, &key, Algorithm::default());
    let tasks = dir.join("tasks");
    std::fs::write(
        tasks.join("evil.json"),
        br#"{"id":"evil","description":"x"}"#,
    )
    .unwrap();
    std::fs::copy(tasks.join("t1.json"), tasks.join("t9.json")).unwrap();
    let big = std::fs::File::create(tasks.join("big.json")).unwrap();
    big.set_len(300 << 20).unwrap();
    drop(big);
    let store = Store::open(keyed(&dir, &key)).unwrap();
    assert_eq!(task_ids(&store), ["t1", "t3"].map(String::from).into());
}

/// `backups` lists an encrypted store's backups: with the key each is
/// opened and checked; without it, each envelope is, and the listing says
/// the key is needed to check more. `migrate` and `copy`, which take no
/// key, say why instead of reading sealed files as damaged JSON.
#[test]
fn backups_migrate_and_copy_on_an_encrypted_store() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key_file = tmp.path().join("key");
    let key = Key::generate_file(&key_file).unwrap();
    populated(&dir, &key, Algorithm::default());
    let k = key_file.to_str().unwrap();
    let listed = |args: &[&str]| {
        let out = run_statewal(&dir, args, "", &[]);
        assert_eq!(out.status.code(), Some(0), "{out:?}");
        crate::util::json_lines(&out.stdout)
    };
    let keyed = listed(&["--key-file", k, "backups", "--json"]);
    assert!(!keyed.is_empty());
    assert!(keyed.iter().all(|b| b["valid"] == true), "{keyed:#?}");
    let bare = listed(&["backups", "--json"]);
    assert_eq!(bare.len(), keyed.len());
    for b in &bare {
        assert_eq!(b["valid"], false);
        let why = b["problem"].as_str().unwrap();
        assert!(
            why.contains("give the key") && why.contains(&key.id().to_string()),
            "{why}"
        );
    }
    for (args, says) in [
        (&["migrate"][..], "is encrypted"),
        (&["--key-file", k, "migrate"][..], "takes no key"),
        (
            &["--key-file", k, "copy", "--from", ".", "--to", "../c"][..],
            "statewal export",
        ),
    ] {
        let out = run_statewal(&dir, args, "", &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(says), "{args:?}: {err}");
    }
}

/// `statewal rekey`: the store opens only with the new key from then on,
/// and `health` says a change is under way while the old key is kept.
#[test]
fn rekey_from_the_cli() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let (k1, k2) = (tmp.path().join("k1"), tmp.path().join("k2"));
    let old = Key::generate_file(&k1).unwrap();
    let new = Key::generate_file(&k2).unwrap();
    populated(&dir, &old, Algorithm::default());
    let (k1, k2) = (k1.to_str().unwrap(), k2.to_str().unwrap());
    let out = run_statewal(
        &dir,
        &["--key-file", k1, "rekey", "--new-key-file", k2, "--json"],
        "",
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["key_id"], new.id().to_string());
    assert_eq!(report["old_key_id"], old.id().to_string());
    assert!(report["files"].as_u64().unwrap() >= 8, "{report}");
    let out = run_statewal(&dir, &["--key-file", k1, "list"], "", &[]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains(&new.id().to_string()), "{err}");
    let out = run_statewal(&dir, &["--key-file", k2, "get-task", "t1"], "", &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(SECRET),
        "{out:?}"
    );
    let out = run_statewal(&dir, &["health", "--json"], "", &[]);
    let health: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let warned = health["warnings"]
        .as_array()
        .unwrap()
        .iter()
        .any(|w| w.as_str().unwrap().contains("key change"));
    assert_eq!(warned, report["finished"] == false, "{health}");
}

/// A store just encrypted, whose journal holds nothing a backup needs:
/// `rekey`'s own checkpoints remove every segment under the old key, and
/// the change is finished when it returns.
#[test]
fn rekey_of_a_store_just_encrypted_finishes_at_once() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let (old, new) = (Key::generate().unwrap(), Key::generate().unwrap());
    let store = Store::open(Options::new(&dir).checkpoint_interval(None)).unwrap();
    store.put_task(Task::new("a")).unwrap();
    drop(store);
    statewal::crypto::encrypt(keyed(&dir, &old)).unwrap();
    let report = statewal::crypto::rekey(keyed(&dir, &old), new.clone()).unwrap();
    assert!(report.finished, "{report:?}");
    assert!(!dir.join(".statewal-keyring").exists());
    let store = Store::open(keyed(&dir, &new)).unwrap();
    assert!(store.get_task("a").unwrap().is_some());
}
