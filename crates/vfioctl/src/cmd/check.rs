//! `vfioctl check [DEVICE]`: host readiness, in the style of `virt-host-validate`.

use serde::Serialize;
use vfioctl_core::check::{self, Check, Target};
use vfioctl_core::selector::Selector;
use vfioctl_host::host::Host;

use crate::cli::{CheckArgs, Format};
use crate::error::{CliError, Exit};
use crate::output::{self, render_text, summary, Summary};

#[derive(Debug, Serialize)]
struct CheckJson<'a> {
    live: bool,
    device: Option<String>,
    checks: &'a [Check],
    summary: Summary,
}

pub fn run(host: &Host, args: &CheckArgs) -> Result<Exit, CliError> {
    let selector = args.device.as_deref().map(str::parse::<Selector>).transpose().map_err(CliError::Selector)?;
    let root = host.root();
    if !root.exists("/proc/cpuinfo") && !root.exists("/sys/devices/system/cpu") {
        return Err(vfioctl_host::HostError::NotAHost { root: root.base().to_path_buf() }.into());
    }
    let facts = host.facts();
    let inventory = match selector {
        Some(_) => {
            let inv = host.pci()?;
            for w in &inv.warnings {
                eprintln_safe!("vfioctl: warning: {w}");
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
    let checks = check::run(facts, target.as_ref());
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
