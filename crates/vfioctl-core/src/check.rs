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

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cmdline::Cmdline;
use crate::iomem::{self, Region};
use crate::iommu::{self, IommuGroup};
use crate::kmod;
use crate::modprobe::ModprobeConfig;
use crate::pci::{PciAddress, PciDevice};
use crate::units::size_text;
use crate::vendor::CpuVendor;

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

/// Everything the checks judge, gathered from a host root.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Facts {
    /// False when reading a snapshot or fixture rather than the running machine.
    pub live: bool,
    pub vendor: CpuVendor,
    /// Flags of /proc/cpuinfo; `None` when unreadable.
    pub cpu_flags: Option<BTreeSet<String>>,
    pub nodes: DeviceNodes,
    /// cgroup controllers available to this process; `None` when unknown.
    pub cgroup_controllers: Option<BTreeSet<String>>,
    pub acpi_dmar: bool,
    pub acpi_ivrs: bool,
    /// Number of IOMMU groups; `None` when /sys/kernel/iommu_groups does not exist.
    pub iommu_groups: Option<usize>,
    pub cmdline: Option<Cmdline>,
    pub next_boot: Option<NextBoot>,
    pub kernel_release: Option<String>,
    pub modules_builtin: Option<BTreeSet<String>>,
    pub modules_available: Option<BTreeSet<String>>,
    pub modules_loaded: Option<BTreeSet<String>>,
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
            nodes: DeviceNodes::default(),
            cgroup_controllers: None,
            acpi_dmar: false,
            acpi_ivrs: false,
            iommu_groups: None,
            cmdline: None,
            next_boot: None,
            kernel_release: None,
            modules_builtin: None,
            modules_available: None,
            modules_loaded: None,
            module_params: BTreeMap::new(),
            modprobe: ModprobeConfig::default(),
            hugepages: Vec::new(),
            ovmf: Vec::new(),
            qemu: None,
            libvirt: None,
            libvirt_reachable: None,
            iomem: None,
        }
    }

    fn flag(&self, f: &str) -> bool {
        self.cpu_flags.as_ref().is_some_and(|s| s.contains(f))
    }

    fn param(&self, module: &str, name: &str) -> Option<&str> {
        self.module_params.get(module).and_then(|p| p.get(name)).map(|v| v.trim())
    }
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

struct Out(Vec<Check>);

impl Out {
    fn push(
        &mut self,
        id: &str,
        area: &'static str,
        title: impl Into<String>,
        status: Status,
        message: impl Into<String>,
        remedy: Option<String>,
    ) {
        self.0.push(Check { id: id.to_string(), area, title: title.into(), status, message: message.into(), remedy });
    }
}

const SNAPSHOT: &str = "not checked on a snapshot";

/// Runs every check.
pub fn run(f: &Facts, target: Option<&Target<'_>>) -> Vec<Check> {
    let mut out = Out(Vec::new());
    validate_qemu(f, &mut out);
    cmdline_checks(f, &mut out);
    vfio_modules(f, &mut out);
    kvm_options(f, &mut out);
    hugepages(f, &mut out);
    software(f, &mut out);
    if let Some(t) = target {
        device_checks(f, t, &mut out);
    }
    out.0
}

/// The checks of `virt-host-validate qemu` (libvirt's tools/virt-host-validate-qemu.c),
/// with its conditions, order, levels and messages.
fn validate_qemu(f: &Facts, out: &mut Out) {
    let has_hw_virt = f.flag("svm") || f.flag("vmx");
    if f.cpu_flags.is_none() {
        out.push(
            "cpu.virtualization",
            "QEMU",
            "for hardware virtualization",
            Status::Note,
            "/proc/cpuinfo could not be read",
            None,
        );
    } else if has_hw_virt {
        out.push(
            "cpu.virtualization",
            "QEMU",
            "for hardware virtualization",
            Status::Pass,
            if f.flag("svm") { "AMD-V (svm)" } else { "VT-x (vmx)" },
            None,
        );
    } else {
        out.push(
            "cpu.virtualization",
            "QEMU",
            "for hardware virtualization",
            Status::Fail,
            "Only emulated CPUs are available, performance will be significantly limited (no svm or vmx flag in /proc/cpuinfo)",
            Some(format!(
                "enable {} in the firmware (BIOS/UEFI) setup; inside a VM, enable nested virtualization on its host",
                match f.vendor {
                    CpuVendor::Amd => "SVM (AMD-V)",
                    CpuVendor::Intel => "VT-x",
                    CpuVendor::Other => "hardware virtualization (SVM or VT-x)",
                }
            )),
        );
    }
    if has_hw_virt {
        let module = f.vendor.kvm_module().unwrap_or("kvm_amd or kvm_intel");
        match f.nodes.kvm_exists {
            None => out.push("kvm.device", "QEMU", "if device /dev/kvm exists", Status::Note, SNAPSHOT, None),
            Some(false) => out.push(
                "kvm.device",
                "QEMU",
                "if device /dev/kvm exists",
                Status::Fail,
                "Check that the 'kvm-intel' or 'kvm-amd' modules are loaded & the BIOS has enabled virtualization",
                Some(format!("modprobe {module}; if that fails, virtualization is disabled in the firmware setup")),
            ),
            Some(true) => {
                out.push("kvm.device", "QEMU", "if device /dev/kvm exists", Status::Pass, "", None);
                match f.nodes.kvm_accessible {
                    None => out.push("kvm.access", "QEMU", "if device /dev/kvm is accessible", Status::Note, SNAPSHOT, None),
                    Some(true) => out.push("kvm.access", "QEMU", "if device /dev/kvm is accessible", Status::Pass, "", None),
                    Some(false) => out.push(
                        "kvm.access",
                        "QEMU",
                        "if device /dev/kvm is accessible",
                        Status::Fail,
                        "Check /dev/kvm is world writable or you are in a group that is allowed to access it",
                        Some("add yourself to the kvm group (usermod -aG kvm $USER, then log in again), or run vfioctl as root".into()),
                    ),
                }
            }
        }
    }
    let node = |out: &mut Out, id: &str, path: &str, state: Option<bool>, bad: Status, msg: &str, fix: &str| match state
    {
        None => out.push(id, "QEMU", format!("if device {path} exists"), Status::Note, SNAPSHOT, None),
        Some(true) => out.push(id, "QEMU", format!("if device {path} exists"), Status::Pass, "", None),
        Some(false) => out.push(id, "QEMU", format!("if device {path} exists"), bad, msg, Some(fix.to_string())),
    };
    node(
        out,
        "net.vhost",
        "/dev/vhost-net",
        f.nodes.vhost_net,
        Status::Warn,
        "Load the 'vhost_net' module to improve performance of virtio networking",
        "modprobe vhost_net; to load it at every boot: echo vhost_net > /etc/modules-load.d/vhost_net.conf",
    );
    node(
        out,
        "net.tun",
        "/dev/net/tun",
        f.nodes.tun,
        Status::Fail,
        "Load the 'tun' module to enable networking for QEMU guests",
        "modprobe tun",
    );
    for c in ["cpu", "cpuacct", "cpuset", "memory", "devices", "blkio"] {
        let id = format!("cgroup.{c}");
        let title = format!("for cgroup '{c}' controller support");
        match &f.cgroup_controllers {
            None => out.push(&id, "QEMU", title, Status::Note, "cgroup mounts unknown (no /proc/self/mountinfo)", None),
            Some(set) if set.contains(c) => out.push(&id, "QEMU", title, Status::Pass, "", None),
            Some(_) => out.push(
                &id,
                "QEMU",
                title,
                Status::Warn,
                format!("Enable '{c}' in kernel Kconfig file or mount/enable cgroup controller in your system"),
                Some(format!(
                    "enable the '{c}' cgroup controller (kernel config, or cgroup mounts of your init system)"
                )),
            ),
        }
    }
    let title = "for device assignment IOMMU support";
    let (table, bootarg) = if f.flag("vmx") {
        (Some(("DMAR", f.acpi_dmar)), "intel_iommu=on")
    } else if f.flag("svm") {
        (Some(("IVRS", f.acpi_ivrs)), "iommu=pt iommu=1")
    } else {
        (None, "")
    };
    match table {
        None => out.push("iommu.acpi", "QEMU", title, Status::Warn, "Unknown if this platform has IOMMU support", None),
        Some((name, false)) => out.push(
            "iommu.acpi",
            "QEMU",
            title,
            Status::Warn,
            format!(
                "No ACPI {name} table found, IOMMU either disabled in BIOS or not supported by this hardware platform"
            ),
            Some(format!("enable {} in the firmware (BIOS/UEFI) setup", f.vendor.firmware_setting())),
        ),
        Some((name, true)) => {
            out.push("iommu.acpi", "QEMU", title, Status::Pass, format!("ACPI {name} table present"), None);
            if let Some(groups) = f.iommu_groups {
                let title = "if IOMMU is enabled by kernel";
                if groups == 0 {
                    out.push(
                        "iommu.kernel",
                        "QEMU",
                        title,
                        Status::Warn,
                        format!("IOMMU appears to be disabled in kernel. Add {bootarg} to kernel cmdline arguments"),
                        Some(format!("add {} to the kernel command line and reboot", f.vendor.iommu_parameter())),
                    );
                } else {
                    out.push("iommu.kernel", "QEMU", title, Status::Pass, format!("{groups} IOMMU groups"), None);
                }
            }
        }
    }
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

fn cmdline_checks(f: &Facts, out: &mut Out) {
    let Some(c) = &f.cmdline else {
        out.push(
            "cmdline.iommu",
            "BOOT",
            "kernel command line enables the IOMMU",
            Status::Note,
            "/proc/cmdline could not be read",
            None,
        );
        return;
    };
    let param = f.vendor.iommu_parameter();
    let title = "kernel command line enables the IOMMU";
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
        out.push(
            "cmdline.iommu",
            "BOOT",
            title,
            Status::Fail,
            format!("the kernel was told to turn the IOMMU off: {}", off.join(" ")),
            Some(format!("remove {} from the kernel command line and reboot", off.join(" "))),
        );
    } else if groups > 0 {
        let how = if c.has_value("intel_iommu", "on") || c.has_value("amd_iommu", "on") {
            format!("{} on the command line", if c.has("intel_iommu") { "intel_iommu=on" } else { "amd_iommu=on" })
        } else {
            "enabled by default".to_string()
        };
        out.push("cmdline.iommu", "BOOT", title, Status::Pass, format!("{groups} IOMMU groups ({how})"), None);
    } else {
        let firmware = match f.vendor {
            CpuVendor::Intel => !f.acpi_dmar,
            _ => !f.acpi_ivrs,
        };
        let remedy = if firmware {
            format!(
                "enable {} in the firmware (BIOS/UEFI) setup: the firmware publishes no IOMMU (no ACPI {} table){}",
                f.vendor.firmware_setting(),
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
        out.push(
            "cmdline.iommu",
            "BOOT",
            title,
            Status::Fail,
            "no IOMMU groups: devices cannot be passed through",
            Some(remedy),
        );
    }

    if c.has_value("iommu", "pt") {
        out.push("cmdline.iommu_pt", "BOOT", "kernel command line has iommu=pt", Status::Pass, "", None);
    } else {
        out.push(
            "cmdline.iommu_pt",
            "BOOT",
            "kernel command line has iommu=pt",
            Status::Warn,
            "without iommu=pt the host's own devices go through IOMMU translation too (slower host DMA)",
            Some("add iommu=pt to the kernel command line".into()),
        );
    }

    let title = "interrupt remapping is not disabled";
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
        out.push(
            "cmdline.intremap",
            "BOOT",
            title,
            Status::Fail,
            format!(
                "interrupt remapping is turned off ({}): vfio refuses devices unless unsafe interrupts are allowed",
                ir_off.join(" ")
            ),
            Some(format!("remove {} from the kernel command line", ir_off.join(" "))),
        );
    } else if unsafe_irq {
        out.push(
            "cmdline.intremap",
            "BOOT",
            title,
            Status::Warn,
            "vfio_iommu_type1 allow_unsafe_interrupts is on: a guest could inject interrupts into the host",
            Some("remove allow_unsafe_interrupts=1 (modprobe.d or kernel command line) unless this platform lacks interrupt remapping".into()),
        );
    } else {
        out.push("cmdline.intremap", "BOOT", title, Status::Pass, "", None);
    }

    let title = "next boot keeps the running kernel's passthrough parameters";
    match &f.next_boot {
        None => out.push(
            "cmdline.next_boot",
            "BOOT",
            title,
            Status::Note,
            "no boot loader configuration found (/etc/default/grub, /etc/kernel/cmdline, systemd-boot entries, refind_linux.conf, kernelstub)",
            None,
        ),
        Some(nb) => {
            let now = relevant_params(c);
            let next = relevant_params(&nb.cmdline);
            let pending: Vec<&String> = next.difference(&now).collect();
            let lost: Vec<&String> = now.difference(&next).collect();
            if pending.is_empty() && lost.is_empty() {
                out.push("cmdline.next_boot", "BOOT", title, Status::Pass, format!("{} matches the running kernel", nb.source), None);
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
                out.push("cmdline.next_boot", "BOOT", title, Status::Warn, msg.join("; "), Some(fix.join("; ")));
            }
        }
    }
}

fn join(v: &[&String]) -> String {
    v.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
}

fn vfio_modules(f: &Facts, out: &mut Out) {
    let version = f.kernel_release.as_deref().and_then(kmod::kernel_version);
    let needed = kmod::vfio_modules(version);
    let title = match &f.kernel_release {
        Some(r) => format!("VFIO modules for kernel {}", r.trim()),
        None => "VFIO modules for the running kernel".to_string(),
    };
    if f.modules_builtin.is_none() && f.modules_available.is_none() {
        out.push(
            "vfio.modules",
            "VFIO",
            title,
            Status::Note,
            "no modules.builtin or modules.dep for this kernel under /lib/modules",
            None,
        );
        return;
    }
    let empty = BTreeSet::new();
    let builtin = f.modules_builtin.as_ref().unwrap_or(&empty);
    let available = f.modules_available.as_ref().unwrap_or(&empty);
    let missing: Vec<&str> =
        needed.iter().copied().filter(|m| !builtin.contains(*m) && !available.contains(*m)).collect();
    if missing.is_empty() {
        let (b, m): (Vec<&str>, Vec<&str>) = needed.iter().partition(|n| builtin.contains(**n));
        let mut how = Vec::new();
        if !m.is_empty() {
            how.push(format!("modules: {}", m.join(", ")));
        }
        if !b.is_empty() {
            how.push(format!("built in: {}", b.join(", ")));
        }
        out.push("vfio.modules", "VFIO", title, Status::Pass, how.join("; "), None);
    } else {
        out.push(
            "vfio.modules",
            "VFIO",
            title,
            Status::Fail,
            format!("missing: {}", missing.join(", ")),
            Some("install the kernel's extra modules package (e.g. linux-modules-extra-$(uname -r) on Ubuntu) or build the kernel with CONFIG_VFIO_PCI".into()),
        );
    }
}

fn kvm_options(f: &Facts, out: &mut Out) {
    let Some(module) = f.vendor.kvm_module() else { return };
    let loaded = f.module_params.contains_key(module)
        || f.modules_loaded.as_ref().is_some_and(|l| l.contains(module))
        || f.modules_builtin.as_ref().is_some_and(|b| b.contains(module));
    if loaded {
        out.push("kvm.module", "KVM", format!("the {module} module is loaded"), Status::Pass, "", None);
    } else {
        out.push(
            "kvm.module",
            "KVM",
            format!("the {module} module is loaded"),
            if f.live { Status::Fail } else { Status::Warn },
            format!("{module} is not loaded: no KVM acceleration"),
            Some(format!("modprobe {module}; if it fails, enable virtualization in the firmware setup")),
        );
    }
    if !f.module_params.contains_key("kvm") && !loaded {
        return;
    }
    let configured = |m: &str, p: &str| f.modprobe.option(m, p).and_then(param_bool);
    let fix = |m: &str, p: &str, want: &str| -> String {
        if configured(m, p) == param_bool(want) {
            format!("already set in /etc/modprobe.d (options {m} {p}={want}); takes effect when {m} is reloaded or at the next boot")
        } else {
            format!("add `options {m} {p}={want}` to /etc/modprobe.d/kvm.conf, then reload {m} or reboot")
        }
    };
    let mut param_check = |id: &str, m: &str, p: &str, want: bool, bad: Status, why: &str| {
        let title = format!("{m} {p}={}", if want { 1 } else { 0 });
        match f.param(m, p) {
            None => out.push(id, "KVM", title, Status::Note, format!("/sys/module/{m}/parameters/{p} not found"), None),
            Some(v) => match param_bool(v) {
                Some(x) if x == want => out.push(id, "KVM", title, Status::Pass, format!("{p}={v}"), None),
                _ => out.push(
                    id,
                    "KVM",
                    title,
                    bad,
                    format!("{p}={v}: {why}"),
                    Some(fix(m, p, if want { "1" } else { "0" })),
                ),
            },
        }
    };
    param_check(
        "kvm.ignore_msrs",
        "kvm",
        "ignore_msrs",
        true,
        Status::Warn,
        "a guest touching an MSR KVM does not emulate gets an exception (Windows guests and GPU tools crash)",
    );
    if f.param("kvm", "ignore_msrs").and_then(param_bool) == Some(true) {
        param_check(
            "kvm.report_ignored_msrs",
            "kvm",
            "report_ignored_msrs",
            false,
            Status::Note,
            "every ignored MSR access is logged, which can flood the kernel log",
        );
    }
    match f.vendor {
        CpuVendor::Amd => {
            param_check(
                "kvm.npt",
                "kvm_amd",
                "npt",
                true,
                Status::Warn,
                "without nested page tables every guest page fault traps to the host",
            );
            param_check(
                "kvm.avic",
                "kvm_amd",
                "avic",
                true,
                Status::Note,
                "interrupts to the guest are virtualized in software (guide 000 enables AVIC)",
            );
        }
        CpuVendor::Intel => {
            param_check(
                "kvm.ept",
                "kvm_intel",
                "ept",
                true,
                Status::Warn,
                "without EPT every guest page fault traps to the host",
            );
        }
        CpuVendor::Other => {}
    }
    if let Some(v) = f.param(module, "nested") {
        let on = param_bool(v) == Some(true);
        out.push(
            "kvm.nested",
            "KVM",
            format!("{module} nested"),
            Status::Note,
            format!(
                "nested virtualization is {} (either works for passthrough; guide 000 turns it off)",
                if on { "on" } else { "off" }
            ),
            None,
        );
    }
}

fn hugepages(f: &Facts, out: &mut Out) {
    let reserved: Vec<&HugepagePool> = f.hugepages.iter().filter(|p| p.total > 0).collect();
    if reserved.is_empty() {
        out.push(
            "hugepages",
            "MEMORY",
            "hugepages reserved for guests",
            Status::Note,
            "no hugepages reserved (vfioctl plan decides how many; optional but faster guest memory)",
            None,
        );
        return;
    }
    let mut by_node: BTreeMap<Option<u32>, Vec<&HugepagePool>> = BTreeMap::new();
    for p in &reserved {
        by_node.entry(p.node).or_default().push(p);
    }
    for (node, pools) in by_node {
        let id = node.map_or("hugepages".to_string(), |n| format!("hugepages.node{n}"));
        let title = node.map_or("hugepages reserved for guests".to_string(), |n| format!("hugepages on NUMA node {n}"));
        let text: Vec<String> = pools
            .iter()
            .map(|p| format!("{} × {}: {} reserved, {} free", p.total, size_text(p.size_kib), p.total, p.free))
            .collect();
        let all_used = pools.iter().all(|p| p.free == 0);
        out.push(
            &id,
            "MEMORY",
            title,
            if all_used { Status::Warn } else { Status::Pass },
            text.join("; ") + if all_used { " (all in use: a new guest gets none)" } else { "" },
            all_used.then(|| "stop the guest using them, or reserve more (vfioctl plan)".to_string()),
        );
    }
}

fn software(f: &Facts, out: &mut Out) {
    if f.ovmf.is_empty() {
        out.push(
            "firmware.ovmf",
            "FW",
            "OVMF (UEFI) firmware for guests",
            Status::Fail,
            "no OVMF firmware found: GPU passthrough needs a UEFI guest",
            Some("install it: apt install ovmf (Debian, Ubuntu) · dnf install edk2-ovmf (Fedora) · pacman -S edk2-ovmf (Arch)".into()),
        );
    } else {
        out.push("firmware.ovmf", "FW", "OVMF (UEFI) firmware for guests", Status::Pass, f.ovmf.join(", "), None);
    }
    let program = |out: &mut Out, id: &str, area: &'static str, what: &str, p: &Option<Program>, install: &str| match p
    {
        None => out.push(
            id,
            area,
            format!("{what} is installed"),
            Status::Fail,
            format!("{what} not found"),
            Some(install.to_string()),
        ),
        Some(p) => {
            let msg = match (&p.version, f.live) {
                (Some(v), _) => format!("{} ({v})", p.path),
                (None, true) => format!("{} (version unknown)", p.path),
                (None, false) => format!("{} (version {SNAPSHOT})", p.path),
            };
            out.push(id, area, format!("{what} is installed"), Status::Pass, msg, None)
        }
    };
    program(
        out,
        "qemu.installed",
        "QEMU",
        "QEMU",
        &f.qemu,
        "install it: apt install qemu-system-x86 (Debian, Ubuntu) · dnf install qemu-kvm (Fedora) · pacman -S qemu-base (Arch)",
    );
    program(
        out,
        "libvirt.installed",
        "LIBVIRT",
        "libvirt",
        &f.libvirt,
        "install it: apt install libvirt-daemon-system (Debian, Ubuntu) · dnf install libvirt (Fedora) · pacman -S libvirt (Arch)",
    );
    if f.libvirt.is_some() {
        match f.libvirt_reachable {
            None => out.push("libvirt.reachable", "LIBVIRT", "libvirtd is reachable", Status::Note, SNAPSHOT, None),
            Some(true) => out.push("libvirt.reachable", "LIBVIRT", "libvirtd is reachable", Status::Pass, "", None),
            Some(false) => out.push(
                "libvirt.reachable",
                "LIBVIRT",
                "libvirtd is reachable",
                Status::Warn,
                "nothing answers on /run/libvirt/libvirt-sock or /run/libvirt/virtqemud-sock",
                Some("start it: systemctl enable --now libvirtd (or virtqemud.socket on modular libvirt)".into()),
            ),
        }
    }
}

fn device_checks(f: &Facts, t: &Target<'_>, out: &mut Out) {
    let dev = t.device;
    let name = dev.address.short();
    let functions: Vec<&PciDevice> = t.devices.values().filter(|d| d.address.same_slot(&dev.address)).collect();
    let not_vfio: Vec<String> = functions
        .iter()
        .filter(|d| d.driver.as_deref() != Some("vfio-pci"))
        .map(|d| format!("{} ({})", d.address.short(), d.driver.as_deref().unwrap_or("no driver")))
        .collect();
    let title = format!("every function of {name} is bound to vfio-pci");
    if not_vfio.is_empty() {
        out.push(
            "device.vfio",
            "DEVICE",
            title,
            Status::Pass,
            format!("{} function(s) on vfio-pci", functions.len()),
            None,
        );
    } else {
        let mut ids: Vec<String> = Vec::new();
        for d in &functions {
            let id = d.id.to_string();
            if !ids.contains(&id) {
                ids.push(id);
            }
        }
        let mut reserved: BTreeSet<String> = BTreeSet::new();
        if let Some(c) = &f.cmdline {
            reserved.extend(c.values("vfio-pci.ids").iter().flat_map(|v| v.split(',')).map(str::to_string));
        }
        if let Some(v) = f.modprobe.option("vfio_pci", "ids") {
            reserved.extend(v.split(',').map(str::to_string));
        }
        let ids_missing: Vec<&str> = ids.iter().filter(|i| !reserved.contains(*i)).map(String::as_str).collect();
        let drivers: BTreeSet<String> = functions
            .iter()
            .filter_map(|d| d.driver.as_deref())
            .filter(|d| *d != "vfio-pci")
            .map(|d| d.replace('-', "_"))
            .collect();
        let softdeps_missing: Vec<&str> = drivers
            .iter()
            .filter(|d| !f.modprobe.softdep_pre.get(*d).is_some_and(|pre| pre.iter().any(|m| m == "vfio_pci")))
            .map(String::as_str)
            .collect();
        let mut steps = Vec::new();
        if !ids_missing.is_empty() {
            steps.push(format!(
                "add vfio-pci.ids={} to the kernel command line (or `options vfio-pci ids=...` to /etc/modprobe.d/vfio.conf)",
                ids_missing.join(",")
            ));
        }
        if !softdeps_missing.is_empty() {
            let lines: Vec<String> = softdeps_missing.iter().map(|d| format!("softdep {d} pre: vfio-pci")).collect();
            steps.push(format!(
                "make vfio-pci load before {}: add `{}` to /etc/modprobe.d/vfio.conf",
                softdeps_missing.join(", "),
                lines.join("` and `")
            ));
        }
        if ids_missing.is_empty() && softdeps_missing.is_empty() {
            steps.push(format!(
                "the ids and softdeps are configured, yet {} bound first: vfio-pci is probably not in the initramfs (add vfio, vfio_iommu_type1 and vfio_pci to its modules), or that driver is built into the kernel",
                drivers.iter().map(String::as_str).collect::<Vec<_>>().join(", ")
            ));
        }
        let fix =
            format!("{}; then regenerate the initramfs and reboot (vfioctl plan/apply will do this)", steps.join("; "));
        out.push(
            "device.vfio",
            "DEVICE",
            title,
            Status::Fail,
            format!("not on vfio-pci: {}", not_vfio.join(", ")),
            Some(fix),
        );
    }

    let title = format!("the IOMMU group of {name} can be passed");
    match dev.iommu_group.and_then(|g| t.groups.iter().find(|x| x.id == g)) {
        None => out.push(
            "device.group",
            "DEVICE",
            title,
            Status::Fail,
            format!("{name} is in no IOMMU group"),
            Some("enable the IOMMU first (see cmdline.iommu)".into()),
        ),
        Some(g) => {
            let a = iommu::assess(g, t.devices);
            let others: Vec<String> =
                a.endpoints.iter().filter(|e| !e.same_slot(&dev.address)).map(|e| e.short()).collect();
            if a.mixed || !a.passable {
                out.push(
                    "device.group",
                    "DEVICE",
                    title,
                    Status::Fail,
                    format!("group {}: {}", g.id, a.notes.join("; ")),
                    Some("move the card to a slot wired to the CPU (see vfioctl list), or enable ACS in the firmware; the ACS override patch weakens isolation".into()),
                );
            } else if !others.is_empty() {
                out.push(
                    "device.group",
                    "DEVICE",
                    title,
                    Status::Warn,
                    format!("group {} also holds {}: they go to the guest too", g.id, others.join(", ")),
                    Some("pass them along (vfioctl plan includes them) or move the card to another slot".into()),
                );
            } else {
                let siblings: Vec<String> = functions
                    .iter()
                    .filter(|d| d.iommu_group != Some(g.id))
                    .map(|d| {
                        format!(
                            "{} (group {})",
                            d.address.short(),
                            d.iommu_group.map_or("none".into(), |n| n.to_string())
                        )
                    })
                    .collect();
                let msg = if siblings.is_empty() {
                    format!("group {} holds only this card", g.id)
                } else {
                    format!(
                        "group {} is clean; the card's other functions are in other groups: {}",
                        g.id,
                        siblings.join(", ")
                    )
                };
                out.push("device.group", "DEVICE", title, Status::Pass, msg, None);
            }
        }
    }

    let title = format!("{name} does not drive the boot console");
    match dev.boot_vga {
        Some(true) => out.push(
            "device.boot_vga",
            "DEVICE",
            title,
            Status::Warn,
            format!("{name} is the boot GPU: the host loses its console when it is passed"),
            Some("pass the other GPU, or set the firmware's primary display to the other card / the iGPU".into()),
        ),
        _ => out.push("device.boot_vga", "DEVICE", title, Status::Pass, "", None),
    }

    let title = format!("no boot framebuffer holds {name}'s memory");
    match &f.iomem {
        None => out.push("device.framebuffer", "DEVICE", title, Status::Note, "/proc/iomem could not be read", None),
        Some(regions) => {
            let fbs: Vec<String> = functions
                .iter()
                .flat_map(|d| iomem::framebuffers_under(regions, &d.address.to_string()))
                .map(|r| r.name.clone())
                .collect();
            if fbs.is_empty() {
                out.push("device.framebuffer", "DEVICE", title, Status::Pass, "", None);
            } else {
                let fix = if fbs.iter().any(|n| n == "efifb") {
                    "add video=efifb:off to the kernel command line"
                } else if fbs.iter().any(|n| n == "vesafb") {
                    "add video=vesafb:off to the kernel command line"
                } else {
                    "add initcall_blacklist=sysfb_init to the kernel command line (simpledrm/sysfb, Linux 5.15+)"
                };
                out.push(
                    "device.framebuffer",
                    "DEVICE",
                    title,
                    Status::Fail,
                    format!("{} holds part of its memory: vfio-pci cannot claim the BAR", fbs.join(", ")),
                    Some(fix.to_string()),
                );
            }
        }
    }

    let title = format!("{name} has a reset method");
    match &dev.reset_methods {
        None => out.push(
            "device.reset",
            "DEVICE",
            title,
            Status::Note,
            "the kernel does not list reset methods (before Linux 5.15)",
            None,
        ),
        Some(m) if m.is_empty() => out.push(
            "device.reset",
            "DEVICE",
            title,
            Status::Warn,
            "no reset method: the device may not work again after the guest reboots",
            Some("for AMD GPUs before Navi 2x, the vendor-reset module adds one".into()),
        ),
        Some(m) => out.push("device.reset", "DEVICE", title, Status::Pass, m.join(" "), None),
    }
}

/// The process exit status for a list of checks: 1 when any failed.
pub fn any_failed(checks: &[Check]) -> bool {
    checks.iter().any(|c| c.status == Status::Fail)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> Facts {
        let mut f = Facts::unknown(true, CpuVendor::Amd);
        f.cpu_flags = Some(["svm".to_string()].into_iter().collect());
        f.nodes =
            DeviceNodes { kvm_exists: Some(true), kvm_accessible: Some(true), vhost_net: Some(true), tun: Some(true) };
        f.cgroup_controllers =
            Some(["cpu", "cpuacct", "cpuset", "memory", "devices", "blkio"].iter().map(|s| s.to_string()).collect());
        f.acpi_ivrs = true;
        f.iommu_groups = Some(20);
        f.cmdline = Some(Cmdline::parse("root=/dev/sda1 amd_iommu=on iommu=pt"));
        f.next_boot = Some(NextBoot {
            source: "/etc/default/grub".into(),
            cmdline: Cmdline::parse("amd_iommu=on iommu=pt quiet"),
        });
        f.kernel_release = Some("6.1.0-18-amd64".into());
        f.modules_available = Some(
            ["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core", "vfio_virqfd"]
                .iter()
                .map(|s| s.to_string())
                .collect(),
        );
        f.module_params.insert(
            "kvm".into(),
            [("ignore_msrs".to_string(), "Y".to_string()), ("report_ignored_msrs".into(), "N".into())].into(),
        );
        f.module_params
            .insert("kvm_amd".into(), [("npt".to_string(), "1".to_string()), ("avic".into(), "1".into())].into());
        f.ovmf = vec!["/usr/share/OVMF/OVMF_CODE_4M.fd".into()];
        f.qemu = Some(Program { path: "/usr/bin/qemu-system-x86_64".into(), version: Some("7.2.0".into()) });
        f.libvirt = Some(Program { path: "/usr/sbin/libvirtd".into(), version: None });
        f.libvirt_reachable = Some(true);
        f
    }

    fn by_id<'a>(c: &'a [Check], id: &str) -> &'a Check {
        c.iter()
            .find(|x| x.id == id)
            .unwrap_or_else(|| panic!("no {id} in {:?}", c.iter().map(|x| &x.id).collect::<Vec<_>>()))
    }

    #[test]
    fn a_healthy_host_passes_everything_but_notes() {
        let c = run(&healthy(), None);
        assert!(c.iter().all(|x| matches!(x.status, Status::Pass | Status::Note)), "{c:#?}");
        assert!(!any_failed(&c));
    }

    #[test]
    fn no_virtualization_flags_skip_kvm_and_iommu_like_virt_host_validate() {
        let mut f = healthy();
        f.cpu_flags = Some(BTreeSet::new());
        let c = run(&f, None);
        assert_eq!(by_id(&c, "cpu.virtualization").status, Status::Fail);
        assert!(c.iter().all(|x| x.id != "kvm.device" && x.id != "iommu.kernel"));
        assert_eq!(by_id(&c, "iommu.acpi").message, "Unknown if this platform has IOMMU support");
    }

    #[test]
    fn iommu_off_in_the_kernel() {
        let mut f = healthy();
        f.iommu_groups = Some(0);
        f.vendor = CpuVendor::Intel;
        f.cpu_flags = Some(["vmx".to_string()].into_iter().collect());
        f.acpi_dmar = true;
        f.cmdline = Some(Cmdline::parse("root=/dev/sda1 quiet"));
        let c = run(&f, None);
        assert_eq!(by_id(&c, "iommu.kernel").status, Status::Warn);
        assert!(by_id(&c, "iommu.kernel").message.contains("intel_iommu=on"));
        let i = by_id(&c, "cmdline.iommu");
        assert_eq!(i.status, Status::Fail);
        assert!(i.remedy.as_deref().unwrap_or("").contains("intel_iommu=on"));
        f.cmdline = Some(Cmdline::parse("intel_iommu=off"));
        assert!(by_id(&run(&f, None), "cmdline.iommu")
            .remedy
            .as_deref()
            .unwrap_or("")
            .contains("remove intel_iommu=off"));
    }

    #[test]
    fn next_boot_drift_is_reported_both_ways() {
        let mut f = healthy();
        f.next_boot = Some(NextBoot {
            source: "/etc/default/grub".into(),
            cmdline: Cmdline::parse("amd_iommu=on iommu=pt vfio-pci.ids=10de:1b06"),
        });
        f.cmdline = Some(Cmdline::parse("amd_iommu=on video=efifb:off"));
        let n = by_id(&run(&f, None), "cmdline.next_boot").clone();
        assert_eq!(n.status, Status::Warn);
        assert!(n.message.contains("not active yet: iommu=pt vfio_pci.ids=10de:1b06"), "{}", n.message);
        assert!(n.message.contains("missing from /etc/default/grub: video=efifb:off"), "{}", n.message);
    }

    #[test]
    fn vfio_modules_depend_on_the_kernel_version() {
        let mut f = healthy();
        f.kernel_release = Some("6.8.0-45-generic".into());
        f.modules_available =
            Some(["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core"].iter().map(|s| s.to_string()).collect());
        assert_eq!(by_id(&run(&f, None), "vfio.modules").status, Status::Pass);
        f.kernel_release = Some("6.1.0".into());
        let m = by_id(&run(&f, None), "vfio.modules").clone();
        assert_eq!(m.status, Status::Fail);
        assert_eq!(m.message, "missing: vfio_virqfd");
    }

    #[test]
    fn kvm_options_and_their_remedies() {
        let mut f = healthy();
        f.module_params.insert("kvm".into(), [("ignore_msrs".to_string(), "N".to_string())].into());
        let c = run(&f, None);
        let m = by_id(&c, "kvm.ignore_msrs");
        assert_eq!(m.status, Status::Warn);
        assert!(m.remedy.as_deref().unwrap_or("").contains("options kvm ignore_msrs=1"));
        f.modprobe.add("options kvm ignore_msrs=1\n");
        assert!(by_id(&run(&f, None), "kvm.ignore_msrs").remedy.as_deref().unwrap_or("").contains("already set"));
    }

    #[test]
    fn a_device_on_its_host_driver_gets_the_missing_steps() {
        use crate::pci::ClassCode;
        let mut gpu =
            PciDevice::new("0d:00.0".parse().unwrap(), "1002:66af".parse().unwrap(), ClassCode::new(0x030000));
        gpu.driver = Some("amdgpu".into());
        gpu.iommu_group = Some(20);
        gpu.reset_methods = Some(vec![]);
        let devices: BTreeMap<PciAddress, PciDevice> = [(gpu.address, gpu.clone())].into();
        let groups = [IommuGroup { id: 20, devices: vec![gpu.address] }];
        let t = Target { device: &devices[&gpu.address], devices: &devices, groups: &groups };
        let mut f = healthy();
        f.iomem = Some(iomem::parse("e0000000-efffffff : 0000:0d:00.0\n  e0000000-e02fffff : efifb\n"));
        let c = run(&f, Some(&t));
        let fix = by_id(&c, "device.vfio").remedy.clone().unwrap_or_default();
        assert!(fix.contains("vfio-pci.ids=1002:66af") && fix.contains("softdep amdgpu pre: vfio-pci"), "{fix}");
        assert_eq!(by_id(&c, "device.framebuffer").status, Status::Fail);
        assert_eq!(by_id(&c, "device.reset").status, Status::Warn);
        f.cmdline = Some(Cmdline::parse("amd_iommu=on iommu=pt vfio-pci.ids=1002:66af"));
        f.modprobe.add("softdep amdgpu pre: vfio-pci\n");
        let fix = by_id(&run(&f, Some(&t)), "device.vfio").remedy.clone().unwrap_or_default();
        assert!(fix.contains("not in the initramfs"), "{fix}");
    }

    #[test]
    fn snapshot_facts_are_notes() {
        let mut f = healthy();
        f.live = false;
        f.nodes = DeviceNodes::default();
        f.libvirt_reachable = None;
        let c = run(&f, None);
        for id in ["kvm.device", "net.vhost", "net.tun", "libvirt.reachable"] {
            assert_eq!(by_id(&c, id).status, Status::Note, "{id}");
            assert_eq!(by_id(&c, id).message, SNAPSHOT);
        }
    }
}
