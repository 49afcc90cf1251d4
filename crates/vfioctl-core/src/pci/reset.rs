//! Whether a device comes back after its guest reboots: the cards known not to reset
//! (the AMD generations the out-of-tree `vendor-reset` module handles), and devices whose
//! only reset is a bus reset that also resets other devices on the bus.

use super::{PciAddress, PciDevice, VendorDevice};

/// AMD GPU generations that do not come back from a guest reboot by the kernel's own
/// resets, with their device ids (the ones `vendor-reset` lists).
const AMD_RESET_BUG: &[(&str, &[u16])] = &[
    (
        "Polaris 10 (RX 470/480/570/580/590)",
        &[0x67c0, 0x67c1, 0x67c2, 0x67c4, 0x67c7, 0x67c8, 0x67c9, 0x67ca, 0x67cc, 0x67cf, 0x67d0, 0x67df, 0x6fdf],
    ),
    ("Polaris 11 (RX 460/560)", &[0x67e0, 0x67e1, 0x67e3, 0x67e7, 0x67e8, 0x67e9, 0x67eb, 0x67ef, 0x67ff]),
    ("Polaris 12 (RX 540/550)", &[0x6980, 0x6981, 0x6985, 0x6986, 0x6987, 0x6995, 0x6997, 0x699f]),
    (
        "Vega 10 (Vega 56/64, Frontier)",
        &[
            0x6860, 0x6861, 0x6862, 0x6863, 0x6864, 0x6867, 0x6868, 0x6869, 0x686a, 0x686b, 0x686c, 0x686d, 0x686e,
            0x686f, 0x687f,
        ],
    ),
    ("Vega 20 (Radeon VII, Instinct MI50/MI60)", &[0x66a0, 0x66a1, 0x66a2, 0x66a3, 0x66a4, 0x66a7, 0x66af]),
    ("Arcturus (Instinct MI100)", &[0x738c]),
    ("Navi 10 (RX 5600/5700)", &[0x1681, 0x7310, 0x7312, 0x7318, 0x7319, 0x731a, 0x731b, 0x731e, 0x731f]),
    ("Navi 12 (Pro 5600M)", &[0x7360, 0x7362]),
    ("Navi 14 (RX 5300/5500)", &[0x7340, 0x7341, 0x7347, 0x734f]),
];

/// Why a device may not come back after its guest reboots.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResetRisk {
    /// A generation known not to reset; the out-of-tree vendor-reset module resets it.
    KnownBad { family: &'static str },
    /// Its only reset is a bus reset, which also resets these devices on the same bus.
    SharedBus { others: Vec<PciAddress> },
}

/// vendor-reset's module name, as modules.dep and /proc/modules give it.
pub const VENDOR_RESET: &str = "vendor_reset";

/// The udev rules file that selects vendor-reset's reset for the planned devices.
pub const UDEV_RULES: &str = "/etc/udev/rules.d/70-vfioctl-reset.rules";

/// The generation of `dev` known not to reset, whatever reset it has selected now (the
/// plan keeps selecting vendor-reset's for it, so that planning again after the apply plans
/// the same).
pub fn known_bad(dev: &PciDevice) -> Option<&'static str> {
    known_bad_id(dev.id)
}

/// The generation known not to reset that the id `id` belongs to.
pub fn known_bad_id(id: VendorDevice) -> Option<&'static str> {
    if id.vendor != 0x1002 {
        return None;
    }
    AMD_RESET_BUG.iter().find(|(_, ids)| ids.contains(&id.device)).map(|(family, _)| *family)
}

/// The udev rules that select vendor-reset's reset (`device_specific`, Linux 5.15 and
/// later) for `addresses` when each is added (at boot, udev's coldplug): the module is loaded
/// first, since only with it loaded does the kernel accept `device_specific` for these cards.
/// Matched by address, so that an identical card of the host keeps its own reset.
pub fn udev_rules(addresses: &[PciAddress]) -> String {
    let mut out = format!(
        "# Written by vfioctl: select vendor-reset's reset for {} (cards that do not come back from a guest reboot otherwise).\n",
        addresses.iter().map(PciAddress::to_string).collect::<Vec<_>>().join(", ")
    );
    for a in addresses {
        out.push_str(&format!(
            "ACTION==\"add\", SUBSYSTEM==\"pci\", KERNEL==\"{a}\", RUN+=\"/bin/sh -c '/sbin/modprobe vendor-reset; echo device_specific > /sys/bus/pci/devices/{a}/reset_method'\"\n"
        ));
    }
    out
}

/// The reset risk of `dev` among the host's `devices`; `None` when there is none known.
/// A device whose reset method is already `device_specific` (vendor-reset's, set on Linux
/// 5.15 and later) is not at risk.
pub fn risk<'a>(dev: &PciDevice, devices: impl IntoIterator<Item = &'a PciDevice>) -> Option<ResetRisk> {
    let methods = dev.reset_methods.as_deref().unwrap_or(&[]);
    if methods.first().is_some_and(|m| m == "device_specific") {
        return None;
    }
    if let Some(family) = known_bad(dev) {
        return Some(ResetRisk::KnownBad { family });
    }
    if methods == ["bus"] {
        let others: Vec<PciAddress> = devices
            .into_iter()
            .filter(|o| {
                o.address.domain == dev.address.domain
                    && o.address.bus == dev.address.bus
                    && !o.address.same_slot(&dev.address)
                    && !o.is_bridge()
            })
            .map(|o| o.address)
            .collect();
        if !others.is_empty() {
            return Some(ResetRisk::SharedBus { others });
        }
    }
    None
}

impl ResetRisk {
    /// What it means, for people.
    pub fn message(&self, dev: &PciDevice) -> String {
        match self {
            ResetRisk::KnownBad { family } => format!(
                "{} is an AMD {family}: these cards do not come back after the guest reboots or shuts down (the \"AMD reset bug\"); the host then has to reboot",
                dev.address.short()
            ),
            ResetRisk::SharedBus { others } => format!(
                "{}'s only reset is a bus reset, which resets {} too",
                dev.address.short(),
                others.iter().map(PciAddress::short).collect::<Vec<_>>().join(", ")
            ),
        }
    }

    /// What to do about it; `vendor_reset_installed`: the running kernel has the module.
    pub fn remedy(&self, dev: &PciDevice, vendor_reset_installed: bool) -> String {
        // Before Linux 5.15 there is no reset_method to select: vendor-reset's reset is
        // the card's once the module is loaded (before the card's driver).
        let by_hand = match dev.reset_methods {
            Some(_) => format!("echo device_specific > /sys/bus/pci/devices/{}/reset_method", dev.address),
            None => "this kernel has no reset_method to select (before Linux 5.15): loading the module before the card's driver is all it takes".into(),
        };
        match self {
            ResetRisk::KnownBad { .. } if vendor_reset_installed => format!(
                "vendor-reset is installed but not this card's reset: plan and apply again (vfioctl loads it early and, on Linux 5.15 or later, selects its reset with a udev rule), or by hand: modprobe vendor-reset; {by_hand}"
            ),
            ResetRisk::KnownBad { .. } => format!(
                "install the vendor-reset module (github.com/gnif/vendor-reset, as DKMS), then plan and apply again: vfioctl loads it early and, on Linux 5.15 or later, selects its reset (by hand, with the module loaded: {by_hand})"
            ),
            ResetRisk::SharedBus { .. } => {
                "move the card to a slot of its own (a CPU slot), or pass the devices that share its bus with it".into()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::ClassCode;

    fn dev(addr: &str, id: &str, methods: &[&str]) -> PciDevice {
        let mut d = PciDevice::new(addr.parse().unwrap(), id.parse().unwrap(), ClassCode::new(0x030000));
        d.reset_methods = Some(methods.iter().map(|m| m.to_string()).collect());
        d
    }

    #[test]
    fn the_cards_that_do_not_reset() {
        let vega = dev("0b:00.0", "1002:687f", &["bus"]);
        assert_eq!(risk(&vega, []), Some(ResetRisk::KnownBad { family: "Vega 10 (Vega 56/64, Frontier)" }));
        let r = risk(&vega, []).unwrap();
        assert!(r
            .remedy(&vega, false)
            .contains("echo device_specific > /sys/bus/pci/devices/0000:0b:00.0/reset_method"));
        assert!(r.remedy(&vega, false).starts_with("install the vendor-reset module"));
        // Installed but not selected: no advice to install what is there.
        assert!(r.remedy(&vega, true).starts_with("vendor-reset is installed but not this card's reset"));
        // Regression: before Linux 5.15 there is no reset_method to write to.
        let mut old = vega.clone();
        old.reset_methods = None;
        for installed in [false, true] {
            let remedy = r.remedy(&old, installed);
            assert!(!remedy.contains("reset_method >") && !remedy.contains("> /sys"), "{remedy}");
            assert!(remedy.contains("no reset_method to select"), "{remedy}");
        }
        // Once vendor-reset's method is selected, it resets.
        assert_eq!(risk(&dev("0b:00.0", "1002:687f", &["device_specific", "bus"]), []), None);
        // The plan still knows the generation, and keeps selecting its reset.
        assert_eq!(
            known_bad(&dev("0b:00.0", "1002:687f", &["device_specific", "bus"])),
            Some("Vega 10 (Vega 56/64, Frontier)")
        );
        assert_eq!(known_bad(&dev("0b:00.0", "1002:73ff", &["bus"])), None);
        // Navi 21 (RX 6800) resets by itself; an NVIDIA card with FLR too.
        assert_eq!(risk(&dev("0b:00.0", "1002:73bf", &["flr", "bus"]), []), None);
        assert_eq!(risk(&dev("09:00.0", "10de:1f02", &["bus"]), []), None);
    }

    #[test]
    fn a_bus_reset_shared_with_other_devices() {
        let gpu = dev("05:00.0", "10de:1f02", &["bus"]);
        let audio = dev("05:00.1", "10de:10f9", &["bus"]);
        let nic = dev("05:01.0", "8086:1539", &["flr"]);
        let far = dev("06:00.0", "8086:1539", &["flr"]);
        let all = [gpu.clone(), audio, nic.clone(), far];
        assert_eq!(risk(&gpu, &all), Some(ResetRisk::SharedBus { others: vec![nic.address] }));
        assert_eq!(risk(&dev("05:00.0", "10de:1f02", &["flr", "bus"]), &all), None);
    }
}
