//! `list`'s filters and paging through the real binary, and the same
//! filters on the stdio protocol's `list_tasks`: one order (`updated_at`,
//! untimed last, then id) for plain `list` and every filter, pages that
//! never overlap, and bad values refused with the flag or field named.

use crate::util::{check_statewal as check, json_lines, run_statewal};
use std::path::Path;

/// A store with tasks whose id order differs from their update order.
fn store_with_tasks(dir: &Path) {
    let tasks = [
        r#"{"id":"a","status":"completed","tool":"claude","updated_at":"2026-12-03T00:00:00Z"}"#,
        r#"{"id":"b","status":"failed","tool":"claude","updated_at":"2026-12-01T00:00:00Z"}"#,
        r#"{"id":"c","status":"pending","tool":"codex","updated_at":"2026-12-02T00:00:00Z"}"#,
        r#"{"id":"d","status":"pending","tool":"claude"}"#,
        r#"{"id":"e","status":"completed","updated_at":"2026-12-02T00:00:00Z"}"#,
    ];
    for t in tasks {
        check(dir, &["put-task", "-"], t, 0);
    }
}

/// The ids `list --json args...` prints, in order.
fn listed(dir: &Path, args: &[&str]) -> Vec<String> {
    let mut all = vec!["list", "--json"];
    all.extend_from_slice(args);
    json_lines(check(dir, &all, "", 0).as_bytes())
        .iter()
        .map(|t| t["id"].as_str().unwrap().to_string())
        .collect()
}

// Guards: plain `list` and `list` with filters share one order, so a
// filter only leaves lines out; the table follows it too.
#[test]
fn list_orders_by_update_then_id_and_filters_only_leave_tasks_out() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    store_with_tasks(d);
    assert_eq!(listed(d, &[]), ["b", "c", "e", "a", "d"]);
    let table = check(d, &["list"], "", 0);
    let rows: Vec<&str> = table
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(rows, ["b", "c", "e", "a", "d", "5"], "{table}");

    assert_eq!(listed(d, &["--tool", "claude"]), ["b", "a", "d"]);
    assert_eq!(
        listed(d, &["--status", "completed,pending", "--tool", "claude"]),
        ["a", "d"]
    );
    // Exclusive bounds: c and e, updated exactly at the bound, are out.
    assert_eq!(
        listed(d, &["--updated-after", "2026-12-02T00:00:00Z"]),
        ["a"]
    );
    assert_eq!(
        listed(d, &["--updated-before", "2026-12-02T00:00:00Z"]),
        ["b"]
    );
    assert_eq!(
        listed(
            d,
            &[
                "--updated-after",
                "2026-12-01T00:00:00Z",
                "--updated-before",
                "2026-12-03T01:00:00+01:00"
            ]
        ),
        ["c", "e"]
    );
}

// Guards: `--offset`/`--limit` pages, concatenated, are the whole list,
// with nothing twice and nothing missed; past the end is an empty list.
#[test]
fn list_pages_never_overlap_or_skip() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    store_with_tasks(d);
    let all = listed(d, &[]);
    for size in [1, 2, 3] {
        let mut paged = Vec::new();
        let mut offset = 0;
        loop {
            let (o, l) = (offset.to_string(), size.to_string());
            let page = listed(d, &["--offset", &o, "--limit", &l]);
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= size);
            offset += page.len();
            paged.extend(page);
        }
        assert_eq!(paged, all, "pages of {size}");
    }
    assert!(listed(d, &["--limit", "0"]).is_empty());
    let table = check(d, &["list", "--offset", "9"], "", 0);
    assert!(table.ends_with("0 tasks\n"), "{table}");
    assert_eq!(
        listed(d, &["--status", "pending", "--limit", "1", "--offset", "1"]),
        ["d"]
    );
}

// Guards: every bad value is exit 2 with a message naming the flag and the
// value, and nothing on standard output.
#[test]
fn bad_list_flags_name_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    store_with_tasks(d);
    for (args, named) in [
        (&["--limit", "x"][..], "'--limit <N>'"),
        (&["--limit", "-1"], "'--limit <N>'"),
        (&["--offset", "1.5"], "'--offset <N>'"),
        (
            &["--updated-after", "yesterday"],
            "'--updated-after <RFC3339>'",
        ),
        (
            &["--updated-before", "2026-12-01"],
            "'--updated-before <RFC3339>'",
        ),
        (&["--status", "done"], "'--status <S1,S2>'"),
    ] {
        let mut all = vec!["list"];
        all.extend_from_slice(args);
        let out = run_statewal(d, &all, "", &[]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{all:?}: {err}");
        assert!(out.stdout.is_empty(), "{all:?}");
        assert!(
            err.contains(named) && err.contains(&format!("'{}'", args[1])),
            "{all:?}: {err}"
        );
    }
    let out = run_statewal(d, &["list", "--updated-after", "2026-12-01"], "", &[]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("2026-12-01T00:00:00Z"));
}

// Guards: the stdio `list_tasks` takes `list`'s filters as fields, answers
// in the same order, and names a bad field.
#[test]
fn serve_list_tasks_takes_the_same_filters() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    store_with_tasks(d);
    let requests = [
        r#"{"req":1,"op":"list_tasks"}"#,
        r#"{"req":2,"op":"list_tasks","status":["completed","pending"],"tool":"claude"}"#,
        r#"{"req":3,"op":"list_tasks","status":"pending","limit":1,"offset":1}"#,
        r#"{"req":4,"op":"list_tasks","updated_after":"2026-12-01T00:00:00Z","updated_before":"2026-12-03T00:00:00Z"}"#,
        r#"{"req":5,"op":"list_tasks","tool":null,"limit":null}"#,
        r#"{"req":6,"op":"list_tasks","updated_before":"tomorrow"}"#,
        r#"{"req":7,"op":"list_tasks","status":["done"]}"#,
        r#"{"req":8,"op":"list_tasks","limit":-1}"#,
        r#"{"req":9,"op":"list_tasks","tool":7}"#,
    ];
    let input = requests.join("\n") + "\n";
    let answers = json_lines(check(d, &["serve", "--stdio"], &input, 0).as_bytes());
    let ids = |i: usize| -> Vec<&str> {
        let tasks = answers[i]["tasks"].as_array().expect("a tasks array");
        tasks.iter().map(|t| t["id"].as_str().unwrap()).collect()
    };
    assert_eq!(ids(0), ["b", "c", "e", "a", "d"]);
    assert_eq!(ids(1), ["a", "d"]);
    assert_eq!(ids(2), ["d"]);
    assert_eq!(ids(3), ["c", "e"]);
    assert_eq!(ids(4), ids(0));
    for (i, field) in [
        (5, "updated_before"),
        (6, "status"),
        (7, "limit"),
        (8, "tool"),
    ] {
        assert_eq!(answers[i]["ok"], false, "{}", answers[i]);
        assert_eq!(answers[i]["error"]["kind"], "invalid_input");
        let message = answers[i]["error"]["message"].as_str().unwrap();
        assert!(message.contains(&format!("\"{field}\"")), "{message}");
    }
}
