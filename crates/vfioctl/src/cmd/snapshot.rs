//! `vfioctl snapshot OUT`.

use serde::Serialize;
use vfioctl_host::root::HostRoot;
use vfioctl_host::snapshot;

use crate::cli::{Format, SnapshotArgs};
use crate::error::{CliError, Exit};
use crate::output;

#[derive(Debug, Serialize)]
struct SnapshotJson {
    out: String,
    files: usize,
    links: usize,
    redacted_names: usize,
    unreadable: Vec<String>,
}

pub fn run(root: &HostRoot, args: &SnapshotArgs) -> Result<Exit, CliError> {
    eprintln_safe!("vfioctl: taking a snapshot of {} …", root.base().display());
    let s = snapshot::create(root, &args.out, args.force).map_err(vfioctl_host::HostError::from)?;
    let unreadable: Vec<String> = s.unreadable.iter().map(|p| p.display().to_string()).collect();
    match args.format {
        Format::Json => output::print_json(&SnapshotJson {
            out: args.out.display().to_string(),
            files: s.files,
            links: s.links,
            redacted_names: s.redacted,
            unreadable,
        })?,
        Format::Text => {
            let mut text =
                format!("Snapshot written to {}: {} files, {} links.\n", args.out.display(), s.files, s.links);
            if s.redacted > 0 {
                text.push_str(&format!("Serial numbers removed from {} /dev/input/by-id names.\n", s.redacted));
            }
            if !unreadable.is_empty() {
                text.push_str(&format!(
                    "{} files could not be read (run as root for a complete snapshot): {}\n",
                    unreadable.len(),
                    unreadable.join(", ")
                ));
            }
            text.push_str(&format!(
                "Read it back with: vfioctl --root {} list\nIt holds no serial numbers, ROMs or files under /home; look it over before attaching it to a bug report.\n",
                args.out.display()
            ));
            output::print(&text)?;
        }
    }
    Ok(Exit::Ok)
}
