//! Host readiness checks: what stands between a host and a working passthrough VM.
//!
//! The checks that `virt-host-validate qemu` makes are made the same way here, so both
//! give the same verdict on the same machine (ids `cpu.virtualization`, `kvm.*`,
//! `net.*`, `cgroup.*`, `iommu.acpi`, `iommu.kernel`); the others go further for
//! passthrough: kernel command line now and at the next boot, VFIO modules, KVM
//! options, hugepages, firmware, QEMU and libvirt, and a named device.
//!
//! Everything here is pure: `vfioctl-host` gathers [`Facts`] and this module judges
//! them. Facts only the live machine has (device nodes, running daemons) are `None` on a
//! snapshot and give a `note` "not checked on a snapshot".

mod boot;
mod device;
mod facts;
mod memory;
mod modules;
mod rule;
mod software;
mod validate;

use std::collections::BTreeMap;

use serde::Serialize;

use crate::iommu::IommuGroup;
use crate::pci::{PciAddress, PciDevice};

pub use facts::{DeviceNodes, Facts, HugepagePool, NextBoot, Program, Reboot};
pub use rule::{gives, Rule, Subject};

/// The verdict of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Note,
    Warn,
    Fail,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Note => "NOTE",
            Status::Warn => "WARN",
            Status::Fail => "FAIL",
        }
    }
}

/// One check: a stable id, what was checked, the verdict, why, and the fix.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub id: String,
    /// Short group label for text output (`KVM`, `IOMMU`, …).
    pub area: &'static str,
    /// What was checked, completing "Checking …".
    pub title: String,
    pub status: Status,
    pub message: String,
    pub remedy: Option<String>,
}

/// A device the user named, with the host's devices and groups around it.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub device: &'a PciDevice,
    pub devices: &'a BTreeMap<PciAddress, PciDevice>,
    pub groups: &'a [IommuGroup],
}

/// `Y`, `y`, `1`, `on` → true; `N`, `0`, `off` → false.
pub fn param_bool(v: &str) -> Option<bool> {
    match v.trim() {
        "Y" | "y" | "1" | "on" | "ON" | "true" => Some(true),
        "N" | "n" | "0" | "off" | "OFF" | "false" => Some(false),
        _ => None,
    }
}

const SNAPSHOT: &str = "not checked on a snapshot";

/// Every rule, in the order the checks run: the catalogue README lists.
pub const RULES: &[Rule] = &[
    validate::CPU_VIRTUALIZATION,
    validate::KVM_DEVICE,
    validate::KVM_ACCESS,
    validate::NET_VHOST,
    validate::NET_TUN,
    validate::CGROUP,
    validate::IOMMU_ACPI,
    validate::IOMMU_KERNEL,
    boot::REBOOT,
    boot::IOMMU,
    boot::IOMMU_PT,
    boot::INTREMAP,
    boot::NEXT_BOOT,
    modules::VFIO_MODULES,
    modules::KVM_MODULE,
    modules::KVM_IGNORE_MSRS,
    modules::KVM_REPORT_IGNORED_MSRS,
    modules::KVM_NPT,
    modules::KVM_AVIC,
    modules::KVM_EPT,
    modules::KVM_NESTED,
    memory::HUGEPAGES,
    memory::HUGEPAGES_NODE,
    software::OVMF,
    software::QEMU_INSTALLED,
    software::LIBVIRT_INSTALLED,
    software::LIBVIRT_REACHABLE,
    device::VFIO,
    device::GROUP,
    device::BOOT_VGA,
    device::FRAMEBUFFER,
    device::RESET,
];

/// Runs every check, family by family.
pub fn run(f: &Facts, target: Option<&Target<'_>>) -> Vec<Check> {
    let mut out = Vec::new();
    validate::run(f, &mut out);
    boot::run(f, &mut out);
    modules::run(f, &mut out);
    memory::run(f, &mut out);
    software::run(f, &mut out);
    if let Some(t) = target {
        device::run(f, t, &mut out);
    }
    out
}

/// The process exit status for a list of checks: 1 when any failed.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

#[cfg(test)]
mod tests;
