//! `restore-from` and `replica status`: a replica in object storage
//! (`docs/replication.md`), read without a store of the user's. Credentials
//! and endpoints come from the environment as for `--replicate`
//! (`AWS_*`, `AZURE_*`, `GOOGLE_*`: `AWS_ENDPOINT`, `AWS_ALLOW_HTTP`, ...).

use crate::Cli;
use statewal::Result;
#[cfg(not(feature = "replicate"))]
use statewal::{Error, ErrorKind};
use std::path::Path;
use std::process::ExitCode;

/// What `restore-from --at` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// A sequence number.
    Seq(u64),
    /// A wall-clock time.
    Time(time::OffsetDateTime),
}

/// `--at`: a sequence number, or an RFC 3339 time.
pub fn parse_at(s: &str) -> std::result::Result<At, String> {
    let s = s.trim();
    if let Ok(seq) = s.parse::<u64>() {
        return Ok(At::Seq(seq));
    }
    time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map(At::Time)
        .map_err(|e| {
            format!(
                "--at takes a sequence number (such as 1200) or an RFC 3339 time \
                 (such as 2026-12-02T10:00:00Z): {s:?} is neither ({e})"
            )
        })
}

/// `ms` (Unix milliseconds) as RFC 3339, UTC.
#[cfg(feature = "replicate")]
fn rfc3339(ms: u64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| ms.to_string())
}

#[cfg(not(feature = "replicate"))]
fn unbuilt(command: &str) -> Error {
    Error::new(
        ErrorKind::Unsupported,
        format!(
            "`{command}` needs replication (issue 11), which is not built into this version of \
             statewal (cargo feature `replicate`); nothing was done"
        ),
    )
}

/// `statewal restore-from URL --to DIR [--at SEQ|RFC3339]`. Exit 0 when
/// it restored what was asked, 1 when a corrupt or missing object stopped
/// it short (the directory holds every record before it), 2 on an error.
#[cfg(not(feature = "replicate"))]
pub fn restore_from(_: &Cli, _: &str, _: &Path, _: Option<At>, _: bool) -> Result<ExitCode> {
    Err(unbuilt("restore-from"))
}

/// `statewal replica status URL`.
#[cfg(not(feature = "replicate"))]
pub fn status(_: &str, _: bool) -> Result<ExitCode> {
    Err(unbuilt("replica status"))
}

/// `statewal restore-from URL --to DIR [--at SEQ|RFC3339]`. Exit 0 when
/// it restored what was asked, 1 when a corrupt or missing object stopped
/// it short (the directory holds every record before it), 2 on an error.
#[cfg(feature = "replicate")]
pub fn restore_from(
    cli: &Cli,
    url: &str,
    to: &Path,
    at: Option<At>,
    json: bool,
) -> Result<ExitCode> {
    use statewal::replica::{self, RestoreTarget};
    let target = match at {
        None => RestoreTarget::Latest,
        Some(At::Seq(s)) => RestoreTarget::Seq(s),
        Some(At::Time(t)) => RestoreTarget::Time(t),
    };
    // What the restore may create, so that a restore that fails midway
    // leaves `--to` as it found it (a directory that held a store is
    // refused before anything is written, and is never touched here).
    let existed = to.exists();
    let new_state = !to.join("state.json").exists();
    let new_journal = !to.join("journal").exists();
    let new_tasks = !to.join("tasks").exists();
    let progress = crate::progress::Progress::spinner(format!("restoring from {url}"));
    #[cfg(feature = "encryption")]
    let result = match &cli.key {
        Some(key) => replica::restore_encrypted(url, &[], to, target, key.clone()),
        None => replica::restore(url, to, target),
    };
    #[cfg(not(feature = "encryption"))]
    let result = {
        let _ = cli;
        replica::restore(url, to, target)
    };
    drop(progress);
    if result.is_err() {
        if !existed {
            let _ = std::fs::remove_dir_all(to);
        } else {
            if new_state {
                let _ = std::fs::remove_file(to.join("state.json"));
            }
            if new_journal {
                let _ = std::fs::remove_dir_all(to.join("journal"));
            }
            if new_tasks {
                let _ = std::fs::remove_dir_all(to.join("tasks"));
            }
        }
    }
    let report = result?;
    let stopped = report
        .stopped_at
        .as_deref()
        .map(|s| match s.split_once(": ") {
            Some((object, reason)) => (object, reason),
            None => (s, ""),
        });
    if json {
        crate::out::json_line(&serde_json::json!({
            "to": to.display().to_string(),
            "generation": report.generation,
            "checkpoint_seq": report.checkpoint_seq,
            "last_seq": report.last_seq,
            "records": report.records,
            "segments": report.segments,
            "objects": report.objects,
            "record_time": report.record_time_ms.map(rfc3339),
            "stopped_at": stopped.map(|(object, reason)| {
                serde_json::json!({"object": object, "reason": reason})
            }),
            "skipped_checkpoints": report.skipped_checkpoints,
            "skipped_objects": report.skipped_objects,
        }))?;
    } else {
        let checkpoint = match report.checkpoint_seq {
            Some(seq) => format!("the checkpoint at seq {seq}"),
            None => "no checkpoint".to_string(),
        };
        outln!(
            "restored {} from generation {}: {checkpoint}, then {} in {} ({} read); the last \
             record is seq {}",
            to.display(),
            report.generation,
            crate::out::count(report.records, "journal record"),
            crate::out::count(report.segments, "segment"),
            crate::out::count(report.objects, "object"),
            report.last_seq
        );
        if let Some(ms) = report.record_time_ms {
            outln!("record time of the last record: {}", rfc3339(ms));
        }
        for skipped in &report.skipped_checkpoints {
            outln!("skipped a corrupt checkpoint: {skipped}");
        }
        for skipped in &report.skipped_objects {
            outln!("passed over (the checkpoint covers what it held): {skipped}");
        }
        if let Some((object, reason)) = stopped {
            outln!(
                "stopped before {object}: {reason}; every record before it is restored, nothing \
                 at or after it"
            );
        }
    }
    Ok(if report.stopped_at.is_some() {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    })
}

/// `statewal replica status URL`: each generation, its checkpoints and
/// segments, the newest position and the lag, from one listing.
#[cfg(feature = "replicate")]
pub fn status(url: &str, json: bool) -> Result<ExitCode> {
    let generations = statewal::replica::inspect(url, &[])?;
    let now_ms = u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000)
        .unwrap_or(0);
    let newest = generations.last();
    let newest_segment = newest.and_then(|g| g.segments.last());
    let newest_checkpoint = newest.and_then(|g| g.checkpoints.last().copied());
    let last_modified = generations.iter().map(|g| g.last_modified_ms).max();
    // The lag of a bucket read without its store: how long ago its newest
    // object was written (the bucket's clock against ours).
    let lag_seconds = last_modified.map(|m| now_ms.saturating_sub(m) as f64 / 1e3);
    let began = |id: &str| {
        u64::from_str_radix(id.get(..16).unwrap_or_default(), 16)
            .map(rfc3339)
            .unwrap_or_default()
    };
    if json {
        for g in &generations {
            crate::out::json_line(&serde_json::json!({
                "kind": "generation",
                "generation": g.id,
                "began": began(&g.id),
                "checkpoints": g.checkpoints,
                "segments": g.segments.len(),
                "last_modified": rfc3339(g.last_modified_ms),
            }))?;
            for s in &g.segments {
                crate::out::json_line(&serde_json::json!({
                    "kind": "segment",
                    "generation": g.id,
                    "segment": s.id,
                    "shipped_end": s.shipped_end,
                    "objects": s.objects,
                    "gap_at": s.gap_at,
                    "last_modified": rfc3339(s.last_modified_ms),
                }))?;
            }
        }
        crate::out::json_line(&serde_json::json!({
            "kind": "summary",
            "url": url,
            "generations": generations.len(),
            "newest_generation": newest.map(|g| &g.id),
            "newest_segment": newest_segment.map(|s| s.id),
            "newest_end": newest_segment.map(|s| s.shipped_end),
            "newest_checkpoint_seq": newest_checkpoint,
            "last_modified": last_modified.map(rfc3339),
            "lag_seconds": lag_seconds,
        }))?;
        return Ok(ExitCode::SUCCESS);
    }
    if generations.is_empty() {
        outln!("replica {url}: no generation (nothing shipped yet)");
        return Ok(ExitCode::SUCCESS);
    }
    outln!(
        "replica {url}: {}",
        crate::out::count(generations.len(), "generation")
    );
    for g in &generations {
        let checkpoints: Vec<String> = g.checkpoints.iter().map(u64::to_string).collect();
        outln!(
            "generation {} (began {}): checkpoints at seq {}",
            g.id,
            began(&g.id),
            match checkpoints.is_empty() {
                true => "(none)".to_string(),
                false => checkpoints.join(", "),
            }
        );
        for s in &g.segments {
            let gap = match &s.gap_at {
                Some(name) => format!("; does not join at {name}"),
                None => String::new(),
            };
            outln!(
                "  segment {}: shipped to byte {} in {}{gap}",
                s.id,
                s.shipped_end,
                crate::out::count(s.objects, "object")
            );
        }
    }
    if let (Some(g), Some(s)) = (newest, newest_segment) {
        outln!(
            "newest position: generation {}, segment {}, byte {}",
            g.id,
            s.id,
            s.shipped_end
        );
    }
    if let Some(seq) = newest_checkpoint {
        outln!("newest checkpoint: seq {seq}");
    }
    if let (Some(m), Some(lag)) = (last_modified, lag_seconds) {
        outln!(
            "lag: {lag:.1} s (the newest object was written at {})",
            rfc3339(m)
        );
    }
    Ok(ExitCode::SUCCESS)
}
