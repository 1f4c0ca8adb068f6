//! An encrypted store against damage and planted files (issue 13, from an
//! adversarial review): a damaged file is damage the store passes over,
//! never a wrong-key verdict, a stuck checkpoint or a stuck key change; and
//! once a key change has sealed every file again, the old key forges
//! nothing.

use crate::encryption::{keyed, populate};
use crate::util::{flip_bit, scratch, task_ids};
use statewal::crypto::{Algorithm, Key};
use statewal::{ErrorKind, Store, Task};
use std::path::Path;

fn populated(dir: &Path, key: &Key) {
    populate(keyed(dir, key).cipher(Algorithm::default()));
}

/// Flips the low bit of byte `at` of `path`, or of its third byte from the
/// end when it is shorter (`usize::MAX`: inside the tag).
fn flip(path: &Path, at: usize) {
    let len = std::fs::metadata(path).unwrap().len();
    let at = (at as u64).min(len - 3);
    flip_bit(path, at, 0);
}

/// A flipped bit in `state.json` (in its key id, or its ciphertext), or a
/// plain JSON object written over it: the store opens from its backups
/// and journal with everything, never a wrong-key or "not encrypted"
/// verdict.
#[test]
fn a_damaged_state_json_is_damage_whatever_the_damage() {
    for damage in ["key id", "ciphertext", "plain json"] {
        let tmp = scratch();
        let dir = tmp.path().join("store");
        let key = Key::generate().unwrap();
        populated(&dir, &key);
        let held = task_ids(&Store::open(keyed(&dir, &key)).unwrap());
        let state = dir.join("state.json");
        match damage {
            "key id" => flip(&state, 13),
            "ciphertext" => flip(&state, 60),
            _ => std::fs::write(&state, b"{\"version\": \"1.0.0\", \"tasks\": []}\n").unwrap(),
        }
        let store = Store::open(keyed(&dir, &key))
            .unwrap_or_else(|e| panic!("{damage}: {:?}: {e}", e.kind()));
        assert_eq!(task_ids(&store), held, "{damage}");
    }
}

/// A sealed session log that no longer opens never stops a checkpoint: it
/// is set aside, and the log goes on.
#[test]
fn a_damaged_sealed_log_never_stops_a_checkpoint() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key = Key::generate().unwrap();
    {
        let s = Store::open(keyed(&dir, &key)).unwrap();
        s.append_log("s1", "first\n").unwrap();
        s.checkpoint().unwrap();
    }
    flip(&dir.join("logs/session_s1.log"), usize::MAX);
    let s = Store::open(keyed(&dir, &key)).unwrap();
    s.append_log("s1", "second\n").unwrap();
    s.put_task(Task::new("x")).unwrap();
    s.checkpoint().expect("the checkpoint goes on");
    let log = s.read_log("session_s1.log", ..).unwrap();
    assert!(log.ends_with(b"second\n"), "{log:?}");
    drop(s);
    let aside: Vec<String> = std::fs::read_dir(dir.join("logs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains(".damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    let s = Store::open(keyed(&dir, &key)).unwrap();
    assert!(task_ids(&s).contains("x"));
}

/// A file under the old key that was damaged before a key change does not
/// hold the change up: `rekey` names it, and the change finishes.
#[test]
fn a_damaged_old_file_does_not_hold_a_key_change_up() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let (old, new) = (Key::generate().unwrap(), Key::generate().unwrap());
    populated(&dir, &old);
    flip(&dir.join("sessions/s1.json"), usize::MAX);
    let report = statewal::crypto::rekey(keyed(&dir, &old), new.clone()).unwrap();
    assert!(
        report.damaged.iter().any(|d| d.contains("s1.json")),
        "{report:?}"
    );
    let o = keyed(&dir, &new).backups_kept(2);
    let s = Store::open(o).unwrap();
    for i in 0..5 {
        s.put_task(Task::new(format!("n{i}"))).unwrap();
        s.checkpoint().unwrap();
    }
    drop(s);
    assert!(!dir.join(".statewal-keyring").exists());
}

/// After `rekey` has sealed every layout file again, a file sealed under
/// the old key (by whoever still holds it) is not taken: the store keeps
/// what it had, and sets the planted file aside.
#[test]
fn the_old_key_forges_nothing_once_rekey_returns() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let (old, new) = (Key::generate().unwrap(), Key::generate().unwrap());
    populated(&dir, &old);
    // A copy of t1 under the old key, from before a later change of it.
    let planted = std::fs::read(dir.join("tasks/t1.json")).unwrap();
    {
        let s = Store::open(keyed(&dir, &old)).unwrap();
        let mut t = Task::new("t1");
        t.set_description("the newer description");
        s.put_task(t).unwrap();
    }
    let report = statewal::crypto::rekey(keyed(&dir, &old), new.clone()).unwrap();
    assert!(
        !report.finished,
        "the test needs a change under way: {report:?}"
    );
    std::fs::write(dir.join("tasks/t1.json"), &planted).unwrap();
    let s = Store::open(keyed(&dir, &new)).unwrap();
    let t1 = s.get_task("t1").unwrap().unwrap();
    assert_eq!(t1.description(), Some("the newer description"));
}

/// A damaged keyring stops the store with an error that says what to do;
/// `rekey` run again with both keys writes it again, and the store opens.
#[test]
fn a_damaged_keyring_is_written_again_by_rekey() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let (old, new) = (Key::generate().unwrap(), Key::generate().unwrap());
    populated(&dir, &old);
    let report = statewal::crypto::rekey(keyed(&dir, &old), new.clone()).unwrap();
    assert!(!report.finished, "{report:?}");
    flip(&dir.join(".statewal-keyring"), usize::MAX);
    let e = Store::open(keyed(&dir, &new)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
    assert!(e.to_string().contains("statewal rekey"), "{e}");
    statewal::crypto::rekey(keyed(&dir, &old), new.clone()).unwrap();
    let s = Store::open(keyed(&dir, &new)).unwrap();
    assert_eq!(task_ids(&s), ["t1", "t3"].map(String::from).into());
}
