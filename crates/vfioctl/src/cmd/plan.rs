//! `vfioctl plan DEVICE… [--vcpus N] [--memory SIZE] [--hugepages …] [--force]`.

use std::collections::BTreeSet;

use vfioctl_core::check::Facts;
use vfioctl_core::iomem;
use vfioctl_core::kmod;
use vfioctl_core::plan::{self, HugepageChoice, Plan, PlanHost, Request};
use vfioctl_core::selector::Selector;
use vfioctl_core::units;
use vfioctl_host::root::HostRoot;
use vfioctl_host::{cpu, drivers, facts, pci, storage};

use crate::cli::{Format, HugepagesArg, PlanArgs};
use crate::error::{CliError, Exit};
use crate::output;

/// The plan for people: what, then why, then the configuration.
pub fn render_text(p: &Plan) -> String {
    let mut out = String::new();
    out.push_str("Devices for the guest:\n");
    for d in &p.devices {
        out.push_str(&format!(
            "  {}  [{}:{}]  group {}  {}  ({})\n",
            d.address,
            d.vendor_id,
            d.device_id,
            d.iommu_group.map_or("-".into(), |g| g.to_string()),
            d.driver.as_deref().unwrap_or("no driver"),
            d.reason
        ));
    }
    out.push_str(&format!(
        "  vfio-pci ids: {}\n",
        if p.vfio_ids.is_empty() { "none".into() } else { p.vfio_ids.join(",") }
    ));
    let c = &p.cpu;
    out.push_str(&format!(
        "\nCPU: {} = {} × {} on NUMA node {}\n",
        units::count(c.vcpus.into(), "vCPU", "vCPUs"),
        units::count(c.topology.cores.into(), "core", "cores"),
        units::count(c.topology.threads.into(), "thread", "threads"),
        c.node.map_or("?".into(), |n| n.to_string())
    ));
    out.push_str(&format!(
        "  vcpupin: {}\n",
        c.vcpupin.iter().map(|v| format!("{}→{}", v.vcpu, v.cpuset)).collect::<Vec<_>>().join(" ")
    ));
    out.push_str(&format!("  emulatorpin: {}   iothreadpin: {}\n", c.emulatorpin, c.iothreadpin));
    out.push_str(&format!("\nMemory: {} MiB", p.memory.mib));
    match &p.memory.hugepages {
        Some(h) => out.push_str(&format!(
            ", {} of {} on node {}, {}\n",
            units::count(h.count, "hugepage", "hugepages"),
            units::size_text(h.size_kib),
            h.node.map_or("?".into(), |n| n.to_string()),
            if h.reserve_at_boot { "reserved at boot" } else { "allocated when the guest starts" }
        )),
        None => out.push_str(", no hugepages\n"),
    }
    out.push_str(&format!("\nKernel command line ({}):\n", p.cmdline_source));
    let k = &p.kernel_cmdline;
    if k.add.is_empty() && k.remove.is_empty() {
        out.push_str("  nothing to change\n");
    }
    for a in &k.add {
        out.push_str(&format!("  + {a}\n"));
    }
    for r in &k.remove {
        out.push_str(&format!("  - {r}\n"));
    }
    for f in &p.modprobe {
        out.push_str(&format!("\n{}:\n", f.path));
        for l in f.content.lines() {
            out.push_str(&format!("  {l}\n"));
        }
    }
    out.push_str(&format!("\nInitramfs loads early: {}\n", p.initramfs_modules.join(" ")));
    out.push_str("\nWhy:\n");
    for r in &p.reasons {
        out.push_str(&format!("  - {r}\n"));
    }
    if !p.warnings.is_empty() {
        out.push_str("\nWarnings:\n");
        for w in &p.warnings {
            out.push_str(&format!("  ! {w}\n"));
        }
    }
    out
}

fn hugepages(a: HugepagesArg) -> HugepageChoice {
    match a {
        HugepagesArg::Auto => HugepageChoice::Auto,
        HugepagesArg::TwoM => HugepageChoice::Size2M,
        HugepagesArg::OneG => HugepageChoice::Size1G,
        HugepagesArg::None => HugepageChoice::None,
    }
}

pub fn run(root: &HostRoot, args: &PlanArgs) -> Result<Exit, CliError> {
    let p = build(root, args)?;
    match args.format {
        Format::Json => output::print_json(&p)?,
        Format::Text => output::print(&render_text(&p))?,
    }
    Ok(Exit::Ok)
}

/// Device selectors from the command line.
pub fn selectors(args: &[String]) -> Result<Vec<Selector>, CliError> {
    args.iter().map(|s| s.parse::<Selector>()).collect::<Result<Vec<_>, _>>().map_err(CliError::Selector)
}

/// Reads the host and builds the plan the arguments ask for.
pub fn build(root: &HostRoot, args: &PlanArgs) -> Result<Plan, CliError> {
    let req = Request {
        devices: selectors(&args.devices)?,
        vcpus: args.vcpus,
        memory_mib: args.memory,
        hugepages: hugepages(args.hugepages),
        force: args.force,
    };
    build_request(root, req)
}

/// Reads the host and builds the plan for a request.
pub fn build_request(root: &HostRoot, req: Request) -> Result<Plan, CliError> {
    let inv = pci::read(root)?;
    let (topology, cpu_warnings) = cpu::read(root)?;
    for w in inv.warnings.iter().chain(&cpu_warnings) {
        eprintln!("vfioctl: warning: {w}");
    }
    let f: Facts = facts::gather(root);
    let flags: BTreeSet<String> = f.cpu_flags.clone().unwrap_or_default();
    let mounts = storage::mounts(root);
    let host_modules = drivers::host_modules(root, inv.devices.values());
    let framebuffers = f
        .iomem
        .as_ref()
        .map(|regions| {
            inv.devices
                .keys()
                .filter_map(|a| {
                    let fbs: Vec<String> = iomem::framebuffers_under(regions, &a.to_string())
                        .into_iter()
                        .map(|r| r.name.clone())
                        .collect();
                    (!fbs.is_empty()).then_some((*a, fbs))
                })
                .collect()
        })
        .unwrap_or_default();
    let next = f.next_boot.as_ref().map(|n| (n.source.as_str(), &n.cmdline));
    let host = PlanHost {
        devices: &inv.devices,
        groups: &inv.groups,
        topology: &topology,
        vendor: f.vendor,
        cpu_flags: &flags,
        kernel: f.kernel_release.as_deref().and_then(kmod::kernel_version),
        running: f.cmdline.as_ref(),
        next_boot: next,
        mounts: &mounts,
        host_modules: &host_modules,
        framebuffers: &framebuffers,
    };
    plan::build(&host, &req).map_err(CliError::Plan)
}
