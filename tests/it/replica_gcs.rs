//! `gs://` through the replica's own code (issue 11). No emulator from the
//! package registries serves the XML API object_store speaks to GCS
//! (docs/decisions.md, "issue 11: emulators and object_store"), so these
//! tests put a fake of the few XML API calls the replica makes on
//! 127.0.0.1 (`FakeGcs`: create-only PUT, GET of an object, the
//! `list-type=2` listing), reached through a service account key whose
//! `gcs_base_url` names it and `disable_oauth` is set, as a GCS emulator
//! is configured. They check what the replica does with a `gs://` URL and
//! the GCS settings (from `Options::replica_setting` and from the
//! `GOOGLE_*` environment through the CLI), and that a bad service account
//! is a clear error, not a panic. They do not prove that real GCS answers
//! as the fake does: `emulators_smoke::gcs_requests` checks the requests
//! against GCS's documented XML API.

use crate::util::{ids, put_all, run_statewal, scratch, task};
use statewal::replica::{self, RestoreTarget};
use statewal::{ErrorKind, Options, Store};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

const BUCKET: &str = "statewal-test";

/// A bucket's objects, by name, as the fake holds them.
type Objects = Arc<Mutex<BTreeMap<String, Vec<u8>>>>;

/// The XML API calls the replica makes, served from memory on 127.0.0.1
/// until the test process exits (the thread blocks in `accept`).
struct FakeGcs {
    port: u16,
    objects: Objects,
}

impl FakeGcs {
    fn start() -> FakeGcs {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let objects = Objects::default();
        let served = objects.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(stream) = stream else { return };
                let objects = served.clone();
                std::thread::spawn(move || serve(stream, &objects));
            }
        });
        FakeGcs { port, objects }
    }

    /// The service account key that sends object_store here, unsigned.
    fn key(&self) -> String {
        format!(
            r#"{{"gcs_base_url":"http://127.0.0.1:{}","disable_oauth":true,"client_email":"","private_key":"","private_key_id":""}}"#,
            self.port
        )
    }

    fn names(&self) -> Vec<String> {
        self.objects.lock().unwrap().keys().cloned().collect()
    }
}

fn serve(stream: std::net::TcpStream, objects: &Objects) {
    let mut reader = BufReader::new(stream);
    let mut line = String::new();
    if reader.read_line(&mut line).is_err() {
        return;
    }
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let target = words.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let Some((name, value)) = line.trim_end().split_once(':') else {
            break;
        };
        headers.insert(name.to_ascii_lowercase(), value.trim().to_string());
    }
    let len = headers
        .get("content-length")
        .map_or(0, |v| v.parse().unwrap());
    let mut body = vec![0; len];
    reader.read_exact(&mut body).unwrap();
    let (path, query) = target.split_once('?').unwrap_or((&target, ""));
    let (bucket, object) = path[1..].split_once('/').unwrap_or((&path[1..], ""));
    let (bucket, object) = (unescape(bucket), unescape(object));
    let mut objects = objects.lock().unwrap();
    let (status, extra, out): (&str, String, Vec<u8>) = match (method.as_str(), object.is_empty()) {
        _ if bucket != BUCKET => ("404 Not Found", String::new(), Vec::new()),
        ("PUT", false) => {
            let create_only = headers
                .get("x-goog-if-generation-match")
                .map(String::as_str);
            if create_only == Some("0") && objects.contains_key(&object) {
                ("412 Precondition Failed", String::new(), Vec::new())
            } else {
                objects.insert(object, body);
                ("200 OK", "ETag: \"1\"\r\n".into(), Vec::new())
            }
        }
        ("GET", false) => match objects.get(&object) {
            Some(bytes) => {
                let meta = "ETag: \"1\"\r\nLast-Modified: Wed, 02 Dec 2026 00:00:00 GMT\r\n";
                // `Range: bytes=a-b` (inclusive), as a restore asks for a
                // segment object's bytes.
                let range = headers
                    .get("range")
                    .and_then(|r| r.strip_prefix("bytes="))
                    .and_then(|r| r.split_once('-'))
                    .and_then(|(a, b)| Some((a.parse::<usize>().ok()?, b.parse::<usize>().ok()?)));
                match range {
                    Some((a, b)) if a <= b && b < bytes.len() => (
                        "206 Partial Content",
                        format!("{meta}Content-Range: bytes {a}-{b}/{}\r\n", bytes.len()),
                        bytes[a..=b].to_vec(),
                    ),
                    Some(_) => ("416 Range Not Satisfiable", String::new(), Vec::new()),
                    None => ("200 OK", meta.into(), bytes.clone()),
                }
            }
            None => ("404 Not Found", String::new(), Vec::new()),
        },
        ("GET", true) => ("200 OK", String::new(), listing(&objects, query)),
        _ => ("400 Bad Request", String::new(), Vec::new()),
    };
    let mut stream = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
        out.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&out);
}

/// A `ListBucketResult` of every object under the query's `prefix`, in one
/// page.
fn listing(objects: &BTreeMap<String, Vec<u8>>, query: &str) -> Vec<u8> {
    let prefix = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("prefix="))
        .map(unescape)
        .unwrap_or_default();
    let mut xml = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?><ListBucketResult>");
    for (name, bytes) in objects.range(prefix.clone()..) {
        if !name.starts_with(&prefix) {
            break;
        }
        xml += &format!(
            "<Contents><Key>{name}</Key><Size>{}</Size>\
             <LastModified>2026-12-02T00:00:00.000Z</LastModified><ETag>\"1\"</ETag></Contents>",
            bytes.len()
        );
    }
    xml += "</ListBucketResult>";
    xml.into_bytes()
}

fn unescape(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' if i + 2 < b.len() => {
                let hex = std::str::from_utf8(&b[i + 1..i + 3]).unwrap();
                out.push(u8::from_str_radix(hex, 16).unwrap());
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).unwrap()
}

/// A store shipping to `url` on the fake, through a key in the settings.
fn gcs_opts(dir: &std::path::Path, url: &str, gcs: &FakeGcs) -> Options {
    Options::new(dir)
        .checkpoint_interval(None)
        .replicate_to(url)
        .replica_setting("google_service_account_key", gcs.key())
        .replicate_interval(Duration::from_millis(20))
}

#[test]
fn a_gs_url_ships_under_its_prefix_and_restores() {
    let gcs = FakeGcs::start();
    let tmp = scratch();
    let url = format!("gs://{BUCKET}/replica/a1");
    let store = Store::open(gcs_opts(&tmp.path().join("store"), &url, &gcs)).unwrap();
    let written = ids("g", 40);
    put_all(&store, &written[..20]);
    store.checkpoint().unwrap();
    put_all(&store, &written[20..]);
    let last = store.stats().unwrap().last_seq;
    drop(store);

    // The bucket is the URL's host, the prefix its path, and every name
    // the replica writes is under it.
    let names = gcs.names();
    assert!(
        names.contains(&"replica/a1/statewal-replica.json".to_string()),
        "{names:?}"
    );
    assert!(
        names.iter().all(|n| n.starts_with("replica/a1/")),
        "{names:?}"
    );
    let segments = names.iter().filter(|n| n.ends_with(".wal")).count();
    let checkpoints = names.iter().filter(|n| n.contains("/checkpoints/")).count();
    assert!(segments >= 1 && checkpoints >= 1, "{names:?}");

    let settings = [("google_service_account_key".to_string(), gcs.key())];
    let to = tmp.path().join("restored");
    let report = replica::restore_with(&url, &settings, &to, RestoreTarget::Latest).unwrap();
    assert_eq!(report.last_seq, last, "{report:?}");
    assert_eq!(report.stopped_at, None, "{report:?}");
    let restored = Store::open(Options::new(&to)).unwrap();
    assert_eq!(restored.stats().unwrap().tasks, written.len());
    for id in &written {
        assert_eq!(restored.get_task(id).unwrap(), Some(task(id)), "{id}");
    }

    // A second store on the same gs:// prefix is refused, as on the others.
    let other = Store::open(gcs_opts(&tmp.path().join("other"), &url, &gcs));
    assert_eq!(other.unwrap_err().kind(), ErrorKind::Conflict);
}

/// The CLI takes GCS's settings from the `GOOGLE_*` environment, as the
/// library does (`runtime.rs` hands `GOOGLE_SERVICE_ACCOUNT_KEY` to
/// object_store as `google_service_account_key`).
#[test]
fn the_cli_takes_gcs_settings_from_the_environment() {
    let gcs = FakeGcs::start();
    let tmp = scratch();
    let url = format!("gs://{BUCKET}/cli");
    let key = gcs.key();
    let env = [
        ("STATEWAL_REPLICATE", url.as_str()),
        ("GOOGLE_SERVICE_ACCOUNT_KEY", key.as_str()),
    ];
    let dir = tmp.path().join("store");
    let out = run_statewal(&dir, &["put-task", "-"], r#"{"id":"e1"}"#, &env);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let names = gcs.names();
    assert!(
        names.contains(&"cli/statewal-replica.json".to_string()),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with(".wal")), "{names:?}");
}

/// A service account file that is not there, or a key that does not
/// parse, is refused at open with an error that names the replica URL
/// and what was wrong, from the library and from the CLI; no panic, and
/// no directory left behind.
#[test]
fn a_bad_service_account_is_a_clear_error() {
    let tmp = scratch();
    let url = format!("gs://{BUCKET}/bad");
    let missing = tmp.path().join("no-such-account.json");
    let missing = missing.to_str().unwrap();
    let cases = [
        ("google_service_account", missing, missing),
        ("google_service_account_key", "{not json", "service account"),
    ];
    for (key, value, named) in cases {
        let opts = Options::new(tmp.path().join("store"))
            .replicate_to(&url)
            .replica_setting(key, value);
        let e = Store::open(opts).unwrap_err();
        let message = e.to_string();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{key}: {message}");
        assert!(message.contains(&url), "{key}: {message}");
        assert!(message.contains(named), "{key}: {message}");
        assert!(
            !tmp.path().join("store").exists(),
            "{key}: a directory was made"
        );
    }
    let dir = tmp.path().join("cli");
    let env = [("GOOGLE_SERVICE_ACCOUNT", missing)];
    let out = run_statewal(
        &dir,
        &["--replicate", &url, "put-task", "-"],
        "{\"id\":\"x\"}",
        &env,
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(missing), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(!dir.exists(), "the CLI made {}", dir.display());
}

/// A `gs://` URL without a bucket is refused at open, before anything is
/// created.
#[test]
fn a_gs_url_without_a_bucket_is_refused() {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    for url in ["gs:///prefix", "gs://"] {
        let e = Store::open(Options::new(&dir).replicate_to(url)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::InvalidInput, "{url}: {e}");
        assert!(e.to_string().contains("replica URL"), "{url}: {e}");
    }
}
