//! Inspection: `dump-journal`, `show ID`, and the `--status` filter of `list`.

use crate::Cli;
use crate::commands::{not_found, open_readonly, pretty};
use crate::out::{count, count_as};
use serde_json::{Value, json};
use statewal::__internal::fs::{Fs, RealFs};
use statewal::__internal::journal::op::Op;
use statewal::__internal::journal::reader::{Piece, mark_durable, scan_segment};
use statewal::__internal::journal::record::{
    MARKER_FRAME_LEN, Marker, RECORD_HEADER_LEN, RecordKind, SegmentHeader, id_hex,
};
use statewal::__internal::journal::{JOURNAL_DIR, parse_segment_name};
use statewal::{Result, Task};
use std::path::Path;
use std::process::ExitCode;

/// Prints one line per record, sync marker and damaged span of every
/// segment, in order, without opening the store (so without the lock, like
/// `verify`).
pub fn dump_journal(dir: &Path, json: bool) -> Result<ExitCode> {
    crate::commands::require_store(dir)?;
    let fs = RealFs::existing(dir)?;
    let mut files = Vec::new();
    for name in fs.list(JOURNAL_DIR)? {
        if parse_segment_name(&name).is_some() {
            let path = format!("{JOURNAL_DIR}/{name}");
            if let Some(bytes) = fs.read(&path)? {
                files.push((path, bytes));
            }
        }
    }
    let mut scans: Vec<_> = files.iter().map(|(_, b)| scan_segment(b)).collect();
    // Tells a crash's torn tail from damage to records that had been
    // durable, with the same-boot rule as open.
    let last_boot = files
        .last()
        .and_then(|(_, b)| SegmentHeader::decode(b).ok())
        .and_then(|h| h.boot_id);
    let same_boot = matches!((last_boot, fs.boot_id()), (Some(a), Some(b)) if a == b);
    mark_durable(&mut scans, same_boot);
    let (mut records, mut markers, mut damaged) = (0, 0, 0);
    for ((segment, _), scan) in files.iter().zip(&scans) {
        let sealed = scan.header.as_ref().is_ok_and(|h| h.cipher.is_some());
        if let Err(why) = &scan.header {
            damaged += 1;
            let line = json!({"segment": segment, "offset": 0, "kind": "bad_header",
                "checksum_ok": false, "reason": why});
            emit(json, &line, || {
                format!("{segment}  offset=0  BAD HEADER: {why}")
            })?;
            continue;
        }
        for piece in &scan.pieces {
            let line = match piece {
                Piece::Record { .. } => {
                    records += 1;
                    record_line(segment, piece, sealed)
                }
                Piece::Marker { offset, marker } => {
                    markers += 1;
                    marker_line(segment, *offset, marker)
                }
                Piece::Damaged { .. } => {
                    damaged += 1;
                    damaged_line(segment, piece)
                }
            };
            emit(json, &line.0, || line.1.clone())?;
        }
    }
    if !json {
        outln!(
            "{}, {}, {} in {}",
            count(records, "record"),
            count(markers, "sync marker"),
            count(damaged, "damaged span"),
            count(files.len(), "segment")
        );
    }
    Ok(ExitCode::SUCCESS)
}

fn emit(json: bool, line: &Value, text: impl FnOnce() -> String) -> statewal::Result<()> {
    if json {
        outln!("{line}");
    } else {
        outln!("{}", text());
    }
    Ok(())
}

/// A valid record as a JSON object and a text line.
fn record_line(segment: &str, piece: &Piece<'_>, sealed: bool) -> (Value, String) {
    let Piece::Record { offset, record } = piece else {
        unreachable!("called for records only")
    };
    let kind = RecordKind::from_u8(record.kind).map_or("unknown", |k| k.name());
    let size = RECORD_HEADER_LEN + record.payload.len();
    // The checksum passed (or the reader would not call it a record); a
    // payload that does not decode is still worth saying.
    // A sealed payload (an encrypted store) is checked by its checksum
    // only: what it holds needs the key.
    let decoded = match sealed {
        true => Ok(None),
        false => Op::decode(record.kind, record.payload).map(Some),
    };
    let (id, problem) = match decoded {
        Ok(None) => (None, None),
        // A batch has no id of its own; its ops each have one.
        Ok(Some(op)) if op.id().is_empty() => (None, None),
        Ok(Some(op)) => (Some(op.id().to_string()), None),
        Err(why) => (None, Some(why)),
    };
    let value = json!({"segment": segment, "offset": offset, "seq": record.seq, "kind": kind,
        "id": id, "size_bytes": size, "checksum_ok": true, "payload_error": problem,
        "sealed": sealed});
    let mut text = format!(
        "{segment}  offset={offset}  seq={}  {kind}  id={}  size={size}  checksum=ok",
        record.seq,
        id.as_deref().unwrap_or("-")
    );
    if sealed {
        text.push_str("  sealed");
    }
    if let Some(why) = problem {
        text.push_str(&format!("  PAYLOAD ERROR: {why}"));
    }
    (value, text)
}

/// A sync marker as a JSON object and a text line, with its time.
fn marker_line(segment: &str, offset: u64, m: &Marker) -> (Value, String) {
    let time = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(m.unix_ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| format!("{} ms", m.unix_ms));
    let boot = m.boot_id.as_ref().map(id_hex);
    let value = json!({"segment": segment, "offset": offset, "seq": m.synced_through,
        "kind": "sync_marker", "id": null, "size_bytes": MARKER_FRAME_LEN, "checksum_ok": true,
        "synced_through": m.synced_through, "unix_ms": m.unix_ms, "time": time, "boot_id": boot});
    let text = format!(
        "{segment}  offset={offset}  synced<={}  sync_marker  time={time}  size={MARKER_FRAME_LEN}  checksum=ok",
        m.synced_through
    );
    (value, text)
}

/// A damaged span as a JSON object and a text line.
fn damaged_line(segment: &str, piece: &Piece<'_>) -> (Value, String) {
    let Piece::Damaged {
        offset,
        end,
        reason,
        first_seq,
        durable,
        ..
    } = piece
    else {
        unreachable!("called for damaged spans only")
    };
    let class = if *durable { "corrupt" } else { "torn_tail" };
    let size = end - offset;
    let value = json!({"segment": segment, "offset": offset, "seq": first_seq, "kind": "damaged",
        "id": null, "size_bytes": size, "checksum_ok": false, "reason": reason, "class": class});
    let text = format!(
        "{segment}  offset={offset}  seq>={first_seq}  DAMAGED  size={size}  checksum=BAD  {reason} ({})",
        class.replace('_', " ")
    );
    (value, text)
}

/// Prints one task for a person, or as JSON.
pub fn show(cli: &Cli, id: &str, json: bool) -> Result<ExitCode> {
    let store = open_readonly(cli)?;
    let task = store.get_task(id)?.ok_or_else(|| not_found(id))?;
    if json {
        crate::out::json_line(&task)?;
    } else {
        print_task(&task)?;
    }
    Ok(ExitCode::SUCCESS)
}

fn print_task(t: &Task) -> statewal::Result<()> {
    outln!("task {}", t.id());
    outln!("  {:<12} {}", "status", t.status().as_str());
    let fields = [
        ("description", "description"),
        ("tool", "tool"),
        ("created", "created_at"),
        ("updated", "updated_at"),
        ("started", "started_at"),
        ("completed", "completed_at"),
    ];
    for (name, key) in fields {
        match t.get(key) {
            Some(Value::String(v)) => outln!("  {name:<12} {v}"),
            Some(Value::Null) | None => {}
            Some(other) => outln!("  {name:<12} {other}"),
        }
    }
    const SHOWN: [&str; 10] = [
        "id",
        "status",
        "description",
        "tool",
        "created_at",
        "updated_at",
        "started_at",
        "completed_at",
        "logs",
        "result",
    ];
    for (name, value) in t.as_map() {
        if !SHOWN.contains(&name.as_str()) {
            outln!("  {name:<12} {value}");
        }
    }
    outln!("{}:", count_as(t.logs().len(), "log entry", "log entries"));
    for l in t.logs() {
        let meta = l.metadata().map(|m| format!("  {m}")).unwrap_or_default();
        outln!(
            "  {}  {:<5}  {}  {}{meta}",
            l.timestamp().unwrap_or(""),
            l.level().unwrap_or(""),
            l.kind().unwrap_or(""),
            l.message().unwrap_or("")
        );
    }
    match t.result() {
        None | Some(Value::Null) => outln!("result: none"),
        Some(r) => {
            outln!("result:");
            for line in pretty(r).lines() {
                outln!("  {line}");
            }
        }
    }
    Ok(())
}
