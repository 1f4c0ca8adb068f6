//! Running a reconciliation at open: before recovery ([`prepare_owner`],
//! [`prepare_reader`]), between recovery and the store ([`plan`], pure but
//! for reading `tasks/`), and on the opened store ([`apply_owner`]; a
//! reader applies the plan in memory only, [`apply_in_memory`]).
//!
//! A merge (part 3) at an owner's open, in order:
//!
//! 1. the foreign file's bytes are kept as a pre-migration backup (numbered,
//!    never overwritten; reused when a rerun finds the same bytes);
//! 2. recovery loads statewal's view, never the foreign file;
//! 3. the foreign copies that win are journaled as batches, and waited for;
//! 4. out-of-band edits are imported or set aside (part 2);
//! 5. the segments read are copied into `journal/superseded-<ms>/`;
//! 6. the decisions are appended to the migration log;
//! 7. a checkpoint replaces the foreign `state.json`.
//!
//! A crash anywhere before step 7's rename leaves the foreign `state.json`
//! in place, and the next open merges again. It converges: statewal's view
//! now holds the journaled copies, so the foreign ones tie with them (equal
//! copies are skipped) and nothing is journaled twice.

use super::aside::Aside;
use super::edits::{self, EditPlan};
use super::foreign::{self, ForeignView};
use super::live::{self, TaskFiles};
use super::merge::{self, MergePlan};
use super::survey::{self, Survey};
use super::{Action, Decision, now_ms};
use crate::engine::journal::JournalEngine;
use crate::error::Result;
use crate::fs::{self, Fs};
use crate::journal::{JOURNAL_DIR, parse_segment_name};
use crate::model::Task;
use crate::recovery::{BaseRule, LoadedFrom, Recovered};
use crate::state::State;
use crate::store::Mutation;
use serde::Serialize;
use std::collections::HashSet;

/// What the open found before recovery, and what it did about it.
pub(crate) struct Prepared {
    /// How recovery chooses its base.
    pub rule: BaseRule,
    /// The foreign view to merge, for a merge.
    pub view: Option<ForeignView>,
    /// The pre-migration backup kept for a merge.
    pub backup: Option<String>,
    /// The decisions of a migration the open ran (part 1).
    pub migrated: Vec<Decision>,
}

/// A merge as the recovery report shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Merged {
    /// The foreign state file merged: `state.json`, or a backup.
    pub from: String,
    /// Where its bytes were kept (`None` for a read-only open).
    pub backup: Option<String>,
    /// The migration log the decisions were appended to.
    pub log: Option<String>,
    /// Where the journal segments the merge read were copied.
    pub superseded: Option<String>,
}

/// The owner's preparation: a foreign file and no statewal history is
/// migrated now (part 1); a foreign file over statewal history is kept as
/// a pre-migration backup and handed to recovery as the merge's other side.
pub(crate) fn prepare_owner(fs: &dyn Fs) -> Result<Prepared> {
    let survey = survey::survey(fs)?;
    if survey.needs_migration() {
        let report = crate::migrate::migrate_on_open(fs, &survey)?;
        return Ok(Prepared {
            rule: BaseRule::default(),
            view: None,
            backup: None,
            migrated: report.map(|r| r.decisions).unwrap_or_default(),
        });
    }
    let mut p = prepare(fs, &survey)?;
    if let (Some(_), Some(f)) = (&p.view, &survey.foreign) {
        let original = f.unusable_state.as_deref().unwrap_or(&f.bytes);
        p.backup = Some(crate::migrate::keep_pre_migration(fs, original)?);
    }
    Ok(p)
}

/// A reader's preparation: the same view, nothing written.
pub(crate) fn prepare_reader(fs: &dyn Fs) -> Result<Prepared> {
    prepare(fs, &survey::survey(fs)?)
}

fn prepare(fs: &dyn Fs, survey: &Survey) -> Result<Prepared> {
    let mut p = Prepared {
        rule: BaseRule {
            history: survey.history,
            foreign: None,
            sealing: None,
        },
        view: None,
        backup: None,
        migrated: Vec::new(),
    };
    let Some(f) = survey.foreign.as_ref().filter(|_| survey.history) else {
        return Ok(p);
    };
    match foreign::view(fs, &f.name, &f.bytes)? {
        Ok(view) => {
            let tasks: Vec<Task> = view.tasks.values().map(|(t, _)| t.clone()).collect();
            p.rule.foreign = Some((view.base.clone(), tasks, view.sessions.clone()));
            p.view = Some(view);
        }
        // The survey found that it migrates, so this is a race with another
        // writer; recovery skips the file as it would any unusable one.
        Err(why) => tracing::warn!(file = %f.name, %why, "the foreign state file does not migrate"),
    }
    Ok(p)
}

/// What an open does about foreign copies and task files.
pub(crate) struct Plan {
    merge: Option<(String, MergePlan)>,
    edits: EditPlan,
    /// What the task files held when the plan read them, but for those it
    /// sets aside: the checkpoints' check for edits made while the store is
    /// open starts from it.
    task_files: TaskFiles,
    /// The entries of `tasks/` that are not regular files, when the plan's
    /// listing typed them (`live::Scan::not_regular`).
    not_regular: Option<HashSet<String>>,
}

impl Plan {
    /// Every decision, the merge's first.
    pub fn decisions(&self) -> Vec<Decision> {
        let mut all: Vec<Decision> = self
            .merge
            .iter()
            .flat_map(|(_, m)| m.decisions.iter().cloned())
            .collect();
        all.extend(self.edits.decisions.iter().cloned());
        all
    }

    /// The foreign file merged, if any.
    pub fn merged_from(&self) -> Option<&str> {
        self.merge.as_ref().map(|(from, _)| from.as_str())
    }

    /// What the task files held when the plan read them (for the owner's
    /// checkpoints; see [`super::live`]).
    pub fn take_task_files(&mut self) -> TaskFiles {
        std::mem::take(&mut self.task_files)
    }
}

/// Plans the merge (when `view` is given) and the edits of `tasks/`
/// against the recovered state, the merge's puts included.
pub(crate) fn plan(fs: &dyn Fs, rec: &Recovered, view: Option<&ForeignView>) -> Result<Plan> {
    plan_with(fs, rec, view, true)
}

/// What an open would decide about the task files, each one read (no
/// stat vouches for any): for `verify`, which reads every file and so
/// also sees damage that changed no stat. The same rule as an open's
/// ([`edits::plan`]), after a read-only recovery. Writes nothing.
pub(crate) fn task_file_decisions(fs: &dyn Fs) -> Result<Vec<Decision>> {
    let prepared = prepare_reader(fs)?;
    let rec = crate::recovery::recover_read_only(fs, Default::default(), &prepared.rule)?;
    Ok(plan_with(fs, &rec, prepared.view.as_ref(), false)?
        .edits
        .decisions)
}

/// [`plan`]; `stats`: whether a stat the last checkpoint left may vouch
/// for a task file, so that it is not read.
fn plan_with(
    fs: &dyn Fs,
    rec: &Recovered,
    view: Option<&ForeignView>,
    stats: bool,
) -> Result<Plan> {
    // Only a checkpoint statewal sealed holds copies statewal wrote; the
    // foreign view, standing in for one, holds the original server's.
    let sealed = matches!(
        rec.report.loaded_from,
        LoadedFrom::StateFile | LoadedFrom::Backup(_)
    );
    let written = merge::Written {
        tasks: sealed.then_some(&rec.base_tasks),
        sessions: sealed.then_some(&rec.base_sessions),
        puts: &rec.replayed_puts,
    };
    let merge = match view {
        Some(v) => Some((v.base.clone(), merge::plan(&rec.state, v, &written)?)),
        None => None,
    };
    let puts: std::collections::HashMap<&str, &Task> = merge
        .iter()
        .flat_map(|(_, m)| m.puts.iter().map(|t| (t.id(), t)))
        .collect();
    let current = |id: &str| match puts.get(id) {
        Some(t) => Some(edits::Current::Put(t)),
        None => rec
            .state
            .tasks
            .get(id)
            .map(|h| edits::Current::Held(&h.task)),
    };
    // The stats the last checkpoint left vouch for the task files it knew,
    // as long as state.json is the one it wrote (`super::live`).
    let vouched = match (&rec.report.loaded_from, rec.state_crc) {
        (LoadedFrom::StateFile, Some(crc)) if view.is_none() && stats => {
            live::load_vouched(fs, crc)?
        }
        _ => live::Vouched::default(),
    };
    let mut scan = live::scan(fs, &vouched, |id| rec.base_tasks.contains_key(id))?;
    let not_regular = scan.not_regular.take();
    let stem = |name: &str| name[..name.len() - ".json".len()].to_string();
    let base_is_current = |id: &str| match (rec.base_tasks.get(id), current(id)) {
        (Some(b), Some(c)) => c.is_held(&b.task),
        _ => false,
    };
    // A stat vouches for a file (for the next checkpoint to save) only when
    // the file holds the store's copy now.
    let read = scan.read.iter().filter_map(|f| {
        let holds_current =
            matches!(&f.task, Ok(t) if current(t.id()).is_some_and(|c| c.same_as(t, &t.to_json())));
        f.print
            .map(|p| (f.name.clone(), p, f.stat.filter(|_| holds_current)))
    });
    let unread = scan.vouched.iter().map(|(name, p, stat)| {
        (
            name.clone(),
            *p,
            base_is_current(&stem(name)).then_some(*stat),
        )
    });
    let mut task_files = TaskFiles::from_scan(read.chain(unread));
    let unread_ids: Vec<String> = scan.vouched.iter().map(|(n, _, _)| stem(n)).collect();
    let ids = rec
        .state
        .tasks
        .keys()
        .map(|id| id.as_str())
        .chain(puts.keys().copied());
    let mut edits = edits::plan(
        scan.read,
        &unread_ids,
        &rec.base_tasks,
        &rec.replayed_puts,
        &rec.replayed_removals,
        current,
        ids,
    )?;
    // A task the merge kept on statewal's side only was reported by it.
    if let Some((_, m)) = &merge {
        edits.decisions.retain(|d| {
            d.action != Action::StatewalOnly || !m.decisions.iter().any(|x| x.task == d.task)
        });
    }
    for a in &edits.set_aside {
        task_files.forget(a.path.rsplit_once('/').map_or(a.path.as_str(), |(_, n)| n));
    }
    Ok(Plan {
        merge,
        edits,
        task_files,
        not_regular,
    })
}

/// A reader's application: what an owner's open would journal is applied
/// to the state in memory; nothing is written, nothing renamed. A copy the
/// owner's open would refuse (over `task_bytes_max`, an invalid id) is left
/// out here too, so a reader sees what that open gives.
pub(crate) fn apply_in_memory(state: &mut State, plan: &Plan, task_bytes_max: usize) {
    let mut muts: Vec<Mutation> = Vec::new();
    if let Some((_, m)) = &plan.merge {
        muts.extend(m.puts.iter().cloned().map(Mutation::PutTask));
        muts.extend(m.sessions.iter().cloned().map(Mutation::PutSession));
    }
    muts.extend(plan.edits.imports.iter().cloned().map(Mutation::PutTask));
    for m in muts {
        if let Ok((op, _)) = crate::transaction::validate(m, task_bytes_max) {
            state.apply_unjournaled(op);
        }
    }
}

/// What [`apply_owner`] did.
pub(crate) struct Outcome {
    /// Every decision, with set-aside files under their new names.
    pub decisions: Vec<Decision>,
    /// The merge, if there was one.
    pub merged: Option<Merged>,
    /// A checkpoint was written (the merge's).
    pub checkpointed: bool,
}

/// The owner's application, on the opened store: see the module doc.
/// `segments_below`: the first segment id recovery did not find (the merge
/// keeps aside every segment before it).
pub(crate) fn apply_owner(
    store: &JournalEngine,
    plan: Plan,
    prepared: &Prepared,
    segments_below: u64,
) -> Result<Outcome> {
    let fs = store.fs();
    let Plan {
        merge,
        mut edits,
        not_regular: listed,
        ..
    } = plan;
    let mut decisions = prepared.migrated.clone();
    // A task the migration kept without a file was reported by it already.
    edits.decisions.retain(|d| {
        d.action != Action::StatewalOnly || !decisions.iter().any(|m| m.task == d.task)
    });
    if let Some((_, m)) = &merge {
        let mut muts: Vec<Mutation> = m.puts.iter().cloned().map(Mutation::PutTask).collect();
        muts.extend(m.sessions.iter().cloned().map(Mutation::PutSession));
        let refused = journal_in_batches(store, muts)?;
        decisions.extend(m.decisions.iter().cloned());
        decisions.extend(refused);
    }
    if !edits.imports.is_empty() {
        let muts = edits.imports.drain(..).map(Mutation::PutTask).collect();
        let refused = journal_in_batches(store, muts)?;
        for r in &refused {
            // Not imported: the file stays as it is, and is not set aside.
            edits
                .decisions
                .retain(|d| d.task != r.task || d.action != Action::Imported);
        }
        edits.decisions.extend(refused);
    }
    not_regular(fs, &mut edits, listed.as_ref())?;
    let renamed = super::aside::set_aside(fs, &edits.set_aside)?;
    for d in &mut edits.decisions {
        if d.action == Action::SetAside
            && let Some((_, to)) = d
                .other
                .as_ref()
                .and_then(|o| renamed.iter().find(|(from, _)| from == o))
        {
            d.other = Some(format!(
                "{}, now {to}",
                d.other.as_deref().unwrap_or_default()
            ));
        }
    }
    store.mark_tasks_changed(&edits.rewrite);
    decisions.extend(edits.decisions);
    let Some((from, _)) = merge else {
        return Ok(Outcome {
            decisions,
            merged: None,
            checkpointed: false,
        });
    };
    let superseded = keep_segments_aside(fs, segments_below)?;
    let log = crate::migrate::log_name(crate::migrate::UNVERSIONED, crate::STATE_VERSION);
    let merged = Merged {
        from,
        backup: prepared.backup.clone(),
        log: Some(log.clone()),
        superseded,
    };
    crate::migrate::append_log(fs, &log, &log_text(&merged, &decisions))?;
    // The commit point: the foreign state.json is replaced only now, once
    // everything that won from it is durable in the journal.
    store.checkpoint()?;
    Ok(Outcome {
        decisions,
        merged: Some(merged),
        checkpointed: true,
    })
}

/// Journals `muts` as batch records within the record payload cap, and
/// waits for each. A mutation the store refuses on its own (too large, an
/// invalid id) is left out and returned as a decision; any other error
/// fails the open.
fn journal_in_batches(store: &JournalEngine, muts: Vec<Mutation>) -> Result<Vec<Decision>> {
    // Half the cap leaves room for the batch's framing of each member.
    let budget = crate::journal::record::RECORD_PAYLOAD_MAX as usize / 2;
    let max = store.options().task_bytes_max;
    let mut refused = Vec::new();
    let mut batch = Vec::new();
    let mut bytes = 0;
    for m in muts {
        let id = match &m {
            Mutation::PutTask(t) => t.id().to_string(),
            Mutation::PutSession(s) => format!(
                "session {}",
                crate::journal::op::session_id(s).unwrap_or("?")
            ),
            _ => unreachable!("a merge journals puts only"),
        };
        let len = match crate::transaction::validate(m.clone(), max) {
            Ok((_, payload)) => payload.len(),
            Err(e) => {
                tracing::warn!(task = %id, error = %e, "a foreign copy cannot be journaled");
                refused.push(Decision {
                    task: id,
                    action: Action::NotImported,
                    kept: "nothing".into(),
                    other: None,
                    reason: e.to_string(),
                });
                continue;
            }
        };
        if !batch.is_empty() && bytes + len > budget {
            store
                .submit_batch_as_is(std::mem::take(&mut batch))?
                .wait()?;
            bytes = 0;
        }
        bytes += len;
        batch.push(m);
    }
    if !batch.is_empty() {
        store.submit_batch_as_is(batch)?.wait()?;
    }
    Ok(refused)
}

/// Finds, among the tasks whose file the next checkpoint writes, those
/// where something that is not a regular file has the file's name (a
/// directory, a symlink, a FIFO: `list` shows none of them). The checkpoint
/// could not write over a directory (every checkpoint would fail), and
/// would replace a symlink or FIFO unseen; each is set aside instead (the
/// rename moves the entry itself and never follows it), and reported.
///
/// `listed`: the names of the entries of `tasks/` that are not regular
/// files, as the plan's one listing typed them. Only a task whose file
/// name is among them is looked up; every other name was a regular file
/// or nothing. (The lookup of each name it replaces cost a `statx` per
/// task file written, a third of an open that replays 100,000 puts; an
/// entry planted after the listing is caught by the checkpoint's own
/// check, [`live::TaskFiles::guard`], as one planted after the lookup
/// always was.) `None`: every name is looked up.
fn not_regular(fs: &dyn Fs, edits: &mut EditPlan, listed: Option<&HashSet<String>>) -> Result<()> {
    if listed.is_some_and(HashSet::is_empty) {
        return Ok(());
    }
    let listed_ids: Option<HashSet<&str>> =
        listed.map(|l| l.iter().filter_map(|n| n.strip_suffix(".json")).collect());
    let mut seen = HashSet::new();
    for id in &edits.rewrite {
        if listed_ids
            .as_ref()
            .is_some_and(|l| !l.contains(id.as_str()))
        {
            continue;
        }
        let path = fs::join(crate::layout::TASKS_DIR, &crate::layout::task_file(id));
        if !seen.insert(path.clone()) || edits.set_aside.iter().any(|a| a.path == path) {
            continue;
        }
        match fs.file_len(&path) {
            Err(e) if e.kind() == crate::error::ErrorKind::InvalidInput => {
                edits.decisions.push(Decision {
                    task: id.clone(),
                    action: Action::SetAside,
                    kept: super::merge::STATEWAL.into(),
                    other: Some(path.clone()),
                    reason: format!(
                        "not a regular file ({e}): set aside so the store's copy can be written"
                    ),
                });
                edits.set_aside.push(Aside {
                    path,
                    why: format!("is not a regular file ({e})"),
                });
            }
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Copies every journal segment with an id below `below` into a new
/// `journal/superseded-<ms>/`, durably, unless an earlier one holds the same
/// bytes under the same name (a rerun after a crash). The originals stay,
/// for recovery until the merge's checkpoint and for retention after it.
/// Returns the directory, if anything was copied.
fn keep_segments_aside(fs: &dyn Fs, below: u64) -> Result<Option<String>> {
    let names: Vec<String> = fs
        .list(JOURNAL_DIR)?
        .into_iter()
        .filter(|n| parse_segment_name(n).is_some_and(|id| id < below))
        .collect();
    let earlier: Vec<String> = fs
        .list_dirs(JOURNAL_DIR)?
        .into_iter()
        .filter(|d| d.starts_with(SUPERSEDED_PREFIX))
        .map(|d| fs::join(JOURNAL_DIR, &d))
        .collect();
    let mut copies = Vec::new();
    'segment: for name in names {
        let Some(bytes) = fs.read(&fs::join(JOURNAL_DIR, &name))? else {
            continue;
        };
        for dir in &earlier {
            if fs
                .read(&fs::join(dir, &name))?
                .is_some_and(|b| *b == *bytes)
            {
                continue 'segment;
            }
        }
        copies.push((name, bytes.to_vec()));
    }
    if copies.is_empty() {
        return Ok(None);
    }
    let mut ms = now_ms();
    let dir = loop {
        let dir = fs::join(JOURNAL_DIR, &format!("{SUPERSEDED_PREFIX}{ms}"));
        if !fs.is_dir(&dir)? {
            break dir;
        }
        ms += 1;
    };
    fs.create_dir(&dir)?;
    // Sync journal/ so the new directory's entry survives power loss.
    fs.sync_dir(JOURNAL_DIR)?;
    for (name, bytes) in &copies {
        // Temp file, data sync, rename, directory sync: a copy is whole or
        // absent after power loss.
        fs::write_atomic(fs, &dir, name, bytes)?;
    }
    tracing::info!(dir = %dir, segments = copies.len(), "kept the merged journal segments aside");
    Ok(Some(dir))
}

/// Journal subdirectories that hold segments a merge kept aside.
pub(crate) const SUPERSEDED_PREFIX: &str = "superseded-";

fn log_text(m: &Merged, decisions: &[Decision]) -> String {
    let mut out = format!(
        "{} merged {} (written by the original server after statewal) with statewal's \
         checkpoint and journal, per task: the later updated_at, then more logs, then the \
         foreign copy\n",
        crate::model::now_rfc3339(),
        m.from
    );
    if let Some(b) = &m.backup {
        out += &format!("original kept in {b}\n");
    }
    if let Some(s) = &m.superseded {
        out += &format!("journal segments read copied to {s}/\n");
    }
    if decisions.is_empty() {
        out += "- no task differs\n";
    }
    for d in decisions {
        out += &format!("- {d}\n");
    }
    out
}
