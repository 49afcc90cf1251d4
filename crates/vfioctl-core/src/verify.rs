//! After the reboot: is the host what the applied plan said it would be?
//!
//! An [`Expectation`] is what `apply` records in its journal (or what a plan for named
//! devices says): the devices that must be on `vfio-pci`, the command-line parameters the
//! running kernel must carry (and those it must not), the vfio modules, the hugepages, the
//! `/dev/vfio` groups. [`verify`] compares it with [`VerifyFacts`] read from the running
//! host and returns [`Check`]s in `vfioctl check`'s style; each failure says what probably
//! caused it.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::check::{Check, HugepagePool, Rule, Status};
use crate::cmdline::Cmdline;
use crate::modprobe::{module_name, ModprobeConfig};
use crate::pci::{PciAddress, PciDevice};
use crate::plan::Plan;
use crate::reservation::{BootConfig, Needs};

/// A device the plan hands to vfio-pci.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedDevice {
    pub address: String,
    pub iommu_group: Option<u32>,
    /// The driver it had before (the one that must not win the race), when known.
    pub host_driver: Option<String>,
}

/// Hugepages the plan reserves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ExpectedHugepages {
    pub size_kib: u64,
    pub count: u64,
    pub node: Option<u32>,
    pub at_boot: bool,
}

/// What the host must look like after the reboot.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Expectation {
    pub devices: Vec<ExpectedDevice>,
    /// `name=value` or `name` parameters the running command line must carry.
    pub cmdline_add: Vec<String>,
    /// Parameters it must no longer carry.
    pub cmdline_remove: Vec<String>,
    /// Modules that must be loaded (or built in).
    pub modules: Vec<String>,
    pub hugepages: Option<ExpectedHugepages>,
    /// The parameters went into a separate boot entry: they are there only when the host
    /// was booted with it.
    #[serde(default)]
    pub separate_entry: bool,
    /// Devices whose reset must be vendor-reset's (`device_specific` first in their
    /// `reset_method`), as the plan's udev rule selects it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub device_specific_reset: Vec<String>,
}

impl Expectation {
    pub fn from_plan(plan: &Plan, separate_entry: bool) -> Self {
        Expectation {
            devices: plan
                .devices
                .iter()
                .map(|d| ExpectedDevice {
                    address: d.address.to_string(),
                    iommu_group: d.iommu_group,
                    host_driver: d.driver.clone().filter(|x| !x.starts_with("vfio")),
                })
                .collect(),
            cmdline_add: plan.kernel_cmdline.add.clone(),
            cmdline_remove: plan.kernel_cmdline.remove.clone(),
            modules: plan.initramfs_modules.clone(),
            hugepages: plan.memory.hugepages.as_ref().map(|h| ExpectedHugepages {
                size_kib: h.size_kib,
                count: h.count,
                node: h.node,
                at_boot: h.reserve_at_boot,
            }),
            separate_entry,
            device_specific_reset: if plan.udev_rules.iter().any(|f| f.path == crate::pci::reset::UDEV_RULES) {
                plan.devices
                    .iter()
                    .filter(|d| {
                        format!("{}:{}", d.vendor_id, d.device_id)
                            .parse()
                            .is_ok_and(|id| crate::pci::reset::known_bad_id(id).is_some())
                    })
                    .map(|d| d.address.to_string())
                    .collect()
            } else {
                Vec::new()
            },
        }
    }
}

/// The running host, as far as verify needs it.
#[derive(Debug, Clone, Copy)]
pub struct VerifyFacts<'a> {
    pub running: Option<&'a Cmdline>,
    /// The next boot's command line and where it is configured.
    pub next_boot: Option<(&'a str, &'a Cmdline)>,
    pub devices: &'a BTreeMap<PciAddress, PciDevice>,
    pub modules_loaded: Option<&'a BTreeSet<String>>,
    pub modules_builtin: Option<&'a BTreeSet<String>>,
    pub hugepages: &'a [HugepagePool],
    /// Group numbers under `/dev/vfio`, when that could be read.
    pub vfio_groups: Option<&'a BTreeSet<u32>>,
    pub modprobe: &'a ModprobeConfig,
    /// The initramfs builder's regeneration command, for remedies (`update-initramfs -u`).
    pub regenerate: Option<&'a str>,
}

/// The command line carries a parameter the plan added (id by its name).
pub const CMDLINE: Rule = Rule {
    id: "verify.cmdline.<param>",
    area: "BOOT",
    title: "the kernel command line for <param>",
    level: Status::Fail,
};
/// A parameter the plan removed is gone.
pub const CMDLINE_REMOVED: Rule = Rule {
    id: "verify.cmdline.removed.<param>",
    area: "BOOT",
    title: "that <param> is gone from the command line",
    level: Status::Warn,
};
pub const MODULE: Rule =
    Rule { id: "verify.module.<module>", area: "MODULES", title: "that <module> is loaded", level: Status::Fail };
pub const DEVICE: Rule = Rule {
    id: "verify.device.<address>",
    area: "DEVICE",
    title: "that <address> is bound to vfio-pci",
    level: Status::Fail,
};
pub const VFIO_GROUP: Rule =
    Rule { id: "verify.vfio-group.<group>", area: "VFIO", title: "that /dev/vfio/<group> exists", level: Status::Fail };
/// A card that does not reset by the kernel's own resets has vendor-reset's selected.
pub const RESET: Rule = Rule {
    id: "verify.reset.<address>",
    area: "DEVICE",
    title: "that <address> resets by vendor-reset (device_specific)",
    level: Status::Fail,
};
/// Fails for pages reserved at boot; only warns for pages allocated later.
pub const HUGEPAGES: Rule =
    Rule { id: "verify.hugepages", area: "MEMORY", title: "<count> hugepages of <size>", level: Status::Fail };

/// Every rule verify holds the host to, in the order it checks them.
pub const RULES: &[Rule] = &[CMDLINE, CMDLINE_REMOVED, MODULE, DEVICE, RESET, VFIO_GROUP, HUGEPAGES];

fn is_ids(name: &str) -> bool {
    name == "vfio-pci.ids" || name == "vfio_pci.ids"
}

/// The ids of `vfio-pci.ids=` parameters in a list.
fn ids_of(params: &[String]) -> BTreeSet<&str> {
    params.iter().filter_map(|p| p.split_once('=')).filter(|(n, _)| is_ids(n)).flat_map(|(_, v)| v.split(',')).collect()
}

/// The ids of the `vfio-pci.ids` on a command line.
fn ids_of_cmdline(c: &Cmdline) -> BTreeSet<&str> {
    c.values("vfio-pci.ids").into_iter().chain(c.values("vfio_pci.ids")).flat_map(|v| v.split(',')).collect()
}

/// `vfio-pci.ids=a,b` is satisfied by a running value that contains both ids.
fn carries(cmdline: &Cmdline, param: &str) -> bool {
    match param.split_once('=') {
        None => cmdline.has(param),
        Some((name, value)) if is_ids(name) => {
            let have = ids_of_cmdline(cmdline);
            value.split(',').all(|id| have.contains(id))
        }
        Some((name, value)) => cmdline.has_value(name, value),
    }
}

pub fn verify(e: &Expectation, f: &VerifyFacts<'_>) -> Vec<Check> {
    let mut out = Vec::new();
    let regen = f.regenerate.unwrap_or("rebuild the initramfs (update-initramfs -u, dracut -f, mkinitcpio -P)");
    // The command line.
    for p in &e.cmdline_add {
        let rule = CMDLINE.with(&[p.split('=').next().unwrap_or(p)], &[p]);
        let Some(running) = f.running else {
            out.push(rule.note("the running command line is unknown"));
            continue;
        };
        if carries(running, p) {
            out.push(rule.pass(""));
            continue;
        }
        let next = f.next_boot.filter(|(_, c)| carries(c, p));
        let (message, remedy) = match (next, e.separate_entry) {
            (_, true) => (
                "not in the running kernel's command line: the host was booted from its usual entry, not vfioctl's".to_string(),
                "reboot and choose the vfioctl entry in the boot menu".to_string(),
            ),
            (Some((source, _)), false) => (
                format!("configured in {source} but not in the running kernel's command line"),
                "the boot loader entry that booted is not the one edited, or its configuration was not regenerated: run update-grub / grub2-mkconfig (or check which entry the firmware boots), then reboot".to_string(),
            ),
            (None, false) => (
                "neither in the running kernel's command line nor in the next boot's configuration".to_string(),
                "the change was undone or never written: vfioctl status shows what changed since apply; apply again".to_string(),
            ),
        };
        out.push(rule.verdict(Status::Fail, message, Some(remedy)));
    }
    for p in &e.cmdline_remove {
        let rule = CMDLINE_REMOVED.with(&[p.split('=').next().unwrap_or(p)], &[p]);
        let Some(running) = f.running else { continue };
        let still = match p.split_once('=') {
            None => running.has(p),
            // A removed id list is superseded by the merged one: only ids that left it count.
            Some((name, value)) if is_ids(name) => {
                let kept = ids_of(&e.cmdline_add);
                let have = ids_of_cmdline(running);
                value.split(',').any(|id| !kept.contains(id) && have.contains(id))
            }
            Some((name, value)) => running.has_value(name, value),
        };
        if still {
            out.push(rule.verdict(
                Status::Warn,
                "still in the running kernel's command line",
                Some("the entry that booted is not the one edited, or its configuration was not regenerated".into()),
            ));
        } else {
            out.push(rule.pass(""));
        }
    }
    // Modules.
    for m in &e.modules {
        let name = module_name(m);
        let rule = MODULE.on(&name);
        let builtin = f.modules_builtin.is_some_and(|b| b.contains(&name));
        match f.modules_loaded {
            None => out.push(rule.note("the loaded modules are unknown")),
            Some(l) if l.contains(&name) || builtin => out.push(rule.pass("")),
            Some(_) => out.push(rule.verdict(Status::Fail,
                "not loaded",
                Some(format!("it is not in the initramfs or failed to load: {regen}, reboot; `modprobe {name}` and dmesg say why it fails")),
            )),
        }
    }
    // Devices.
    let config = BootConfig { cmdline: f.running, modprobe: f.modprobe, initramfs: None, builtin: f.modules_builtin };
    // Every expected device is passed: an id they share among themselves needs no address.
    let passed: Vec<&PciDevice> = e
        .devices
        .iter()
        .filter_map(|d| d.address.parse::<PciAddress>().ok())
        .filter_map(|a| f.devices.get(&a))
        .collect();
    for d in &e.devices {
        let rule = DEVICE.on(&d.address);
        let addr: Option<PciAddress> = d.address.parse().ok();
        let Some(dev) = addr.and_then(|a| f.devices.get(&a)) else {
            out.push(rule.verdict(Status::Fail,
                "the device is not on the PCI bus",
                Some("it moved (another slot, a BIOS update renumbering buses) or is off: vfioctl list shows the devices now; plan and apply again".into()),
            ));
            continue;
        };
        match dev.driver.as_deref() {
            Some("vfio-pci") => out.push(rule.pass("")),
            Some(driver) => {
                let module = module_name(driver);
                let needs = Needs::of_devices(&passed, f.devices, f.modprobe, None);
                let missing = Needs {
                    ids: needs.ids.into_iter().filter(|i| *i == dev.id).collect(),
                    drivers: vec![module.clone()],
                    addresses: needs.addresses.into_iter().filter(|a| *a == dev.address).collect(),
                    address_drivers: vec![module.clone()],
                    ..needs
                }
                .missing(&config);
                let (why, fix) = if !missing.addresses.is_empty() {
                    (
                        format!("its id {} is shared with a device of the host, and no modprobe.d install command hands {} to vfio-pci by address", dev.id, dev.address.short()),
                        "apply again (vfioctl status shows whether the files changed since)".to_string(),
                    )
                } else if !missing.ids.is_empty() {
                    let why = if missing.any_ids {
                        format!("its id {} is not in the vfio-pci.ids on the command line or in modprobe.d", dev.id)
                    } else {
                        "vfio-pci.ids is neither on the command line nor in modprobe.d".to_string()
                    };
                    (why, "apply again (vfioctl status shows whether the files changed since)".to_string())
                } else if !missing.softdeps.is_empty() {
                    (
                        format!("{driver} took it first: no `softdep {module} pre: vfio-pci` makes vfio-pci load before it"),
                        format!("add the softdep to /etc/modprobe.d/vfio.conf (vfioctl apply writes it), {regen}, reboot"),
                    )
                } else {
                    let why = match &missing.initramfs {
                        Some(m) if !m.is_empty() => format!("{driver} took it first although vfio-pci is configured: the initramfs does not load {}", m.join(", ")),
                        _ => format!("{driver} took it first although vfio-pci is configured: the initramfs probably does not carry vfio-pci and its configuration"),
                    };
                    (why, format!("{regen}, then reboot"))
                };
                out.push(rule.verdict(Status::Fail, format!("on {driver}: {why}"), Some(fix)));
            }
            None => out.push(rule.verdict(Status::Fail,
                "no driver is bound",
                Some(format!(
                    "vfio-pci did not claim it: is its id in vfio-pci.ids? `modprobe vfio-pci` and dmesg tell; else {regen}"
                )),
            )),
        }
    }
    // Resets.
    for a in &e.device_specific_reset {
        let rule = RESET.on(a);
        let Some(dev) = a.parse::<PciAddress>().ok().and_then(|a| f.devices.get(&a)) else { continue };
        match dev.reset_methods.as_deref() {
            Some([first, ..]) if first == "device_specific" => out.push(rule.pass("")),
            None => out.push(rule.note("its reset_method could not be read (Linux before 5.15 has none: vendor-reset's reset is used as soon as it is loaded)")),
            Some(m) => out.push(rule.verdict(
                Status::Fail,
                format!("its reset is {}, not vendor-reset's: the guest's reboot will leave the card unusable until the host reboots", if m.is_empty() { "none".to_string() } else { m.join(" ") }),
                Some(format!(
                    "check that vendor-reset loads (`modprobe vendor-reset`, dmesg) and that {} is in place; by hand: echo device_specific > /sys/bus/pci/devices/{a}/reset_method",
                    crate::pci::reset::UDEV_RULES
                )),
            )),
        }
    }
    // Groups.
    let groups: BTreeSet<u32> = e.devices.iter().filter_map(|d| d.iommu_group).collect();
    for g in groups {
        let rule = VFIO_GROUP.on(&g.to_string());
        match f.vfio_groups {
            None => out.push(rule.note("/dev/vfio could not be read")),
            Some(have) if have.contains(&g) => out.push(rule.pass("")),
            Some(_) => out.push(
                rule.verdict(
                    Status::Fail,
                    "missing",
                    Some(
                        "vfio-pci has not bound the group's devices (see the device checks above), or the IOMMU is off"
                            .into(),
                    ),
                ),
            ),
        }
    }
    // Hugepages.
    if let Some(h) = &e.hugepages {
        let have: u64 = f
            .hugepages
            .iter()
            .filter(|p| p.size_kib == h.size_kib && (h.node.is_none() || p.node == h.node || p.node.is_none()))
            .map(|p| p.total)
            .max()
            .unwrap_or(0);
        let size = if h.size_kib >= 1 << 20 {
            format!("{} GiB", h.size_kib >> 20)
        } else {
            format!("{} MiB", h.size_kib >> 10)
        };
        let node = h.node.map_or(String::new(), |n| format!(" on node {n}"));
        let rule = HUGEPAGES.with(&[], &[&h.count.to_string(), &format!("{size}{node}")]);
        if have >= h.count {
            out.push(rule.verdict(Status::Pass, format!("{have} reserved"), None));
        } else {
            let (status, fix) = if h.at_boot {
                (
                    Status::Fail,
                    "the kernel could not reserve them at boot (too little free memory on the node, or the hugepages= parameters are missing: see the command-line checks); reserve fewer or free memory".to_string(),
                )
            } else {
                (
                    Status::Warn,
                    "2 MiB pages are allocated when vm.nr_hugepages is set (the sysctl.d drop-in) or when the guest starts; memory may be too fragmented: reserve them at boot instead".to_string(),
                )
            };
            out.push(rule.verdict(status, format!("{have} reserved"), Some(fix)));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{ClassCode, VendorDevice};
    use std::str::FromStr;

    fn dev(a: &str, driver: Option<&str>) -> (PciAddress, PciDevice) {
        let addr = PciAddress::from_str(a).unwrap();
        let mut d = PciDevice::new(addr, VendorDevice::from_str("1002:5046").unwrap(), ClassCode::new(0x030000));
        d.driver = driver.map(String::from);
        (addr, d)
    }

    fn expectation() -> Expectation {
        Expectation {
            devices: vec![
                ExpectedDevice {
                    address: "0000:01:00.0".into(),
                    iommu_group: Some(5),
                    host_driver: Some("radeon".into()),
                },
                ExpectedDevice {
                    address: "0000:01:00.1".into(),
                    iommu_group: Some(5),
                    host_driver: Some("snd_hda_intel".into()),
                },
            ],
            cmdline_add: vec!["intel_iommu=on".into(), "iommu=pt".into(), "vfio-pci.ids=1002:5046,8086:293e".into()],
            cmdline_remove: vec!["vfio-pci.ids=1002:5046,144d:a808".into()],
            modules: vec!["vfio".into(), "vfio_pci".into()],
            hugepages: Some(ExpectedHugepages { size_kib: 2048, count: 256, node: Some(0), at_boot: true }),
            separate_entry: false,
            device_specific_reset: Vec::new(),
        }
    }

    struct Host {
        running: Cmdline,
        next: Cmdline,
        devices: BTreeMap<PciAddress, PciDevice>,
        loaded: BTreeSet<String>,
        builtin: BTreeSet<String>,
        pools: Vec<HugepagePool>,
        groups: BTreeSet<u32>,
        modprobe: ModprobeConfig,
    }

    fn good() -> Host {
        let line = "root=/dev/nvme0n1p1 intel_iommu=on iommu=pt vfio-pci.ids=8086:293e,1002:5046 hugepages=256";
        Host {
            running: Cmdline::parse(line),
            next: Cmdline::parse(line),
            devices: [dev("0000:01:00.0", Some("vfio-pci")), dev("0000:01:00.1", Some("vfio-pci"))]
                .into_iter()
                .collect(),
            loaded: ["vfio", "vfio_pci", "vfio_iommu_type1"].iter().map(|s| s.to_string()).collect(),
            builtin: BTreeSet::new(),
            pools: vec![HugepagePool { node: Some(0), size_kib: 2048, total: 256, free: 256 }],
            groups: [5].into_iter().collect(),
            modprobe: ModprobeConfig::default(),
        }
    }

    fn run(h: &Host, e: &Expectation) -> Vec<Check> {
        verify(
            e,
            &VerifyFacts {
                running: Some(&h.running),
                next_boot: Some(("/etc/default/grub", &h.next)),
                devices: &h.devices,
                modules_loaded: Some(&h.loaded),
                modules_builtin: Some(&h.builtin),
                hugepages: &h.pools,
                vfio_groups: Some(&h.groups),
                modprobe: &h.modprobe,
                regenerate: Some("update-initramfs -u"),
            },
        )
    }

    fn failing(checks: &[Check]) -> Vec<(&str, &str)> {
        checks.iter().filter(|c| c.status != Status::Pass).map(|c| (c.id.as_str(), c.message.as_str())).collect()
    }

    #[test]
    fn a_host_that_came_up_as_planned_passes() {
        let checks = run(&good(), &expectation());
        assert!(failing(&checks).is_empty(), "{:#?}", checks);
        for c in &checks {
            assert!(
                RULES.iter().any(|r| crate::check::gives(r, &c.id) && r.area == c.area),
                "{} is not declared",
                c.id
            );
        }
        assert_eq!(checks.len(), 3 + 1 + 2 + 2 + 1 + 1);
    }

    /// Issue 18: a Vega whose udev rule did not select vendor-reset's reset (the module
    /// missing after a kernel update) fails, naming the rule and the manual step.
    #[test]
    fn a_card_that_needs_vendor_reset_fails_until_its_reset_is_selected() {
        let mut h = good();
        let mut e = expectation();
        e.device_specific_reset = vec!["0000:01:00.0".into()];
        let gpu = h.devices.get_mut(&"0000:01:00.0".parse().unwrap()).unwrap();
        gpu.reset_methods = Some(vec!["device_specific".into(), "bus".into()]);
        assert!(failing(&run(&h, &e)).is_empty());
        let gpu = h.devices.get_mut(&"0000:01:00.0".parse().unwrap()).unwrap();
        gpu.reset_methods = Some(vec!["bus".into()]);
        let checks = run(&h, &e);
        let f = checks.iter().find(|c| c.id == "verify.reset.0000:01:00.0").expect("reset check");
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("its reset is bus, not vendor-reset's"), "{}", f.message);
        assert!(f.remedy.as_deref().unwrap_or("").contains("70-vfioctl-reset.rules"), "{:?}", f.remedy);
        // A kernel without reset_method (before 5.15): a note, not a failure.
        let gpu = h.devices.get_mut(&"0000:01:00.0".parse().unwrap()).unwrap();
        gpu.reset_methods = None;
        assert!(run(&h, &e).iter().any(|c| c.id == "verify.reset.0000:01:00.0" && c.status == Status::Note));
    }

    #[test]
    fn a_parameter_configured_but_not_booted_blames_the_boot_entry() {
        let mut h = good();
        h.running = Cmdline::parse("root=/dev/nvme0n1p1 intel_iommu=on vfio-pci.ids=8086:293e,1002:5046 hugepages=256");
        let checks = run(&h, &expectation());
        let f: Vec<&Check> = checks.iter().filter(|c| c.status == Status::Fail).collect();
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].id, "verify.cmdline.iommu");
        assert!(f[0].message.contains("configured in /etc/default/grub"));
        assert!(f[0].remedy.as_deref().unwrap_or("").contains("update-grub"));
        let mut e = expectation();
        e.separate_entry = true;
        let checks = run(&h, &e);
        assert!(checks.iter().any(|c| c.remedy.as_deref().is_some_and(|r| r.contains("choose the vfioctl entry"))));
    }

    #[test]
    fn a_device_on_its_host_driver_blames_the_softdep_or_the_initramfs() {
        let mut h = good();
        h.devices.insert(dev("0000:01:00.1", Some("snd_hda_intel")).0, dev("0000:01:00.1", Some("snd_hda_intel")).1);
        let c = run(&h, &expectation());
        let f = c.iter().find(|c| c.id == "verify.device.0000:01:00.1").unwrap();
        assert_eq!(f.status, Status::Fail);
        assert!(f.message.contains("no `softdep snd_hda_intel pre: vfio-pci`"), "{}", f.message);
        h.modprobe.add("softdep snd_hda_intel pre: vfio-pci\n");
        let c = run(&h, &expectation());
        let f = c.iter().find(|c| c.id == "verify.device.0000:01:00.1").unwrap();
        assert!(f.message.contains("initramfs probably does not carry vfio-pci"), "{}", f.message);
        assert!(f.remedy.as_deref().unwrap_or("").contains("update-initramfs -u"));
        h.running = Cmdline::parse("root=/dev/x intel_iommu=on iommu=pt hugepages=256");
        let c = run(&h, &expectation());
        let f = c.iter().find(|c| c.id == "verify.device.0000:01:00.1").unwrap();
        assert!(f.message.contains("neither on the command line nor in modprobe.d"), "{}", f.message);
        // Other ids are reserved, this device's is not: that, not the softdep, is the cause.
        h.running = Cmdline::parse("root=/dev/x intel_iommu=on iommu=pt vfio-pci.ids=8086:293e hugepages=256");
        let c = run(&h, &expectation());
        let f = c.iter().find(|c| c.id == "verify.device.0000:01:00.1").unwrap();
        assert!(f.message.contains("its id 1002:5046 is not in the vfio-pci.ids"), "{}", f.message);
    }

    #[test]
    fn missing_modules_groups_pages_and_devices_fail() {
        let mut h = good();
        h.loaded.remove("vfio_pci");
        h.groups.clear();
        h.pools[0].total = 100;
        h.devices.remove(&PciAddress::from_str("0000:01:00.0").unwrap());
        let c = run(&h, &expectation());
        let ids: Vec<&str> = c.iter().filter(|c| c.status == Status::Fail).map(|c| c.id.as_str()).collect();
        assert_eq!(
            ids,
            ["verify.module.vfio_pci", "verify.device.0000:01:00.0", "verify.vfio-group.5", "verify.hugepages"]
        );
        h.builtin.insert("vfio_pci".into());
        assert!(run(&h, &expectation()).iter().all(|c| c.id != "verify.module.vfio_pci" || c.status == Status::Pass));
    }

    #[test]
    fn an_id_dropped_from_the_list_must_be_gone() {
        let mut h = good();
        h.running = Cmdline::parse("intel_iommu=on iommu=pt vfio-pci.ids=8086:293e,1002:5046,144d:a808");
        let c = run(&h, &expectation());
        let w = c.iter().find(|c| c.id == "verify.cmdline.removed.vfio-pci.ids").unwrap();
        assert_eq!(w.status, Status::Warn);
    }

    #[test]
    fn expectations_survive_the_journal() {
        let e = expectation();
        let json = serde_json::to_string(&e).unwrap();
        assert_eq!(serde_json::from_str::<Expectation>(&json).unwrap(), e);
    }
}
