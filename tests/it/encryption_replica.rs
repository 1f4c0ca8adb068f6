//! The replica of an encrypted store (issues 11 and 13): everything in the
//! bucket is sealed client-side with the store's key, so a grep of the
//! bucket finds nothing, and a restore needs the key.

use crate::encryption::{SECRET, keyed, populate};
use crate::replica::{Bucket, emulated, file_bucket, objects, tasks_of};
use crate::util::{files_under, run_statewal, scratch};
use statewal::crypto::{Algorithm, Key};
use statewal::replica::{self, RestoreTarget};
use statewal::{ErrorKind, Options, Store};
use std::path::Path;
use std::time::Duration;

/// The encrypted store of `populate`, replicated to `bucket` as it is
/// written; returns its tasks' JSON.
fn replicated_secret(
    dir: &Path,
    bucket: &Bucket,
    key: &Key,
    cipher: Algorithm,
) -> std::collections::BTreeMap<String, Vec<u8>> {
    let mut opts = keyed(dir, key)
        .cipher(cipher)
        .replicate_to(&bucket.url)
        .replicate_interval(Duration::from_millis(20));
    for (k, v) in &bucket.settings {
        opts = opts.replica_setting(k, v);
    }
    populate(opts.clone());
    // Reopened and closed: the close ships what the last tick did not.
    let store = Store::open(opts).unwrap();
    let held = tasks_of(&store);
    drop(store);
    held
}

fn holds_secret(bytes: &[u8]) -> bool {
    bytes.windows(SECRET.len()).any(|w| w == SECRET.as_bytes())
}

fn restore_keyed(
    bucket: &Bucket,
    to: &Path,
    key: &Key,
) -> statewal::Result<replica::RestoreReport> {
    replica::restore_encrypted(
        &bucket.url,
        &bucket.settings,
        to,
        RestoreTarget::Latest,
        key.clone(),
    )
}

/// The bucket holds no secret in clear; a restore without the key or with
/// another is refused before it writes anything; with the key, it gives
/// the store back, encrypted under the same cipher.
fn sealed_round_trip(bucket: &Bucket, cipher: Algorithm) {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    let key = Key::generate().unwrap();
    let held = replicated_secret(&dir, bucket, &key, cipher);
    assert_eq!(held.len(), 2, "{held:?}");
    if let Some(root) = &bucket.root {
        let names = objects(root);
        assert!(names.iter().any(|n| n.contains("checkpoint")), "{names:#?}");
        assert!(names.iter().any(|n| n.contains("segment")), "{names:#?}");
        for f in files_under(root) {
            let bytes = std::fs::read(&f).unwrap();
            assert!(
                !holds_secret(&bytes),
                "{} holds the secret in clear",
                f.display()
            );
        }
    }
    std::fs::remove_dir_all(&dir).unwrap();

    // No key: refused, naming the key id, and nothing is made.
    let to = tmp.path().join("restored");
    let e = replica::restore_with(&bucket.url, &bucket.settings, &to, RestoreTarget::Latest)
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    assert!(e.to_string().contains(&key.id().to_string()), "{e}");
    assert!(!to.exists(), "a refused restore made {}", to.display());
    // Another key: the same.
    let other = Key::generate().unwrap();
    let e = restore_keyed(bucket, &to, &other).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    assert!(e.to_string().contains(&key.id().to_string()), "{e}");
    assert!(!to.exists(), "a refused restore made {}", to.display());

    // The key: everything is back, still sealed under it.
    let report = restore_keyed(bucket, &to, &key).unwrap();
    assert!(report.stopped_at.is_none(), "{report:?}");
    assert!(report.checkpoint_seq.is_some(), "{report:?}");
    for f in files_under(&to) {
        let bytes = std::fs::read(&f).unwrap();
        assert!(
            !holds_secret(&bytes),
            "{} holds the secret in clear",
            f.display()
        );
    }
    let state = std::fs::read(to.join("state.json")).unwrap();
    assert_eq!(state[9], cipher.code(), "the restored state.json's cipher");
    let e = Store::open(Options::new(&to)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    let store = Store::open(keyed(&to, &key)).unwrap();
    assert_eq!(tasks_of(&store), held, "task by task");
    assert!(
        store
            .get_task("t1")
            .unwrap()
            .unwrap()
            .description()
            .is_some_and(|d| d.contains(SECRET))
    );
}

#[test]
fn an_encrypted_replica_is_sealed_and_restores_only_with_its_key() {
    for cipher in Algorithm::ALL {
        let tmp = scratch();
        sealed_round_trip(&file_bucket(tmp.path()), cipher);
    }
}

#[test]
fn an_encrypted_replica_on_s3() {
    if let Some(bucket) = emulated(crate::emulators::s3()) {
        sealed_round_trip(&bucket, Algorithm::default());
    }
}

/// A plain replica given a key would restore a plain store that the key
/// then refuses to open: refused, before anything is written.
#[test]
fn a_plain_replica_given_a_key_is_refused() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let store = Store::open(crate::replica::replicated(&dir, &bucket)).unwrap();
    store.put_task(crate::util::task("p1")).unwrap();
    store.checkpoint().unwrap();
    drop(store);
    let to = tmp.path().join("restored");
    let e = restore_keyed(&bucket, &to, &Key::generate().unwrap()).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::InvalidInput, "{e}");
    assert!(e.to_string().contains("not encrypted"), "{e}");
    assert!(!to.exists());
}

/// `statewal restore-from` takes the key as every command does, and
/// leaves nothing behind when it is missing.
#[test]
fn restore_from_takes_the_key() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let key_file = tmp.path().join("key");
    let k = key_file.to_str().unwrap();
    let out = run_statewal(tmp.path(), &["keygen", k], "", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let task = format!("{{\"id\":\"t\",\"description\":\"{SECRET}\"}}");
    let out = run_statewal(
        &dir,
        &["--key-file", k, "--replicate", &bucket.url, "put-task", "-"],
        &task,
        &[],
    );
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let to = tmp.path().join("restored");
    let t = to.to_str().unwrap();
    let out = run_statewal(
        tmp.path(),
        &["restore-from", &bucket.url, "--to", t],
        "",
        &[],
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("key") && !err.contains("corrupt"), "{err}");
    assert!(!to.exists());
    let args = ["--key-file", k, "restore-from", &bucket.url, "--to", t];
    let out = run_statewal(tmp.path(), &args, "", &[]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = run_statewal(&to, &["--key-file", k, "get-task", "t"], "", &[]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(SECRET),
        "{out:?}"
    );
}

/// A plain checkpoint planted in an encrypted replica, newer than every
/// real one: a restore with the key passes over it (naming it) and
/// restores the store's own, sealed, history.
#[test]
fn a_plain_checkpoint_planted_in_an_encrypted_replica_is_passed_over() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let key = Key::generate().unwrap();
    let held = replicated_secret(&dir, &bucket, &key, Algorithm::default());
    let root = bucket.root.clone().unwrap();
    let real = objects(&root)
        .into_iter()
        .find(|n| n.contains("/checkpoints/"))
        .unwrap();
    let forged = br#"{"version":"1.0.0","journal_seq":1000000,"tasks":[{"id":"t1","description":"FORGED"}],"sessions":[]}"#;
    let name = format!("{:020}-{:08x}.json", 1_000_000u64, crc32fast::hash(forged));
    let at = root.join(Path::new(&real).parent().unwrap()).join(&name);
    std::fs::write(&at, forged).unwrap();
    let to = tmp.path().join("restored");
    let report = restore_keyed(&bucket, &to, &key).unwrap();
    assert!(
        report.skipped_checkpoints.iter().any(|s| s.contains(&name)),
        "{report:?}"
    );
    let store = Store::open(keyed(&to, &key)).unwrap();
    assert_eq!(tasks_of(&store), held);
}
