//! The CLI on PostgreSQL (`--database`, `DATABASE_URL`, a `postgres://`
//! URL as `--dir`) against the tests' private server (`pg.rs`): the
//! commands that run there, the refusal of the others, and the
//! `DATABASE_URL` rule: a read never creates statewal's tables, the first
//! write does and says where on stderr, the password elided.

use crate::pg::{TestDb, database};
use crate::util::{
    expect_exit, json_lines, json_object, run_with_stdin, scratch, without_statewal_env,
};
use std::process::{Command, Output};

/// `statewal ARGS` with `stdin` and `env`, run in a scratch working
/// directory (where the default `./coding-agent-state` would go), without
/// the variables that change its behaviour.
fn run(cwd: &std::path::Path, args: &[&str], stdin: &str, env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_statewal"));
    cmd.current_dir(cwd);
    without_statewal_env(&mut cmd);
    cmd.args(args).envs(env.iter().copied());
    run_with_stdin(cmd, stdin)
}

/// `statewal --database URL ARGS`, checked for `code`.
#[track_caller]
fn pg(db: &str, cwd: &std::path::Path, args: &[&str], stdin: &str, code: i32) -> (String, String) {
    let mut all = vec!["--database", db];
    all.extend_from_slice(args);
    expect_exit(run(cwd, &all, stdin, &[]), code, &all)
}

/// The test database's URL with a password in it: the server trusts local
/// connections and never asks for it, so it only shows whether statewal
/// ever prints it.
fn with_password(db: &TestDb) -> String {
    db.url.replacen("postgres@", "postgres:sekrit@", 1)
}

fn statewal_tables(db: &TestDb) -> i64 {
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).unwrap();
    c.query_one(
        "SELECT count(*) FROM pg_tables WHERE tablename LIKE 'statewal%'",
        &[],
    )
    .unwrap()
    .get(0)
}

const TASK_A: &str = r#"{"id":"a","status":"completed","tool":"claude","updated_at":"2026-12-02T10:00:00Z","description":"first"}"#;
const TASK_B: &str =
    r#"{"id":"b","status":"pending","updated_at":"2026-12-01T10:00:00Z","description":"second"}"#;

#[test]
fn the_available_commands_run_on_the_database() {
    let Some(db) = database() else { return };
    let cwd = scratch();
    let url = with_password(&db);
    let (out, err) = pg(&url, cwd.path(), &["put-task", "-"], TASK_A, 0);
    // Named by where the number comes from, as the journal's "(journal seq N)".
    assert!(out.starts_with("stored task a (database seq "), "{out}");
    assert!(
        err.contains("created statewal's tables in postgres://postgres:***@"),
        "{err}"
    );
    let (_, err) = pg(&url, cwd.path(), &["put-task", "--json"], TASK_B, 0);
    assert!(
        !err.contains("created"),
        "only the first write says so: {err}"
    );
    let (out, _) = pg(&url, cwd.path(), &["get-task", "a"], "", 0);
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&out).unwrap()["tool"],
        "claude"
    );
    let (out, _) = pg(&url, cwd.path(), &["list", "--json"], "", 0);
    let ids: Vec<_> = json_lines(out.as_bytes())
        .iter()
        .map(|t| t["id"].clone())
        .collect();
    assert_eq!(ids, ["b", "a"], "list's one order: updated_at, then id");
    for (flags, want) in [
        (&["--status", "completed,failed"][..], vec!["a"]),
        (&["--tool", "claude"][..], vec!["a"]),
        (&["--updated-before", "2026-12-02T00:00:00Z"][..], vec!["b"]),
        (&["--updated-after", "2026-12-01T10:00:00Z"][..], vec!["a"]),
        (&["--limit", "1", "--offset", "1"][..], vec!["a"]),
    ] {
        let mut args = vec!["list", "--json"];
        args.extend_from_slice(flags);
        let (out, _) = pg(&url, cwd.path(), &args, "", 0);
        let ids: Vec<_> = json_lines(out.as_bytes())
            .iter()
            .map(|t| t["id"].clone())
            .collect();
        assert_eq!(ids, want, "{flags:?}");
    }
    let (out, _) = pg(&url, cwd.path(), &["list"], "", 0);
    assert!(out.contains("first") && out.ends_with("2 tasks\n"), "{out}");
    let (out, _) = pg(&url, cwd.path(), &["show", "a"], "", 0);
    assert!(
        out.starts_with("task a\n") && out.contains("claude"),
        "{out}"
    );
    let (out, _) = pg(&url, cwd.path(), &["show", "a", "--json"], "", 0);
    assert_eq!(json_object(out.as_bytes())["description"], "first");
    let (out, _) = pg(&url, cwd.path(), &["health"], "", 0);
    assert!(out.contains("healthy") && !out.contains("sekrit"), "{out}");
    let (out, _) = pg(&url, cwd.path(), &["health", "--json"], "", 0);
    assert_eq!(json_object(out.as_bytes())["healthy"], true);
    let (out, _) = pg(&url, cwd.path(), &["metrics"], "", 0);
    assert!(out.contains("statewal_tasks 2"), "{out}");
    let (out, _) = pg(&url, cwd.path(), &["delete-task", "--json", "a"], "", 0);
    assert_eq!(json_object(out.as_bytes())["id"], "a");
    pg(&url, cwd.path(), &["get-task", "a"], "", 2);
    // Nothing went to a state directory.
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

#[test]
fn every_other_store_command_is_refused_on_the_database() {
    let Some(db) = database() else { return };
    let cwd = scratch();
    let refused: &[&[&str]] = &[
        &["checkpoint"],
        &["verify"],
        &["recover"],
        &["backups"],
        &["restore", "1767268800000"],
        &["clean", "--older-than", "1d"],
        &["migrate"],
        &["dump-journal"],
        &["get-report", "r"],
        &["list-reports"],
        &["list-logs"],
        &["read-log", "session_s.log"],
        &["get-session", "s"],
    ];
    for args in refused {
        let (_, err) = pg(&db.url, cwd.path(), args, "", 2);
        let want = format!("`{}` is not available on PostgreSQL", args[0]);
        assert!(err.contains(&want), "{args:?}: {err}");
    }
    // The commands that open no store ignore it.
    pg(&db.url, cwd.path(), &["completions", "bash"], "", 0);
    pg(&db.url, cwd.path(), &["man", "list"], "", 0);
    assert_eq!(statewal_tables(&db), 0);
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

/// A `postgres://` (or `postgresql://`) URL given to `--dir` means
/// `--database`, and `DATABASE_URL` is the flag's variable.
#[test]
fn a_url_in_dir_and_database_url_name_the_database() {
    let Some(db) = database() else { return };
    let cwd = scratch();
    let args = ["--dir", db.url.as_str(), "put-task"];
    expect_exit(run(cwd.path(), &args, TASK_A, &[]), 0, &args);
    let env = [("DATABASE_URL", db.url.as_str())];
    let (out, _) = expect_exit(
        run(cwd.path(), &["get-task", "a"], "", &env),
        0,
        &["get-task"],
    );
    assert!(out.contains("\"claude\""), "{out}");
    let alt = db.url.replacen("postgres://", "postgresql://", 1);
    let args = ["--dir", alt.as_str(), "list", "--json"];
    let (out, _) = expect_exit(run(cwd.path(), &args, "", &[]), 0, &args);
    assert_eq!(json_lines(out.as_bytes()).len(), 1);
    // STATE_PATH is --dir's variable: a URL there is a database too.
    let env = [("STATE_PATH", db.url.as_str())];
    expect_exit(run(cwd.path(), &["show", "a"], "", &env), 0, &["show"]);
    assert_eq!(std::fs::read_dir(cwd.path()).unwrap().count(), 0);
}

/// Regression guard for the DATABASE_URL decision (docs/decisions.md): a
/// developer's DATABASE_URL names their application's database, and a
/// read pointed there by accident must leave it as it was.
#[test]
fn reads_on_a_database_without_statewal_create_nothing() {
    let Some(db) = database() else { return };
    let cwd = scratch();
    let url = with_password(&db);
    let env = [("DATABASE_URL", url.as_str())];
    for args in [
        &["get-task", "a"][..],
        &["list"][..],
        &["show", "a"][..],
        &["metrics"][..],
        &["--read-only", "list"][..],
    ] {
        let (_, err) = expect_exit(run(cwd.path(), args, "", &env), 2, args);
        assert!(
            err.contains("no statewal store in postgres://postgres:***@"),
            "{args:?}: {err}"
        );
        assert!(!err.contains("sekrit"), "{err}");
    }
    let (out, _) = expect_exit(run(cwd.path(), &["health"], "", &env), 1, &["health"]);
    assert!(out.contains("no statewal store"), "{out}");
    assert_eq!(statewal_tables(&db), 0, "a read created tables");
    // A writer refused with --read-only creates nothing either.
    let args = ["--read-only", "put-task"];
    expect_exit(run(cwd.path(), &args, TASK_A, &env), 2, &args);
    assert_eq!(statewal_tables(&db), 0);
}

#[test]
fn serve_stdio_puts_and_gets_on_the_database() {
    let Some(db) = database() else { return };
    let cwd = scratch();
    let requests = [
        r#"{"req":1,"op":"put_task","task":{"id":"a","status":"pending"}}"#,
        r#"{"req":2,"op":"put_task","task":{"id":"b","status":"failed","tool":"t"}}"#,
        r#"{"req":3,"op":"get_task","id":"a"}"#,
        r#"{"req":4,"op":"list_tasks","status":["failed"]}"#,
        r#"{"req":5,"op":"delete_task","id":"a"}"#,
        r#"{"req":6,"op":"get_task","id":"a"}"#,
        r#"{"req":7,"op":"append_log","session":"s1","text":"hi\n"}"#,
        r#"{"req":8,"op":"read_log","file_name":"session_s1.log"}"#,
        r#"{"req":9,"op":"checkpoint"}"#,
        r#"{"req":10,"op":"stats"}"#,
    ]
    .join("\n");
    let (out, _) = pg(&db.url, cwd.path(), &["serve", "--stdio"], &requests, 0);
    let answers = json_lines(out.as_bytes());
    let reqs: Vec<_> = answers.iter().map(|a| a["req"].as_u64().unwrap()).collect();
    assert_eq!(
        reqs,
        (1..=10).collect::<Vec<_>>(),
        "answers in request order"
    );
    let ok: Vec<_> = answers.iter().map(|a| a["ok"].as_bool().unwrap()).collect();
    assert_eq!(
        ok,
        [true, true, true, true, true, false, true, true, false, true],
        "{out}"
    );
    assert!(answers[1]["seq"].as_u64().unwrap() > answers[0]["seq"].as_u64().unwrap());
    // A read answers with the last position in the change order (read
    // alone, without stats()'s count of the tasks).
    assert_eq!(answers[2]["seq"], answers[1]["seq"], "{out}");
    assert_eq!(answers[3]["seq"], answers[1]["seq"], "{out}");
    assert_eq!(answers[2]["task"]["id"], "a");
    assert_eq!(answers[3]["tasks"][0]["id"], "b");
    assert_eq!(answers[5]["error"]["kind"], "not_found");
    assert_eq!(answers[7]["text"], "hi\n");
    assert_eq!(answers[8]["error"]["kind"], "unsupported");
    assert_eq!(answers[9]["tasks"], 1);
    // Another process sees what serve wrote.
    let (out, _) = pg(&db.url, cwd.path(), &["get-task", "b"], "", 0);
    assert!(out.contains("\"failed\""), "{out}");
}

/// The writers' --help says --sync applies to every global option; on
/// PostgreSQL it means nothing, and the help must say so rather than let
/// `--sync os-buffered` look like it trades durability for speed there.
#[test]
fn writers_help_says_sync_does_not_apply_on_postgres() {
    let cwd = scratch();
    for command in ["put-task", "delete-task", "serve"] {
        let (help, _) = expect_exit(
            run(cwd.path(), &[command, "--help"], "", &[]),
            0,
            &[command],
        );
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        assert!(
            help.contains("PostgreSQL, where --sync does not apply"),
            "{command}: {help}"
        );
    }
    let (help, _) = expect_exit(run(cwd.path(), &["list", "--help"], "", &[]), 0, &["list"]);
    assert!(
        !help.contains("--sync does not apply"),
        "a reader ignores --sync anyway"
    );
}

// libpq's `PGSSLMODE=require` (or `verify-ca`, `verify-full`) in the
// environment demands TLS for every connection that does not say
// otherwise, and users of psql rely on it; statewal's client reads no PG*
// variable and has no TLS, so it connected in plaintext without a word.
// As with `?sslmode=require` in the URL, it must refuse instead
// (`docs/decisions.md`, "issue 12: TLS"). Nothing listens on port 1: a
// connection attempt would be a "cannot connect" error instead.
#[test]
fn pgsslmode_demanding_tls_is_refused_not_ignored() {
    let dir = scratch();
    let get_task = |url: &str, mode: &str| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_statewal"));
        without_statewal_env(&mut cmd);
        cmd.arg("--dir")
            .arg(dir.path())
            .args(["--database", url, "get-task", "t1"])
            .env("PGSSLMODE", mode);
        let out = cmd.output().unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    for mode in ["require", "verify-full"] {
        let (ok, stderr) = get_task("postgres://me@127.0.0.1:1/app", mode);
        assert!(!ok, "{stderr}");
        assert!(
            stderr.contains(&format!("PGSSLMODE={mode}")) && stderr.contains("TLS"),
            "{mode}: {stderr}"
        );
    }
    // sslmode=disable in the URL says otherwise: no refusal (it tries, and
    // cannot connect).
    let (_, stderr) = get_task(
        "postgres://me@127.0.0.1:1/app?sslmode=disable&connect_timeout=1",
        "require",
    );
    assert!(!stderr.contains("PGSSLMODE"), "{stderr}");
}
