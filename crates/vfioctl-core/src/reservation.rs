//! Whether vfio-pci claims a device when the host boots, and what is missing if not.
//!
//! vfio-pci gets a device at boot when three things hold: its vendor:device id is given
//! to vfio-pci (`vfio-pci.ids=` on the kernel command line, or `options vfio-pci ids=`
//! in modprobe.d), vfio-pci loads before the device's own driver (`softdep DRIVER pre:
//! vfio-pci` in modprobe.d), and the initramfs carries the vfio modules, so vfio-pci is
//! there when the driver would load from it. [`Needs`] says what a set of devices needs;
//! [`Needs::missing`] holds it against a [`BootConfig`] and says exactly what is not
//! there. `plan` writes what the needs say, `check` and `verify` explain a device left
//! on its host driver from what is missing.
//!
//! A device whose id another device of the host shares (two identical cards, one for the
//! host) cannot be reserved by id: it is bound by address instead. modprobe runs an
//! `install` command in place of loading a module; the one vfioctl writes for vfio-pci and
//! for each host driver of such a device first writes `vfio-pci` to the device's
//! `driver_override` (so no other driver may take it), asks the bus to probe it again (for
//! a vfio-pci built into the kernel), then loads the module (`modprobe -i`, which skips
//! the install command). It runs wherever modprobe runs, in the initramfs and after it,
//! and the softdeps make it run before the host driver can claim the device.

use std::collections::BTreeSet;

use crate::cmdline::Cmdline;
use crate::kmod;
use crate::modprobe::{module_name, ModprobeConfig};
use crate::pci::{PciAddress, PciDevice, VendorDevice};

/// The vfio modules in the order they load (each needs the ones before it).
const LOAD_ORDER: &[&str] = &["vfio", "vfio_iommu_type1", "vfio_virqfd", "vfio_pci_core", "vfio_pci"];

/// Modules bound to a device that are not a host driver racing vfio-pci: vfio-pci itself,
/// pci-stub (which holds a device for passthrough too) and the PCIe port driver (bridges).
const NOT_A_RIVAL: &[&str] = &["vfio_pci", "pci_stub", "pcieport"];

/// How vfio-pci is given the passed devices at boot.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum BindMode {
    /// By id, and by address the devices whose id a device that stays with the host shares.
    #[default]
    Auto,
    /// By id only (a shared id is then not reserved at all, with a warning).
    Id,
    /// Every passed device by address.
    Address,
}

impl std::str::FromStr for BindMode {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(BindMode::Auto),
            "id" => Ok(BindMode::Id),
            "address" => Ok(BindMode::Address),
            _ => Err(format!("`{s}` is no binding: auto, id or address")),
        }
    }
}

impl std::fmt::Display for BindMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            BindMode::Auto => "auto",
            BindMode::Id => "id",
            BindMode::Address => "address",
        })
    }
}

/// Which passed devices vfio-pci gets by id and which by address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    /// The ids for `vfio-pci.ids`, in the devices' order, each once.
    pub ids: Vec<VendorDevice>,
    /// The devices bound by address, in order.
    pub addresses: Vec<PciAddress>,
    /// One line per device bound by address (or left unbound), saying why.
    pub reasons: Vec<String>,
    /// Devices `--bind id` leaves to their host drivers because their id is shared.
    pub warnings: Vec<String>,
}

/// How to bind `passed` (addresses of `devices`) with `mode`: a device goes by address when
/// asked, or (auto) when a device of the host that is not passed has its id.
pub fn binding(
    passed: &[PciAddress],
    devices: &std::collections::BTreeMap<PciAddress, PciDevice>,
    mode: BindMode,
) -> Binding {
    let mut b = Binding::default();
    for a in passed {
        let Some(d) = devices.get(a) else { continue };
        let others: Vec<String> = devices
            .values()
            .filter(|o| o.id == d.id && !passed.contains(&o.address))
            .map(|o| o.address.short())
            .collect();
        match (mode, others.is_empty()) {
            (BindMode::Address, _) => {
                b.addresses.push(*a);
                if !b.reasons.iter().any(|r| r.starts_with("bound by address: ")) {
                    b.reasons.push("bound by address: --bind address".into());
                }
            }
            (BindMode::Auto, false) => {
                b.addresses.push(*a);
                b.reasons.push(format!(
                    "{} bound by address: {} has its id {} and stays with the host, so vfio-pci.ids cannot tell them apart",
                    a.short(),
                    others.join(", "),
                    d.id
                ));
            }
            (BindMode::Id, false) => b.warnings.push(format!(
                "{} has the id {} of {}, which is not passed: reserving by id would take it too, so {} is not reserved; bind it by address instead (--bind auto or --bind address)",
                others.join(", "),
                d.id,
                a.short(),
                a.short()
            )),
            (_, true) => {
                if !b.ids.contains(&d.id) {
                    b.ids.push(d.id);
                }
            }
        }
    }
    b
}

/// The modprobe.d `install` line that hands `addresses` to vfio-pci before `module` loads.
/// For a host driver it also asks the bus to probe them again, so a vfio-pci that is
/// already there (loaded by the softdep, or built into the kernel) takes them first.
pub fn install_line(module: &str, addresses: &[PciAddress]) -> String {
    let module = module_name(module);
    let mut steps: Vec<String> =
        addresses.iter().map(|a| format!("echo vfio-pci > /sys/bus/pci/devices/{a}/driver_override")).collect();
    if module != "vfio_pci" {
        steps.extend(addresses.iter().map(|a| format!("echo {a} > /sys/bus/pci/drivers_probe")));
    }
    steps.push(format!("/sbin/modprobe -i {module} $CMDLINE_OPTS"));
    format!("install {module} {}", steps.join("; "))
}

/// The boot configuration vfio-pci's claim depends on.
#[derive(Debug, Clone, Copy)]
pub struct BootConfig<'a> {
    /// The kernel command line of that boot, when known.
    pub cmdline: Option<&'a Cmdline>,
    pub modprobe: &'a ModprobeConfig,
    /// Modules the initramfs loads early, when known (`None`: its content is not known,
    /// and nothing is said about it).
    pub initramfs: Option<&'a BTreeSet<String>>,
    /// Modules built into the kernel, when known: they need no initramfs entry.
    pub builtin: Option<&'a BTreeSet<String>>,
}

impl BootConfig<'_> {
    /// Every id given to vfio-pci, on the command line or in modprobe.d (in any case;
    /// words that are no id are left out, as the kernel does).
    pub fn reserved_ids(&self) -> BTreeSet<VendorDevice> {
        let on_cmdline = self.cmdline.into_iter().flat_map(|c| c.values("vfio-pci.ids"));
        let in_modprobe = self.modprobe.option("vfio_pci", "ids");
        on_cmdline.chain(in_modprobe).flat_map(|v| v.split(',')).filter_map(|i| i.trim().parse().ok()).collect()
    }

    /// Whether a `softdep DRIVER pre: vfio-pci` makes vfio-pci load before `driver`.
    pub fn has_softdep(&self, driver: &str) -> bool {
        self.modprobe.softdep_pre.get(&module_name(driver)).is_some_and(|pre| pre.iter().any(|m| m == "vfio_pci"))
    }
}

/// What reserving a set of devices for vfio-pci at boot takes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Needs {
    /// The ids vfio-pci must be given, in the devices' order, each once.
    pub ids: Vec<VendorDevice>,
    /// The host drivers vfio-pci must load before (module names, sorted, each once).
    pub drivers: Vec<String>,
    /// The vfio modules the initramfs must load, in load order.
    pub modules: Vec<&'static str>,
    /// The devices vfio-pci must be given by address (`driver_override`).
    pub addresses: Vec<PciAddress>,
    /// The host drivers of those devices (module names, sorted, each once): their
    /// install commands hand the devices over.
    pub address_drivers: Vec<String>,
}

/// Whether a module bound to (or claiming) a device is a host driver vfio-pci must beat.
pub fn is_rival(module: &str) -> bool {
    !NOT_A_RIVAL.contains(&module_name(module).as_str())
}

/// The vfio modules a kernel needs, in load order (the pre-6.2 list when the version is
/// unknown).
pub fn early_modules(kernel: Option<(u32, u32)>) -> Vec<&'static str> {
    let needed = kmod::vfio_modules(kernel);
    LOAD_ORDER.iter().copied().filter(|m| needed.contains(m)).collect()
}

impl Needs {
    /// The needs of devices with these ids whose host drivers are `drivers` (any
    /// spelling; vfio-pci, pci-stub and pcieport are left out), on a kernel.
    pub fn new<'d>(
        ids: impl IntoIterator<Item = VendorDevice>,
        drivers: impl IntoIterator<Item = &'d str>,
        kernel: Option<(u32, u32)>,
    ) -> Needs {
        let mut unique = Vec::new();
        for id in ids {
            if !unique.contains(&id) {
                unique.push(id);
            }
        }
        let drivers: BTreeSet<String> = drivers.into_iter().filter(|d| is_rival(d)).map(module_name).collect();
        Needs {
            ids: unique,
            drivers: drivers.into_iter().collect(),
            modules: early_modules(kernel),
            addresses: Vec::new(),
            address_drivers: Vec::new(),
        }
    }

    /// The needs of devices of a host as they are now (on their drivers): by address those
    /// whose id a device left with the host shares, or that an `install` command of
    /// `modprobe` already hands over by address; by id the others.
    pub fn of_devices(
        passed: &[&PciDevice],
        devices: &std::collections::BTreeMap<PciAddress, PciDevice>,
        modprobe: &ModprobeConfig,
        kernel: Option<(u32, u32)>,
    ) -> Needs {
        let addrs: Vec<PciAddress> = passed.iter().map(|d| d.address).collect();
        let b = binding(&addrs, devices, BindMode::Auto);
        let handed: BTreeSet<PciAddress> = modprobe.install.keys().flat_map(|m| modprobe.driver_overrides(m)).collect();
        let by_address: Vec<PciAddress> =
            addrs.iter().copied().filter(|a| b.addresses.contains(a) || handed.contains(a)).collect();
        let by_id = passed.iter().filter(|d| !by_address.contains(&d.address)).map(|d| d.id);
        let drivers = passed.iter().filter_map(|d| d.driver.as_deref());
        let address_drivers =
            passed.iter().filter(|d| by_address.contains(&d.address)).filter_map(|d| d.driver.as_deref());
        Needs::new(by_id, drivers, kernel).by_address(&by_address, address_drivers)
    }

    /// These needs with `addresses` bound by address, whose host drivers are `drivers`.
    pub fn by_address<'d>(mut self, addresses: &[PciAddress], drivers: impl IntoIterator<Item = &'d str>) -> Needs {
        self.addresses = addresses.to_vec();
        let drivers: BTreeSet<String> = drivers.into_iter().filter(|d| is_rival(d)).map(module_name).collect();
        self.address_drivers = drivers.into_iter().collect();
        self
    }

    /// The modprobe.d `install` lines of the devices bound by address: one for vfio-pci
    /// and one for each of their host drivers.
    pub fn install_lines(&self) -> Vec<String> {
        if self.addresses.is_empty() {
            return Vec::new();
        }
        std::iter::once("vfio_pci")
            .chain(self.address_drivers.iter().map(String::as_str))
            .map(|m| install_line(m, &self.addresses))
            .collect()
    }

    /// The modprobe.d lines that make vfio-pci load before the host drivers.
    pub fn softdep_lines(&self) -> Vec<String> {
        self.drivers.iter().map(|d| format!("softdep {d} pre: vfio-pci")).collect()
    }

    /// What `config` lacks of these needs.
    pub fn missing(&self, config: &BootConfig<'_>) -> Missing {
        let reserved = config.reserved_ids();
        let ids = self.ids.iter().copied().filter(|i| !reserved.contains(i)).collect();
        let softdeps = self.drivers.iter().filter(|d| !config.has_softdep(d)).cloned().collect();
        let initramfs = config.initramfs.map(|have| {
            let builtin = |m: &str| config.builtin.is_some_and(|b| b.contains(m));
            self.modules.iter().copied().filter(|m| !have.contains(*m) && !builtin(m)).collect()
        });
        // An address is handed over when vfio-pci's install command does it, or when the
        // install command of every host driver it has does.
        let by_vfio = config.modprobe.driver_overrides("vfio_pci");
        let addresses = self
            .addresses
            .iter()
            .copied()
            .filter(|a| {
                !by_vfio.contains(a)
                    && (self.address_drivers.is_empty()
                        || !self.address_drivers.iter().all(|d| config.modprobe.driver_overrides(d).contains(a)))
            })
            .collect();
        Missing { ids, softdeps, initramfs, any_ids: !reserved.is_empty(), addresses }
    }
}

/// What a boot configuration lacks for vfio-pci to claim the devices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Missing {
    /// Ids given to vfio-pci neither on the command line nor in modprobe.d.
    pub ids: Vec<VendorDevice>,
    /// Host drivers without a `softdep … pre: vfio-pci`.
    pub softdeps: Vec<String>,
    /// vfio modules the initramfs does not load; `None` when its content is unknown.
    pub initramfs: Option<Vec<&'static str>>,
    /// Whether any id at all is given to vfio-pci.
    pub any_ids: bool,
    /// Devices to be bound by address that no modprobe.d `install` command hands to vfio-pci.
    pub addresses: Vec<PciAddress>,
}

impl Missing {
    /// Nothing is missing that could be told: ids, softdeps, and the initramfs when known.
    pub fn none(&self) -> bool {
        self.ids.is_empty()
            && self.softdeps.is_empty()
            && self.addresses.is_empty()
            && self.initramfs.as_ref().is_none_or(Vec::is_empty)
    }

    /// Whether vfio-pci claims the devices at that boot: `Some(true)` when everything is
    /// configured and the initramfs is known to carry the modules, `Some(false)` when
    /// something is missing, `None` when the configuration is complete but the initramfs
    /// is not known.
    pub fn claims(&self) -> Option<bool> {
        if !self.none() {
            Some(false)
        } else {
            self.initramfs.as_ref().map(|_| true)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> VendorDevice {
        s.parse().unwrap()
    }

    fn gpu() -> Needs {
        Needs::new([id("1002:66af"), id("1002:ab20"), id("1002:66af")], ["amdgpu", "snd-hda-intel"], Some((6, 1)))
    }

    #[test]
    fn needs_are_each_once_without_vfio_or_stub_drivers() {
        let n = Needs::new([id("10de:1b06"), id("10de:1b06")], ["vfio-pci", "nouveau", "pci-stub", "pcieport"], None);
        assert_eq!(n.ids, [id("10de:1b06")]);
        assert_eq!(n.drivers, ["nouveau"]);
        assert_eq!(n.modules, ["vfio", "vfio_iommu_type1", "vfio_virqfd", "vfio_pci"]);
        assert_eq!(n.softdep_lines(), ["softdep nouveau pre: vfio-pci"]);
        assert_eq!(early_modules(Some((6, 8))), ["vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio_pci"]);
        assert_eq!(gpu().ids, [id("1002:66af"), id("1002:ab20")]);
        assert_eq!(gpu().drivers, ["amdgpu", "snd_hda_intel"]);
    }

    #[test]
    fn an_empty_configuration_misses_everything_it_can_tell() {
        let modprobe = ModprobeConfig::default();
        let config = BootConfig { cmdline: None, modprobe: &modprobe, initramfs: None, builtin: None };
        let m = gpu().missing(&config);
        assert_eq!(m.ids, gpu().ids);
        assert_eq!(m.softdeps, ["amdgpu", "snd_hda_intel"]);
        assert_eq!((m.initramfs.clone(), m.any_ids, m.claims()), (None, false, Some(false)));
    }

    #[test]
    fn ids_from_either_place_and_softdeps_in_any_spelling() {
        let cmdline = Cmdline::parse("quiet vfio_pci.ids=1002:66AF");
        let mut modprobe = ModprobeConfig::default();
        modprobe.add("options vfio-pci ids=1002:ab20\nsoftdep amdgpu pre: vfio vfio-pci\n");
        let config = BootConfig { cmdline: Some(&cmdline), modprobe: &modprobe, initramfs: None, builtin: None };
        let m = gpu().missing(&config);
        assert!(m.ids.is_empty() && m.any_ids);
        assert_eq!(m.softdeps, ["snd_hda_intel"]);
        let mut both = modprobe.clone();
        both.add("softdep snd-hda-intel pre: vfio-pci\n");
        let m = gpu().missing(&BootConfig { modprobe: &both, ..config });
        assert!(m.none());
        // Configured, but the initramfs is unknown: no verdict on the claim.
        assert_eq!(m.claims(), None);
    }

    #[test]
    fn the_initramfs_when_known() {
        let cmdline = Cmdline::parse("vfio-pci.ids=1002:66af,1002:ab20");
        let mut modprobe = ModprobeConfig::default();
        modprobe.add("softdep amdgpu pre: vfio-pci\nsoftdep snd_hda_intel pre: vfio-pci\n");
        let initramfs: BTreeSet<String> = ["vfio", "vfio_pci"].iter().map(|s| s.to_string()).collect();
        let builtin: BTreeSet<String> = ["vfio_iommu_type1".to_string()].into();
        let config = BootConfig {
            cmdline: Some(&cmdline),
            modprobe: &modprobe,
            initramfs: Some(&initramfs),
            builtin: Some(&builtin),
        };
        let m = gpu().missing(&config);
        assert_eq!(m.initramfs, Some(vec!["vfio_virqfd", "vfio_pci_core"]));
        assert_eq!(m.claims(), Some(false));
        let all: BTreeSet<String> = early_modules(Some((6, 1))).iter().map(|s| s.to_string()).collect();
        let m = gpu().missing(&BootConfig { initramfs: Some(&all), ..config });
        assert_eq!(m.claims(), Some(true));
    }
}
