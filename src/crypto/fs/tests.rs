use super::*;
use crate::fs::{SimFs, write_atomic};

fn sealed(sim: &SimFs, key: &Key, alg: Algorithm) -> SealedFs {
    SealedFs::new(Arc::new(sim.clone()), Keys::new(key.clone(), vec![], alg))
}

#[test]
fn layout_files_are_sealed_and_read_back_plain() {
    for alg in Algorithm::ALL {
        let sim = SimFs::new(1);
        let key = Key::generate().unwrap();
        let fs = sealed(&sim, &key, alg);
        let body = b"{\"id\":\"t1\",\"prompt\":\"the secret prompt\"}\n";
        fs.create_dir("tasks").unwrap();
        write_atomic(&fs, "tasks", "t1.json", body).unwrap();
        write_atomic(&fs, "", "state.json", body).unwrap();
        for rel in ["tasks/t1.json", "state.json"] {
            let raw = sim.read_unmapped(rel).unwrap().unwrap();
            assert!(is_sealed(&raw), "{rel}");
            assert!(
                !raw.windows(10).any(|w| w == b"the secret"),
                "{alg}: {rel} holds its text in clear"
            );
            let env = inspect(&raw).unwrap().unwrap();
            assert_eq!((env.algorithm, env.key_id), (alg, key.id()));
            assert_eq!(fs.read_unmapped(rel).unwrap().unwrap(), body);
            assert_eq!(&*fs.read(rel).unwrap().unwrap(), body);
            assert_eq!(fs.file_len(rel).unwrap(), Some(body.len() as u64));
            assert_eq!(fs.read_at(rel, 7, 4).unwrap().unwrap(), &body[7..11]);
        }
    }
}

#[test]
fn journal_files_pass_through() {
    let sim = SimFs::new(2);
    let key = Key::generate().unwrap();
    let fs = sealed(&sim, &key, Algorithm::default());
    fs.create_dir("journal").unwrap();
    let mut f = fs.open("journal/1.wal", OpenMode::CreateNew).unwrap();
    f.write_all_at(0, b"raw frames").unwrap();
    f.sync_data().unwrap();
    drop(f);
    assert_eq!(
        sim.read_unmapped("journal/1.wal").unwrap().unwrap(),
        b"raw frames"
    );
    assert_eq!(
        fs.read_unmapped("journal/1.wal").unwrap().unwrap(),
        b"raw frames"
    );
}

/// A log extended in place, as a checkpoint does: every append lands,
/// the file is replaced whole at each sync, and what power loss leaves is
/// either the old sealed file or the new one, never a torn one.
#[test]
fn a_file_extended_in_place_is_replaced_whole() {
    let sim = SimFs::new(3);
    let key = Key::generate().unwrap();
    let fs = sealed(&sim, &key, Algorithm::Aes256Gcm);
    fs.create_dir("logs").unwrap();
    fs.sync_dir("").unwrap();
    let mut text = Vec::new();
    for round in 0..3 {
        let line = format!("line {round}\n");
        let mut f = fs.open("logs/s.log", OpenMode::CreateOrOpen).unwrap();
        assert_eq!(f.len().unwrap(), text.len() as u64);
        f.write_all_at(text.len() as u64, line.as_bytes()).unwrap();
        f.sync_data().unwrap();
        drop(f);
        text.extend_from_slice(line.as_bytes());
        assert_eq!(fs.read_unmapped("logs/s.log").unwrap().unwrap(), text);
        // Everything it wrote is durable once sync_data returned: power
        // loss that loses every unsynced write, or only unsynced data.
        use crate::fs::sim::{Outcome, PendingKind};
        let lose_all = |_: &crate::fs::sim::PendingItem| Outcome::Lost;
        let lose_data = |p: &crate::fs::sim::PendingItem| match p.kind {
            PendingKind::DirEntry => Outcome::Kept,
            PendingKind::FileData { .. } => Outcome::Lost,
        };
        for after in [sim.crash_with(lose_all), sim.crash_with(lose_data)] {
            let reopened = sealed(&after, &key, Algorithm::Aes256Gcm);
            assert_eq!(reopened.read_unmapped("logs/s.log").unwrap().unwrap(), text);
        }
    }
    let names = sim.list("logs").unwrap();
    assert_eq!(names, vec!["s.log".to_string()], "no temp file left");
}

#[test]
fn another_key_or_none_is_a_key_error_naming_the_id() {
    let sim = SimFs::new(4);
    let key = Key::generate().unwrap();
    write_atomic(
        &sealed(&sim, &key, Algorithm::default()),
        "",
        "state.json",
        b"{}",
    )
    .unwrap();
    let other = Key::generate().unwrap();
    let e = sealed(&sim, &other, Algorithm::default())
        .read_unmapped("state.json")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Key, "{e}");
    let m = e.to_string();
    assert!(
        m.contains(&key.id().to_string()) && m.contains(&other.id().to_string()),
        "{m}"
    );
    let raw = sim.read_unmapped("state.json").unwrap().unwrap();
    let none = open_file(&[], &raw, "state.json", "state.json").unwrap_err();
    assert_eq!(none.kind(), ErrorKind::Key);
    assert!(none.to_string().contains("a key is needed"), "{none}");
    // An older key still opens what it sealed.
    let both = SealedFs::new(
        Arc::new(sim.clone()),
        Keys::new(other.clone(), vec![key.clone()], Algorithm::default()),
    );
    assert_eq!(both.read_unmapped("state.json").unwrap().unwrap(), b"{}");
}

/// Every bit of a sealed file flipped: the checksum (without the key) or
/// the tag (with it) catches each one; none reads as a wrong key.
#[test]
fn every_flipped_bit_of_a_sealed_file_is_detected() {
    let key = Key::generate().unwrap();
    for alg in Algorithm::ALL {
        let raw = seal_file(&key, alg, b"{\"tasks\":[]}", "f").unwrap();
        for i in 0..raw.len() * 8 {
            let mut bad = raw.clone();
            bad[i / 8] ^= 1 << (i % 8);
            let e = open_file(std::slice::from_ref(&key), &bad, "f", "f").unwrap_err();
            // A flip in the key id is the one place a flip names a key: it
            // is caught by the checksum first.
            assert_eq!(e.kind(), ErrorKind::Corrupt, "{alg}: bit {i}: {e}");
            if i / 8 >= 8 {
                assert!(
                    inspect(&bad).unwrap().is_err(),
                    "{alg}: bit {i} passes verify"
                );
            }
        }
        // With the checksum fixed up after the flip, the tag catches it.
        let mut forged = raw.clone();
        let last = forged.len() - 20;
        forged[last] ^= 1;
        let crc = checksum(&forged);
        forged[32..36].copy_from_slice(&crc.to_le_bytes());
        assert!(inspect(&forged).unwrap().is_ok());
        let e = open_file(std::slice::from_ref(&key), &forged, "f", "f").unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{e}");
        assert!(e.to_string().contains("does not authenticate"), "{e}");
    }
}

#[test]
fn a_plain_file_in_an_encrypted_store_is_refused() {
    let sim = SimFs::new(5);
    let mut f = sim.open("state.json", OpenMode::CreateNew).unwrap();
    f.write_all_at(0, b"{\"tasks\":[]}").unwrap();
    drop(f);
    let key = Key::generate().unwrap();
    let e = sealed(&sim, &key, Algorithm::default())
        .read_unmapped("state.json")
        .unwrap_err();
    assert_eq!(e.kind(), ErrorKind::Corrupt);
    assert!(e.to_string().contains("not encrypted"), "{e}");
}

/// A sealed file binds its name: moved under another name of the store,
/// it does not open; under its temp name, its backup name or its
/// set-aside name, it binds the name the store gives it.
#[test]
fn a_sealed_file_binds_its_name() {
    let sim = SimFs::new(6);
    let key = Key::generate().unwrap();
    let fs = sealed(&sim, &key, Algorithm::default());
    fs.create_dir("sessions").unwrap();
    crate::fs::write_atomic(&fs, "sessions", "a.json", b"{\"id\":\"a\"}").unwrap();
    crate::fs::write_atomic(&fs, "sessions", "b.json", b"{\"id\":\"b\"}").unwrap();
    assert_eq!(
        fs.read_unmapped("sessions/a.json").unwrap().unwrap(),
        b"{\"id\":\"a\"}"
    );
    // Swapped underneath: each is authentic, under the other's name.
    let a = sim.read_unmapped("sessions/a.json").unwrap().unwrap();
    let b = sim.read_unmapped("sessions/b.json").unwrap().unwrap();
    crate::fs::write_atomic(&sim, "sessions", "a.json", &b).unwrap();
    crate::fs::write_atomic(&sim, "sessions", "b.json", &a).unwrap();
    for rel in ["sessions/a.json", "sessions/b.json"] {
        let e = fs.read_unmapped(rel).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::Corrupt, "{rel}: {e}");
        assert!(e.to_string().contains("moved from another name"), "{e}");
    }
    // A checkpoint's rename of state.json to a backup keeps it readable.
    crate::fs::write_atomic(&fs, "", "state.json", b"{}").unwrap();
    let backup = crate::layout::new_backup_name(&[]);
    fs.rename("state.json", &backup).unwrap();
    assert_eq!(fs.read_unmapped(&backup).unwrap().unwrap(), b"{}");
    // The names each file binds.
    for (rel, bound) in [
        ("tasks/.t1.json.tmp", "tasks/t1.json"),
        ("tasks/.t1.json.sealed.tmp", "tasks/t1.json"),
        ("tasks/t1.json.edited-1764000000000", "tasks/t1.json"),
        ("tasks/t1.json.edited-x", "tasks/t1.json.edited-x"),
        (backup.as_str(), "state.json"),
        ("..statewal.converting.tmp", ".statewal.converting"),
        (
            "sessions/state.backup.1.json",
            "sessions/state.backup.1.json",
        ),
        ("logs/s1.log", "logs/s1.log"),
        (".tmp", ".tmp"),
    ] {
        assert_eq!(bound_name(rel), bound, "{rel}");
    }
}
