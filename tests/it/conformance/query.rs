//! `Store::query_tasks`: the semantics of a [`TaskQuery`], answered from
//! memory on the journal engine and by SQL on PostgreSQL. The time bounds are exclusive, a task without a readable
//! `updated_at` matches no time bound and sorts after every task with one,
//! ties go by id, and pages of one order never overlap or skip.

use super::{Backend, ids};
use statewal::{Store, Task, TaskQuery, TaskStatus};
use time::OffsetDateTime;
use time::macros::datetime;

/// A task with a status, a tool and an `updated_at` (a JSON value, so a
/// test can also give a number of milliseconds or something unreadable).
fn task(id: &str, status: &str, tool: Option<&str>, updated_at: Option<serde_json::Value>) -> Task {
    let mut t = Task::new(id);
    t.set("status", status).unwrap();
    if let Some(tool) = tool {
        t.set("tool", tool).unwrap();
    }
    if let Some(at) = updated_at {
        t.set("updated_at", at).unwrap();
    }
    t
}

/// The ids `query` selects.
fn check(store: &Store, query: &TaskQuery) -> Vec<String> {
    let tasks = store.query_tasks(query).unwrap();
    for t in &tasks {
        assert!(query.matches(t), "{} does not match {query:?}", t.id());
    }
    ids(&tasks)
}

// Guards: a task updated exactly at a bound is outside it, on both sides.
pub fn time_bounds_are_exclusive(b: &Backend) {
    let store = b.open();
    for (id, at) in [
        ("t0", "2026-12-01T00:00:00Z"),
        ("t1", "2026-12-01T00:00:00.001Z"),
        ("t2", "2026-12-01T12:00:00Z"),
        ("t3", "2026-12-02T00:00:00Z"),
    ] {
        store
            .put_task(task(id, "pending", None, Some(at.into())))
            .unwrap();
    }
    let after = datetime!(2026-12-01 00:00:00 UTC);
    let before = datetime!(2026-12-02 00:00:00 UTC);
    let q = TaskQuery::new();
    assert_eq!(
        check(&store, &q.clone().updated_after(after)),
        ["t1", "t2", "t3"]
    );
    assert_eq!(
        check(&store, &q.clone().updated_before(before)),
        ["t0", "t1", "t2"]
    );
    let window = q.clone().updated_after(after).updated_before(before);
    assert_eq!(check(&store, &window), ["t1", "t2"]);
    // A bound given in another offset is the same instant.
    let before_in_paris = datetime!(2026-12-02 01:00:00 +01:00);
    assert_eq!(
        check(
            &store,
            &q.updated_after(after).updated_before(before_in_paris)
        ),
        ["t1", "t2"]
    );
}

// Guards: tasks without a readable `updated_at` (none, unparseable, not a
// string or number) come after every timed task, by id among themselves,
// and no time bound selects them; a number of milliseconds is a time.
pub fn untimed_tasks_come_last_and_match_no_bound(b: &Backend) {
    let store = b.open();
    let ms = datetime!(2026-12-01 06:00:00 UTC).unix_timestamp() * 1000;
    let tasks = [
        ("a-none", None),
        ("b-late", Some("2026-12-03T00:00:00Z".into())),
        ("c-bad", Some("yesterday".into())),
        ("d-ms", Some(ms.into())),
        ("e-early", Some("2026-12-01T00:00:00Z".into())),
        ("f-bool", Some(true.into())),
    ];
    for (id, at) in tasks {
        store.put_task(task(id, "pending", None, at)).unwrap();
    }
    assert_eq!(
        check(&store, &TaskQuery::new()),
        ["e-early", "d-ms", "b-late", "a-none", "c-bad", "f-bool"]
    );
    let epoch = OffsetDateTime::UNIX_EPOCH;
    assert_eq!(
        check(&store, &TaskQuery::new().updated_after(epoch)),
        ["e-early", "d-ms", "b-late"]
    );
    let far = datetime!(9999-01-01 00:00:00 UTC);
    assert_eq!(
        check(&store, &TaskQuery::new().updated_before(far)),
        ["e-early", "d-ms", "b-late"]
    );
}

// Guards: tasks updated at the same instant, even written in different
// offsets, are ordered by id, so the order is total and repeatable.
pub fn ties_go_by_id(b: &Backend) {
    let store = b.open();
    for (id, at) in [
        ("c", "2026-12-01T10:00:00Z"),
        ("a", "2026-12-01T11:00:00+01:00"),
        ("b", "2026-12-01T10:00:00.000Z"),
        ("0", "2026-12-01T09:59:59.999Z"),
    ] {
        store
            .put_task(task(id, "pending", None, Some(at.into())))
            .unwrap();
    }
    assert_eq!(check(&store, &TaskQuery::new()), ["0", "a", "b", "c"]);
}

// Guards: statuses and tool combine with AND, several statuses with OR,
// and `tool` is an exact match (absent tool never matches).
pub fn filters_combine(b: &Backend) {
    let store = b.open();
    for (id, status, tool) in [
        ("t1", "completed", Some("claude")),
        ("t2", "failed", Some("claude")),
        ("t3", "pending", Some("claude")),
        ("t4", "failed", Some("Claude")),
        ("t5", "completed", None),
    ] {
        store.put_task(task(id, status, tool, None)).unwrap();
    }
    let done = TaskQuery::new()
        .status(TaskStatus::Completed)
        .status(TaskStatus::Failed);
    assert_eq!(check(&store, &done), ["t1", "t2", "t4", "t5"]);
    assert_eq!(check(&store, &done.tool("claude")), ["t1", "t2"]);
    assert_eq!(
        check(&store, &TaskQuery::new().tool("claude")),
        ["t1", "t2", "t3"]
    );
    assert!(check(&store, &TaskQuery::new().tool("")).is_empty());
}

/// A tiny deterministic generator, so the paging test covers many shapes
/// and fails the same way every run.
fn next(state: &mut u64) -> u64 {
    *state = state
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    *state >> 33
}

// Guards: for every page size, the pages of one query, concatenated, are
// the whole selection in order: no task twice, none skipped, even with
// many ties in `updated_at` and untimed tasks at the end. Past the end a
// page is empty, and a limit of 0 selects nothing.
pub fn pages_never_overlap_or_skip(b: &Backend) {
    let store = b.open();
    let mut seed = 12;
    let statuses = ["pending", "completed", "failed"];
    for i in 0..60 {
        // Only 5 distinct times, so most tasks tie with others.
        let at = match next(&mut seed) % 7 {
            5 | 6 => None,
            h => Some(format!("2026-12-01T0{h}:00:00Z").into()),
        };
        let status = statuses[next(&mut seed) as usize % 3];
        store
            .put_task(task(&format!("t{i:02}"), status, None, at))
            .unwrap();
    }
    for query in [
        TaskQuery::new(),
        TaskQuery::new().status(TaskStatus::Failed),
        TaskQuery::new().updated_after(datetime!(2026-12-01 01:00:00 UTC)),
    ] {
        let all = check(&store, &query);
        // The whole selection is in the documented order.
        let tasks = store.query_tasks(&query).unwrap();
        assert!(
            tasks
                .windows(2)
                .all(|w| TaskQuery::order_key(&w[0]) < TaskQuery::order_key(&w[1]))
        );
        for size in 1..=all.len() + 1 {
            let mut paged = Vec::new();
            for page in 0.. {
                let q = query.clone().offset(page * size).limit(size);
                let ids = check(&store, &q);
                assert!(ids.len() <= size);
                if ids.is_empty() {
                    break;
                }
                paged.extend(ids);
            }
            assert_eq!(paged, all, "pages of {size} of {query:?}");
        }
        assert!(check(&store, &query.clone().limit(0)).is_empty());
        assert!(check(&store, &query.clone().offset(all.len())).is_empty());
        assert!(check(&store, &query.clone().offset(usize::MAX)).is_empty());
    }
}

// Guards: a query sees writes not yet checkpointed, and the held copy after
// a reopen (on the journal: replay, the store dropped without a checkpoint)
// gives the same answer.
pub fn query_sees_new_writes_and_survives_a_reopen(b: &Backend) {
    let q = TaskQuery::new()
        .status(TaskStatus::Pending)
        .updated_after(datetime!(2026-01-01 00:00:00 UTC));
    {
        let store = b.open_with(|o| o.checkpoint_interval(None).checkpoint_on_drop(false));
        store
            .put_task(task(
                "b",
                "pending",
                None,
                Some("2026-12-01T00:00:00Z".into()),
            ))
            .unwrap();
        store
            .put_task(task(
                "a",
                "pending",
                None,
                Some("2026-12-02T00:00:00Z".into()),
            ))
            .unwrap();
        store
            .put_task(task(
                "c",
                "failed",
                None,
                Some("2026-12-02T00:00:00Z".into()),
            ))
            .unwrap();
        assert_eq!(check(&store, &q), ["b", "a"]);
        store.delete_task("b").unwrap();
        assert_eq!(check(&store, &q), ["a"]);
    }
    let store = b.open();
    assert_eq!(check(&store, &q), ["a"]);
}

// Guards: ids tie-break in byte order, not in a locale's or a natural
// order (PostgreSQL's default collation would sort "a" before "B").
pub fn ids_sort_in_byte_order(b: &Backend) {
    let store = b.open();
    let names = ["é", "a10", "B", "a9", "_", "Z", "a", "ab", "A"];
    for id in names {
        store.put_task(task(id, "pending", None, None)).unwrap();
        let timed = format!("t-{id}");
        let at = Some("2026-12-01T00:00:00Z".into());
        store.put_task(task(&timed, "pending", None, at)).unwrap();
    }
    let mut sorted: Vec<&str> = names.to_vec();
    sorted.sort();
    let timed: Vec<String> = sorted.iter().map(|id| format!("t-{id}")).collect();
    let untimed = sorted.iter().map(|id| id.to_string());
    let want: Vec<String> = timed.into_iter().chain(untimed).collect();
    assert_eq!(check(&store, &TaskQuery::new()), want);
    let listed = ids(&store.list_tasks().unwrap());
    let mut all = want.clone();
    all.sort();
    assert_eq!(listed, all, "list_tasks is in byte order too");
}

// Guards: whoever answers a query (memory, or SQL, whose `timestamptz`
// has microseconds and a year range of its own, and whose default
// collation is not byte order) selects and orders as `TaskQuery::matches`
// and `order_key` define: times to the nanosecond, in any offset, as epoch
// milliseconds, at the edges of what RFC 3339 can say (year 0, year 9999
// in an offset whose UTC instant is in year 10000), unreadable ones; ids
// in byte order; every filter and page.
pub fn queries_select_and_order_by_the_definition(b: &Backend) {
    let store = b.open();
    let times: Vec<serde_json::Value> = vec![
        "2024-01-01T10:00:00.000Z".into(),
        "2024-01-01T11:00:00.000+01:00".into(), // The same instant.
        "2024-01-01T10:00:00.000000001Z".into(),
        "2024-01-01T10:00:00.000000999Z".into(),
        "1969-12-31T23:59:59.999999999Z".into(),
        1_704_103_200_000_i64.into(), // Epoch milliseconds: 10:00 again.
        "0000-01-01T00:00:00Z".into(),
        "0001-01-01T00:00:00.000000001Z".into(),
        "9999-12-31T23:59:59.999999999Z".into(),
        "9999-12-31T23:59:59.999999999-23:59".into(),
        (-62_167_219_200_000_i64).into(),
        253_402_300_799_999_i64.into(),
        i64::MAX.into(),
        1.5.into(),
        "not a time".into(),
        serde_json::Value::Null,
    ];
    let statuses = ["pending", "in_progress", "completed"];
    let mut all = Vec::new();
    for i in 0..64 {
        // Ids whose byte order differs from a natural or locale order.
        let id = format!("{}{i}", ["B", "a", "_", "Z", "é"][i % 5]);
        let tool = (i % 4 != 3).then_some(["claude", "codex"][i % 2]);
        let at = (i % 9 != 8).then(|| times[i % times.len()].clone());
        let t = task(&id, statuses[i % 3], tool, at);
        store.put_task(t.clone()).unwrap();
        all.push(t);
    }
    for q in &definition_queries() {
        let mut want: Vec<&Task> = all.iter().filter(|t| q.matches(t)).collect();
        want.sort_by(|a, b| TaskQuery::order_key(a).cmp(&TaskQuery::order_key(b)));
        let want: Vec<&str> = want
            .into_iter()
            .skip(q.offset)
            .take(q.limit.unwrap_or(usize::MAX))
            .map(|t| t.id())
            .collect();
        assert_eq!(check(&store, q), want, "{}: {q:?}", b.name);
    }
}

/// Queries over every filter, with bounds at the edges of the times above.
fn definition_queries() -> Vec<TaskQuery> {
    let at =
        |s: &str| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap();
    let mut queries = vec![
        TaskQuery::new(),
        TaskQuery::new().limit(usize::MAX),
        TaskQuery::new()
            .status(TaskStatus::Pending)
            .status(TaskStatus::Completed),
        TaskQuery::new().tool("claude"),
        TaskQuery::new()
            .updated_after(at("1969-01-01T00:00:00Z"))
            .updated_before(at("2024-01-01T10:00:00.000000001Z"))
            .tool("codex"),
        TaskQuery::new().offset(5).limit(7),
        TaskQuery::new().status(TaskStatus::InProgress).offset(100),
        TaskQuery::new().limit(0),
    ];
    for bound in [
        "0000-01-01T00:00:00Z",
        "1969-12-31T23:59:59.999999999Z",
        "2024-01-01T10:00:00Z",
        "2024-01-01T10:00:00.000000999Z",
        "9999-12-31T23:59:59.999999999Z",
        "9999-12-31T23:59:59.999999999-23:59",
    ] {
        queries.push(TaskQuery::new().updated_after(at(bound)));
        queries.push(TaskQuery::new().updated_before(at(bound)));
    }
    queries
}

// A tool holding a NUL (`"tool":"a\u0000b"`, valid JSON the journal engine
// keeps) failed the whole put on PostgreSQL with "invalid byte sequence"
// (InvalidInput): the tool is copied into a `text` column, which cannot
// hold NUL. So a task the journal engine takes, and `statewal copy` to
// PostgreSQL, were refused; a query for such a tool failed the same way.
// Tools with a backslash must still match exactly (the column's escape
// must not confuse `a\0b` with `a<NUL>b`).
pub fn a_nul_in_the_tool_is_kept_and_found(b: &Backend) {
    let store = b.open();
    for (id, tool) in [
        ("t1", "a\0b"),
        ("t2", "a\\0b"),
        ("t3", "a\\\\0b"),
        ("t4", "ab"),
    ] {
        store
            .put_task(task(id, "pending", Some(tool), None))
            .unwrap_or_else(|e| panic!("{}: put {tool:?}: {e}", b.name));
        assert_eq!(store.get_task(id).unwrap().unwrap().tool(), Some(tool));
    }
    for (tool, want) in [
        ("a\0b", "t1"),
        ("a\\0b", "t2"),
        ("a\\\\0b", "t3"),
        ("ab", "t4"),
    ] {
        assert_eq!(
            check(&store, &TaskQuery::new().tool(tool)),
            [want],
            "{tool:?}"
        );
    }
    assert!(check(&store, &TaskQuery::new().tool("a\0")).is_empty());
}
