//! `vfioctl status` and `vfioctl rollback`.

use serde::Serialize;
use similar::TextDiff;
use vfioctl_host::apply::{self, CommandMode, FileStatus, RollbackTarget};
use vfioctl_host::root::HostRoot;

use crate::cli::{Format, RollbackArgs, StatusArgs};
use crate::error::{CliError, Exit};
use crate::output;

#[derive(Debug, Serialize)]
struct StatusJson<'a> {
    applied: bool,
    journal: Option<String>,
    state: Option<String>,
    created: Option<u64>,
    files: &'a [FileStatus],
    pending_commands: Vec<String>,
}

pub fn status(root: &HostRoot, args: &StatusArgs) -> Result<Exit, CliError> {
    let st = apply::status(root).map_err(CliError::Apply)?;
    let (j, files) = match &st {
        Some((j, f)) => (Some(j), f.as_slice()),
        None => (None, &[][..]),
    };
    let pending: Vec<String> = j
        .map(|j| j.results.iter().filter(|r| r.describe().contains("pending")).map(|r| r.argv.join(" ")).collect())
        .unwrap_or_default();
    let state = j.map(|j| j.state.as_str().to_string());
    let rolled_back = j.is_some_and(|j| j.state == apply::JournalState::RolledBack);
    match args.format {
        Format::Json => output::print_json(&StatusJson {
            applied: j.is_some_and(|j| j.state == apply::JournalState::Applied),
            journal: j.map(|j| j.host_dir().display().to_string()),
            state,
            created: j.map(|j| j.created),
            files,
            pending_commands: pending,
        })?,
        Format::Text => {
            let Some(j) = j else {
                output::print("Nothing applied: no vfioctl journal on this host.\n")?;
                return Ok(Exit::Ok);
            };
            let mut t = format!(
                "Last apply: {} (journal {}, created {}), state {}\n",
                j.id,
                j.host_dir().display(),
                vfioctl_core::units::utc(j.created),
                state.unwrap_or_default()
            );
            for f in files {
                t.push_str(&format!(
                    "  {:<45} {}{}\n",
                    f.path.display(),
                    f.state,
                    if f.created { " (created by vfioctl)" } else { "" }
                ));
            }
            for p in &pending {
                t.push_str(&format!("  pending command: {p}\n"));
            }
            if matches!(j.state, apply::JournalState::Writing | apply::JournalState::Incomplete) {
                t.push_str("This apply did not finish (it was interrupted, or restoring after a failure failed): some files may hold the new state and others the old. `vfioctl rollback` returns them all to the state before it.\n");
            } else if rolled_back {
                t.push_str("Rolled back: the files are as they were before the apply.\n");
            } else if files.iter().any(|f| !f.as_left()) {
                t.push_str("Some files changed since the apply: `vfioctl rollback` restores the state before the apply and discards those changes.\n");
            }
            output::print(&t)?;
        }
    }
    Ok(Exit::Ok)
}

pub fn rollback(root: &HostRoot, args: &RollbackArgs) -> Result<Exit, CliError> {
    let target = match (&args.id, args.all) {
        (Some(id), _) => RollbackTarget::To(id.clone()),
        (None, true) => RollbackTarget::All,
        (None, false) => RollbackTarget::Last,
    };
    let question = match &target {
        RollbackTarget::Last => "Restore every file vfioctl changed in its last apply?".to_string(),
        RollbackTarget::All => "Restore every file vfioctl changed, to the state before its first apply?".to_string(),
        RollbackTarget::To(id) => format!("Restore every file vfioctl changed, to the state before apply {id}?"),
    };
    if !args.yes && !output::confirm(&question)? {
        return Ok(Exit::Finding);
    }
    let mode = if args.no_commands { CommandMode::Never } else { CommandMode::for_root(root) };
    let _armed = apply::fault::arm(super::apply::injected_fault());
    let out = match apply::rollback(root, mode, &target, args.force, &mut |m| eprintln_safe!("vfioctl: {m}")) {
        Ok(o) => o,
        Err(apply::ApplyError::ChangedSinceApply { conflicts }) => {
            eprint!("{}", crate::output::terminal_safe(&render_conflicts(root, &conflicts)));
            return Err(CliError::Apply(apply::ApplyError::ChangedSinceApply { conflicts }));
        }
        Err(e) => return Err(CliError::Apply(e)),
    };
    let mut t = format!("Rolled back: {} files restored.\n", out.written.len());
    for r in &out.commands {
        t.push_str(&format!("  {}\n", r.describe()));
    }
    output::print(&t)?;
    Ok(Exit::Ok)
}

/// The three versions of each file rollback would overwrite, and how it changed since the
/// apply, for stderr.
fn render_conflicts(root: &HostRoot, conflicts: &[apply::Conflict]) -> String {
    let mut t = String::new();
    for c in conflicts {
        t.push_str(&format!("{} changed since apply {}:\n", c.path.display(), c.journal));
        match &c.before {
            Some(b) => t.push_str(&format!("  before the apply: {}\n", root.path(b).display())),
            None => t.push_str("  before the apply: absent (the apply created it)\n"),
        }
        t.push_str(&format!("  applied:          {}\n", root.path(&c.applied).display()));
        t.push_str(&format!("  now:              {}\n", root.path(&c.path).display()));
        let applied = std::fs::read(root.path(&c.applied)).unwrap_or_default();
        let now = std::fs::read(root.path(&c.path)).ok();
        let (a, n) = (String::from_utf8_lossy(&applied), now.as_deref().map(String::from_utf8_lossy));
        let diff = TextDiff::from_lines(a.as_ref(), n.as_deref().unwrap_or(""));
        let header = diff.unified_diff().context_radius(2).header("applied", "now").to_string();
        for line in header.lines() {
            t.push_str(&format!("    {}\n", output::clean(line)));
        }
    }
    t
}

#[derive(Debug, Serialize)]
struct HistoryEntry {
    id: String,
    journal: String,
    created: u64,
    date: String,
    state: String,
    in_effect: bool,
    summary: Option<String>,
    files: Vec<String>,
}

/// `vfioctl history`: every journal, oldest first.
pub fn history(root: &HostRoot, args: &StatusArgs) -> Result<Exit, CliError> {
    let all = apply::Journal::all(root).map_err(CliError::Apply)?;
    let entries: Vec<HistoryEntry> = all
        .iter()
        .map(|j| HistoryEntry {
            id: j.id.clone(),
            journal: j.host_dir().display().to_string(),
            created: j.created,
            date: vfioctl_core::units::utc(j.created),
            state: j.state.as_str().to_string(),
            in_effect: j.in_effect(),
            summary: j.summary.clone(),
            files: j.files.iter().map(|f| f.path.display().to_string()).collect(),
        })
        .collect();
    match args.format {
        Format::Json => output::print_json(&entries)?,
        Format::Text => {
            if entries.is_empty() {
                output::print("Nothing applied: no vfioctl journal on this host.\n")?;
                return Ok(Exit::Ok);
            }
            // Columns as wide as their widest entry (regression: the dates overflowed theirs).
            let w_id = entries.iter().map(|e| e.id.len()).chain([2]).max().unwrap_or(2);
            let w_date = entries.iter().map(|e| e.date.len()).chain([4]).max().unwrap_or(4);
            let mut t = format!("{:<w_id$} {:<w_date$} {:<12} {:<6} WHAT\n", "ID", "DATE", "STATE", "FILES");
            for e in &entries {
                t.push_str(&format!(
                    "{:<w_id$} {:<w_date$} {:<12} {:<6} {}\n",
                    e.id,
                    e.date,
                    e.state,
                    e.files.len(),
                    output::clean(e.summary.as_deref().unwrap_or("-"))
                ));
            }
            let on = entries.iter().filter(|e| e.in_effect).count();
            t.push_str(&format!(
                "\n{on} still in effect. `vfioctl rollback` undoes the last, `rollback --all` all of them, `rollback ID` back to before ID.\n"
            ));
            output::print(&t)?;
        }
    }
    Ok(Exit::Ok)
}
