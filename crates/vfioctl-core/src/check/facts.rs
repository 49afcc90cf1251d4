//! What `vfioctl check` judges: [`Facts`] gathered from a host root by `vfioctl-host`,
//! with the programs, boot configuration, hugepage pools and device nodes in it.

use std::collections::{BTreeMap, BTreeSet};

use crate::cmdline::Cmdline;
use crate::iomem::Region;
use crate::modprobe::ModprobeConfig;
use crate::vendor::CpuVendor;

/// A program found on the host, with its version when it could be asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Program {
    pub path: String,
    pub version: Option<String>,
}

impl Program {
    /// The version as (major, minor): `9.0.0` → (9, 0).
    pub fn major_minor(&self) -> Option<(u32, u32)> {
        let mut it = self.version.as_deref()?.split('.');
        Some((it.next()?.parse().ok()?, it.next()?.parse().ok()?))
    }
}

/// The kernel command line configured for the next boot, and where it was found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NextBoot {
    pub source: String,
    pub cmdline: Cmdline,
}

/// One hugepage pool: pages of one size on one NUMA node (node `None`: the whole host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HugepagePool {
    pub node: Option<u32>,
    pub size_kib: u64,
    pub total: u64,
    pub free: u64,
}

/// State of the device nodes QEMU needs; `None` where not checked (snapshots).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceNodes {
    pub kvm_exists: Option<bool>,
    pub kvm_accessible: Option<bool>,
    pub vhost_net: Option<bool>,
    pub tun: Option<bool>,
}

/// Whether the last apply still in effect is waiting for a reboot: made after the running
/// kernel booted, so that nothing it configured for the boot runs yet.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Reboot {
    /// No apply is in effect, or it came before this boot.
    #[default]
    NotPending,
    /// The apply of `journal` (at `applied_at`, seconds since 1970) came after this boot
    /// (`booted_at`); `expect` is what it configured, when its journal records it.
    Pending { journal: String, applied_at: u64, booted_at: u64, expect: Option<Box<crate::verify::Expectation>> },
    /// An apply is in effect and whether the host booted since cannot be read (`reason`).
    Unknown { journal: String, reason: String },
}

impl Reboot {
    /// When the running kernel booted, from `/proc/stat`'s `btime` (seconds since 1970).
    pub fn boot_time(stat: &str) -> Option<u64> {
        stat.lines().find_map(|l| l.strip_prefix("btime ")).and_then(|v| v.trim().parse().ok())
    }

    /// Pending or not, for an apply of `journal` at `applied_at` and a kernel booted at
    /// `booted_at`.
    pub fn judge(journal: &str, applied_at: u64, booted_at: u64, expect: Option<crate::verify::Expectation>) -> Reboot {
        if applied_at > booted_at {
            Reboot::Pending { journal: journal.to_string(), applied_at, booted_at, expect: expect.map(Box::new) }
        } else {
            Reboot::NotPending
        }
    }

    /// What the pending apply configured, when a reboot is pending and its journal says.
    pub fn pending_expectation(&self) -> Option<&crate::verify::Expectation> {
        match self {
            Reboot::Pending { expect, .. } => expect.as_deref(),
            _ => None,
        }
    }

    /// One sentence for people, when a reboot is pending or may be.
    pub fn describe(&self) -> Option<String> {
        match self {
            Reboot::NotPending => None,
            Reboot::Pending { journal, applied_at, booted_at, .. } => Some(format!(
                "the apply of journal {journal} ({}) was made after this boot ({}): what it configured for the boot takes effect at the next boot",
                crate::units::utc(*applied_at),
                crate::units::utc(*booted_at)
            )),
            Reboot::Unknown { journal, reason } => Some(format!(
                "the apply of journal {journal} is in effect, and whether the host rebooted since cannot be told: {reason}"
            )),
        }
    }
}

/// Everything the checks judge, gathered from a host root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// False when reading a snapshot or fixture rather than the running machine.
    pub live: bool,
    pub vendor: CpuVendor,
    /// Flags of /proc/cpuinfo; `None` when unreadable.
    pub cpu_flags: Option<BTreeSet<String>>,
    /// The hypervisor when this host is itself a virtual machine (the `hypervisor` CPU
    /// flag, the DMI vendor and product: "QEMU Standard PC (Q35 + ICH9, 2009)").
    pub virtual_machine: Option<String>,
    pub nodes: DeviceNodes,
    /// cgroup controllers available to this process; `None` when unknown.
    pub cgroup_controllers: Option<BTreeSet<String>>,
    pub acpi_dmar: bool,
    pub acpi_ivrs: bool,
    /// Number of IOMMU groups; `None` when /sys/kernel/iommu_groups does not exist.
    pub iommu_groups: Option<usize>,
    pub cmdline: Option<Cmdline>,
    pub next_boot: Option<NextBoot>,
    /// Why the next boot's command line is unknown (a file that decides it cannot be read
    /// or understood), when it is.
    pub next_boot_problem: Option<String>,
    pub kernel_release: Option<String>,
    pub modules_builtin: Option<BTreeSet<String>>,
    pub modules_available: Option<BTreeSet<String>>,
    pub modules_loaded: Option<BTreeSet<String>>,
    /// What proves vfio-pci is there whatever the module lists say: the driver registered
    /// in sysfs (`/sys/bus/pci/drivers/vfio-pci`, `/sys/module/vfio_pci`) or a device bound.
    pub vfio_evidence: Option<String>,
    /// Modules the initramfs builder's configuration loads early (names with `_`); `None`
    /// when unknown.
    pub initramfs_modules: Option<BTreeSet<String>>,
    /// `/sys/module/M/parameters/P` values of loaded modules, module names with `_`.
    pub module_params: BTreeMap<String, BTreeMap<String, String>>,
    pub modprobe: ModprobeConfig,
    pub hugepages: Vec<HugepagePool>,
    pub ovmf: Vec<String>,
    pub qemu: Option<Program>,
    pub libvirt: Option<Program>,
    /// libvirt's socket accepted a connection; `None` when not checked.
    pub libvirt_reachable: Option<bool>,
    pub iomem: Option<Vec<Region>>,
    pub reboot: Reboot,
}

impl Facts {
    /// An invariant TSC (`constant_tsc` and `nonstop_tsc`), which a guest can be given.
    pub fn invtsc(&self) -> bool {
        self.cpu_flags.as_ref().is_some_and(|f| f.contains("constant_tsc") && f.contains("nonstop_tsc"))
    }

    /// Facts of a host about which nothing is known; readers fill in what they find.
    pub fn unknown(live: bool, vendor: CpuVendor) -> Self {
        Facts {
            live,
            vendor,
            cpu_flags: None,
            virtual_machine: None,
            nodes: DeviceNodes::default(),
            cgroup_controllers: None,
            acpi_dmar: false,
            acpi_ivrs: false,
            iommu_groups: None,
            cmdline: None,
            next_boot: None,
            next_boot_problem: None,
            kernel_release: None,
            modules_builtin: None,
            modules_available: None,
            modules_loaded: None,
            vfio_evidence: None,
            initramfs_modules: None,
            module_params: BTreeMap::new(),
            modprobe: ModprobeConfig::default(),
            hugepages: Vec::new(),
            ovmf: Vec::new(),
            qemu: None,
            libvirt: None,
            libvirt_reachable: None,
            iomem: None,
            reboot: Reboot::NotPending,
        }
    }

    pub(super) fn flag(&self, f: &str) -> bool {
        self.cpu_flags.as_ref().is_some_and(|s| s.contains(f))
    }

    pub(super) fn param(&self, module: &str, name: &str) -> Option<&str> {
        self.module_params.get(module).and_then(|p| p.get(name)).map(|v| v.trim())
    }
}
