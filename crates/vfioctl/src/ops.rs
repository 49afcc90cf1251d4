//! The operations between the commands and the libraries. A command (`cmd/*.rs`) parses
//! its arguments, calls operations here on the one [`Host`] of the run, and prints; it never
//! reaches into another command. Each operation is the one place that joins the host's
//! model with a pure part of `vfioctl-core`.

use std::collections::BTreeSet;

use vfioctl_core::check::Program;
use vfioctl_core::domain::{DomainHost, GuestOs};
use vfioctl_core::kmod;
use vfioctl_core::looking_glass::{Backing, LookingGlass};
use vfioctl_core::plan::{self, Plan, PlanHost, Request};
use vfioctl_host::apply::changes::{self, Prepared};
use vfioctl_host::firmware;
use vfioctl_host::host::Host;
use vfioctl_host::root::HostRoot;

use crate::error::CliError;

/// libvirt's system connection, the default of `--connect`.
pub const DEFAULT_URI: &str = "qemu:///system";

/// The plan for a request, from the host's one read. Warnings about the PCI and CPU files
/// are printed once, here.
pub fn plan(host: &Host, req: &Request) -> Result<Plan, CliError> {
    let inv = host.pci()?;
    let (topology, cpu_warnings) = host.topology()?;
    for w in inv.warnings.iter().chain(cpu_warnings) {
        eprintln_safe!("vfioctl: warning: {w}");
    }
    let f = host.file_facts();
    // Unknown is not safe: the CPU topology places the vCPUs, the CPU vendor names the
    // IOMMU parameter, the boot files say what the next boot has.
    // A file of a node or a CPU that could not be read or understood; a reading the CPU
    // reader settled itself (L3 domains numbered by first CPU, named by the directory) is
    // not one.
    let mut unknown: Vec<(String, String)> = cpu_warnings
        .iter()
        .filter(|w| {
            let p = w.path.display().to_string();
            p.starts_with("/sys/devices/system/node/")
                || p.strip_prefix("/sys/devices/system/cpu/cpu")
                    .is_some_and(|r| r.starts_with(|c: char| c.is_ascii_digit()))
                || p == "/proc/cpuinfo"
        })
        .map(|w| (w.path.display().to_string(), w.message.clone()))
        .collect();
    if f.vendor == vfioctl_core::vendor::CpuVendor::Other {
        unknown.push((
            "/proc/cpuinfo".into(),
            "no vendor_id line of AMD or Intel: which IOMMU parameter the host needs is unknown".into(),
        ));
    }
    if let Some(problem) = &host.boot().problem {
        unknown.push(("the boot configuration".into(), problem.clone()));
    }
    // The running kernel's version decides modules (vfio_virqfd, vfio_pci_core) and the
    // per-node hugepages syntax.
    match host.root().read_optional("/proc/sys/kernel/osrelease") {
        Err(e) => unknown.push(("/proc/sys/kernel/osrelease".into(), e.to_string())),
        Ok(Some(t)) if kmod::kernel_version(t.trim()).is_none() => unknown.push((
            "/proc/sys/kernel/osrelease".into(),
            format!("`{}` is not a kernel release: which modules this kernel needs is unknown", t.trim()),
        )),
        Ok(_) => {}
    }
    // The hugepages sysctl reserves at boot count against the host's memory.
    let sysctl_hugepages = match vfioctl_host::boot::sysctl_hugepages(host.root()) {
        Ok(s) => s.map(|(p, n)| (p.display().to_string(), n)),
        Err(e) => {
            unknown.push((
                e.path().display().to_string(),
                format!("{e}: which hugepages sysctl reserves at boot is unknown"),
            ));
            None
        }
    };
    if let Some((path, message)) = unknown.first() {
        if !req.force {
            return Err(CliError::Unreadable { path: path.clone(), message: message.clone() });
        }
    }
    let flags: BTreeSet<String> = f.cpu_flags.clone().unwrap_or_default();
    // `/proc/version` names the kernel's build (linux-zen, pve): whether it has the ACS
    // override patch. Read only when the plan needs it.
    let kernel_version_text = if req.acs_override {
        host.root().read_optional("/proc/version").ok().flatten().map(|t| t.trim().to_string())
    } else {
        None
    };
    let next = f.next_boot.as_ref().map(|n| (n.source.as_str(), &n.cmdline));
    let plan_host = PlanHost {
        devices: &inv.devices,
        groups: &inv.groups,
        topology,
        vendor: f.vendor,
        cpu_flags: &flags,
        kernel: f.kernel_release.as_deref().and_then(kmod::kernel_version),
        running: f.cmdline.as_ref(),
        next_boot: next,
        mounts: host.mounts()?,
        host_modules: host.host_modules()?,
        framebuffers: host.framebuffers()?,
        iommu_on_by_default: match f.vendor {
            vfioctl_core::vendor::CpuVendor::Amd => true,
            _ => vfioctl_host::boot::intel_iommu_on_by_default(host.root()),
        },
        sysctl_hugepages,
        builtin: f.modules_builtin.as_ref(),
        no_install_commands: match host.boot().initramfs {
            Some(vfioctl_host::boot::Initramfs::Booster) => Some(
                "booster's initramfs loads modules without modprobe, so no modprobe.d install command hands the device over there"
                    .into(),
            ),
            _ => None,
        },
        kernel_strings: f.kernel_release.as_deref().map(|r| (r, kernel_version_text.as_deref().unwrap_or(""))),
        modules_available: f.modules_available.as_ref(),
    };
    let mut p = match plan::build(&plan_host, req) {
        Ok(p) => p,
        Err(e) => {
            // A device left out (its files unreadable) may be the one asked for.
            let none = matches!(e, plan::PlanError::Selector(_) | plan::PlanError::NoDevices);
            let left_out =
                inv.warnings.iter().find(|w| w.message.starts_with("device ") && w.message.contains(" left out: "));
            return Err(match left_out {
                Some(w) if none && !req.force => {
                    CliError::Unreadable { path: w.path.display().to_string(), message: w.message.clone() }
                }
                _ => CliError::Plan(e),
            });
        }
    };
    for (path, message) in &unknown {
        p.warnings.push(format!("--force: planned without {path}: {message}"));
    }
    // Unknown is not safe: a file of a passed device's slot or group that could not be read
    // makes the plan a guess (half the card, a member not seen, the wrong NUMA node).
    let passed: Vec<_> = p.devices.iter().map(|d| d.address).collect();
    let problems = inv.problems_for(&passed);
    if let Some(w) = problems.first() {
        if !req.force {
            return Err(CliError::Unreadable { path: w.path.display().to_string(), message: w.message.clone() });
        }
        for w in problems {
            p.warnings.push(format!(
                "--force: planned without {}: {}; you take on a plan that may miss part of the card, a member of its IOMMU group, or its NUMA node",
                w.path.display(),
                w.message
            ));
        }
    }
    Ok(p)
}

/// What the domain depends on besides the plan, from the host's facts (versions from
/// the version tables until a libvirt connection says better).
pub fn domain_host(host: &Host, os: GuestOs) -> DomainHost {
    let f = host.facts();
    DomainHost {
        vendor: f.vendor,
        invtsc: f.invtsc(),
        firmware: firmware::choose(host.root(), &f.ovmf, os == GuestOs::Windows11),
        emulator: f.qemu.as_ref().map(|q| q.path.clone()),
        libvirt: f.libvirt.as_ref().and_then(Program::major_minor),
        qemu: f.qemu.as_ref().and_then(Program::major_minor),
        caps: None,
    }
}

/// `--evdev` as given: `auto` means the keyboard and mouse links of the host.
pub fn evdev_paths(root: &HostRoot, given: &[String]) -> Vec<String> {
    if !given.iter().any(|e| e == "auto") {
        return given.to_vec();
    }
    // `/dev/input/by-id` links ending in -event-kbd and -event-mouse.
    let mut found: Vec<String> = root
        .list("/dev/input/by-id")
        .unwrap_or_default()
        .into_iter()
        .filter(|n| n.ends_with("-event-kbd") || n.ends_with("-event-mouse"))
        .map(|n| format!("/dev/input/by-id/{n}"))
        .collect();
    found.sort();
    found
}

/// Everything `apply` would change for a plan: the boot configuration the host's one
/// detection found, modprobe.d, the initramfs, and for evdev devices on libvirt before 7.4
/// qemu.conf. Each change records what its file held, for the transaction's check.
pub fn prepare_apply(
    host: &Host,
    p: &Plan,
    separate_entry: bool,
    evdev: &[String],
    looking_glass: Option<(&LookingGlass, &str)>,
) -> Result<Prepared, CliError> {
    let mut prepared = changes::prepare(host, p, separate_entry).map_err(CliError::Change)?;
    // libvirt's version decides the qemu.conf change: only asked for when there are devices.
    let libvirt = if evdev.is_empty() { None } else { host.facts().libvirt.as_ref().and_then(Program::major_minor) };
    let mut also = Vec::new();
    if let Some((lg, user)) = looking_glass {
        let (files, notes) =
            changes::looking_glass_files(host.root(), &host.facts().modprobe, lg, user).map_err(CliError::Change)?;
        prepared.changes.files.extend(files);
        prepared.notes.extend(notes);
        if lg.backing == Backing::Kvmfr {
            also.push(vfioctl_core::looking_glass::KVMFR_DEVICE.to_string());
        }
    }
    changes::evdev_acl(host.root(), evdev, libvirt, &also).map_err(CliError::Change)?.add_to(&mut prepared);
    Ok(prepared)
}

/// Where the Looking Glass region lives on this host: kvmfr when asked, or (auto) when the
/// running kernel has the module (loaded, or in its modules.dep), else /dev/shm; a warning
/// when kvmfr is asked for and the kernel lacks it.
pub fn looking_glass_backing(host: &Host, choice: crate::cli::LookingGlassMemory) -> Backing {
    use crate::cli::LookingGlassMemory as M;
    let f = host.facts();
    let has = |set: &Option<BTreeSet<String>>| set.as_ref().is_some_and(|s| s.contains("kvmfr"));
    let kvmfr = has(&f.modules_loaded) || has(&f.modules_available);
    let backing = match choice {
        M::Kvmfr => Backing::Kvmfr,
        M::Shm => Backing::Shm,
        M::Auto if kvmfr => Backing::Kvmfr,
        M::Auto => Backing::Shm,
    };
    if backing == Backing::Kvmfr && !kvmfr {
        eprintln_safe!(
            "vfioctl: warning: the running kernel has no kvmfr module (not loaded, not in modules.dep): build it from Looking Glass's module/ directory (its DKMS package) before the guest starts"
        );
    }
    backing
}

/// The user who runs the Looking Glass client: `--looking-glass-user`, else the one who ran
/// sudo; refused when neither names one, or the name cannot go in a udev rule.
pub fn looking_glass_user(given: Option<&str>) -> Result<String, CliError> {
    let user = match given {
        Some(u) => u.to_string(),
        None => match std::env::var("SUDO_USER") {
            Ok(u) if !u.is_empty() && u != "root" => u,
            _ => {
                return Err(CliError::Usage(
                    "--looking-glass gives the region to the user who runs the Looking Glass client: name it with --looking-glass-user NAME (run through sudo, it is the user who ran sudo)".into(),
                ))
            }
        },
    };
    if !vfioctl_core::looking_glass::user_name_ok(&user) {
        return Err(CliError::Usage(format!(
            "--looking-glass-user {user:?}: a user name has letters, digits, '.', '_' and '-' only (at most 32, not starting with '-')"
        )));
    }
    Ok(user)
}
