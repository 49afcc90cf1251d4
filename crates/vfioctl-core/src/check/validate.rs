//! The checks of `virt-host-validate qemu` (libvirt's tools/virt-host-validate-qemu.c),
//! with its conditions, order, levels and messages, so both give the same verdict on the
//! same machine.

use super::{Check, Facts, Rule, Status, SNAPSHOT};
use crate::vendor::CpuVendor;

pub const CPU_VIRTUALIZATION: Rule =
    Rule { id: "cpu.virtualization", area: "QEMU", title: "for hardware virtualization", level: Status::Fail };
pub const KVM_DEVICE: Rule =
    Rule { id: "kvm.device", area: "QEMU", title: "if device /dev/kvm exists", level: Status::Fail };
pub const KVM_ACCESS: Rule =
    Rule { id: "kvm.access", area: "QEMU", title: "if device /dev/kvm is accessible", level: Status::Fail };
pub const NET_VHOST: Rule =
    Rule { id: "net.vhost", area: "QEMU", title: "if device /dev/vhost-net exists", level: Status::Warn };
pub const NET_TUN: Rule =
    Rule { id: "net.tun", area: "QEMU", title: "if device /dev/net/tun exists", level: Status::Fail };
pub const CGROUP: Rule = Rule {
    id: "cgroup.<controller>",
    area: "QEMU",
    title: "for cgroup '<controller>' controller support",
    level: Status::Warn,
};
pub const IOMMU_ACPI: Rule =
    Rule { id: "iommu.acpi", area: "QEMU", title: "for device assignment IOMMU support", level: Status::Warn };
pub const IOMMU_KERNEL: Rule =
    Rule { id: "iommu.kernel", area: "QEMU", title: "if IOMMU is enabled by kernel", level: Status::Warn };

/// The cgroup controllers virt-host-validate asks for, in its order.
const CONTROLLERS: &[&str] = &["cpu", "cpuacct", "cpuset", "memory", "devices", "blkio"];

fn has_hw_virt(f: &Facts) -> bool {
    f.flag("svm") || f.flag("vmx")
}

pub(super) fn run(f: &Facts, out: &mut Vec<Check>) {
    out.push(cpu_virtualization(f));
    if has_hw_virt(f) {
        out.extend(kvm_device(f));
    }
    out.push(device_node(
        &NET_VHOST,
        f.nodes.vhost_net,
        "Load the 'vhost_net' module to improve performance of virtio networking",
        "modprobe vhost_net; to load it at every boot: echo vhost_net > /etc/modules-load.d/vhost_net.conf",
    ));
    out.push(device_node(
        &NET_TUN,
        f.nodes.tun,
        "Load the 'tun' module to enable networking for QEMU guests",
        "modprobe tun",
    ));
    out.extend(CONTROLLERS.iter().map(|c| cgroup(f, c)));
    out.extend(iommu(f));
}

fn cpu_virtualization(f: &Facts) -> Check {
    if f.cpu_flags.is_none() {
        CPU_VIRTUALIZATION.note("/proc/cpuinfo could not be read")
    } else if has_hw_virt(f) {
        CPU_VIRTUALIZATION.pass(if f.flag("svm") { "AMD-V (svm)" } else { "VT-x (vmx)" })
    } else {
        CPU_VIRTUALIZATION.unmet(
            "Only emulated CPUs are available, performance will be significantly limited (no svm or vmx flag in /proc/cpuinfo)",
            format!(
                "enable {} in the firmware (BIOS/UEFI) setup; inside a VM, enable nested virtualization on its host",
                match f.vendor {
                    CpuVendor::Amd => "SVM (AMD-V)",
                    CpuVendor::Intel => "VT-x",
                    CpuVendor::Other => "hardware virtualization (SVM or VT-x)",
                }
            ),
        )
    }
}

/// `kvm.device`, and `kvm.access` once the device exists.
fn kvm_device(f: &Facts) -> Vec<Check> {
    let module = f.vendor.kvm_module().unwrap_or("kvm_amd or kvm_intel");
    match f.nodes.kvm_exists {
        None => vec![KVM_DEVICE.note(SNAPSHOT)],
        Some(false) => vec![KVM_DEVICE.unmet(
            "Check that the 'kvm-intel' or 'kvm-amd' modules are loaded & the BIOS has enabled virtualization",
            format!("modprobe {module}; if that fails, virtualization is disabled in the firmware setup"),
        )],
        Some(true) => vec![KVM_DEVICE.pass(""), kvm_access(f)],
    }
}

fn kvm_access(f: &Facts) -> Check {
    match f.nodes.kvm_accessible {
        None => KVM_ACCESS.note(SNAPSHOT),
        Some(true) => KVM_ACCESS.pass(""),
        Some(false) => KVM_ACCESS.unmet(
            "Check /dev/kvm is world writable or you are in a group that is allowed to access it",
            "add yourself to the kvm group (usermod -aG kvm $USER, then log in again), or run vfioctl as root",
        ),
    }
}

/// A device node QEMU's networking wants.
fn device_node(rule: &Rule, state: Option<bool>, msg: &str, fix: &str) -> Check {
    match state {
        None => rule.note(SNAPSHOT),
        Some(true) => rule.pass(""),
        Some(false) => rule.unmet(msg, fix),
    }
}

fn cgroup(f: &Facts, c: &str) -> Check {
    let rule = CGROUP.on(c);
    match &f.cgroup_controllers {
        None => rule.note("cgroup mounts unknown (no /proc/self/mountinfo)"),
        Some(set) if set.contains(c) => rule.pass(""),
        Some(_) => rule.unmet(
            format!("Enable '{c}' in kernel Kconfig file or mount/enable cgroup controller in your system"),
            format!("enable the '{c}' cgroup controller (kernel config, or cgroup mounts of your init system)"),
        ),
    }
}

/// `iommu.acpi`, and `iommu.kernel` once the firmware table is there.
fn iommu(f: &Facts) -> Vec<Check> {
    let (table, bootarg) = if f.flag("vmx") {
        (Some(("DMAR", f.acpi_dmar)), "intel_iommu=on")
    } else if f.flag("svm") {
        (Some(("IVRS", f.acpi_ivrs)), "iommu=pt iommu=1")
    } else {
        (None, "")
    };
    match table {
        None => vec![IOMMU_ACPI.verdict(Status::Warn, "Unknown if this platform has IOMMU support", None)],
        Some((name, false)) => vec![IOMMU_ACPI.unmet(
            format!(
                "No ACPI {name} table found, IOMMU either disabled in BIOS or not supported by this hardware platform"
            ),
            f.vendor.enable_iommu(f.virtual_machine.as_deref()),
        )],
        Some((name, true)) => {
            let mut out = vec![IOMMU_ACPI.pass(format!("ACPI {name} table present"))];
            out.extend(iommu_kernel(f, bootarg));
            out
        }
    }
}

fn iommu_kernel(f: &Facts, bootarg: &str) -> Option<Check> {
    let groups = f.iommu_groups?;
    Some(if groups == 0 {
        IOMMU_KERNEL.unmet(
            format!("IOMMU appears to be disabled in kernel. Add {bootarg} to kernel cmdline arguments"),
            format!("add {} to the kernel command line and reboot", f.vendor.iommu_parameter()),
        )
    } else {
        IOMMU_KERNEL.pass(format!("{groups} IOMMU groups"))
    })
}
