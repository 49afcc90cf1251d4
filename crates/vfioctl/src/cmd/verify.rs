//! `vfioctl verify [DEVICE…]`: after the reboot, the host against the applied plan.

use std::collections::BTreeSet;

use serde::Serialize;
use vfioctl_core::check::{self, Check};
use vfioctl_core::cmdline::Cmdline;
use vfioctl_core::plan::{HugepageChoice, Request};
use vfioctl_core::verify::{self, Expectation, VerifyFacts};
use vfioctl_host::apply::Journal;
use vfioctl_host::host::Host;

use crate::cli::{self, Format, VerifyArgs};
use crate::error::{CliError, Exit};
use crate::ops;
use crate::output::{self, render_text, summary, Summary};

/// Parameters of the next boot's command line that a passthrough host depends on.
const RELEVANT: &[&str] = &[
    "intel_iommu",
    "amd_iommu",
    "iommu",
    "vfio-pci.ids",
    "vfio_pci.ids",
    "default_hugepagesz",
    "hugepagesz",
    "hugepages",
    "video",
    "initcall_blacklist",
];

#[derive(Serialize)]
struct VerifyJson<'a> {
    live: bool,
    source: String,
    /// The apply came after this boot: its changes are not running yet.
    reboot_pending: bool,
    checks: &'a [Check],
    summary: Summary,
}

/// What to verify, where it comes from, the journal's apply time (when the expectation
/// is an apply still in effect), and the facts the plan for the devices named could not
/// read.
struct Expected {
    expect: Expectation,
    source: String,
    applied_at: Option<u64>,
    unknown: Vec<String>,
}

/// What to verify: the journal's record of the last apply, or a plan for the devices named.
fn expectation(host: &Host, args: &VerifyArgs, next: Option<&Cmdline>) -> Result<Expected, CliError> {
    if args.devices.is_empty() {
        let journal = match Journal::last_applied(host.root()).map_err(CliError::Apply)? {
            Some(j) => Some(j),
            // Everything rolled back: the newest journal, whose checks now fail.
            None => Journal::last(host.root()).map_err(CliError::Apply)?,
        };
        return match journal {
            Some(j) => match j.expect {
                Some(expect) if j.state == vfioctl_host::apply::JournalState::RolledBack => Ok(Expected {
                    expect,
                    source: format!(
                        "the apply of journal {}, which was rolled back since (so failures are expected)",
                        j.id
                    ),
                    applied_at: None,
                    unknown: Vec::new(),
                }),
                Some(expect) => Ok(Expected {
                    expect,
                    source: format!("the apply of journal {}", j.id),
                    applied_at: Some(j.created),
                    unknown: Vec::new(),
                }),
                None => Err(CliError::Usage(format!(
                    "journal {} does not record what to expect (written by an older vfioctl): name the devices, e.g. `vfioctl verify gpu`",
                    j.id
                ))),
            },
            None => Err(CliError::Usage(
                "nothing was applied on this host (no journal): name the devices, e.g. `vfioctl verify gpu`".into(),
            )),
        };
    }
    let p = ops::plan(
        host,
        &Request {
            devices: cli::selectors(&args.devices)?,
            vcpus: None,
            memory_mib: None,
            hugepages: HugepageChoice::None,
            bind: Default::default(),
            acs_override: false,
            force: true,
        },
    )?;
    let mut e = Expectation::from_plan(&p, false);
    // Not what the plan would still add, but what the next boot is configured with: that
    // is what must be running.
    e.cmdline_add = next
        .map(|n| n.params.iter().filter(|p| RELEVANT.iter().any(|r| p.name_is(r))).map(|p| p.to_string()).collect())
        .unwrap_or_default();
    e.cmdline_remove.clear();
    e.hugepages = None;
    // The plan is made with --force so that verify can report what it cannot read.
    let unknown = p
        .warnings
        .iter()
        .filter_map(|w| w.strip_prefix("--force: planned without "))
        .map(|w| w.split("; you take on").next().unwrap_or(w).to_string())
        .collect();
    Ok(Expected { expect: e, source: format!("a plan for {}", args.devices.join(" ")), applied_at: None, unknown })
}

pub fn run(host: &Host, args: &VerifyArgs) -> Result<Exit, CliError> {
    let root = host.root();
    if !root.exists("/proc/cpuinfo") && !root.exists("/sys/devices/system/cpu") {
        return Err(vfioctl_host::HostError::NotAHost { root: root.base().to_path_buf() }.into());
    }
    let f = host.facts();
    let next = f.next_boot.as_ref().map(|n| &n.cmdline);
    let Expected { expect, source, applied_at, unknown } = expectation(host, args, next)?;
    // The apply came after this boot: nothing of it runs yet, so every check would fail
    // with fixes that do not apply. The one thing to do is to reboot.
    if let (Some(at), check::Reboot::Pending { booted_at: boot, .. }) = (applied_at, &f.reboot) {
        let msg = format!(
                "reboot pending: {source} was made after this boot (the kernel booted at {boot}, the apply at {at}, seconds since 1970); its changes take effect at the next boot. Reboot, then run `vfioctl verify` again."
            );
        match args.format {
            Format::Json => output::print_json(&VerifyJson {
                live: f.live,
                source,
                reboot_pending: true,
                checks: &[],
                summary: summary(&[]),
            })?,
            Format::Text => output::print(&format!("{msg}\n"))?,
        }
        return Ok(Exit::Finding);
    }
    let inv = host.pci()?;
    if args.devices.is_empty() {
        // (with devices named, the plan printed them already)
        for w in &inv.warnings {
            eprintln_safe!("vfioctl: warning: {w}");
        }
    }
    let vfio_groups: Option<BTreeSet<u32>> = match root.list("/dev/vfio") {
        Ok(names) => Some(names.iter().filter_map(|n| n.parse().ok()).collect()),
        Err(e) if e.is_not_found() => Some(BTreeSet::new()),
        Err(_) => None,
    };
    let regenerate = host.boot().initramfs.as_ref().map(|i| i.regenerate().join(" "));
    let mut checks = verify::verify(
        &expect,
        &VerifyFacts {
            running: f.cmdline.as_ref(),
            next_boot: f.next_boot.as_ref().map(|n| (n.source.as_str(), &n.cmdline)),
            devices: &inv.devices,
            modules_loaded: f.modules_loaded.as_ref(),
            modules_builtin: f.modules_builtin.as_ref(),
            hugepages: &f.hugepages,
            vfio_groups: vfio_groups.as_ref(),
            modprobe: &f.modprobe,
            regenerate: regenerate.as_deref(),
        },
    );
    // Whether the host rebooted since the apply cannot be told: the failures below may
    // only mean that it did not.
    if let (Some(_), check::Reboot::Unknown { .. }) = (applied_at, &f.reboot) {
        checks.insert(
            0,
            Check {
                id: "verify.reboot".into(),
                area: "BOOT",
                title: "the host rebooted since the apply".into(),
                status: check::Status::Warn,
                message: f.reboot.describe().unwrap_or_default(),
                remedy: Some(
                    "if the host has not rebooted since the apply, the failures below are expected: reboot, then run `vfioctl verify` again".into(),
                ),
            },
        );
    }
    // Unknown is not verified: what the host says and cannot be read fails.
    let mut all: Vec<String> = host.boot().problem.iter().map(|p| format!("the boot configuration: {p}")).collect();
    for u in unknown {
        if !all.contains(&u) {
            all.push(u);
        }
    }
    for u in all {
        checks.push(Check {
            id: "verify.unknown".into(),
            area: "UNKNOWN",
            title: "that what decides this verdict can be read".into(),
            status: check::Status::Fail,
            message: u,
            remedy: Some(
                "make the file readable (run as root) or fix it; until then this host cannot be verified".into(),
            ),
        });
    }
    match args.format {
        Format::Json => output::print_json(&VerifyJson {
            live: f.live,
            source,
            reboot_pending: false,
            checks: &checks,
            summary: summary(&checks),
        })?,
        Format::Text => output::print(&format!("Verifying {source}.\n{}", render_text(&checks, f.live)))?,
    }
    Ok(if check::any_failed(&checks) { Exit::Finding } else { Exit::Ok })
}
