//! `vfioctl status` and `vfioctl rollback`.

use serde::Serialize;
use vfioctl_host::apply::{self, CommandMode, FileStatus};
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
    // The journal's own spelling (`rolled-back`).
    let state = j.and_then(|j| serde_json::to_value(j.state).ok()).and_then(|v| v.as_str().map(String::from));
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
            if rolled_back {
                t.push_str("Rolled back: the files are as they were before the apply.\n");
            } else if files.iter().any(|f| f.state != "unchanged") {
                t.push_str("Some files changed since the apply: `vfioctl rollback` restores the state before the apply and discards those changes.\n");
            }
            output::print(&t)?;
        }
    }
    Ok(Exit::Ok)
}

pub fn rollback(root: &HostRoot, args: &RollbackArgs) -> Result<Exit, CliError> {
    if !args.yes && !output::confirm("Restore every file vfioctl changed in its last apply?")? {
        return Ok(Exit::Finding);
    }
    let mode = if args.no_commands { CommandMode::Never } else { CommandMode::for_root(root) };
    let out = apply::rollback(root, mode, &mut |m| eprintln!("vfioctl: {m}")).map_err(CliError::Apply)?;
    let mut t = format!("Rolled back: {} files restored.\n", out.written.len());
    for r in &out.commands {
        t.push_str(&format!("  {}\n", r.describe()));
    }
    output::print(&t)?;
    Ok(Exit::Ok)
}
