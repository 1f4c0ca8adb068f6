//! Replication under hostile conditions (issue 11, adversarial review): a
//! bucket that hangs, answers that are lost, crafted bucket contents,
//! credentials in URLs, and a store opened over and over or from inside a
//! caller's tokio runtime. Each test names the promise of
//! `docs/replication.md` it holds the code to.

use crate::util::{ids, put_all, scratch, task};
use statewal::replica::{self, RestoreTarget};
use statewal::{Options, Store};
use std::collections::BTreeMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A `file://` bucket under `dir`: its URL and the directory behind it.
fn file_bucket(dir: &Path) -> (String, PathBuf) {
    let root = dir.join("bucket");
    std::fs::create_dir_all(&root).unwrap();
    (
        format!("file://{}/replica", root.display()),
        root.join("replica"),
    )
}

fn replicated(dir: &Path, url: &str) -> Options {
    Options::new(dir)
        .checkpoint_interval(None)
        .replicate_to(url)
        .replicate_interval(Duration::from_millis(20))
}

fn tasks_of(store: &Store) -> BTreeMap<String, Vec<u8>> {
    store
        .list_tasks()
        .unwrap()
        .into_iter()
        .map(|t| (t.id().to_string(), t.to_json()))
        .collect()
}

fn restored_tasks(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    let store = Store::open(Options::new(dir).checkpoint_interval(None)).expect("open restored");
    tasks_of(&store)
}

/// Every file under `root`, relative to it, sorted.
fn objects(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p.strip_prefix(root).unwrap().to_string_lossy().into_owned());
            }
        }
    }
    out.sort();
    out
}

/// A TCP listener on 127.0.0.1 that accepts connections and never answers:
/// a bucket that hangs. Its accepted sockets are kept open for as long as
/// it lives.
struct HangingBucket {
    port: u16,
}

impl HangingBucket {
    fn start() -> HangingBucket {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            for conn in listener.incoming() {
                match conn {
                    Ok(c) => held.push(c),
                    Err(_) => return,
                }
            }
        });
        HangingBucket { port }
    }

    fn options(&self, dir: &Path) -> Options {
        Options::new(dir)
            .checkpoint_interval(None)
            .replicate_to("s3://hanging/prefix")
            .replica_setting("aws_endpoint", format!("http://127.0.0.1:{}", self.port))
            .replica_setting("aws_allow_http", "true")
            .replica_setting("aws_region", "us-east-1")
            .replica_setting("aws_access_key_id", "test")
            .replica_setting("aws_secret_access_key", "test")
            .replicate_interval(Duration::from_millis(50))
    }
}

/// A URL may carry credentials (`s3://KEY:SECRET@bucket/prefix`); they
/// never reach an error message, the replica's status or a log line, as
/// `Options`' `Debug` already hides them. (Every message named the URL as
/// given, secret included.)
#[test]
fn credentials_in_a_url_stay_out_of_errors_and_status() {
    const SECRET: &str = "SuperSecret123";
    let tmp = scratch();
    // A closed port: every request fails at once.
    let url = format!("s3://AKIDEXAMPLE:{SECRET}@bucket/prefix");
    let opts = Options::new(tmp.path().join("store"))
        .checkpoint_interval(None)
        .replicate_to(&url)
        .replica_setting("aws_endpoint", "http://127.0.0.1:1")
        .replica_setting("aws_allow_http", "true")
        .replica_setting("aws_region", "us-east-1")
        .replica_setting("aws_access_key_id", "test")
        .replica_setting("aws_secret_access_key", "test")
        .replicate_interval(Duration::from_millis(20));
    assert!(!format!("{opts:?}").contains(SECRET));
    let store = Store::open(opts).unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        let status = store.replica_status().unwrap().unwrap();
        if status.last_error.is_some() {
            break status;
        }
        assert!(Instant::now() < deadline, "no tick failed: {status:?}");
        std::thread::sleep(Duration::from_millis(20));
    };
    let error = status.last_error.clone().unwrap();
    assert!(error.contains("AKIDEXAMPLE:***@bucket"), "{error}");
    assert!(!format!("{status:?}").contains(SECRET), "{status:?}");
    drop(store);
    let settings = [
        ("aws_endpoint", "http://127.0.0.1:1"),
        ("aws_allow_http", "true"),
        ("aws_access_key_id", "test"),
        ("aws_secret_access_key", "test"),
    ]
    .map(|(k, v)| (k.to_string(), v.to_string()));
    let to = tmp.path().join("restored");
    let e = replica::restore_with(&url, &settings, &to, RestoreTarget::Latest).unwrap_err();
    assert!(!format!("{e} {e:?}").contains(SECRET), "{e}");
    // A URL refused before any request: its message hides the secret too.
    for bad in [
        format!("s3://AKID:{SECRET}@bucket/a//b"),
        format!("memory://AKID:{SECRET}@bucket/p"),
    ] {
        let e = replica::restore(&bad, &to, RestoreTarget::Latest).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(SECRET), "{e}");
        let e = Store::open(Options::new(&to).replicate_to(&bad)).unwrap_err();
        assert!(!format!("{e} {e:?}").contains(SECRET), "{e}");
    }
}
