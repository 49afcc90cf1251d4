//! `vfioctl plan DEVICE… [--vcpus N] [--memory SIZE] [--hugepages …] [--force]`.

use vfioctl_core::plan::Plan;
use vfioctl_core::units;
use vfioctl_host::host::Host;

use crate::cli::{Format, PlanArgs};
use crate::error::{CliError, Exit};
use crate::{ops, output};

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
    if !p.vfio_addresses.is_empty() {
        out.push_str(&format!("  vfio-pci by address (driver_override): {}\n", p.vfio_addresses.join(", ")));
    }
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
            if h.reserve_at_boot { "reserved at boot" } else { "allocated after boot" }
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
    for f in p.modprobe.iter().chain(&p.udev_rules) {
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

pub fn run(host: &Host, args: &PlanArgs) -> Result<Exit, CliError> {
    let p = ops::plan(host, &args.request()?)?;
    match args.format {
        Format::Json => output::print_json(&p)?,
        Format::Text => output::print(&render_text(&p))?,
    }
    Ok(Exit::Ok)
}
