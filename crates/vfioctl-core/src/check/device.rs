//! The device the user named: all its functions on vfio-pci, an IOMMU group it can be
//! passed with, not the boot GPU, no boot framebuffer in its memory, a reset method.

use std::collections::BTreeMap;

use super::{Check, Facts, Rule, Status, Target};
use crate::iomem;
use crate::iommu;
use crate::kmod;
use crate::pci::{PciAddress, PciDevice};
use crate::reservation::{BootConfig, Needs};

pub const VFIO: Rule = Rule {
    id: "device.vfio",
    area: "DEVICE",
    title: "every function of <device> is bound to vfio-pci",
    level: Status::Fail,
};
/// Fails when the group cannot be passed; warns when other devices go along.
pub const GROUP: Rule = Rule {
    id: "device.group",
    area: "DEVICE",
    title: "the IOMMU group of <device> can be passed",
    level: Status::Fail,
};
pub const BOOT_VGA: Rule = Rule {
    id: "device.boot_vga",
    area: "DEVICE",
    title: "<device> does not drive the boot console",
    level: Status::Warn,
};
pub const FRAMEBUFFER: Rule = Rule {
    id: "device.framebuffer",
    area: "DEVICE",
    title: "no boot framebuffer holds <device>'s memory",
    level: Status::Fail,
};
pub const RESET: Rule =
    Rule { id: "device.reset", area: "DEVICE", title: "<device> resets for the next guest boot", level: Status::Warn };

pub(super) fn run(f: &Facts, t: &Target<'_>, out: &mut Vec<Check>) {
    let dev = t.device;
    let name = dev.address.short();
    let functions: Vec<&PciDevice> = t.devices.values().filter(|d| d.address.same_slot(&dev.address)).collect();
    out.push(vfio(f, &name, &functions, t.devices));
    out.push(group(t, &name, &functions));
    out.push(boot_vga(dev, &name));
    out.push(framebuffer(f, &name, &functions));
    out.push(reset(f, dev, &name, t.devices.values()));
}

fn vfio(f: &Facts, name: &str, functions: &[&PciDevice], devices: &BTreeMap<PciAddress, PciDevice>) -> Check {
    let rule = VFIO.on(name);
    let not_vfio: Vec<String> = functions
        .iter()
        .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
        .map(|d| format!("{} ({})", d.address.short(), d.driver.as_deref().unwrap_or("no driver")))
        .collect();
    if not_vfio.is_empty() {
        return rule.pass(format!("{} function(s) on vfio-pci", functions.len()));
    }
    // An apply after this boot reserved them: the reboot is what is missing.
    let pending = f.reboot.pending_expectation().is_some_and(|e| {
        functions
            .iter()
            .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
            .all(|d| e.devices.iter().any(|x| x.address == d.address.to_string()))
    });
    if pending {
        return rule.verdict(
            Status::Warn,
            format!("not on vfio-pci yet: {} (a reboot is pending)", not_vfio.join(", ")),
            Some(format!("reboot: {}; then run `vfioctl verify`", f.reboot.describe().unwrap_or_default())),
        );
    }
    // What the running kernel's command line and modprobe.d lack for vfio-pci to claim
    // every function at boot.
    let kernel = f.kernel_release.as_deref().and_then(kmod::kernel_version);
    let needs = Needs::of_devices(functions, devices, &f.modprobe, kernel);
    let config = BootConfig {
        cmdline: f.cmdline.as_ref(),
        modprobe: &f.modprobe,
        initramfs: f.initramfs_modules.as_ref(),
        builtin: f.modules_builtin.as_ref(),
    };
    let missing = needs.missing(&config);
    let mut steps = Vec::new();
    if !missing.ids.is_empty() {
        let ids: Vec<String> = missing.ids.iter().map(|i| i.to_string()).collect();
        steps.push(format!(
            "add vfio-pci.ids={} to the kernel command line (or `options vfio-pci ids=...` to /etc/modprobe.d/vfio.conf)",
            ids.join(",")
        ));
    }
    if !missing.addresses.is_empty() {
        steps.push(format!(
            "another device of the host has the id of {}, so vfio-pci.ids cannot take only them: bind them by address, with `{}` in /etc/modprobe.d/vfio.conf (and the same before their host drivers; `vfioctl apply` writes these lines)",
            missing.addresses.iter().map(|a| a.short()).collect::<Vec<_>>().join(", "),
            crate::reservation::install_line("vfio_pci", &missing.addresses)
        ));
    }
    if !missing.softdeps.is_empty() {
        let lines: Vec<String> = missing.softdeps.iter().map(|d| format!("softdep {d} pre: vfio-pci")).collect();
        steps.push(format!(
            "make vfio-pci load before {}: add `{}` to /etc/modprobe.d/vfio.conf",
            missing.softdeps.join(", "),
            lines.join("` and `")
        ));
    }
    let early = missing.initramfs.as_ref().filter(|m| !m.is_empty());
    let configured = missing.ids.is_empty() && missing.softdeps.is_empty() && missing.addresses.is_empty();
    if let Some(m) = early.filter(|_| !configured) {
        steps.push(format!("load {} early: add them to the initramfs's modules", m.join(", ")));
    }
    if configured {
        let drivers = needs.drivers.join(", ");
        steps.push(match &missing.initramfs {
            None => format!(
                "vfio-pci's ids or addresses and the softdeps are configured, yet {drivers} bound first: vfio-pci is probably not in the initramfs (add vfio, vfio_iommu_type1 and vfio_pci to its modules), or that driver is built into the kernel"
            ),
            Some(m) if !m.is_empty() => format!(
                "vfio-pci's ids or addresses and the softdeps are configured, yet {drivers} bound first: the initramfs does not load {} (add them to its modules)",
                m.join(", ")
            ),
            Some(_) => format!(
                "vfio-pci's ids or addresses, the softdeps and the initramfs are configured, yet {drivers} bound first: that driver is probably built into the kernel"
            ),
        });
    }
    rule.unmet(
        format!("not on vfio-pci: {}", not_vfio.join(", ")),
        format!("{}; then regenerate the initramfs and reboot (vfioctl plan/apply will do this)", steps.join("; ")),
    )
}

fn group(t: &Target<'_>, name: &str, functions: &[&PciDevice]) -> Check {
    let rule = GROUP.on(name);
    let dev = t.device;
    let Some(g) = dev.iommu_group.and_then(|g| t.groups.iter().find(|x| x.id == g)) else {
        return rule.unmet(format!("{name} is in no IOMMU group"), "enable the IOMMU first (see cmdline.iommu)");
    };
    let a = iommu::assess(g, t.devices);
    let others: Vec<String> = a.endpoints.iter().filter(|e| !e.same_slot(&dev.address)).map(|e| e.short()).collect();
    if a.mixed || !a.passable {
        return rule.unmet(
            format!("group {}: {}", g.id, a.notes.join("; ")),
            format!(
                "move the card to a slot wired to the CPU (see vfioctl list), or enable ACS in the firmware; {}",
                crate::plan::devices::ACS_OVERRIDE_NOTE
            ),
        );
    }
    if !others.is_empty() {
        return rule.verdict(
            Status::Warn,
            format!("group {} also holds {}: they go to the guest too", g.id, others.join(", ")),
            Some("pass them along (vfioctl plan includes them) or move the card to another slot".into()),
        );
    }
    let siblings: Vec<String> = functions
        .iter()
        .filter(|d| d.iommu_group != Some(g.id))
        .map(|d| format!("{} (group {})", d.address.short(), d.iommu_group.map_or("none".into(), |n| n.to_string())))
        .collect();
    rule.pass(if siblings.is_empty() {
        format!("group {} holds only this card", g.id)
    } else {
        format!("group {} is clean; the card's other functions are in other groups: {}", g.id, siblings.join(", "))
    })
}

fn boot_vga(dev: &PciDevice, name: &str) -> Check {
    let rule = BOOT_VGA.on(name);
    match dev.boot_vga {
        Some(true) => rule.unmet(
            format!("{name} is the boot GPU: the host loses its console when it is passed"),
            "pass the other GPU, or set the firmware's primary display to the other card / the iGPU",
        ),
        _ => rule.pass(""),
    }
}

fn framebuffer(f: &Facts, name: &str, functions: &[&PciDevice]) -> Check {
    let rule = FRAMEBUFFER.on(name);
    let Some(regions) = &f.iomem else { return rule.note("/proc/iomem could not be read") };
    let fbs: Vec<String> = functions
        .iter()
        .flat_map(|d| iomem::framebuffers_under(regions, &d.address.to_string()))
        .map(|r| r.name.clone())
        .collect();
    if fbs.is_empty() {
        return rule.pass("");
    }
    let fix = if fbs.iter().any(|n| n == "efifb") {
        "add video=efifb:off to the kernel command line"
    } else if fbs.iter().any(|n| n == "vesafb") {
        "add video=vesafb:off to the kernel command line"
    } else {
        "add initcall_blacklist=sysfb_init to the kernel command line (simpledrm/sysfb, Linux 5.15+)"
    };
    rule.unmet(format!("{} holds part of its memory: vfio-pci cannot claim the BAR", fbs.join(", ")), fix)
}

fn reset<'a>(f: &Facts, dev: &PciDevice, name: &str, devices: impl IntoIterator<Item = &'a PciDevice>) -> Check {
    let rule = RESET.on(name);
    if let Some(r) = crate::pci::reset::risk(dev, devices) {
        let installed = f.modules_available.as_ref().is_some_and(|m| m.contains(crate::pci::reset::VENDOR_RESET));
        let selected = f
            .reboot
            .pending_expectation()
            .is_some_and(|e| e.device_specific_reset.iter().any(|a| *a == dev.address.to_string()));
        if selected {
            return rule.unmet(
                format!("{} (a reboot is pending)", r.message(dev)),
                format!(
                    "reboot: {}, including vendor-reset's reset for this card ({}); then run `vfioctl verify`",
                    f.reboot.describe().unwrap_or_default(),
                    crate::pci::reset::UDEV_RULES
                ),
            );
        }
        return rule.unmet(r.message(dev), r.remedy(dev, installed));
    }
    match &dev.reset_methods {
        None => rule.note("the kernel does not list reset methods (before Linux 5.15)"),
        Some(m) if m.is_empty() => rule.unmet(
            "no reset method: the device may not work again after the guest reboots",
            "for AMD GPUs before Navi 2x, the vendor-reset module adds one",
        ),
        Some(m) => rule.pass(m.join(" ")),
    }
}
