//! The plan: from a host and a request ("pass this GPU to a VM with 8 vCPUs and
//! 16 GiB"), everything the guides decide by hand, each decision explained.
//!
//! [`build`] is a pure function of a [`PlanHost`] (what `vfioctl-host` read) and a
//! [`Request`]; it either returns a [`Plan`] or refuses with the reasons and what
//! `--force` would mean.

pub mod devices;
pub mod kernel;
pub mod memory;
pub mod pinning;

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::cmdline::Cmdline;
use crate::iommu::IommuGroup;
use crate::pci::{PciAddress, PciDevice, VendorDevice};
pub use crate::reservation::BindMode;
use crate::selector::{Selector, SelectorError};
use crate::topology::Topology;
use crate::vendor::CpuVendor;

pub use devices::{Mount, PlannedDevice, Refusal};
pub use kernel::{CmdlineChange, ConfigFile};
pub use memory::{HugepageChoice, Hugepages, MemoryPlan};
pub use pinning::{CpuPlan, CpuRequest, GuestTopology, VcpuPin};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    pub devices: Vec<Selector>,
    pub vcpus: Option<u32>,
    pub memory_mib: Option<u64>,
    pub hugepages: HugepageChoice,
    /// How vfio-pci gets the devices at boot.
    pub bind: BindMode,
    /// Split IOMMU groups with the ACS override (`pcie_acs_override=downstream,multifunction`):
    /// only the asked devices' slots go.
    pub acs_override: bool,
    pub force: bool,
}

/// Everything about the host the plan depends on.
#[derive(Debug, Clone)]
pub struct PlanHost<'a> {
    pub devices: &'a BTreeMap<PciAddress, PciDevice>,
    pub groups: &'a [IommuGroup],
    pub topology: &'a Topology,
    pub vendor: CpuVendor,
    pub cpu_flags: &'a BTreeSet<String>,
    pub kernel: Option<(u32, u32)>,
    pub running: Option<&'a Cmdline>,
    /// The next boot's command line and where it comes from, when known.
    pub next_boot: Option<(&'a str, &'a Cmdline)>,
    pub mounts: &'a [Mount],
    /// Modules that claim each device on the host.
    pub host_modules: &'a BTreeMap<PciAddress, Vec<String>>,
    /// Boot framebuffer names found inside each device's memory (/proc/iomem).
    pub framebuffers: &'a BTreeMap<PciAddress, Vec<String>>,
    /// Every kernel the next boot may start turns the IOMMU on without a parameter (AMD's
    /// always do; Intel's when built with `CONFIG_INTEL_IOMMU_DEFAULT_ON=y`, as each
    /// `/boot/config-VERSION` says). Only then may the plan leave `intel_iommu=on` out.
    pub iommu_on_by_default: bool,
    /// The `vm.nr_hugepages` the next boot sets, and its file (sysctl's files).
    pub sysctl_hugepages: Option<(String, u64)>,
    /// Modules built into the kernel, when known (a built-in host driver claims its devices
    /// before any modprobe.d line can hand them to vfio-pci).
    pub builtin: Option<&'a BTreeSet<String>>,
    /// Why the boot would not run modprobe.d's `install` commands, when it would not (an
    /// initramfs builder that loads modules without modprobe): binding by address is
    /// refused then.
    pub no_install_commands: Option<String>,
    /// The running kernel's release and version strings (`/proc/sys/kernel/osrelease`,
    /// `/proc/version`), when known: whether it carries the ACS override patch.
    pub kernel_strings: Option<(&'a str, &'a str)>,
    /// The running kernel's modules (modules.dep), when known: whether out-of-tree ones such
    /// as vendor-reset are installed.
    pub modules_available: Option<&'a BTreeSet<String>>,
}

/// The whole plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Plan {
    pub devices: Vec<PlannedDevice>,
    pub vfio_ids: Vec<String>,
    /// The devices handed to vfio-pci by address (driver_override), not by id.
    pub vfio_addresses: Vec<String>,
    pub numa_node: Option<u32>,
    pub cpu: CpuPlan,
    pub memory: MemoryPlan,
    pub kernel_cmdline: CmdlineChange,
    /// Where the command line above is to be edited.
    pub cmdline_source: String,
    pub modprobe: Vec<ConfigFile>,
    pub initramfs_modules: Vec<String>,
    /// udev rules files the plan writes whole (vendor-reset's reset for cards that do not
    /// reset otherwise).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub udev_rules: Vec<ConfigFile>,
    /// One line per decision, for people.
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
    /// Refusals overridden by `--force`, each with what the user takes on.
    pub forced: Vec<Refusal>,
}

impl Plan {
    /// A plan of CPU placement and memory only: no devices and nothing to change on the
    /// host (the domain of a guest without passed devices, tests).
    pub fn cpu_and_memory(cpu: CpuPlan, memory: MemoryPlan) -> Plan {
        Plan {
            devices: Vec::new(),
            vfio_ids: Vec::new(),
            vfio_addresses: Vec::new(),
            numa_node: cpu.node,
            cpu,
            memory,
            kernel_cmdline: CmdlineChange::default(),
            cmdline_source: String::new(),
            modprobe: Vec::new(),
            initramfs_modules: Vec::new(),
            udev_rules: Vec::new(),
            reasons: Vec::new(),
            warnings: Vec::new(),
            forced: Vec::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Selector(#[from] SelectorError),
    #[error("refusing to plan this passthrough:\n{}", .0.iter().map(|r| format!("  - {}", r.reason)).collect::<Vec<_>>().join("\n"))]
    Refused(Vec<Refusal>),
    #[error(transparent)]
    Cpu(#[from] pinning::PinError),
    #[error(transparent)]
    Memory(#[from] memory::MemoryError),
    #[error("no device named: pass at least one (an address, a vendor:device id, or `gpu`)")]
    NoDevices,
}

impl PlanError {
    /// What to do about it.
    pub fn remedy(&self) -> Option<String> {
        match self {
            PlanError::Refused(rs) => {
                let mut lines: Vec<String> = rs
                    .iter()
                    .map(|r| match &r.force {
                        Some(f) => format!("--force would pass it anyway: {f}"),
                        None => "not even --force can do this: choose another device or slot".to_string(),
                    })
                    .collect();
                lines.dedup();
                Some(lines.join("\n"))
            }
            PlanError::Selector(_) => Some("see `vfioctl list` for the devices of this host".into()),
            PlanError::Cpu(_) => Some("ask for fewer vCPUs (--vcpus)".into()),
            PlanError::Memory(memory::MemoryError::No1G) => Some("use --hugepages 2M".into()),
            PlanError::Memory(_) => Some("ask for less memory (--memory)".into()),
            PlanError::NoDevices => None,
        }
    }
}

/// The parameters of `base` the plan keeps (those not in `remove`).
fn kept_params(base: &Cmdline, remove: &[String]) -> Vec<crate::cmdline::Param> {
    base.params.iter().filter(|p| !remove.contains(&p.to_string())).cloned().collect()
}

/// Plans a passthrough.
pub fn build(host: &PlanHost<'_>, req: &Request) -> Result<Plan, PlanError> {
    if req.devices.is_empty() {
        return Err(PlanError::NoDevices);
    }
    let sel = devices::select(&req.devices, host.devices, host.groups, host.mounts, req.acs_override)?;
    let mut warnings = sel.warnings.clone();
    let mut forced = Vec::new();
    let mut acs_param = None;
    if req.acs_override {
        let running_has = host.running.is_some_and(|r| r.params.iter().any(|p| p.name_is("pcie_acs_override")));
        match host.kernel_strings {
            Some((release, version)) if crate::kmod::has_acs_override(release, version) || running_has => {}
            Some((release, _)) => {
                return Err(PlanError::Refused(vec![Refusal {
                    devices: Vec::new(),
                    reason: format!(
                        "--allow-acs-override: this kernel ({release}) does not carry the ACS override patch, so pcie_acs_override= would do nothing; boot a kernel that does (linux-zen, Proxmox's pve kernels, liquorix, xanmod), or move the card to a slot whose group it has alone"
                    ),
                    force: None,
                }]))
            }
            None => warnings.push(
                "--allow-acs-override: the kernel's release is unknown, so whether it carries the ACS override patch is too; without it the parameter does nothing and the group stays shared".into(),
            ),
        }
        acs_param = Some("pcie_acs_override=downstream,multifunction");
        warnings.push("--allow-acs-override: the devices that shared the group with the passed ones can reach each other's memory, and the guest's isolation from them is lost (the ACS override tells the kernel they are isolated when the hardware does not isolate them)".into());
    }
    if !sel.refusals.is_empty() {
        let hard: Vec<Refusal> = sel.refusals.iter().filter(|r| r.force.is_none()).cloned().collect();
        if !req.force || !hard.is_empty() {
            return Err(PlanError::Refused(sel.refusals));
        }
        for r in &sel.refusals {
            warnings.push(format!("--force: {}; you take on: {}", r.reason, r.force.as_deref().unwrap_or("")));
        }
        forced = sel.refusals.clone();
    }
    let mut reasons = Vec::new();
    for d in &sel.devices {
        reasons.push(format!("pass {} [{}:{}]: {}", d.address.short(), d.vendor_id, d.device_id, d.reason));
    }
    let passed: Vec<PciAddress> = sel.devices.iter().map(|d| d.address).collect();
    let bind = crate::reservation::binding(&passed, host.devices, req.bind);
    warnings.extend(bind.warnings.iter().cloned());
    reasons.extend(bind.reasons.iter().cloned());
    let (ids, addresses) = (bind.ids, bind.addresses);
    let mut refused = Vec::new();
    if !addresses.is_empty() {
        if let Some(why) = &host.no_install_commands {
            refused.push(Refusal {
                devices: addresses.clone(),
                reason: format!(
                    "{} must be bound by address, and {why}",
                    addresses.iter().map(|a| a.short()).collect::<Vec<_>>().join(", ")
                ),
                force: Some("the device may stay on its host driver at boot: bind it by hand after boot, or use an initramfs builder that runs modprobe (mkinitcpio, dracut, initramfs-tools)".into()),
            });
        }
        let builtin: Vec<String> = addresses
            .iter()
            .filter_map(|a| host.host_modules.get(a).map(|m| (a, m)))
            .flat_map(|(a, m)| m.iter().map(move |m| (a, m)))
            .filter(|(_, m)| host.builtin.is_some_and(|b| b.contains(&crate::modprobe::module_name(m))))
            .map(|(a, m)| format!("{} ({m})", a.short()))
            .collect();
        if !builtin.is_empty() {
            refused.push(Refusal {
                devices: addresses.clone(),
                reason: format!(
                    "the host driver of {} is built into the kernel: it claims the device before any modprobe.d line can hand it to vfio-pci by address",
                    builtin.join(", ")
                ),
                force: Some("the device stays on its host driver at boot: unbind it and bind it to vfio-pci by hand after boot".into()),
            });
        }
    }
    if !refused.is_empty() {
        if !req.force {
            return Err(PlanError::Refused(refused));
        }
        for r in &refused {
            warnings.push(format!("--force: {}; you take on: {}", r.reason, r.force.as_deref().unwrap_or("")));
        }
        forced.extend(refused);
    }

    // NUMA node: the first passed device that says.
    let node = sel.devices.iter().filter_map(|d| host.devices.get(&d.address)).find_map(|d| d.numa_node);
    let cpu = pinning::place(host.topology, &CpuRequest { vcpus: req.vcpus, node })?;
    reasons.extend(cpu.reasons.iter().cloned());
    warnings.extend(cpu.warnings.iter().cloned());
    let memory =
        memory::plan(host.topology, cpu.node, req.memory_mib, req.hugepages, host.cpu_flags.contains("pdpe1gb"))?;
    reasons.extend(memory.reasons.iter().cloned());

    let mut protected: BTreeMap<VendorDevice, Vec<String>> = BTreeMap::new();
    for m in host.mounts {
        if let Some(d) = host.devices.get(&m.controller) {
            if !passed.contains(&d.address) {
                protected.entry(d.id).or_default().push(format!("{} (holds {})", d.address.short(), m.mount_point));
            }
        }
    }
    for d in host.devices.values().filter(|d| d.boot_vga == Some(true) && !passed.contains(&d.address)) {
        protected.entry(d.id).or_default().push(format!("{} (the boot GPU)", d.address.short()));
    }
    let protected_ids = protected.into_iter().map(|(id, v)| (id, v.join(", "))).collect();
    let (base, source) = match (host.next_boot, host.running) {
        (Some((src, c)), _) => (c.clone(), src.to_string()),
        (None, Some(r)) => {
            (r.clone(), "the running kernel's command line, as no boot loader configuration was found".to_string())
        }
        (None, None) => (Cmdline::default(), "unknown".to_string()),
    };
    let framebuffers: Vec<String> = passed.iter().filter_map(|a| host.framebuffers.get(a)).flatten().cloned().collect();
    let kernel_host = kernel::KernelHost {
        vendor: host.vendor,
        kernel: host.kernel,
        base,
        running: host.running,
        iommu_active: !host.groups.is_empty(),
        iommu_on_by_default: host.iommu_on_by_default,
        multi_node: host.topology.nodes.len() > 1,
        host_modules: host.host_modules,
        framebuffers,
        protected_ids,
    };
    let vga = sel.devices.iter().any(|d| d.class == "0300");
    let mut k = kernel::plan(&kernel_host, &ids, &addresses, vga, &memory, &passed);
    if let Some(p) = acs_param {
        let base = &kernel_host.base;
        let old: Vec<String> =
            base.params.iter().filter(|x| x.name_is("pcie_acs_override")).map(|x| x.to_string()).collect();
        if !old.iter().any(|o| o == p) {
            k.kernel_cmdline.remove.extend(old);
            k.kernel_cmdline.add.push(p.to_string());
            k.reasons.push(format!("{p}: the kernel splits the shared IOMMU group (--allow-acs-override)"));
        }
    }
    reasons.extend(k.reasons.iter().cloned());
    warnings.extend(k.warnings.iter().cloned());
    let udev_rules = plan_resets(host, &passed, &mut k.initramfs_modules, &mut reasons, &mut warnings);

    // Never more memory held at boot and by the guest than the host can spare: the
    // reservations the plan leaves in place count beside the guest's.
    let mut after = Cmdline { params: kept_params(&kernel_host.base, &k.kernel_cmdline.remove) };
    after.params.extend(Cmdline::parse(&k.kernel_cmdline.add.join(" ")).params);
    let after_default = after.default_hugepage_kib();
    // A plan that reserves at boot sets every hugepage parameter itself (a kept one is its own).
    let mut others = Cmdline { params: kept_params(&kernel_host.base, &k.kernel_cmdline.remove) };
    if memory.hugepages.as_ref().is_some_and(|h| h.reserve_at_boot) {
        others.params.retain(|p| !["hugepages", "hugepagesz", "default_hugepagesz"].iter().any(|n| p.name_is(n)));
    }
    let plan_sysctl = memory.hugepages.as_ref().is_some_and(|h| !h.reserve_at_boot) && host.topology.nodes.len() <= 1;
    let held = memory::held(&others, after_default, host.sysctl_hugepages.as_ref(), &memory, plan_sysctl);
    let total_mib = host.topology.nodes.iter().filter_map(|n| n.memory_kib).sum::<u64>() / 1024;
    if total_mib > 0 {
        let floor = memory::host_floor_mib(total_mib);
        if held.kib / 1024 + floor > total_mib {
            let r = Refusal {
                devices: Vec::new(),
                reason: format!(
                    "the next boot and the guest would hold {} of this host's {} ({}), leaving the host less than the {} it keeps",
                    crate::units::size_text(held.kib),
                    crate::units::size_text(total_mib * 1024),
                    held.parts.join(" + "),
                    crate::units::size_text(floor * 1024),
                ),
                force: Some("the host may run out of memory at boot or when the guest starts; remove the other reservations, or give the guest less (--memory)".into()),
            };
            if !req.force {
                return Err(PlanError::Refused(vec![r]));
            }
            warnings.push(format!("--force: {}; you take on: {}", r.reason, r.force.as_deref().unwrap_or("")));
            forced.push(r);
        }
    }
    for d in sel.devices.iter().filter(|d| d.driver.as_deref() != Some("vfio-pci")) {
        if !host.host_modules.contains_key(&d.address) && d.driver.is_none() {
            warnings.push(format!("{}'s host driver is unknown (no driver bound, no modules.alias): add a softdep for it by hand if one loads", d.address.short()));
        }
    }
    let unknown: Vec<String> = sel
        .devices
        .iter()
        .filter(|d| d.driver.as_deref() == Some("vfio-pci") && !host.host_modules.contains_key(&d.address))
        .map(|d| d.address.short())
        .collect();
    if !unknown.is_empty() {
        warnings.push(format!(
            "{} already on vfio-pci and this host has no modules.alias to tell which driver would take them otherwise: keep the softdep lines you have",
            unknown.join(", ")
        ));
    }
    Ok(Plan {
        vfio_ids: ids.iter().map(VendorDevice::to_string).collect(),
        vfio_addresses: addresses.iter().map(PciAddress::to_string).collect(),
        numa_node: cpu.node,
        devices: sel.devices,
        cpu,
        memory,
        kernel_cmdline: k.kernel_cmdline,
        cmdline_source: source,
        modprobe: k.modprobe,
        initramfs_modules: k.initramfs_modules,
        udev_rules,
        reasons,
        warnings,
        forced,
    })
}

/// Cards of a generation known not to reset (AMD Vega, Navi 10…): with vendor-reset
/// installed, it loads first in the initramfs and, on Linux 5.15 or later (where the kernel
/// chooses among reset methods), a udev rule selects its `device_specific` reset for each
/// such card; without it, a warning says how to install it. Returns the udev rules files.
fn plan_resets(
    host: &PlanHost<'_>,
    passed: &[PciAddress],
    initramfs_modules: &mut Vec<String>,
    reasons: &mut Vec<String>,
    warnings: &mut Vec<String>,
) -> Vec<ConfigFile> {
    use crate::pci::reset;
    let bad: Vec<(&PciDevice, &str)> =
        passed.iter().filter_map(|a| host.devices.get(a)).filter_map(|d| reset::known_bad(d).map(|f| (d, f))).collect();
    if bad.is_empty() {
        return Vec::new();
    }
    let installed = host.modules_available.is_some_and(|m| m.contains(reset::VENDOR_RESET));
    if !installed {
        for (d, _) in &bad {
            if let Some(r) = reset::risk(d, host.devices.values()) {
                warnings.push(format!("{}; {}", r.message(d), r.remedy(d, false)));
            }
        }
        return Vec::new();
    }
    let names = bad.iter().map(|(d, f)| format!("{} (AMD {f})", d.address.short())).collect::<Vec<_>>().join(", ");
    initramfs_modules.insert(0, "vendor-reset".into());
    let them = if bad.len() == 1 { "it" } else { "them" };
    reasons.push(format!(
        "vendor-reset loads first in the initramfs: the kernel's own resets do not bring {names} back after a guest reboot; vendor-reset resets {them}"
    ));
    // The kernel lets userspace choose the reset from 5.15, and says so with the device's
    // `reset_method` file: older kernels use vendor-reset's as soon as it is loaded.
    let selectable = host.kernel.is_some_and(|v| v >= (5, 15)) || bad.iter().any(|(d, _)| d.reset_methods.is_some());
    if !selectable {
        return Vec::new();
    }
    let addresses: Vec<PciAddress> = bad.iter().map(|(d, _)| d.address).collect();
    reasons.push(format!(
        "{}: a udev rule selects vendor-reset's reset (reset_method=device_specific) for {} when it is added at boot",
        reset::UDEV_RULES,
        addresses.iter().map(PciAddress::short).collect::<Vec<_>>().join(", ")
    ));
    vec![ConfigFile { path: reset::UDEV_RULES.into(), content: reset::udev_rules(&addresses) }]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::ClassCode;
    use crate::plan::pinning::tests::shape;

    fn dev(addr: &str, id: &str, class: u32, group: u32) -> PciDevice {
        let mut d = PciDevice::new(addr.parse().unwrap(), id.parse().unwrap(), ClassCode::new(class));
        d.iommu_group = Some(group);
        d.header_type = Some(0);
        d.reset_methods = Some(vec!["flr".into()]);
        d.numa_node = Some(0);
        d
    }

    /// QEMU's `VGA` (the boot display) and `bochs-display` share 1234:1111: reserving the
    /// guest's by id would take the host's display too (lab notes).
    #[test]
    fn a_shared_id_is_not_reserved_by_id() {
        let mut boot = dev("00:02.0", "1234:1111", 0x030000, 1);
        boot.boot_vga = Some(true);
        let mut guest = dev("01:00.0", "1234:1111", 0x038000, 2);
        guest.reset_methods = Some(vec![]);
        let audio = dev("01:00.1", "8086:293e", 0x040300, 2);
        let devices: BTreeMap<PciAddress, PciDevice> =
            [boot, guest, audio].into_iter().map(|d| (d.address, d)).collect();
        let groups = vec![
            IommuGroup { id: 1, devices: vec!["00:02.0".parse().unwrap()] },
            IommuGroup { id: 2, devices: vec!["01:00.0".parse().unwrap(), "01:00.1".parse().unwrap()] },
        ];
        let mut topo = shape(1, 1, 1, 4, 2, true, &[8192]);
        topo.nodes[0].memory_kib = Some(8 << 20);
        let flags = BTreeSet::new();
        let none = BTreeMap::new();
        let host = PlanHost {
            devices: &devices,
            groups: &groups,
            topology: &topo,
            vendor: CpuVendor::Intel,
            cpu_flags: &flags,
            kernel: Some((6, 1)),
            running: None,
            next_boot: None,
            mounts: &[],
            host_modules: &none,
            framebuffers: &none,
            iommu_on_by_default: false,
            sysctl_hugepages: None,
            builtin: None,
            no_install_commands: None,
            kernel_strings: None,
            modules_available: None,
        };
        let req = Request {
            devices: vec!["01:00.0".parse().unwrap()],
            vcpus: Some(2),
            memory_mib: Some(4096),
            hugepages: HugepageChoice::Auto,
            bind: BindMode::Auto,
            acs_override: false,
            force: false,
        };
        // Issue 16: what the next boot keeps reserved besides the plan counts against the
        // host's memory (8 GiB here, of which the host keeps 2 GiB).
        let reserved = Cmdline::parse("quiet hugepagesz=1G hugepages=4");
        let two_m = Request { hugepages: HugepageChoice::Size2M, ..req.clone() };
        let e = build(&PlanHost { next_boot: Some(("/etc/default/grub", &reserved)), ..host.clone() }, &two_m)
            .unwrap_err()
            .to_string();
        assert!(e.contains("would hold 8 GiB of this host's 8 GiB (4 GiB in 4 hugepages of 1 GiB (kernel command line) + 4 GiB in the guest's 2048 hugepages of 2 MiB)"), "{e}");
        let forced = build(
            &PlanHost { next_boot: Some(("/etc/default/grub", &reserved)), ..host.clone() },
            &Request { force: true, ..two_m.clone() },
        )
        .unwrap();
        assert_eq!(forced.forced.len(), 1);
        // A sysctl count the plan leaves (it uses no hugepages) is held at boot too.
        let sysctl = PlanHost { sysctl_hugepages: Some(("/etc/sysctl.conf".into(), 2048)), ..host.clone() };
        let none = Request { hugepages: HugepageChoice::None, ..req.clone() };
        let e = build(&sysctl, &none).unwrap_err().to_string();
        assert!(e.contains("4 GiB in vm.nr_hugepages = 2048 (/etc/sysctl.conf) + 4 GiB of the guest's memory"), "{e}");
        // With hugepages the plan's own replace it (apply comments the line out).
        assert!(build(&sysctl, &two_m).is_ok());
        // The plan's own 1 GiB pages replace the command line's.
        let pdpe1gb: BTreeSet<String> = ["pdpe1gb".to_string()].into();
        let one_g = PlanHost { next_boot: Some(("/etc/default/grub", &reserved)), cpu_flags: &pdpe1gb, ..host.clone() };
        let p = build(&one_g, &Request { hugepages: HugepageChoice::Size1G, ..req.clone() }).unwrap();
        assert!(p.kernel_cmdline.remove.is_empty() && p.forced.is_empty(), "{:?}", p.kernel_cmdline);
        let p = build(&host, &req).unwrap();
        assert_eq!(p.vfio_ids, ["8086:293e"], "1234:1111 is not reserved by id");
        // Issue 18: it is bound by address instead, before any driver loads.
        assert_eq!(p.vfio_addresses, ["0000:01:00.0"]);
        let vfio = &p.modprobe[0].content;
        assert!(vfio.contains("\ninstall vfio_pci echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override; /sbin/modprobe -i vfio_pci $CMDLINE_OPTS\n"), "{vfio}");
        assert!(
            p.reasons.iter().any(|r| r.contains("01:00.0 bound by address: 00:02.0 has its id 1234:1111")),
            "{:?}",
            p.reasons
        );
        // --bind id leaves it unreserved, and says so.
        let by_id = build(&host, &Request { bind: BindMode::Id, ..req.clone() }).unwrap();
        assert!(by_id.vfio_addresses.is_empty() && !by_id.modprobe[0].content.contains("install"));
        let w = by_id.warnings.join("\n");
        assert!(w.contains("00:02.0 has the id 1234:1111") && w.contains("--bind auto"), "{w}");
        // --bind address: every device by address, none by id.
        let all = build(&host, &Request { bind: BindMode::Address, ..req.clone() }).unwrap();
        assert!(
            all.vfio_ids.is_empty() && all.vfio_addresses == ["0000:01:00.0", "0000:01:00.1"],
            "{:?}",
            all.vfio_addresses
        );
        assert!(!all.kernel_cmdline.add.iter().any(|a| a.starts_with("vfio-pci.ids")), "{:?}", all.kernel_cmdline);
        // An initramfs that runs no install commands (booster) refuses binding by address,
        // and so does a host driver built into the kernel.
        let booster = PlanHost { no_install_commands: Some("booster runs no modprobe".into()), ..host.clone() };
        let e = build(&booster, &req).unwrap_err().to_string();
        assert!(e.contains("01:00.0 must be bound by address, and booster runs no modprobe"), "{e}");
        assert!(build(&booster, &Request { bind: BindMode::Id, ..req.clone() }).is_ok());
        let modules: BTreeMap<PciAddress, Vec<String>> =
            [("01:00.0".parse().unwrap(), vec!["bochs".to_string()])].into();
        let builtin: BTreeSet<String> = ["bochs".to_string()].into();
        let e = build(&PlanHost { host_modules: &modules, builtin: Some(&builtin), ..host.clone() }, &req).unwrap_err();
        assert!(e.to_string().contains("the host driver of 01:00.0 (bochs) is built into the kernel"), "{e}");
        // A host driver that is a module gets its own install line, which also probes again.
        let p = build(&PlanHost { host_modules: &modules, ..host.clone() }, &req).unwrap();
        assert!(p.modprobe[0].content.contains("install bochs echo vfio-pci > /sys/bus/pci/devices/0000:01:00.0/driver_override; echo 0000:01:00.0 > /sys/bus/pci/drivers_probe; /sbin/modprobe -i bochs $CMDLINE_OPTS\n"), "{}", p.modprobe[0].content);
        assert!(p.modprobe[0].content.contains("softdep bochs pre: vfio-pci"));
        let p = build(&host, &req).unwrap();
        assert!(w.contains("01:00.0 has no reset method"), "{w}");
        // Regression: the IOMMU is on (groups exist) without a parameter, by this kernel's
        // build default; the next kernel's need not be, so intel_iommu=on is added.
        assert!(p.kernel_cmdline.add.contains(&"intel_iommu=on".to_string()), "{:?}", p.kernel_cmdline);
        assert!(p.reasons.iter().any(|r| r.contains("CONFIG_INTEL_IOMMU_DEFAULT_ON=y")), "{:?}", p.reasons);
        assert!(p.kernel_cmdline.add.contains(&"iommu=pt".to_string()));
        // Every kernel's config turns it on: nothing to add for it.
        let on = build(&PlanHost { iommu_on_by_default: true, ..host.clone() }, &req).unwrap();
        assert!(!on.kernel_cmdline.add.iter().any(|a| a.starts_with("intel_iommu")), "{:?}", on.kernel_cmdline);
        assert_eq!(p.memory.hugepages.as_ref().map(|h| h.size_kib), Some(2048), "no pdpe1gb: 2 MiB pages");
        // 1 GiB pages without pdpe1gb is an error; none means none.
        let e = build(&host, &Request { hugepages: HugepageChoice::Size1G, ..req.clone() }).unwrap_err();
        assert_eq!(e, PlanError::Memory(memory::MemoryError::No1G));
        assert!(build(&host, &Request { hugepages: HugepageChoice::None, ..req.clone() })
            .unwrap()
            .memory
            .hugepages
            .is_none());
        // Asking for the boot display is refused, and the reason names it.
        let e = build(&host, &Request { devices: vec!["00:02.0".parse().unwrap()], ..req.clone() }).unwrap_err();
        assert!(e.to_string().contains("00:02.0 drives the boot console"), "{e}");
    }
}
