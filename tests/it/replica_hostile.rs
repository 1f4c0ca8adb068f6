//! Replication under hostile conditions (issue 11, adversarial review): a
//! bucket that hangs, answers that are lost, crafted bucket contents,
//! credentials in URLs, and a store opened over and over or from inside a
//! caller's tokio runtime. Each test names the promise of
//! `docs/replication.md` it holds the code to.

use crate::replica::{objects, restored_tasks, tasks_of};
use crate::util::{ids, put_all, scratch, task};
use statewal::replica::{self, RestoreTarget};
use statewal::{Options, Store};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// A `file://` bucket under `dir`: its URL and the directory behind it.
fn file_bucket(dir: &Path) -> (String, PathBuf) {
    let b = crate::replica::file_bucket(dir);
    (b.url, b.root.expect("a file:// bucket has a root"))
}

fn replicated(dir: &Path, url: &str) -> Options {
    let bucket = crate::replica::Bucket {
        url: url.to_string(),
        settings: Vec::new(),
        root: None,
    };
    crate::replica::replicated(dir, &bucket)
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

/// A store that wrote three segments (a checkpoint seals each), each
/// shipped whole as one object, then "crashed": returns the bucket's
/// objects, with the checkpoint objects deleted so that a restore must
/// replay every segment from the first record.
fn three_segments_no_checkpoints(dir: &Path, url: &str, root: &Path) -> Vec<String> {
    let store = Store::open(replicated(dir, url).checkpoint_on_drop(false)).unwrap();
    put_all(&store, &ids("a", 10));
    store.checkpoint().unwrap();
    put_all(&store, &ids("b", 10));
    store.checkpoint().unwrap();
    put_all(&store, &ids("c", 10));
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.replica_status().unwrap().unwrap().lag_records > 0 {
        assert!(Instant::now() < deadline, "never shipped");
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(store);
    let names = objects(root);
    for n in names.iter().filter(|n| n.contains("/checkpoints/")) {
        std::fs::remove_file(root.join(n)).unwrap();
    }
    let names = objects(root);
    for seg in 1..=3 {
        let of_seg = names
            .iter()
            .filter(|n| n.contains(&format!("/segments/{seg:020}/")))
            .count();
        assert_eq!(of_seg, 1, "segment {seg} in one object: {names:#?}");
    }
    names
}

/// The one object of segment `seg` among `names`.
fn segment_object(names: &[String], seg: u64) -> &String {
    names
        .iter()
        .find(|n| n.contains(&format!("/segments/{seg:020}/")))
        .unwrap()
}

/// A whole segment missing from the bucket (its one object deleted by
/// hand) is a gap like any other: the restore stops before it, names the
/// object after it, and the directory opens with every record before the
/// gap. (The restore failed with `Corrupt` instead, and left the records
/// before the gap in the directory, which then refused a second restore.)
#[test]
fn a_missing_segment_stops_the_restore_before_it() {
    let tmp = scratch();
    let (url, root) = file_bucket(tmp.path());
    let names = three_segments_no_checkpoints(&tmp.path().join("store"), &url, &root);
    std::fs::remove_file(root.join(segment_object(&names, 2))).unwrap();
    let to = tmp.path().join("restored");
    let report = replica::restore(&url, &to, RestoreTarget::Latest).expect("restore");
    let stopped = report.stopped_at.clone().expect("the restore stopped");
    assert!(stopped.contains(segment_object(&names, 3)), "{stopped}");
    assert_eq!(report.last_seq, 10, "{report:?}");
    let restored: Vec<String> = restored_tasks(&to).into_keys().collect();
    let mut want = ids("a", 10);
    want.sort();
    assert_eq!(restored, want);
}

/// An object whose name and CRC-32 are right but whose bytes are another
/// store's segment (copied from another prefix by hand, or crafted) is
/// not restored: the restore stops before it and names it, and the
/// directory opens. (It was written as it came: the directory then did not
/// open, "belongs to another store"; and as the first segment, the other
/// store's records were restored as this one's.)
#[test]
fn a_segment_of_another_store_stops_the_restore() {
    let tmp = scratch();
    let (url, root) = file_bucket(tmp.path());
    let names = three_segments_no_checkpoints(&tmp.path().join("store"), &url, &root);
    let (other_url, other_root) = file_bucket(&tmp.path().join("other"));
    let theirs = three_segments_no_checkpoints(&tmp.path().join("store2"), &other_url, &other_root);
    // Their segment N in place of ours, for N = 2 (a middle one) and then
    // N = 1 (the first: no record of ours before it to compare with).
    for (seg, kept) in [(2u64, ids("a", 10)), (1, Vec::new())] {
        let mine = segment_object(&names, seg);
        let foreign = segment_object(&theirs, seg);
        let generation = mine.split('/').nth(1).unwrap();
        let file = foreign.rsplit('/').next().unwrap();
        let planted = format!("generations/{generation}/segments/{seg:020}/{file}");
        if root.join(mine).exists() {
            std::fs::remove_file(root.join(mine)).unwrap();
        }
        std::fs::copy(other_root.join(foreign), root.join(&planted)).unwrap();
        let to = tmp.path().join(format!("restored{seg}"));
        let report = replica::restore(&url, &to, RestoreTarget::Latest).expect("restore");
        let stopped = report.stopped_at.clone().expect("the restore stopped");
        assert!(stopped.contains(&planted), "{stopped}");
        let restored: Vec<String> = restored_tasks(&to).into_keys().collect();
        let mut want = kept;
        want.sort();
        assert_eq!(restored, want);
    }
}

/// A store that lives shorter than one shipping interval (every CLI
/// command run with `--replicate`) ships its journal at close, after its
/// last checkpoint: that checkpoint saw a gate that had not looked yet and
/// kept every segment. Once shipped, the segments the checkpoint covered
/// go like they do without a replica. (They piled up instead, one per
/// open, and each close read them all again: 20 opens left 20 segments.)
#[test]
fn short_lived_stores_do_not_pile_up_shipped_segments() {
    let tmp = scratch();
    let (url, _) = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    for i in 0..20 {
        // The default interval, as the CLI ships: no tick before the close.
        let opts = replicated(&dir, &url).replicate_interval(Duration::from_secs(1));
        let store = Store::open(opts).unwrap();
        store.put_task(task(&format!("t{i}"))).unwrap();
        drop(store);
    }
    let local = crate::util::segments(&dir).len();
    assert!(local <= 3, "{local} segments kept locally");
    std::fs::remove_dir_all(&dir).unwrap();
    let to = tmp.path().join("restored");
    replica::restore(&url, &to, RestoreTarget::Latest).unwrap();
    assert_eq!(restored_tasks(&to).len(), 20);
}

/// A bucket that accepts connections and never answers holds neither the
/// open, nor the writes, nor the close for long: the open goes on without
/// the claim's answer (the shipper checks it before its first upload),
/// and the close waits for the last tick at most its documented 10 s.
/// (The open waited for the claim's request to time out: 30 s.)
#[test]
fn a_hanging_bucket_holds_no_open_and_no_close_for_long() {
    let tmp = scratch();
    let hang = HangingBucket::start();
    let started = Instant::now();
    let store = Store::open(hang.options(&tmp.path().join("store"))).unwrap();
    let open = started.elapsed();
    assert!(open < Duration::from_secs(8), "the open took {open:?}");
    let started = Instant::now();
    put_all(&store, &ids("a", 20));
    let puts = started.elapsed();
    assert!(puts < Duration::from_secs(5), "20 puts took {puts:?}");
    let started = Instant::now();
    drop(store);
    let close = started.elapsed();
    assert!(close < Duration::from_secs(15), "the close took {close:?}");
    // The directory is free again: the replica left no lock behind.
    drop(Store::open(Options::new(tmp.path().join("store")).checkpoint_interval(None)).unwrap());
}

/// Where the last record of a segment file ends (its trailing sync marker,
/// unsynced when written, left out).
fn last_record_end(segment: &Path) -> u64 {
    crate::util::record_spans(segment).last().unwrap().1
}

/// A put the shipper saw fail may have landed all the same (a request
/// that timed out after the bucket stored it). The shipper puts that range
/// again under the same name, which create-only finds there, never a
/// longer range from the same start: two objects of one segment starting
/// at one offset do not join, and the restore stopped there, losing every
/// record after it. Modelled on `file://`: the segment's directory in the
/// bucket is a regular file while the puts fail, and the first failed
/// range is put in place by hand, as if its request had landed late.
#[test]
fn a_put_that_failed_but_landed_leaves_no_overlap() {
    let tmp = scratch();
    let (url, root) = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let store = Store::open(replicated(&dir, &url).checkpoint_on_drop(false)).unwrap();
    put_all(&store, &ids("a", 10));
    let shipped = |store: &Store| {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let s = store.replica_status().unwrap().unwrap();
            if s.lag_records == 0 {
                return s;
            }
            assert!(Instant::now() < deadline, "never shipped: {s:?}");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    let status = shipped(&store);
    let generation = status.generation.clone().unwrap();
    let seg = status.shipped_segment;
    let from = status.shipped_end;
    let seg_dir = root.join(format!("generations/{generation}/segments/{seg:020}"));
    let aside = seg_dir.with_extension("aside");
    std::fs::rename(&seg_dir, &aside).unwrap();
    std::fs::write(&seg_dir, b"").unwrap();
    // One record: its range fails to ship.
    let errors = status.errors;
    store.put_task(task("b0")).unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.replica_status().unwrap().unwrap().errors == errors {
        assert!(Instant::now() < deadline, "no tick failed");
        std::thread::sleep(Duration::from_millis(10));
    }
    // ... but landed: bytes from..end of the local segment, as the shipper
    // names them.
    let local = dir.join(format!("journal/{seg:020}.wal"));
    let end = last_record_end(&local);
    let bytes = std::fs::read(&local).unwrap()[from as usize..end as usize].to_vec();
    let crc = crc32fast::hash(&bytes);
    std::fs::write(
        aside.join(format!("{from:020}-{end:020}-{crc:08x}.wal")),
        bytes,
    )
    .unwrap();
    // More records while the bucket still fails, then it comes back.
    put_all(&store, &ids("b", 10)[1..]);
    std::thread::sleep(Duration::from_millis(100));
    std::fs::remove_file(&seg_dir).unwrap();
    std::fs::rename(&aside, &seg_dir).unwrap();
    shipped(&store);
    let held = tasks_of(&store);
    drop(store);
    let to = tmp.path().join("restored");
    let report = replica::restore(&url, &to, RestoreTarget::Latest).unwrap();
    assert!(report.stopped_at.is_none(), "{report:?}");
    assert_eq!(restored_tasks(&to), held);
}

/// The replica's threads (the shipper and its runtime's) end with the
/// store: opening and closing a replicated store many times leaves none
/// behind.
#[test]
fn opens_and_closes_leave_no_replica_threads() {
    // Every thread of the process (names are not readable everywhere).
    let threads = || std::fs::read_dir("/proc/self/task").map_or(0, |t| t.count());
    let before = threads();
    let tmp = scratch();
    let (url, _) = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    for i in 0..100 {
        let store = Store::open(replicated(&dir, &url)).unwrap();
        store.put_task(task(&format!("t{i}"))).unwrap();
        drop(store);
    }
    // Tests running meanwhile own a few; a leak is two per open.
    let after = threads();
    assert!(
        after < before + 40,
        "{before} threads before 100 opens, {after} after"
    );
}

/// A caller inside its own tokio runtime opens a replicated store, writes,
/// restores and closes: the replica's runtime is on a thread of its own,
/// so nothing blocks on (or panics in) the caller's.
#[test]
fn a_caller_inside_a_tokio_runtime_can_replicate_and_restore() {
    let tmp = scratch();
    let (url, _) = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let to = tmp.path().join("restored");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let held = runtime.block_on(async {
        let store = Store::open(replicated(&dir, &url)).unwrap();
        put_all(&store, &ids("a", 10));
        let held = tasks_of(&store);
        drop(store);
        replica::restore(&url, &to, RestoreTarget::Latest).unwrap();
        held
    });
    assert_eq!(restored_tasks(&to), held);
}

/// A request still in flight when its process died may land after the
/// next run shipped past it: then two objects of a segment start at one
/// offset, the later run's ending further. Both hold the same bytes of
/// the same file, so the restore takes the longer and leaves the other
/// out. (It stopped at the pair, and lost every record after it.)
#[test]
fn a_late_shorter_object_from_the_same_start_does_not_stop_the_restore() {
    let tmp = scratch();
    let (url, root) = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let store = Store::open(replicated(&dir, &url).checkpoint_on_drop(false)).unwrap();
    let shipped = |store: &Store| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while store.replica_status().unwrap().unwrap().lag_records > 0 {
            assert!(Instant::now() < deadline, "never shipped");
            std::thread::sleep(Duration::from_millis(10));
        }
    };
    put_all(&store, &ids("a", 5));
    shipped(&store);
    put_all(&store, &ids("b", 10));
    shipped(&store);
    put_all(&store, &ids("c", 5));
    shipped(&store);
    let held = tasks_of(&store);
    drop(store);
    // The second object of segment 1, and a record end inside it.
    let names = objects(&root);
    let second = names
        .iter()
        .filter(|n| n.contains(&format!("/segments/{:020}/", 1)))
        .nth(1)
        .unwrap();
    let file = second.rsplit('/').next().unwrap();
    let start: u64 = file[..20].parse().unwrap();
    let end: u64 = file[21..41].parse().unwrap();
    let local = dir.join(format!("journal/{:020}.wal", 1));
    let cut = crate::util::record_spans(&local)
        .into_iter()
        .map(|(_, e)| e)
        .find(|&e| e > start && e < end)
        .expect("a record ends inside the object");
    let bytes = std::fs::read(root.join(second)).unwrap()[..(cut - start) as usize].to_vec();
    let crc = crc32fast::hash(&bytes);
    let late = format!(
        "{}/{start:020}-{cut:020}-{crc:08x}.wal",
        second.rsplit_once('/').unwrap().0
    );
    std::fs::write(root.join(&late), bytes).unwrap();
    let to = tmp.path().join("restored");
    let report = replica::restore(&url, &to, RestoreTarget::Latest).unwrap();
    assert!(report.stopped_at.is_none(), "{report:?}");
    assert_eq!(restored_tasks(&to), held);
    // A restart resumes the generation past both.
    let store = Store::open(replicated(&dir, &url)).unwrap();
    put_all(&store, &ids("d", 3));
    let held = tasks_of(&store);
    drop(store);
    let generations = replica::inspect(&url, &[]).unwrap();
    assert_eq!(generations.len(), 1, "{generations:?}");
    let to = tmp.path().join("restored-again");
    let report = replica::restore(&url, &to, RestoreTarget::Latest).unwrap();
    assert!(report.stopped_at.is_none(), "{report:?}");
    assert_eq!(restored_tasks(&to), held);
}
