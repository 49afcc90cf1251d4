//! `vfioctl check [DEVICE]`: host readiness, in the style of `virt-host-validate`.

use serde::Serialize;
use vfioctl_core::check::{self, Check, Status, Target};
use vfioctl_core::selector::Selector;
use vfioctl_host::facts;
use vfioctl_host::pci;
use vfioctl_host::root::HostRoot;

use crate::cli::{CheckArgs, Format};
use crate::error::{CliError, Exit};
use crate::output;

#[derive(Debug, Serialize)]
pub(crate) struct Summary {
    pass: usize,
    warn: usize,
    fail: usize,
    note: usize,
}

#[derive(Debug, Serialize)]
struct CheckJson<'a> {
    live: bool,
    device: Option<String>,
    checks: &'a [Check],
    summary: Summary,
}

pub(crate) fn summary(checks: &[Check]) -> Summary {
    let n = |s| checks.iter().filter(|c| c.status == s).count();
    Summary { pass: n(Status::Pass), warn: n(Status::Warn), fail: n(Status::Fail), note: n(Status::Note) }
}

/// One line per check as `virt-host-validate` prints them, the remedy under each
/// non-passing one.
pub fn render_text(checks: &[Check], live: bool) -> String {
    let mut out = String::new();
    if !live {
        out.push_str("Checking a snapshot: device nodes and daemons are not checked.\n");
    }
    for c in checks {
        out.push_str(&format!("{:>7}: Checking {:<60}: {}", c.area, c.title, c.status.label()));
        if !c.message.is_empty() {
            out.push_str(&format!(" ({})", c.message));
        }
        out.push('\n');
        if c.status != Status::Pass {
            if let Some(r) = &c.remedy {
                out.push_str(&format!("         fix: {r}\n"));
            }
        }
    }
    let s = summary(checks);
    out.push_str(&format!(
        "\n{} checks: {} passed, {} warnings, {} failed, {} notes.\n",
        checks.len(),
        s.pass,
        s.warn,
        s.fail,
        s.note
    ));
    out
}

pub fn run(root: &HostRoot, args: &CheckArgs) -> Result<Exit, CliError> {
    let selector = args.device.as_deref().map(str::parse::<Selector>).transpose().map_err(CliError::Selector)?;
    if !root.exists("/proc/cpuinfo") && !root.exists("/sys/devices/system/cpu") {
        return Err(vfioctl_host::HostError::NotAHost { root: root.base().to_path_buf() }.into());
    }
    let facts = facts::gather(root);
    let inventory = match selector {
        Some(_) => {
            let inv = pci::read(root)?;
            for w in &inv.warnings {
                eprintln!("vfioctl: warning: {w}");
            }
            Some(inv)
        }
        None => None,
    };
    let device = match (&selector, &inventory) {
        (Some(s), Some(inv)) => Some(s.resolve(&inv.devices).map_err(CliError::Selector)?),
        _ => None,
    };
    let target = match (device, &inventory) {
        (Some(d), Some(inv)) => Some(Target { device: d, devices: &inv.devices, groups: &inv.groups }),
        _ => None,
    };
    let checks = check::run(&facts, target.as_ref());
    match args.format {
        Format::Json => output::print_json(&CheckJson {
            live: facts.live,
            device: device.map(|d| d.address.to_string()),
            checks: &checks,
            summary: summary(&checks),
        })?,
        Format::Text => output::print(&render_text(&checks, facts.live))?,
    }
    Ok(if check::any_failed(&checks) { Exit::Finding } else { Exit::Ok })
}
