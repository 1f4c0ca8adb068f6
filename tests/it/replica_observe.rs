//! What a replica shows of itself (issue 11, observability): the lag, the
//! bytes shipped, the errors and the last success in `Store::metrics()`
//! and `Store::health()`; a failing bucket and a disk budget overrun make
//! health degraded, naming the replica, and each is an event; the same
//! through `serve --stdio`'s `health`, `metrics` and `subscribe`.

use crate::util::{ids, put_all, scratch};
use statewal::report::ReplicaMetrics;
use statewal::{Event, Options, Store};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A `file://` URL whose bucket directory's parent is a regular file until
/// [`Down::restore`]: every request fails meanwhile.
struct Down {
    parent: PathBuf,
    url: String,
}

impl Down {
    fn new(dir: &Path) -> Down {
        let parent = dir.join("bucket");
        std::fs::write(&parent, b"").unwrap();
        let url = format!("file://{}/replica", parent.display());
        Down { parent, url }
    }

    fn restore(&self) {
        std::fs::remove_file(&self.parent).unwrap();
        std::fs::create_dir(&self.parent).unwrap();
    }
}

fn opts(dir: &Path, url: &str) -> Options {
    Options::new(dir)
        .checkpoint_interval(None)
        .backups_kept(1)
        .replicate_to(url)
        .replicate_interval(Duration::from_millis(20))
}

fn replica_of(store: &Store) -> ReplicaMetrics {
    store.metrics().unwrap().replica.expect("a replica")
}

/// Polls `f` until it holds, for at most 20 s.
#[track_caller]
fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f() {
        assert!(Instant::now() < deadline, "never: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The names of the events a store sends, as they come.
fn recorded(store: &Store) -> (Arc<Mutex<Vec<String>>>, statewal::Subscription) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = seen.clone();
    let sub = store.subscribe(move |e: &Event| {
        if e.name().starts_with("replica:") {
            s.lock().unwrap().push(e.name().to_string());
        }
    });
    (seen, sub)
}

#[test]
fn metrics_and_health_show_what_was_shipped() {
    let tmp = scratch();
    let url = format!("file://{}/bucket", tmp.path().display());
    std::fs::create_dir_all(tmp.path().join("bucket")).unwrap();
    let store = Store::open(opts(&tmp.path().join("store"), &url)).unwrap();
    put_all(&store, &ids("t", 20));
    let last = store.stats().unwrap().last_seq;
    wait_until("the bucket holds every record", || {
        replica_of(&store).lag_records == 0
    });
    let r = replica_of(&store);
    assert_eq!(r.url, url);
    assert_eq!(r.shipped_seq, last, "{r:?}");
    assert_eq!(r.lag_seconds, Some(0.0), "{r:?}");
    assert!(r.objects_shipped > 0 && r.bytes_shipped > 0, "{r:?}");
    assert!(
        !r.failing && r.last_error.is_none() && r.errors == 0,
        "{r:?}"
    );
    assert!(r.last_success.is_some() && r.generation.is_some(), "{r:?}");
    let h = store.health();
    assert_eq!(
        h.replica.as_ref().map(|r| r.url.as_str()),
        Some(url.as_str())
    );
    assert!(
        !h.problems.iter().any(|p| p.contains("replica")),
        "{:?}",
        h.problems
    );
    // A store that ships nowhere has no replica figures.
    let plain = Store::open(Options::new(tmp.path().join("plain"))).unwrap();
    assert_eq!(plain.metrics().unwrap().replica, None);
    assert_eq!(plain.health().replica, None);
}

#[test]
fn an_unreachable_bucket_degrades_health_until_it_is_back() {
    let tmp = scratch();
    let down = Down::new(tmp.path());
    let store = Store::open(opts(&tmp.path().join("store"), &down.url)).unwrap();
    let (events, _sub) = recorded(&store);
    put_all(&store, &ids("t", 10));
    wait_until("a few ticks failed", || replica_of(&store).errors >= 3);
    let r = replica_of(&store);
    assert!(r.failing && r.last_error.is_some(), "{r:?}");
    assert_eq!(r.lag_records, 10, "{r:?}");
    assert_eq!(r.lag_seconds, None, "no tick has succeeded: {r:?}");
    let h = store.health();
    assert!(!h.healthy, "{h:?}");
    let problem = h
        .problems
        .iter()
        .find(|p| p.contains(&down.url))
        .unwrap_or_else(|| panic!("no problem names the replica: {:?}", h.problems));
    assert!(
        problem.contains("is failing") && problem.contains("failed ticks"),
        "{problem}"
    );
    // Once per run of failures, however many ticks failed.
    assert_eq!(*events.lock().unwrap(), ["replica:failing"]);
    down.restore();
    wait_until("shipping caught up", || {
        let r = replica_of(&store);
        !r.failing && r.lag_records == 0
    });
    let h = store.health();
    assert!(
        !h.problems.iter().any(|p| p.contains(&down.url)),
        "{:?}",
        h.problems
    );
    assert_eq!(
        *events.lock().unwrap(),
        ["replica:failing", "replica:recovered"]
    );
}

#[test]
fn past_a_zero_budget_the_gap_is_an_event_and_a_problem() {
    let tmp = scratch();
    let down = Down::new(tmp.path());
    let store =
        Store::open(opts(&tmp.path().join("store"), &down.url).replica_backlog_bytes_max(0))
            .unwrap();
    let (events, _sub) = recorded(&store);
    for round in 0..3 {
        put_all(&store, &ids(&format!("r{round}-"), 5));
        store.checkpoint().unwrap();
        // A few ticks: each counts the backlog the next checkpoint sees.
        std::thread::sleep(Duration::from_millis(80));
    }
    let r = replica_of(&store);
    assert!(r.budget_overruns > 0 && r.past_budget, "{r:?}");
    assert_eq!(r.backlog_bytes_max, 0);
    assert!(
        events.lock().unwrap().iter().any(|e| e == "replica:gap"),
        "{:?}",
        events.lock().unwrap()
    );
    let h = store.health();
    assert!(
        h.problems
            .iter()
            .any(|p| p.contains(&down.url) && p.contains("disk budget")),
        "{:?}",
        h.problems
    );
    // Once a tick has shipped the new generation, the gap is history: a
    // warning, no longer a problem.
    down.restore();
    wait_until("the new generation is shipped", || {
        !replica_of(&store).past_budget
    });
    let h = store.health();
    assert!(
        !h.problems.iter().any(|p| p.contains("disk budget")),
        "{:?}",
        h.problems
    );
    assert!(
        h.warnings.iter().any(|w| w.contains("disk budget")),
        "{:?}",
        h.warnings
    );
}

/// `statewal --replicate URL serve --stdio`: its `health` and `metrics`
/// ops show the live replica, and a subscriber gets its events.
#[test]
fn serve_shows_the_replica_in_health_metrics_and_events() {
    use std::io::{BufRead, BufReader, Write};
    let tmp = scratch();
    let down = Down::new(tmp.path());
    let dir = tmp.path().join("store");
    let mut child = crate::util::statewal_command(&dir)
        .args(["--replicate", &down.url, "serve", "--stdio"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut n = 0;
    let mut events = Vec::new();
    // Sends one request and returns its answer, keeping event lines aside.
    let mut ask = |op: serde_json::Value, events: &mut Vec<serde_json::Value>| {
        n += 1;
        let mut req = op;
        req["req"] = n.into();
        writeln!(stdin, "{req}").unwrap();
        loop {
            let mut line = String::new();
            stdout.read_line(&mut line).unwrap();
            let v: serde_json::Value = serde_json::from_str(&line).unwrap();
            if v.get("event").is_some() {
                events.push(v);
            } else {
                assert_eq!(v["ok"], true, "{v}");
                return v;
            }
        }
    };
    use serde_json::json;
    ask(json!({"op": "subscribe"}), &mut events);
    ask(json!({"op": "put_task", "task": {"id": "a"}}), &mut events);
    let deadline = Instant::now() + Duration::from_secs(20);
    let health = loop {
        let h = ask(json!({"op": "health"}), &mut events);
        if h["health"]["replica"]["errors"].as_u64() > Some(0) {
            break h;
        }
        assert!(Instant::now() < deadline, "no tick failed: {h}");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(health["health"]["healthy"], false, "{health}");
    let problems = health["health"]["problems"].to_string();
    assert!(problems.contains(&down.url), "{problems}");
    down.restore();
    let metrics = loop {
        let m = ask(json!({"op": "metrics"}), &mut events);
        let r = &m["metrics"]["replica"];
        if r["lag_records"] == 0 && r["failing"] == false {
            break m;
        }
        assert!(Instant::now() < deadline, "never caught up: {m}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let r = &metrics["metrics"]["replica"];
    assert!(r["bytes_shipped"].as_u64() > Some(0), "{metrics}");
    assert_eq!(r["url"], down.url.as_str());
    // The recovery event comes from the replica's thread, between answers,
    // maybe after the answer that saw the recovery.
    while !events.iter().any(|e| e["event"] == "replica_recovered") {
        assert!(
            Instant::now() < deadline,
            "no replica_recovered: {events:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
        ask(json!({"op": "stats"}), &mut events);
    }
    let names: Vec<&str> = events
        .iter()
        .filter_map(|e| e["event"].as_str())
        .filter(|e| e.starts_with("replica_"))
        .collect();
    assert_eq!(
        names,
        ["replica_failing", "replica_recovered"],
        "{events:?}"
    );
    drop(stdin);
    assert!(child.wait().unwrap().success());
}
