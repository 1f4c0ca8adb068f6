//! `statewal restore-from` and `statewal replica status` (issue 11): a
//! store served with `--replicate` is rebuilt through the CLI after its
//! directory is gone, whole, at a sequence number and at a time; a corrupt
//! object is named and the restore stops before it; bad input is a clear
//! error; `replica status` lists the bucket. On `file://` everywhere, and
//! the round trip on S3 (moto) when the emulator is there.

use crate::util::{
    expect_exit, json_lines, json_object, run_with_stdin, scratch, without_statewal_env,
};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A replica URL and the environment that reaches it (none for
/// `file://`; `AWS_ENDPOINT`, ... for moto).
struct Bucket {
    url: String,
    env: Vec<(String, String)>,
    /// The directory behind a `file://` URL.
    root: Option<PathBuf>,
}

fn file_bucket(tmp: &Path) -> Bucket {
    let root = tmp.join("bucket");
    std::fs::create_dir_all(&root).unwrap();
    Bucket {
        url: format!("file://{}/replica", root.display()),
        env: Vec::new(),
        root: Some(root.join("replica")),
    }
}

/// `statewal ARGS` with the bucket's environment and `stdin`.
fn statewal(bucket: &Bucket, args: &[&str], stdin: &str) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_statewal"));
    without_statewal_env(&mut cmd);
    cmd.args(args);
    for (k, v) in &bucket.env {
        cmd.env(k, v);
    }
    run_with_stdin(cmd, stdin)
}

/// stdout of `statewal ARGS`, which must exit with `code`.
#[track_caller]
fn check(bucket: &Bucket, args: &[&str], code: i32) -> String {
    expect_exit(statewal(bucket, args, ""), code, args).0
}

/// stderr of `statewal ARGS`, which must exit 2, without a panic.
#[track_caller]
fn refused(bucket: &Bucket, args: &[&str]) -> String {
    let (_, err) = expect_exit(statewal(bucket, args, ""), 2, args);
    assert!(!err.contains("panicked"), "{args:?}: {err}");
    err
}

/// Serves `dir` with the replica, writes `n` tasks `<prefix>0..` (and
/// deletes the first one when `delete`), and closes.
fn serve_batch(bucket: &Bucket, dir: &Path, prefix: &str, n: usize, delete: bool) {
    let mut lines = String::new();
    for i in 0..n {
        let task = format!(r#"{{"id":"{prefix}{i}","status":"pending","n":{i}}}"#);
        lines.push_str(&format!(r#"{{"req":{i},"op":"put_task","task":{task}}}"#));
        lines.push('\n');
    }
    if delete {
        lines.push_str(&format!(
            r#"{{"req":"d","op":"delete_task","id":"{prefix}0"}}"#
        ));
        lines.push('\n');
    }
    let d = dir.to_str().unwrap();
    let args = ["--dir", d, "--replicate", &bucket.url, "serve", "--stdio"];
    let (out, _) = expect_exit(statewal(bucket, &args, &lines), 0, &args);
    for line in json_lines(out.as_bytes()) {
        assert_eq!(line["ok"], true, "{line}");
    }
}

/// `list --json` of a directory: every task, as stored. The open says
/// nothing on stderr: a restored directory has its task files (a first
/// version wrote none, and the open warned once per task that its file
/// was missing).
fn tasks(bucket: &Bucket, dir: &Path) -> String {
    let args = ["--dir", dir.to_str().unwrap(), "list", "--json"];
    let (out, err) = expect_exit(statewal(bucket, &args, ""), 0, &args);
    assert_eq!(err, "", "{args:?}");
    out
}

/// The report of `restore-from URL --to DIR [extra...] --json`.
#[track_caller]
fn restore(bucket: &Bucket, to: &Path, extra: &[&str], code: i32) -> serde_json::Value {
    let mut args = vec!["restore-from", &bucket.url, "--to", to.to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push("--json");
    json_object(check(bucket, &args, code).as_bytes())
}

/// The journal's last sequence number in `dir`, from `dump-journal`.
fn last_seq(bucket: &Bucket, dir: &Path) -> u64 {
    let out = check(
        bucket,
        &["--dir", dir.to_str().unwrap(), "dump-journal", "--json"],
        0,
    );
    json_lines(out.as_bytes())
        .iter()
        .filter_map(|r| r["seq"].as_u64())
        .max()
        .unwrap()
}

fn round_trip(bucket: &Bucket) {
    let tmp = scratch();
    let dir = tmp.path().join("store");
    serve_batch(bucket, &dir, "a", 12, true);
    serve_batch(bucket, &dir, "b", 8, false);
    let held = tasks(bucket, &dir);
    assert_eq!(held.lines().count(), 11 + 8);
    // The machine is lost.
    std::fs::remove_dir_all(&dir).unwrap();
    let to = tmp.path().join("restored");
    let report = restore(bucket, &to, &[], 0);
    assert_eq!(report["stopped_at"], serde_json::Value::Null, "{report}");
    assert_eq!(report["to"], to.to_str().unwrap());
    assert!(
        report["generation"].as_str().is_some_and(|g| g.len() == 24),
        "{report}"
    );
    // 12 puts, a delete, 8 puts.
    assert_eq!(report["last_seq"], 21, "{report}");
    assert_eq!(tasks(bucket, &to), held, "task by task");
    // The text report says the same.
    let again = tmp.path().join("again");
    let text = check(
        bucket,
        &["restore-from", &bucket.url, "--to", again.to_str().unwrap()],
        0,
    );
    assert!(text.contains("the last record is seq 21"), "{text}");
    assert!(
        text.contains(report["generation"].as_str().unwrap()),
        "{text}"
    );
}

#[test]
fn round_trip_file() {
    let tmp = scratch();
    round_trip(&file_bucket(tmp.path()));
}

#[test]
fn round_trip_s3() {
    if let Some(e) = crate::emulators::s3() {
        // The CLI reads its endpoint and credentials from the environment,
        // as the README shows: AWS_ENDPOINT, AWS_ALLOW_HTTP, ...
        let env = e
            .options
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect();
        round_trip(&Bucket {
            url: e.url,
            env,
            root: None,
        });
    }
}

#[test]
fn restore_at_a_sequence_number() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    serve_batch(&bucket, &dir, "a", 10, false);
    let after_a = tasks(&bucket, &dir);
    serve_batch(&bucket, &dir, "b", 10, false);
    // At 10: the first batch, from its checkpoint; at 15: five more, from
    // the journal after it.
    let at10 = tmp.path().join("at10");
    let report = restore(&bucket, &at10, &["--at", "10"], 0);
    assert_eq!(report["last_seq"], 10, "{report}");
    assert_eq!(tasks(&bucket, &at10), after_a);
    let at15 = tmp.path().join("at15");
    let report = restore(&bucket, &at15, &["--at", "15"], 0);
    assert_eq!(report["last_seq"], 15, "{report}");
    assert_eq!(report["records"], 5, "{report}");
    let ids: Vec<String> = json_lines(tasks(&bucket, &at15).as_bytes())
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 15, "{ids:?}");
    assert!(ids.contains(&"b4".to_string()) && !ids.contains(&"b5".to_string()));
}

/// `--at RFC3339`: two batches a second apart; a time between them
/// restores the first, placed by the sync markers' record time.
#[test]
fn restore_at_a_time() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let now = || time::OffsetDateTime::now_utc();
    let rfc3339 = |t: time::OffsetDateTime| {
        t.format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let before_all = now() - time::Duration::seconds(5);
    serve_batch(&bucket, &dir, "a", 6, false);
    let after_a = tasks(&bucket, &dir);
    std::thread::sleep(std::time::Duration::from_millis(600));
    let between = now();
    std::thread::sleep(std::time::Duration::from_millis(600));
    serve_batch(&bucket, &dir, "b", 6, false);
    let all = tasks(&bucket, &dir);
    let to = tmp.path().join("between");
    let report = restore(&bucket, &to, &["--at", &rfc3339(between)], 0);
    assert_eq!(report["last_seq"], 6, "{report}");
    assert_eq!(tasks(&bucket, &to), after_a);
    let marked = report["record_time"].as_str().expect("a record time");
    let marked =
        time::OffsetDateTime::parse(marked, &time::format_description::well_known::Rfc3339)
            .unwrap();
    assert!(marked <= between, "{report}");
    // After the last record time: every record that has a time.
    let to = tmp.path().join("later");
    let later = now() + time::Duration::hours(1);
    let report = restore(&bucket, &to, &["--at", &rfc3339(later)], 0);
    assert_eq!(report["last_seq"], 12, "{report}");
    assert_eq!(tasks(&bucket, &to), all);
    // Before the first: refused, naming the first record time, nothing
    // restored.
    let to = tmp.path().join("before");
    let err = refused(
        &bucket,
        &[
            "restore-from",
            &bucket.url,
            "--to",
            to.to_str().unwrap(),
            "--at",
            &rfc3339(before_all),
        ],
    );
    assert!(
        err.contains("is before the first record time in the replica"),
        "{err}"
    );
    assert!(!to.join("state.json").exists(), "nothing restored");
}

/// A corrupt object after the checkpoint: named, exit 1, the restore
/// holds every record before it and opens.
#[test]
fn a_corrupt_object_is_named_and_the_restore_stops_before_it() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    serve_batch(&bucket, &dir, "a", 5, false);
    let after_a = tasks(&bucket, &dir);
    let first = last_seq(&bucket, &dir);
    serve_batch(&bucket, &dir, "b", 5, false);
    serve_batch(&bucket, &dir, "c", 5, false);
    let all = tasks(&bucket, &dir);
    // The segment holding the second batch: its first object holds its
    // header, so nothing of it can be restored.
    let segment = segment_of(&bucket, &dir, first + 1);
    let root = bucket.root.as_ref().unwrap();
    let victim = crate::util::tree(root)
        .into_iter()
        .map(|p| p.to_str().unwrap().to_string())
        .filter(|p| p.contains(&format!("/segments/{segment}/")))
        .min()
        .unwrap_or_else(|| panic!("no object of segment {segment}"));
    let path = root.join(&victim);
    let mut bytes = std::fs::read(&path).unwrap();
    let at = bytes.len() - 3;
    bytes[at] ^= 0x10;
    std::fs::write(&path, bytes).unwrap();
    // The target is before the second batch's checkpoint, so the first
    // batch's checkpoint and the journal after it are what it needs.
    let to = tmp.path().join("restored");
    let target = (first + 3).to_string();
    let report = restore(&bucket, &to, &["--at", &target], 1);
    let stopped = &report["stopped_at"];
    assert_eq!(stopped["object"], victim.as_str(), "{report}");
    assert!(
        stopped["reason"].as_str().unwrap().contains("CRC-32"),
        "{report}"
    );
    assert_eq!(report["last_seq"], first, "{report}");
    assert_eq!(tasks(&bucket, &to), after_a);
    // The text names it too.
    let again = tmp.path().join("again");
    let text = check(
        &bucket,
        &[
            "restore-from",
            &bucket.url,
            "--to",
            again.to_str().unwrap(),
            "--at",
            &target,
        ],
        1,
    );
    assert!(text.contains(&format!("stopped before {victim}")), "{text}");
    // To the newest record, the last checkpoint covers all the corrupt
    // segment held (the third batch's segment follows on from it): the
    // restore passes over it, names it, and restores everything.
    let latest = tmp.path().join("latest");
    let report = restore(&bucket, &latest, &[], 0);
    assert_eq!(report["stopped_at"], serde_json::Value::Null, "{report}");
    let skipped = report["skipped_objects"][0].as_str().unwrap_or_default();
    assert!(skipped.starts_with(&format!("{victim}: ")), "{report}");
    assert_eq!(report["last_seq"], first + 10, "{report}");
    assert_eq!(tasks(&bucket, &latest), all);
}

#[test]
fn bad_input_is_a_clear_error() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    serve_batch(&bucket, &dir, "a", 3, false);
    let to = tmp.path().join("to");
    let to = to.to_str().unwrap();
    for at in [
        "yesterday",
        "-5",
        "2026-13-01T00:00:00Z",
        "2026-12-02 10:00",
    ] {
        let flag = format!("--at={at}");
        let err = refused(&bucket, &["restore-from", &bucket.url, "--to", to, &flag]);
        assert!(err.contains("--at takes a sequence number"), "{at}: {err}");
        assert!(err.contains(at), "{at}: {err}");
    }
    // A directory that holds a store is refused and left as it was.
    let before = crate::util::tree(&dir);
    let state = std::fs::read(dir.join("state.json")).unwrap();
    let err = refused(
        &bucket,
        &["restore-from", &bucket.url, "--to", dir.to_str().unwrap()],
    );
    assert!(err.contains("already holds a store"), "{err}");
    assert!(err.contains(dir.to_str().unwrap()), "{err}");
    assert_eq!(crate::util::tree(&dir), before);
    assert_eq!(std::fs::read(dir.join("state.json")).unwrap(), state);
    // Schemes that are not a replica's, and a non-URL.
    for url in ["memory:///x", "http://127.0.0.1:9/x", "not a url"] {
        let err = refused(&bucket, &["restore-from", url, "--to", to]);
        assert!(err.contains("cannot use replica URL"), "{url}: {err}");
        let err = refused(&bucket, &["replica", "status", url]);
        assert!(err.contains("cannot use replica URL"), "{url}: {err}");
    }
    // A bucket that holds nothing.
    let empty = format!("file://{}/nothing-here", tmp.path().display());
    let err = refused(&bucket, &["restore-from", &empty, "--to", to]);
    assert!(err.contains("holds no generation to restore"), "{err}");
    assert!(!Path::new(to).exists(), "nothing is created");
    // A missing bucket on S3.
    if let Some(e) = crate::emulators::s3() {
        let env: Vec<(String, String)> = e
            .options
            .iter()
            .map(|(k, v)| (k.to_ascii_uppercase(), v.clone()))
            .collect();
        let s3 = Bucket {
            url: "s3://no-such-bucket-statewal/p".into(),
            env,
            root: None,
        };
        let err = refused(&s3, &["restore-from", &s3.url, "--to", to]);
        assert!(err.contains("s3://no-such-bucket-statewal/p"), "{err}");
        assert!(
            err.contains("NoSuchBucket") || err.contains("not found"),
            "{err}"
        );
        let err = refused(&s3, &["replica", "status", &s3.url]);
        assert!(err.contains("s3://no-such-bucket-statewal/p"), "{err}");
    }
}

/// The global flags the two commands have no use for change nothing.
#[test]
fn ignored_global_flags_do_not_fail() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    serve_batch(&bucket, &dir, "a", 3, false);
    let to = tmp.path().join("to");
    let ignored = [
        "--dir",
        "/nonexistent",
        "--sync",
        "os-buffered",
        "--read-only",
        "--replicate",
        "memory:///x",
        "--database",
        "postgres://nobody@127.0.0.1:9/x",
    ];
    let mut args: Vec<&str> = ignored.to_vec();
    args.extend([
        "restore-from",
        &bucket.url,
        "--to",
        to.to_str().unwrap(),
        "--json",
    ]);
    let report = json_object(check(&bucket, &args, 0).as_bytes());
    assert_eq!(report["last_seq"], 3, "{report}");
    let mut args: Vec<&str> = ignored.to_vec();
    args.extend(["replica", "status", &bucket.url]);
    check(&bucket, &args, 0);
}

#[test]
fn replica_status_lists_generations_segments_and_lag() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    // An empty replica.
    let text = check(&bucket, &["replica", "status", &bucket.url], 0);
    assert!(text.contains("no generation"), "{text}");
    let lines =
        json_lines(check(&bucket, &["replica", "status", &bucket.url, "--json"], 0).as_bytes());
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["kind"], "summary");
    assert_eq!(lines[0]["generations"], 0);
    assert_eq!(lines[0]["lag_seconds"], serde_json::Value::Null);

    let dir = tmp.path().join("store");
    serve_batch(&bucket, &dir, "a", 4, false);
    serve_batch(&bucket, &dir, "b", 4, false);
    let lines =
        json_lines(check(&bucket, &["replica", "status", &bucket.url, "--json"], 0).as_bytes());
    let kinds: Vec<&str> = lines.iter().map(|l| l["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"generation"), "{kinds:?}");
    assert_eq!(kinds.last(), Some(&"summary"), "{kinds:?}");
    let generation = &lines[0];
    let id = generation["generation"].as_str().unwrap();
    assert_eq!(id.len(), 24);
    let segments: Vec<&serde_json::Value> =
        lines.iter().filter(|l| l["kind"] == "segment").collect();
    assert_eq!(generation["segments"], segments.len());
    assert!(!segments.is_empty());
    for s in &segments {
        assert_eq!(s["generation"], id);
        assert!(s["shipped_end"].as_u64().unwrap() > 0, "{s}");
        assert!(s["objects"].as_u64().unwrap() >= 1, "{s}");
        assert_eq!(s["gap_at"], serde_json::Value::Null);
        time::OffsetDateTime::parse(
            s["last_modified"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap();
    }
    let checkpoints = generation["checkpoints"].as_array().unwrap();
    assert_eq!(checkpoints.last().unwrap(), 8, "{generation}");
    let summary = lines.last().unwrap();
    assert_eq!(summary["generations"], 1);
    assert_eq!(summary["newest_generation"], id);
    assert_eq!(summary["newest_checkpoint_seq"], 8);
    let newest = segments.last().unwrap();
    assert_eq!(summary["newest_segment"], newest["segment"]);
    assert_eq!(summary["newest_end"], newest["shipped_end"]);
    let lag = summary["lag_seconds"].as_f64().unwrap();
    assert!((0.0..120.0).contains(&lag), "{summary}");
    // The text says the same.
    let text = check(&bucket, &["replica", "status", &bucket.url], 0);
    assert!(text.contains(&format!("generation {id}")), "{text}");
    assert!(text.contains("newest checkpoint: seq 8"), "{text}");
    assert!(
        text.contains(&format!(
            "segment {}: shipped to byte {}",
            newest["segment"], newest["shipped_end"]
        )),
        "{text}"
    );
    assert!(text.contains("lag: "), "{text}");
}

/// A time inside the first run of writes, before the checkpoint that a
/// later close shipped: placed by the markers, not moved forward to that
/// checkpoint (a first version took a generation's first checkpoint as
/// shipped when it began, and restored all six records here).
#[test]
fn a_time_before_a_later_checkpoint_keeps_to_the_markers() {
    use statewal::{Options, Store};
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let opts = Options::new(&dir)
        .checkpoint_interval(None)
        .replicate_to(&bucket.url)
        .replicate_interval(std::time::Duration::from_millis(20));
    let store = Store::open(opts).unwrap();
    crate::util::put_all(&store, &crate::util::ids("a", 3));
    std::thread::sleep(std::time::Duration::from_millis(300));
    let between = time::OffsetDateTime::now_utc();
    std::thread::sleep(std::time::Duration::from_millis(300));
    crate::util::put_all(&store, &crate::util::ids("b", 3));
    drop(store);
    let at = between
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let to = tmp.path().join("restored");
    let report = restore(&bucket, &to, &["--at", &at], 0);
    assert_eq!(report["last_seq"], 3, "{report}");
    assert_eq!(json_lines(tasks(&bucket, &to).as_bytes()).len(), 3);
}

/// A segment missing from the bucket, with the target past its records:
/// the restore stops before the segment that does not follow on, names
/// it, and exits 1 (a first version restored to the checkpoint and exited
/// 0, silently short of the target).
#[test]
fn a_missing_segment_stops_the_restore() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    let generation = three_batches(&bucket, &dir);
    let segment = segment_of(&bucket, &dir, 6);
    std::fs::remove_dir_all(generation.join("segments").join(&segment)).unwrap();
    let to = tmp.path().join("to");
    let report = restore(&bucket, &to, &["--at", "8"], 1);
    let stopped = &report["stopped_at"];
    assert!(
        stopped["reason"].as_str().unwrap().contains("is missing"),
        "{report}"
    );
    assert_eq!(report["last_seq"], 5, "{report}");
}

/// Three batches of five through `serve --stdio`; the generation's
/// directory in the bucket.
fn three_batches(bucket: &Bucket, dir: &Path) -> PathBuf {
    for prefix in ["a", "b", "c"] {
        serve_batch(bucket, dir, prefix, 5, false);
    }
    let root = bucket.root.as_ref().unwrap();
    let mut generations = std::fs::read_dir(root.join("generations")).unwrap();
    generations.next().unwrap().unwrap().path()
}

/// The 20-digit id of the segment holding record `seq` in the bucket:
/// found by restoring to it (into a scratch directory beside `dir`) and
/// reading the restored journal, since the store's own directory may have
/// removed that segment since.
fn segment_of(bucket: &Bucket, dir: &Path, seq: u64) -> String {
    let probe = dir.with_extension(format!("probe-{seq}"));
    restore(bucket, &probe, &["--at", &seq.to_string()], 0);
    let out = check(
        bucket,
        &["--dir", probe.to_str().unwrap(), "dump-journal", "--json"],
        0,
    );
    std::fs::remove_dir_all(&probe).unwrap();
    let segment = json_lines(out.as_bytes())
        .iter()
        .find(|r| r["seq"] == seq && r["kind"] == "put_task")
        .map(|r| r["segment"].as_str().unwrap().to_string())
        .unwrap_or_else(|| panic!("no record {seq} in a restore to it"));
    segment
        .trim_start_matches("journal/")
        .trim_end_matches(".wal")
        .to_string()
}

/// A restore that fails with an error after it began writing (here: a
/// regular file named `tasks` in `--to`, which does not make it a store but
/// blocks the task files) is exit 2 and leaves `--to` as it found it, so it
/// can be run again there.
#[test]
fn a_failed_restore_leaves_nothing_behind() {
    let tmp = scratch();
    let bucket = file_bucket(tmp.path());
    let dir = tmp.path().join("store");
    three_batches(&bucket, &dir);
    let to = tmp.path().join("to");
    std::fs::create_dir(&to).unwrap();
    std::fs::write(to.join("notes.txt"), "mine").unwrap();
    std::fs::write(to.join("tasks"), "not a directory").unwrap();
    let before = crate::util::tree(&to);
    let args = ["restore-from", &bucket.url, "--to", to.to_str().unwrap()];
    let err = refused(&bucket, &args);
    assert!(err.contains("tasks"), "{err}");
    assert_eq!(crate::util::tree(&to), before, "only what was there before");
    assert_eq!(std::fs::read(to.join("tasks")).unwrap(), b"not a directory");
}
