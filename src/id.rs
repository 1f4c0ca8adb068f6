//! Which ids may name a file in the layout.
//!
//! Ids are checked, never rewritten: rewriting would let two different ids
//! collide on one file. [`sanitize_id`] offers the original design's
//! character stripping to callers who want it, as a separate, explicit step.

use crate::error::{Error, ErrorKind, Result};

/// The longest id accepted, in bytes.
pub const ID_MAX_BYTES: usize = 128;

/// The characters the original design stripped from ids, refused here.
const FORBIDDEN: &[char] = &['/', '\\', ':', '*', '?', '"', '<', '>', '|'];

/// Checks that `id` can safely name a file: non-empty, at most 128 bytes, none
/// of `/ \ : * ? " < > |`, no NUL or control character, not `.` or `..`, and
/// no leading dot. The error says which rule was broken.
pub fn validate_id(id: &str) -> Result<()> {
    let why = if id.is_empty() {
        "it is empty".to_string()
    } else if id.len() > ID_MAX_BYTES {
        format!(
            "it is {} bytes long, more than the {ID_MAX_BYTES} allowed",
            id.len()
        )
    } else if id == "." || id == ".." {
        "it names a directory".to_string()
    } else if id.starts_with('.') {
        "it starts with a dot".to_string()
    } else if let Some(c) = id.chars().find(|c| FORBIDDEN.contains(c)) {
        format!("it contains the character {c:?}")
    } else if let Some(c) = id.chars().find(|c| c.is_control()) {
        format!("it contains the control character {:?}", c)
    } else {
        return Ok(());
    };
    Err(Error::new(
        ErrorKind::InvalidId,
        format!("invalid id {:?}: {why}", truncate(id)),
    ))
}

/// The original design's rewriting: drops `/ \ : * ? " < > |` and control
/// characters and leading dots, and cuts to 128 bytes. Different inputs can
/// map to the same id, so use it only where that is acceptable; the result
/// may still be refused by [`validate_id`] (for example when it is empty).
pub fn sanitize_id(id: &str) -> String {
    let mut out: String = id
        .chars()
        .filter(|c| !FORBIDDEN.contains(c) && !c.is_control())
        .collect();
    while out.starts_with('.') {
        out.remove(0);
    }
    while out.len() > ID_MAX_BYTES {
        out.pop();
    }
    out
}

fn truncate(id: &str) -> String {
    if id.len() <= 40 {
        return id.to_string();
    }
    let mut end = 40;
    while !id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}...", &id[..end])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refuses_hostile_ids() {
        for bad in [
            "",
            ".",
            "..",
            "../x",
            "/etc/passwd",
            "a\0b",
            ".hidden",
            "a:b",
            "a\nb",
            &"x".repeat(200),
        ] {
            let err = validate_id(bad).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::InvalidId, "{bad:?}");
        }
        for good in [
            "task_123",
            "a.b",
            "550e8400-e29b-41d4-a716-446655440000",
            "é",
            &"x".repeat(128),
        ] {
            validate_id(good).unwrap();
        }
    }

    #[test]
    fn sanitize_strips() {
        assert_eq!(sanitize_id("../a/b:c"), "abc");
        assert_eq!(sanitize_id("..."), "");
    }
}
