//! The kernel command line, now and at the next boot: the IOMMU on, `iommu=pt`,
//! interrupt remapping, and whether the next boot keeps what the running kernel has.

use std::collections::BTreeSet;

use super::{param_bool, Check, Facts, Rule, Status};
use crate::cmdline::Cmdline;
use crate::vendor::CpuVendor;

pub const IOMMU: Rule =
    Rule { id: "cmdline.iommu", area: "BOOT", title: "kernel command line enables the IOMMU", level: Status::Fail };
pub const IOMMU_PT: Rule =
    Rule { id: "cmdline.iommu_pt", area: "BOOT", title: "kernel command line has iommu=pt", level: Status::Warn };
/// Fails when remapping is off; only warns when unsafe interrupts are allowed.
pub const INTREMAP: Rule =
    Rule { id: "cmdline.intremap", area: "BOOT", title: "interrupt remapping is not disabled", level: Status::Fail };
pub const NEXT_BOOT: Rule = Rule {
    id: "cmdline.next_boot",
    area: "BOOT",
    title: "next boot keeps the running kernel's passthrough parameters",
    level: Status::Warn,
};

/// Given only when an apply is in effect and the host may not have rebooted since.
pub const REBOOT: Rule =
    Rule { id: "boot.reboot", area: "BOOT", title: "no apply waits for a reboot", level: Status::Warn };

pub(super) fn run(f: &Facts, out: &mut Vec<Check>) {
    match (&f.reboot, f.reboot.describe()) {
        (super::Reboot::Pending { .. }, Some(d)) => {
            out.push(REBOOT.unmet(d, "reboot, then run `vfioctl verify`"));
        }
        (super::Reboot::Unknown { .. }, Some(d)) => out.push(REBOOT.note(d)),
        _ => {}
    }
    let Some(c) = &f.cmdline else {
        out.push(IOMMU.note("/proc/cmdline could not be read"));
        return;
    };
    out.push(iommu(f, c));
    out.push(iommu_pt(c));
    out.push(intremap(f, c));
    out.push(next_boot(f, c));
}

/// Parameters that matter for passthrough, compared between now and the next boot.
fn relevant(name: &str) -> bool {
    let n = name.replace('-', "_");
    const EXACT: &[&str] = &[
        "iommu",
        "intel_iommu",
        "amd_iommu",
        "amd_iommu_intr",
        "intremap",
        "video",
        "hugepages",
        "hugepagesz",
        "default_hugepagesz",
        "transparent_hugepage",
        "isolcpus",
        "nohz_full",
        "rcu_nocbs",
        "irqaffinity",
        "pcie_acs_override",
        "initcall_blacklist",
        "modprobe.blacklist",
        "module_blacklist",
        "rd.driver.pre",
        "rd.driver.blacklist",
        "rd.modules_load",
        "nomodeset",
        "kvm.ignore_msrs",
        "efifb",
        "pci",
    ];
    const PREFIX: &[&str] = &["vfio", "kvm.", "kvm_amd.", "kvm_intel.", "iommu."];
    EXACT.contains(&n.as_str()) || PREFIX.iter().any(|p| n.starts_with(p))
}

fn relevant_params(c: &Cmdline) -> BTreeSet<String> {
    c.params.iter().filter(|p| relevant(&p.name)).map(|p| p.to_string().replace('-', "_")).collect()
}

fn iommu(f: &Facts, c: &Cmdline) -> Check {
    let param = f.vendor.iommu_parameter();
    let off: Vec<String> = c
        .params
        .iter()
        .filter(|p| {
            (p.name_is("iommu") || p.name_is("intel_iommu") || p.name_is("amd_iommu"))
                && p.value.as_deref().is_some_and(|v| v.split(',').any(|x| x == "off"))
        })
        .map(|p| p.to_string())
        .collect();
    let groups = f.iommu_groups.unwrap_or(0);
    if !off.is_empty() {
        IOMMU.unmet(
            format!("the kernel was told to turn the IOMMU off: {}", off.join(" ")),
            format!("remove {} from the kernel command line and reboot", off.join(" ")),
        )
    } else if groups > 0 {
        let how = if c.has_value("intel_iommu", "on") || c.has_value("amd_iommu", "on") {
            format!("{} on the command line", if c.has("intel_iommu") { "intel_iommu=on" } else { "amd_iommu=on" })
        } else {
            "enabled by default".to_string()
        };
        IOMMU.pass(format!("{groups} IOMMU groups ({how})"))
    } else {
        let firmware = match f.vendor {
            CpuVendor::Intel => !f.acpi_dmar,
            _ => !f.acpi_ivrs,
        };
        let remedy = if firmware {
            format!(
                "{}: the firmware publishes no IOMMU (no ACPI {} table){}",
                f.vendor.enable_iommu(f.virtual_machine.as_deref()),
                if f.vendor == CpuVendor::Intel { "DMAR" } else { "IVRS" },
                if f.vendor == CpuVendor::Intel && !c.has_value("intel_iommu", "on") {
                    "; then add intel_iommu=on to the kernel command line"
                } else {
                    ""
                }
            )
        } else if f.vendor == CpuVendor::Intel && !c.has_value("intel_iommu", "on") {
            "add intel_iommu=on iommu=pt to the kernel command line (GRUB_CMDLINE_LINUX_DEFAULT in /etc/default/grub, then update-grub) and reboot".to_string()
        } else {
            format!("the kernel created no IOMMU groups although {param} rules are met: check the kernel log (dmesg | grep -i -e DMAR -e IOMMU -e AMD-Vi)")
        };
        IOMMU.unmet("no IOMMU groups: devices cannot be passed through", remedy)
    }
}

fn iommu_pt(c: &Cmdline) -> Check {
    if c.has_value("iommu", "pt") {
        IOMMU_PT.pass("")
    } else {
        IOMMU_PT.unmet(
            "without iommu=pt the host's own devices go through IOMMU translation too (slower host DMA)",
            "add iommu=pt to the kernel command line",
        )
    }
}

fn intremap(f: &Facts, c: &Cmdline) -> Check {
    let ir_off: Vec<String> = c
        .params
        .iter()
        .filter(|p| {
            (p.name_is("intremap") && p.value.as_deref() == Some("off"))
                || p.name_is("nointremap")
                || (p.name_is("intel_iommu") && p.value.as_deref().is_some_and(|v| v.contains("nointremap")))
                || (p.name_is("amd_iommu_intr") && p.value.as_deref() == Some("legacy"))
        })
        .map(|p| p.to_string())
        .collect();
    let unsafe_irq = f.param("vfio_iommu_type1", "allow_unsafe_interrupts").and_then(param_bool).unwrap_or(false)
        || f.modprobe.option("vfio_iommu_type1", "allow_unsafe_interrupts").and_then(param_bool).unwrap_or(false)
        || c.value("vfio_iommu_type1.allow_unsafe_interrupts").and_then(param_bool).unwrap_or(false);
    if !ir_off.is_empty() {
        INTREMAP.unmet(
            format!(
                "interrupt remapping is turned off ({}): vfio refuses devices unless unsafe interrupts are allowed",
                ir_off.join(" ")
            ),
            format!("remove {} from the kernel command line", ir_off.join(" ")),
        )
    } else if unsafe_irq {
        INTREMAP.verdict(
            Status::Warn,
            "vfio_iommu_type1 allow_unsafe_interrupts is on: a guest could inject interrupts into the host",
            Some("remove allow_unsafe_interrupts=1 (modprobe.d or kernel command line) unless this platform lacks interrupt remapping".into()),
        )
    } else {
        INTREMAP.pass("")
    }
}

fn next_boot(f: &Facts, c: &Cmdline) -> Check {
    if let Some(problem) = &f.next_boot_problem {
        // Unknown is not "nothing": a file that decides the next boot says nothing we can read.
        return NEXT_BOOT.verdict(
            Status::Fail,
            format!("what the next boot passes the kernel is unknown: {problem}"),
            Some("make the file readable and valid (restore it from a backup, or fix the line named); vfioctl plan and apply refuse until then".to_string()),
        );
    }
    match &f.next_boot {
        None => NEXT_BOOT.note(
            "no boot loader configuration found (/etc/default/grub, /etc/kernel/cmdline, systemd-boot entries, refind_linux.conf, kernelstub)",
        ),
        Some(nb) => {
            let now = relevant_params(c);
            let next = relevant_params(&nb.cmdline);
            let pending: Vec<&String> = next.difference(&now).collect();
            let lost: Vec<&String> = now.difference(&next).collect();
            if pending.is_empty() && lost.is_empty() {
                NEXT_BOOT.pass(format!("{} matches the running kernel", nb.source))
            } else {
                let mut msg = Vec::new();
                if !pending.is_empty() {
                    msg.push(format!("in {} but not active yet: {}", nb.source, join(&pending)));
                }
                if !lost.is_empty() {
                    msg.push(format!("active now but missing from {}: {}", nb.source, join(&lost)));
                }
                let mut fix = Vec::new();
                if !pending.is_empty() {
                    fix.push(format!(
                        "reboot to apply {}{}",
                        join(&pending),
                        if nb.source.contains("grub") { " (after update-grub / grub-mkconfig -o /boot/grub/grub.cfg)" } else { "" }
                    ));
                }
                if !lost.is_empty() {
                    fix.push(format!("add {} to {} or they are gone after the next reboot", join(&lost), nb.source));
                }
                NEXT_BOOT.unmet(msg.join("; "), fix.join("; "))
            }
        }
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}
