use super::*;
use std::time::Duration;

fn key() -> Key {
    Key::generate().unwrap()
}

#[test]
fn seal_then_open_round_trips_under_both_ciphers() {
    let k = key();
    for alg in Algorithm::ALL {
        let fk = FileKey::new(&k, alg, Purpose::Segment).unwrap();
        for msg in [&b""[..], b"x", &[7u8; 70_000][..]] {
            let sealed = fk.seal(msg, b"aad").unwrap();
            assert_eq!(sealed.len(), msg.len() + alg.overhead(), "{alg}");
            assert_eq!(fk.open(&sealed, b"aad").as_deref(), Some(msg), "{alg}");
            // The same subkey again, from the salt, as a reader makes it.
            let again = FileKey::with_salt(&k, alg, Purpose::Segment, fk.salt());
            assert_eq!(again.open(&sealed, b"aad").as_deref(), Some(msg), "{alg}");
        }
    }
}

#[test]
fn every_alteration_fails_to_open() {
    let k = key();
    for alg in Algorithm::ALL {
        let fk = FileKey::new(&k, alg, Purpose::File).unwrap();
        let sealed = fk.seal(b"a task's prompt", b"here").unwrap();
        for i in 0..sealed.len() * 8 {
            let mut bad = sealed.clone();
            bad[i / 8] ^= 1 << (i % 8);
            assert_eq!(fk.open(&bad, b"here"), None, "{alg}: bit {i}");
        }
        assert_eq!(fk.open(&sealed, b"there"), None, "{alg}: another place");
        assert_eq!(fk.open(&sealed[..sealed.len() - 1], b"here"), None, "{alg}");
        assert_eq!(fk.open(&sealed[..3], b"here"), None, "{alg}");
        let other_key = FileKey::with_salt(&key(), alg, Purpose::File, fk.salt());
        assert_eq!(other_key.open(&sealed, b"here"), None, "{alg}: another key");
        let other_salt = FileKey::new(&k, alg, Purpose::File).unwrap();
        assert_eq!(
            other_salt.open(&sealed, b"here"),
            None,
            "{alg}: another salt"
        );
        let other_use = FileKey::with_salt(&k, alg, Purpose::Segment, fk.salt());
        assert_eq!(
            other_use.open(&sealed, b"here"),
            None,
            "{alg}: another purpose"
        );
    }
    // And across the two ciphers.
    let x = FileKey::new(&k, Algorithm::XChaCha20Poly1305, Purpose::File).unwrap();
    let a = FileKey::with_salt(&k, Algorithm::Aes256Gcm, Purpose::File, x.salt());
    assert_eq!(a.open(&x.seal(b"m", b"").unwrap(), b""), None);
}

#[test]
fn nonces_and_salts_are_fresh_each_time() {
    let k = key();
    let fk = FileKey::new(&k, Algorithm::Aes256Gcm, Purpose::Segment).unwrap();
    let a = fk.seal(b"same", b"").unwrap();
    let b = fk.seal(b"same", b"").unwrap();
    assert_ne!(a[..12], b[..12], "a nonce repeated");
    assert_ne!(a, b);
    let other = FileKey::new(&k, Algorithm::Aes256Gcm, Purpose::Segment).unwrap();
    assert_ne!(fk.salt(), other.salt());
}

#[test]
fn a_key_is_one_line_of_base64_of_32_bytes() {
    let k = key();
    let line = k.to_line();
    assert_eq!(line.len(), 45, "44 characters and a newline");
    let parsed = Key::parse(&line, "test").unwrap();
    assert_eq!(parsed.id(), k.id());
    assert_eq!(parsed.to_line(), line);
    let secret = line.trim().to_string();
    for (text, why) in [
        ("", "is empty"),
        ("   \n", "is empty"),
        ("not base64!", "is not base64"),
        ("AAAA", "decodes to 3 bytes, not 32"),
        (&format!("{secret}\n{secret}"), "is more than one line"),
        (&"A".repeat(48), "decodes to 36 bytes, not 32"),
    ] {
        let e = Key::parse(text, "the test").unwrap_err();
        let m = e.to_string();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{m}");
        assert!(m.contains(why) && m.contains("the test"), "{text:?}: {m}");
        assert!(text.trim().len() < 8 || !m.contains(text.trim()), "{m}");
    }
}

#[test]
fn key_ids_are_stable_nonzero_and_tell_keys_apart() {
    // The id of a fixed key is part of the format: every file records it.
    let fixed = Key::parse("AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=", "test").unwrap();
    assert_eq!(
        fixed.id(),
        Key::parse(&fixed.to_line(), "again").unwrap().id()
    );
    assert_ne!(fixed.id().0, 0);
    let ids: std::collections::HashSet<KeyId> = (0..64).map(|_| key().id()).collect();
    assert_eq!(ids.len(), 64);
    assert_eq!(format!("{}", KeyId(0x1a)), "0000001a");
}

#[test]
fn debug_never_shows_key_bytes() {
    let k = key();
    let line = k.to_line();
    let shown = format!(
        "{k:?} {:?}",
        FileKey::new(&k, Algorithm::default(), Purpose::File)
    );
    assert!(!shown.contains(line.trim()), "{shown}");
    assert!(shown.contains(&k.id().to_string()), "{shown}");
}

#[cfg(unix)]
#[test]
fn a_key_file_must_be_private() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("key");
    let k = Key::generate_file(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    assert_eq!(Key::from_file(&path).unwrap().id(), k.id());
    let again = Key::generate_file(&path).unwrap_err();
    assert!(again.to_string().contains("already exists"), "{again}");
    assert_eq!(Key::from_file(&path).unwrap().id(), k.id(), "not replaced");
    for (mode, ok) in [
        (0o644, false),
        (0o640, false),
        (0o604, false),
        (0o400, true),
    ] {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).unwrap();
        let got = Key::from_file(&path);
        assert_eq!(got.is_ok(), ok, "{mode:o}: {got:?}");
        if let Err(e) = got {
            assert!(e.to_string().contains(&format!("{mode:04o}")), "{e}");
        }
    }
    let missing = Key::from_file(&tmp.path().join("nope")).unwrap_err();
    assert!(missing.to_string().contains("nope"), "{missing}");
}

#[test]
fn a_key_command_prints_the_key() {
    let k = key();
    let cmd = format!("printf '%s\\n' '{}'", k.to_line().trim());
    assert_eq!(Key::from_command(&cmd).unwrap().id(), k.id());
    let failed = Key::from_command("echo oops >&2; exit 3").unwrap_err();
    assert!(failed.to_string().contains("exit status: 3"), "{failed}");
    let garbage = Key::from_command("echo hello").unwrap_err();
    assert!(garbage.to_string().contains("not base64"), "{garbage}");
    let slow = Key::from_command_within("sleep 30", Duration::from_millis(100)).unwrap_err();
    assert!(slow.to_string().contains("was killed"), "{slow}");
}

#[test]
fn record_nonces_count_up_under_a_fresh_subkey() {
    let k = key();
    for alg in Algorithm::ALL {
        let fk = FileKey::new(&k, alg, Purpose::Segment).unwrap();
        let n = alg.nonce_len();
        let a = fk.seal_next(b"one", b"1").unwrap();
        let b = fk.seal_next(b"two", b"2").unwrap();
        assert_eq!(a[..8], 0u64.to_le_bytes(), "{alg}");
        assert_eq!(b[..8], 1u64.to_le_bytes(), "{alg}");
        assert!(a[8..n].iter().chain(&b[8..n]).all(|&x| x == 0), "{alg}");
        assert_eq!(fk.open(&a, b"1").as_deref(), Some(&b"one"[..]));
        assert_eq!(fk.open(&b, b"2").as_deref(), Some(&b"two"[..]));
        // The next segment's subkey is another: the same counter value
        // seals under another key.
        let next = FileKey::new(&k, alg, Purpose::Segment).unwrap();
        let c = next.seal_next(b"one", b"1").unwrap();
        assert_eq!(c[..n], a[..n]);
        assert_ne!(c, a, "{alg}: same nonce and message under one key");
        assert_eq!(fk.open(&c, b"1"), None, "{alg}");
    }
}
