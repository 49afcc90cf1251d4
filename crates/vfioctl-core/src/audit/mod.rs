//! Linting an existing libvirt domain against the host it runs on.
//!
//! [`audit`] reads a domain (a lossless [`Document`], so every finding carries the line
//! and column of its element) together with what the host says about itself
//! ([`AuditHost`]) and returns [`Finding`]s: each with a stable id, a severity, what is
//! wrong, why it matters and the fix as an XML snippet. Every rule is declared once, as a
//! [`Rule`] listed in [`RULES`]. The rules are the knowledge the planner and renderer use
//! (one source of truth for what a good domain is): the enlightenment dependencies of [`crate::domain::hyperv`], the pinning rules of
//! [`crate::plan::pinning`], the device rules of [`crate::plan::devices`].
//!
//! Areas, each in its own file: [`hyperv`], [`clock`], [`cpu`], [`memory`], [`devices`],
//! [`security`].

pub mod clock;
pub mod cpu;
mod cx;
pub mod devices;
pub mod hyperv;
pub mod memory;
pub mod security;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use serde::Serialize;

use crate::check::HugepagePool;
use crate::iommu::IommuGroup;
use crate::pci::{PciAddress, PciDevice};
use crate::topology::Topology;
use crate::vendor::CpuVendor;
use crate::xml::{Document, Element};

pub use cx::{Cx, Hostdev, Pins};

/// How bad a finding is. Exit status 1 for warnings and errors.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// The domain will not start, or will not work as meant.
    Error,
    /// It works, but worse than it could (stutter, idle CPU burn, lost performance).
    Warning,
    /// Worth knowing; nothing to fix necessarily.
    Info,
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        })
    }
}

/// The part of the domain a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Area {
    Hyperv,
    Clock,
    Cpu,
    Memory,
    Devices,
    Security,
}

impl Area {
    pub fn title(self) -> &'static str {
        match self {
            Area::Hyperv => "Hyper-V enlightenments",
            Area::Clock => "Clock and timers",
            Area::Cpu => "CPU and pinning",
            Area::Memory => "Memory",
            Area::Devices => "Devices",
            Area::Security => "Security",
        }
    }
}

/// One audit rule, declared once in its area's file: the stable id, how bad a finding of
/// it is, the area and a one-line title. Findings are made from it ([`Finding::at`]), so
/// the id and severity are written nowhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    pub id: &'static str,
    pub severity: Severity,
    pub area: Area,
    pub title: &'static str,
}

/// One thing wrong or missed in the domain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// Stable id, e.g. `hyperv-synic-without-vpindex`.
    pub id: &'static str,
    pub severity: Severity,
    pub area: Area,
    /// The element, as a path from the domain (`features/hyperv/synic`).
    pub element: String,
    /// Where that element is in the file (1-based); `None` when it is missing altogether
    /// (then the line of the closest parent).
    pub line: Option<u32>,
    pub column: Option<u32>,
    /// What is wrong.
    pub message: String,
    /// Why it matters.
    pub why: String,
    /// The fix, as an XML snippet (or a host command where the fix is on the host).
    pub fix: String,
}

impl Finding {
    /// A finding of `rule` at `at` (an element of the domain, or its closest existing
    /// parent): its id, severity and area are the rule's.
    pub fn at(rule: &Rule, element: &str, at: Option<&Element>) -> Finding {
        Finding {
            id: rule.id,
            severity: rule.severity,
            area: rule.area,
            element: element.to_string(),
            line: at.map(|e| e.line).filter(|l| *l > 0),
            column: at.map(|e| e.column).filter(|c| *c > 0),
            message: String::new(),
            why: String::new(),
            fix: String::new(),
        }
    }

    pub fn message(mut self, m: impl Into<String>) -> Self {
        self.message = m.into();
        self
    }

    pub fn why(mut self, m: impl Into<String>) -> Self {
        self.why = m.into();
        self
    }

    pub fn fix(mut self, m: impl Into<String>) -> Self {
        self.fix = m.into();
        self
    }
}

/// What the audit needs to know about the host.
#[derive(Debug, Clone, Copy)]
pub struct AuditHost<'a> {
    pub vendor: CpuVendor,
    pub topology: &'a Topology,
    pub devices: &'a BTreeMap<PciAddress, PciDevice>,
    pub groups: &'a [IommuGroup],
    pub hugepages: &'a [HugepagePool],
    /// libvirt's version (major, minor), when known.
    pub libvirt: Option<(u32, u32)>,
    /// `/etc/libvirt/qemu.conf`, when readable (empty when absent).
    pub qemu_conf: Option<&'a str>,
    /// Names in `/dev/input/by-id`, when that could be read.
    pub input_by_id: Option<&'a BTreeSet<String>>,
    /// `/dev` paths of block devices the host uses, and what uses them (`None`: unknown).
    pub host_disks: Option<&'a BTreeMap<String, String>>,
    /// PCI controllers holding what the host's disks are used for, with that use (`None`:
    /// not known).
    pub host_controllers: Option<&'a BTreeMap<PciAddress, String>>,
    /// The files the domain names for QEMU to read (`<rom file>`), as the host has them
    /// (`None`: not looked at).
    pub files: Option<&'a BTreeMap<String, HostFile>>,
}

/// A file the domain names, as the host has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HostFile {
    Missing,
    /// It is there but cannot be read; why.
    Unreadable(String),
    /// Read; `rom` when it starts with a PCI option ROM's signature (`55 AA`).
    Present {
        rom: bool,
    },
}

/// The paths of the files the domain names for QEMU to read: each `<rom file>`.
pub fn named_files(doc: &Document) -> Vec<String> {
    let mut out: Vec<String> = doc
        .root
        .find("devices")
        .into_iter()
        .flat_map(|d| d.elements())
        .filter_map(|e| e.child("rom").and_then(|r| r.attr("file")))
        .filter(|f| !f.is_empty())
        .map(String::from)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Audits a domain. Findings come sorted by area, then severity, then line.
pub fn audit(doc: &Document, host: &AuditHost<'_>) -> Vec<Finding> {
    let cx = Cx::new(&doc.root, host);
    let mut out = Vec::new();
    hyperv::check(&cx, &mut out);
    clock::check(&cx, &mut out);
    cpu::check(&cx, &mut out);
    memory::check(&cx, &mut out);
    devices::check(&cx, &mut out);
    security::check(&cx, &mut out);
    out.sort_by(|a, b| (a.area, a.severity, a.line, a.id).cmp(&(b.area, b.severity, b.line, b.id)));
    out
}

/// Every rule, area by area: the catalogue README lists.
pub const RULES: &[Rule] = &[
    hyperv::MISSING,
    hyperv::DEPENDENCY,
    hyperv::STIMER_WITHOUT_HYPERVCLOCK,
    hyperv::VENDOR_ID_TOO_LONG,
    hyperv::SPINLOCKS_LOW,
    hyperv::MISPLACED,
    clock::HPET,
    clock::NO_HYPERVCLOCK,
    clock::RTC_TICKPOLICY,
    clock::PIT_TICKPOLICY,
    cpu::MODE_NOT_PASSTHROUGH,
    cpu::NO_TOPOLOGY,
    cpu::TOPOLOGY_MISMATCH,
    cpu::THREADS_EXCEED_HOST,
    cpu::AMD_NO_TOPOEXT,
    cpu::PIN_BAD_CPUSET,
    cpu::VCPUPIN_NO_SUCH_VCPU,
    cpu::UNPINNED,
    cpu::VCPU_FLOATING,
    cpu::VCPUS_SHARE_CPU,
    cpu::EFFICIENCY_CORES,
    cpu::VCPU_ON_CPU0,
    cpu::SMT_SIBLINGS,
    cpu::NUMA_SPREAD,
    cpu::L3_SPREAD,
    cpu::NUMA_AWAY_FROM_DEVICE,
    cpu::NO_EMULATORPIN,
    cpu::EMULATORPIN_OVERLAP,
    cpu::NO_IOTHREADPIN,
    cpu::IOTHREADPIN_OVERLAP,
    cpu::commandline::COMMANDLINE_OVERRIDE,
    cpu::iothreads::IOTHREADS_DISAGREE,
    memory::HUGEPAGES_MISSING,
    memory::HUGEPAGES_TOO_FEW,
    memory::NUMA_FAR_FROM_DEVICES,
    memory::BALLOON_WITH_HOSTDEV,
    devices::NOT_ON_HOST,
    devices::GROUP_MEMBER_NOT_VFIO,
    devices::STALE_HOSTDEV,
    devices::GPU_LEGACY_BOOT,
    devices::GPU_I440FX,
    devices::IVSHMEM_TOO_SMALL,
    devices::ROM_MISSING,
    devices::ROM_SUSPECT,
    devices::DISK_HOST_IN_USE,
    devices::SLOT_INCOMPLETE,
    devices::UNMANAGED_NOT_VFIO,
    devices::FUNCTIONS_SPLIT,
    devices::MULTIFUNCTION_MISSING,
    devices::EVDEV_MISSING,
    devices::EVDEV_NOT_IN_ACL,
    devices::EVDEV_NATIVE_UNSUPPORTED,
    devices::EVDEV_COMMANDLINE,
    security::QEMU_ROOT,
    security::CAPABILITIES_KEPT,
];

#[cfg(test)]
pub(crate) mod tests;
