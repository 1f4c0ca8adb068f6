//! A task's compact JSON as bytes: the validating scan that admits it
//! without building it, and the re-indenter that writes it pretty.
//!
//! Pure functions over bytes, no allocation but for what a caller keeps.
//!
//! The store holds each task as the compact JSON [`crate::Task::to_json`]
//! gives (see [`crate::journal::op::HeldTask`]). That form is canonical:
//! no whitespace outside strings, each string escaped the one way
//! serde_json escapes it, each number written the one way serde_json
//! writes it. [`scan`] recognises exactly that form and checks the rules a
//! task keeps on the way (a string `"id"`, a valid `"status"`, `"logs"` an
//! array of objects, no key twice in any object, nesting within
//! [`crate::json::MAX_DEPTH`]). Anything it does not recognise it hands
//! back undecided ([`None`]), and the caller parses the bytes the slow way
//! ([`crate::Task::parse`]), which decides and names the fault. So the
//! verdict on any input is `Task::parse`'s: the scan only ever says yes
//! where the parse would, and to the same bytes the parse would write back
//! (`tests` proves both with generated and mutated inputs).
//!
//! Because the form is canonical, two keys are the same string exactly
//! when their bytes are equal (`"a"` and `"\u0061"` cannot both be
//! canonical), so duplicates are found without decoding a key.

use crate::model::TaskStatus;

/// What [`scan`] found in a canonical task: the fields the store indexes,
/// as raw slices of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Fields {
    /// The `"id"` string's bytes between its quotes, as escaped.
    pub id: (usize, usize),
    /// The status; `Pending` when the key is absent.
    pub status: TaskStatus,
    /// The raw values of `"started_at"`, `"created_at"` and `"completed_at"`.
    pub started_at: Option<(usize, usize)>,
    pub created_at: Option<(usize, usize)>,
    pub completed_at: Option<(usize, usize)>,
}

/// Scans `bytes` as the canonical compact JSON of a task nested at most
/// `depth_max` levels deep (the task's own object is level 1; capped at
/// [`DEPTH_CAP`]). `Some` only when the bytes are exactly what
/// `Task::parse(bytes)?.to_json()` gives back (so the parse accepts them);
/// `None` leaves the verdict to the parse.
pub(crate) fn scan(bytes: &[u8], depth_max: usize) -> Option<Fields> {
    // Canonical JSON is ASCII outside strings, so one check covers every
    // string's UTF-8.
    std::str::from_utf8(bytes).ok()?;
    let mut s = Scanner {
        b: bytes,
        at: 0,
        keys: Vec::new(),
        depth_max: depth_max.min(DEPTH_CAP),
    };
    let fields = s.task()?;
    (s.at == bytes.len()).then_some(fields)
}

struct Scanner<'a> {
    b: &'a [u8],
    at: usize,
    /// The keys of every object open on the way down, innermost last.
    keys: Vec<&'a [u8]>,
    depth_max: usize,
}

/// The deepest nesting [`scan`] follows: serde_json refuses to parse
/// deeper, so no task the store holds is deeper, and the scan's recursion
/// stays shallow.
pub(crate) const DEPTH_CAP: usize = 128;

/// Objects with more keys than this check duplicates with a hash set.
const LINEAR_KEYS_MAX: usize = 16;

impl<'a> Scanner<'a> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.at).copied()
    }

    fn eat(&mut self, c: u8) -> Option<()> {
        (self.peek()? == c).then(|| self.at += 1)
    }

    /// The top-level object, with the task's rules on its members.
    fn task(&mut self) -> Option<Fields> {
        let mut id = None;
        let mut status = TaskStatus::Pending;
        let (mut started_at, mut created_at, mut completed_at) = (None, None, None);
        self.object(1, |s, key, level| {
            let start = s.at;
            match key {
                b"id" => {
                    s.eat(b'"')?;
                    let inner = s.string_rest()?;
                    id = Some(inner);
                }
                b"status" => {
                    s.eat(b'"')?;
                    let (a, z) = s.string_rest()?;
                    status = TaskStatus::parse(std::str::from_utf8(&s.b[a..z]).ok()?)?;
                }
                b"logs" => {
                    s.eat(b'[')?;
                    s.array_rest(level + 1, |s, level| {
                        s.eat(b'{')?;
                        s.at -= 1;
                        s.value(level + 1)
                    })?;
                }
                _ => {
                    s.value(level + 1)?;
                    let span = Some((start, s.at));
                    match key {
                        b"started_at" => started_at = span,
                        b"created_at" => created_at = span,
                        b"completed_at" => completed_at = span,
                        _ => {}
                    }
                }
            }
            Some(())
        })?;
        Some(Fields {
            id: id?,
            status,
            started_at,
            created_at,
            completed_at,
        })
    }

    /// A value at nesting `level` (its parent's plus one; a scalar's level
    /// does not count).
    fn value(&mut self, level: usize) -> Option<()> {
        match self.peek()? {
            b'{' => self.object(level, |s, _, level| s.value(level + 1)),
            b'[' => {
                self.at += 1;
                self.array_rest(level, |s, level| s.value(level + 1))
            }
            b'"' => {
                self.at += 1;
                self.string_rest().map(|_| ())
            }
            b't' => self.word(b"true"),
            b'f' => self.word(b"false"),
            b'n' => self.word(b"null"),
            _ => self.number(),
        }
    }

    fn word(&mut self, w: &[u8]) -> Option<()> {
        self.b[self.at..].starts_with(w).then(|| self.at += w.len())
    }

    /// An object at `level`; `member` scans each value, given its key.
    fn object(
        &mut self,
        level: usize,
        mut member: impl FnMut(&mut Self, &'a [u8], usize) -> Option<()>,
    ) -> Option<()> {
        if level > self.depth_max {
            return None;
        }
        self.eat(b'{')?;
        if self.eat(b'}').is_some() {
            return Some(());
        }
        let first = self.keys.len();
        let mut many: Option<std::collections::HashSet<&'a [u8]>> = None;
        loop {
            self.eat(b'"')?;
            let (a, z) = self.string_rest()?;
            let key = &self.b[a..z];
            let own = &self.keys[first..];
            let repeated = match &mut many {
                Some(set) => !set.insert(key),
                None if own.len() < LINEAR_KEYS_MAX => own.contains(&key),
                None => {
                    let mut set: std::collections::HashSet<&[u8]> = own.iter().copied().collect();
                    let repeated = !set.insert(key);
                    many = Some(set);
                    repeated
                }
            };
            if repeated {
                return None;
            }
            if many.is_none() {
                self.keys.push(key);
            }
            self.eat(b':')?;
            member(self, key, level)?;
            match self.peek()? {
                b',' => self.at += 1,
                b'}' => {
                    self.at += 1;
                    self.keys.truncate(first);
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// An array at `level` whose `[` is consumed; `element` scans each.
    fn array_rest(
        &mut self,
        level: usize,
        mut element: impl FnMut(&mut Self, usize) -> Option<()>,
    ) -> Option<()> {
        if level > self.depth_max {
            return None;
        }
        if self.eat(b']').is_some() {
            return Some(());
        }
        loop {
            element(self, level)?;
            match self.peek()? {
                b',' => self.at += 1,
                b']' => {
                    self.at += 1;
                    return Some(());
                }
                _ => return None,
            }
        }
    }

    /// A string whose opening quote is consumed; returns the span between
    /// the quotes. Only serde_json's own escapes are canonical.
    fn string_rest(&mut self) -> Option<(usize, usize)> {
        let start = self.at;
        loop {
            self.at += string_stop(&self.b[self.at..])?;
            match self.b[self.at] {
                b'"' => {
                    self.at += 1;
                    return Some((start, self.at - 1));
                }
                b'\\' => {
                    let len = canonical_escape(&self.b[self.at..])?;
                    self.at += len;
                }
                _ => return None, // A raw control character.
            }
        }
    }

    /// A number, canonical when it is what serde_json writes for the value
    /// it reads.
    fn number(&mut self) -> Option<()> {
        let start = self.at;
        self.eat(b'-');
        let digits = self.b[self.at..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        if digits == 0 {
            return None;
        }
        self.at += digits;
        let int_only = !matches!(self.peek(), Some(b'.' | b'e' | b'E'));
        if !int_only {
            if self.eat(b'.').is_some() {
                self.digits()?;
            }
            if matches!(self.peek(), Some(b'e' | b'E')) {
                self.at += 1;
                if matches!(self.peek(), Some(b'+' | b'-')) {
                    self.at += 1;
                }
                self.digits()?;
            }
        }
        let token = &self.b[start..self.at];
        let text = std::str::from_utf8(token).ok()?;
        let plain = int_only
            && (token == b"0"
                || (token[0] != b'-' && token[0] != b'0' && text.parse::<u64>().is_ok())
                || (token[0] == b'-' && token[1] != b'0' && text.parse::<i64>().is_ok()));
        if plain {
            return Some(());
        }
        // A float, or an integer serde_json reads as one: canonical only
        // when it is written back the same.
        let value: serde_json::Value = serde_json::from_slice(token).ok()?;
        (serde_json::to_vec(&value).ok()? == token).then_some(())
    }

    fn digits(&mut self) -> Option<()> {
        let n = self.b[self.at..]
            .iter()
            .take_while(|c| c.is_ascii_digit())
            .count();
        (n > 0).then(|| self.at += n)
    }
}

/// Where the run of plain string bytes at the start of `s` ends: the first
/// `"`, backslash or control character. Eight bytes at a time: strings are
/// most of a task's bytes.
fn string_stop(s: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = u64::from_le_bytes([0x80; 8]);
    let mut chunks = s.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let w = u64::from_le_bytes(chunk.try_into().expect("8 bytes"));
        let (quote, backslash) = (w ^ (ONES * u64::from(b'"')), w ^ (ONES * u64::from(b'\\')));
        // A byte's high bit is set where it is zero (or below 0x20), and,
        // through borrows, possibly above such a byte but never below
        // one: the lowest flag is exact.
        let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x;
        let hits = (below(quote, 1) | below(backslash, 1) | below(w, 0x20)) & HIGH;
        if hits != 0 {
            return Some(i * 8 + hits.trailing_zeros() as usize / 8);
        }
    }
    let done = s.len() - chunks.remainder().len();
    chunks
        .remainder()
        .iter()
        .position(|&c| c == b'"' || c == b'\\' || c < 0x20)
        .map(|n| done + n)
}

/// The length of the escape at the start of `s` (which starts with a
/// backslash) when it is one serde_json writes: `\"`, `\\`, `\b`, `\t`,
/// `\n`, `\f`, `\r`, or `\u00xx` (lowercase hex) for another control
/// character.
fn canonical_escape(s: &[u8]) -> Option<usize> {
    match *s.get(1)? {
        b'"' | b'\\' | b'b' | b't' | b'n' | b'f' | b'r' => Some(2),
        b'u' => {
            let hex = s.get(2..6)?;
            let lower = |c: u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
            if hex[0] != b'0' || hex[1] != b'0' || !lower(hex[2]) || !lower(hex[3]) {
                return None;
            }
            let v = u8::from_str_radix(std::str::from_utf8(&hex[2..]).ok()?, 16).ok()?;
            (v < 0x20 && !matches!(v, 0x08 | 0x09 | 0x0a | 0x0c | 0x0d)).then_some(6)
        }
        _ => None,
    }
}

/// Appends `compact` (canonical compact JSON, as [`scan`] admits) to `out`
/// as serde_json's pretty printer writes it: two spaces per level, `": "`
/// after a key, `[]` and `{}` for empty containers. `level` is how deep the
/// value sits in the document around it (0 for a file of its own), so that
/// its inner lines line up with the lines around it; the first line is not
/// indented (the caller writes what precedes it).
pub(crate) fn write_pretty(out: &mut Vec<u8>, compact: &[u8], level: usize) {
    out.reserve(compact.len() + compact.len() / 4);
    let mut depth = level;
    let mut i = 0;
    let b = compact;
    let newline = |out: &mut Vec<u8>, depth: usize| {
        out.push(b'\n');
        out.resize(out.len() + 2 * depth, b' ');
    };
    while i < b.len() {
        match b[i] {
            b'"' => {
                // Copy the string whole, escapes included.
                let start = i;
                i += 1;
                loop {
                    match string_stop(&b[i..]) {
                        Some(n) if b[i + n] == b'"' => {
                            i += n + 1;
                            break;
                        }
                        Some(n) if b[i + n] == b'\\' => i += n + 2,
                        // A raw control character: not in held bytes, but
                        // copied as it is.
                        Some(n) => i += n + 1,
                        None => {
                            debug_assert!(false, "an unterminated string in held JSON");
                            i = b.len();
                            break;
                        }
                    }
                }
                out.extend_from_slice(&b[start..i]);
                continue;
            }
            open @ (b'{' | b'[') => {
                let close = if open == b'{' { b'}' } else { b']' };
                if b.get(i + 1) == Some(&close) {
                    out.extend_from_slice(&[open, close]);
                    i += 2;
                    continue;
                }
                out.push(open);
                depth += 1;
                newline(out, depth);
            }
            close @ (b'}' | b']') => {
                depth -= 1;
                newline(out, depth);
                out.push(close);
            }
            b',' => {
                out.push(b',');
                newline(out, depth);
            }
            b':' => out.extend_from_slice(b": "),
            _ => {
                // A number or a word: copy up to the next structural byte.
                let n = b[i..]
                    .iter()
                    .position(|c| matches!(c, b',' | b'}' | b']'))
                    .unwrap_or(b.len() - i);
                out.extend_from_slice(&b[i..i + n]);
                i += n;
                continue;
            }
        }
        i += 1;
    }
    debug_assert_eq!(depth, level, "balanced held JSON");
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Task;
    use proptest::prelude::*;
    use serde_json::{Map, Value};

    /// What the slow door says about `bytes`: the task's compact JSON, or
    /// refused.
    fn oracle(bytes: &[u8]) -> Option<Vec<u8>> {
        Task::parse(bytes).ok().map(|t| t.to_json())
    }

    /// The scan's promise: it admits only what the parse admits, and only
    /// the bytes the parse writes back; and what it reports is what the
    /// parsed task holds.
    fn check(bytes: &[u8]) -> std::result::Result<(), TestCaseError> {
        let Some(f) = scan(bytes, crate::json::MAX_DEPTH) else {
            return Ok(());
        };
        let parsed = Task::parse(bytes);
        prop_assert!(
            parsed.is_ok(),
            "scan admitted what the parse refuses: {:?}",
            String::from_utf8_lossy(bytes)
        );
        let t = parsed.unwrap();
        prop_assert_eq!(
            t.to_json(),
            bytes.to_vec(),
            "scan admitted non-canonical bytes"
        );
        let raw =
            |span: (usize, usize)| serde_json::from_slice::<Value>(&bytes[span.0..span.1]).unwrap();
        let id = serde_json::from_slice::<String>(&bytes[f.id.0 - 1..f.id.1 + 1]).unwrap();
        prop_assert_eq!(id.as_str(), t.id());
        prop_assert_eq!(f.status, t.status());
        prop_assert_eq!(f.started_at.map(raw), t.get("started_at").cloned());
        prop_assert_eq!(f.created_at.map(raw), t.get("created_at").cloned());
        prop_assert_eq!(f.completed_at.map(raw), t.get("completed_at").cloned());
        Ok(())
    }

    fn leaf() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::from),
            any::<u64>().prop_map(Value::from),
            any::<f64>()
                .prop_filter("finite", |f| f.is_finite())
                .prop_map(Value::from),
            prop_oneof![
                Just(0.0f64),
                Just(-0.0),
                Just(1.0),
                Just(1e21),
                Just(1e-7),
                Just(0.1)
            ]
            .prop_map(Value::from),
            any::<String>().prop_map(Value::from),
            "[a-z\"\\\\/\u{0}-\u{1f}\u{7f}\u{e9}\u{2028}\u{1f600}]{0,6}".prop_map(Value::from),
        ]
    }

    fn key() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("id".to_string()),
            Just("status".to_string()),
            Just("logs".to_string()),
            Just("started_at".to_string()),
            Just("completed_at".to_string()),
            "[a-c\"\\\\\u{1}]{0,3}",
        ]
    }

    fn value() -> impl Strategy<Value = Value> {
        leaf().prop_recursive(6, 48, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
                prop::collection::vec((key(), inner), 0..5)
                    .prop_map(|kv| Value::Object(kv.into_iter().collect::<Map<_, _>>())),
            ]
        })
    }

    fn status() -> impl Strategy<Value = Value> {
        prop_oneof![
            prop::sample::select(TaskStatus::ALL.to_vec()).prop_map(|s| Value::from(s.as_str())),
            leaf(),
        ]
    }

    fn time() -> impl Strategy<Value = Value> {
        prop_oneof![
            Just(Value::from("2024-01-01T10:00:00.000Z")),
            Just(Value::from("2024-01-01T11:00:00+01:00")),
            (0i64..2_000_000_000_000).prop_map(Value::from),
            leaf(),
        ]
    }

    /// A task-like object: mostly keeps the rules, sometimes breaks them.
    fn task_value() -> impl Strategy<Value = Value> {
        (
            prop_oneof![4 => "[a-z0-9_-]{1,12}".prop_map(Value::from), 1 => leaf()],
            prop::option::of(status()),
            prop::option::of(prop_oneof![
                prop::collection::vec(value(), 0..3).prop_map(Value::Array),
                value(),
            ]),
            prop::option::of(time()),
            prop::option::of(time()),
            prop::collection::vec((key(), value()), 0..6),
        )
            .prop_map(|(id, status, logs, started, completed, rest)| {
                let mut m = Map::new();
                for (k, v) in rest {
                    m.insert(k, v);
                }
                m.insert("id".into(), id);
                let mut put = |k: &str, v: Option<Value>| {
                    if let Some(v) = v {
                        m.insert(k.into(), v);
                    }
                };
                put("status", status);
                put("logs", logs);
                put("started_at", started);
                put("completed_at", completed);
                Value::Object(m)
            })
    }

    /// Changes that turn canonical bytes into near misses: whitespace,
    /// other escapes, other spellings of numbers, a key twice, cut short.
    fn mutate(bytes: &[u8], how: u8, at: usize) -> Vec<u8> {
        let at = if bytes.is_empty() {
            0
        } else {
            at % bytes.len()
        };
        let mut b = bytes.to_vec();
        match how % 12 {
            0 => b.truncate(at),
            1 => b.insert(at, b' '),
            2 => {
                b.remove(at);
            }
            3 => b[at..].iter().position(|&c| c == b'a').map_or((), |n| {
                b.splice(at + n..at + n + 1, *b"\\u0061");
            }),
            4 => b.splice(at..at, *b"\"id\":\"x\",").for_each(drop),
            5 => b[at..]
                .iter()
                .position(|c| c.is_ascii_digit())
                .map_or((), |n| {
                    b.splice(at + n..at + n, *b"0");
                }),
            6 => b[at..]
                .iter()
                .position(|c| c.is_ascii_digit())
                .map_or((), |n| {
                    b.splice(at + n + 1..at + n + 1, *b".0");
                }),
            7 => b[at..].iter().position(|&c| c == b'/').map_or((), |n| {
                b.splice(at + n..at + n, *b"\\");
            }),
            8 => b.splice(at..at, *b"[").for_each(drop),
            9 => b.push(b'\n'),
            10 => {
                b[at] ^= 0x80;
            }
            _ => b[at..].iter().position(|&c| c == b'e').map_or((), |n| {
                b[at + n] = b'E';
            }),
        }
        b
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Every task's own bytes are admitted (the fast path is taken),
        /// and what is admitted, generated or mutated, is what the parse
        /// admits and writes back.
        #[test]
        fn the_scan_agrees_with_the_parse(v in task_value(), how in any::<u8>(), at in any::<usize>()) {
            let bytes = serde_json::to_vec(&v).unwrap();
            check(&bytes)?;
            // A put's held copy (built from the task) and replay's (scanned
            // from its bytes) are the same, index included.
            if let Ok(t) = Task::parse(&bytes) && let Ok(put) = crate::journal::op::HeldTask::from_task(&t) {
                let replayed = crate::journal::op::HeldTask::from_json(&t.to_json()).ok();
                prop_assert_eq!(Some(put), replayed);
            }
            if let Some(canonical) = oracle(&bytes) {
                prop_assert!(scan(&canonical, crate::json::MAX_DEPTH).is_some(), "canonical bytes not admitted: {}", String::from_utf8_lossy(&canonical));
            }
            check(&mutate(&bytes, how, at))?;
        }

        /// The eight-bytes-at-a-time search finds what a byte-by-byte one does.
        #[test]
        fn string_stop_is_the_first_stop(s in prop::collection::vec(prop_oneof![Just(b'"'), Just(b'\\'), Just(0x1fu8), Just(0x20u8), Just(0x7f), Just(0x80), Just(0xff), Just(0u8), Just(1u8), Just(b'x'), Just(b'!'), Just(b']')], 0..40)) {
            let naive = s.iter().position(|&c| c == b'"' || c == b'\\' || c < 0x20);
            prop_assert_eq!(string_stop(&s), naive);
        }

        /// The re-indenter writes what serde_json's pretty printer writes,
        /// at every level it is used at.
        #[test]
        fn pretty_matches_serde_json(v in task_value(), level in 0usize..3) {
            check_pretty(&v, level)?;
        }
    }

    /// Nests `v` in `level` arrays, pretty-prints that with serde_json, and
    /// compares with the re-indenter's output wrapped the same way.
    fn check_pretty(v: &Value, level: usize) -> std::result::Result<(), TestCaseError> {
        let mut nested = v.clone();
        for _ in 0..level {
            nested = Value::Array(vec![nested]);
        }
        let want = serde_json::to_vec_pretty(&nested).unwrap();
        let mut got = Vec::new();
        for l in 0..level {
            got.extend_from_slice(b"[\n");
            got.resize(got.len() + 2 * (l + 1), b' ');
        }
        write_pretty(&mut got, &serde_json::to_vec(v).unwrap(), level);
        for l in (0..level).rev() {
            got.push(b'\n');
            got.resize(got.len() + 2 * l, b' ');
            got.push(b']');
        }
        prop_assert_eq!(
            String::from_utf8(got).unwrap(),
            String::from_utf8(want).unwrap()
        );
        Ok(())
    }

    #[test]
    fn near_misses_are_left_to_the_parse() {
        for doc in [
            r#"{"id":"a","id":"b"}"#,
            r#"{"id":"a","x":{"k":1,"k":2}}"#,
            r#"{"id":"a","a":1,"\u0061":2}"#,
            r#"{"id":"a", "x":1}"#,
            r#"{"id":"a","x":1.50}"#,
            r#"{"id":"a","x":-0}"#,
            r#"{"id":"a","x":01}"#,
            r#"{"id":"a","x":1E5}"#,
            r#"{"id":"a","x":"\/"}"#,
            r#"{"id":"a","x":"\u001F"}"#,
            r#"{"id":"a","x":"\u000a"}"#,
            r#"{"id":"a","x":18446744073709551616}"#,
            r#"{"id":"a","status":"done"}"#,
            r#"{"id":"a","logs":[1]}"#,
            r#"{"id":7}"#,
            r#"{"status":"pending"}"#,
            r#"{"id":"a"} "#,
            r#"[{"id":"a"}]"#,
        ] {
            assert_eq!(scan(doc.as_bytes(), crate::json::MAX_DEPTH), None, "{doc}");
        }
        let ok = r#"{"id":"a","x":[1.5,-2,18446744073709551615,-9223372036854775808,"\u001f\n\"\\é"],"status":"completed","logs":[{}],"completed_at":1}"#;
        let f = scan(ok.as_bytes(), crate::json::MAX_DEPTH).expect("canonical");
        assert_eq!(f.status, TaskStatus::Completed);
        assert_eq!(oracle(ok.as_bytes()).unwrap(), ok.as_bytes());
    }

    #[test]
    fn depth_past_the_limit_is_left_to_the_parse() {
        let nest = |n: usize| {
            let mut s = String::from("{\"id\":\"a\",\"x\":");
            s += &"[".repeat(n);
            s += &"]".repeat(n);
            s + "}"
        };
        let limit = crate::json::MAX_DEPTH;
        assert!(scan(nest(limit - 1).as_bytes(), limit).is_some());
        assert!(scan(nest(limit).as_bytes(), limit).is_none());
    }
}
