//! Which kernel modules claim a PCI device on this host: the module of the driver bound
//! now (`driver/module`, else the driver's name), and, for devices on vfio-pci or
//! unbound, the modules whose `modules.alias` patterns match the device's `modalias`.
//! These become the `softdep … pre: vfio-pci` lines of a plan.

use std::collections::BTreeMap;

use vfioctl_core::kmod;
use vfioctl_core::pci::{PciAddress, PciDevice};

use crate::pci::PCI_DEVICES;
use crate::root::HostRoot;

/// Modules per device, for the devices given.
pub fn host_modules<'a>(
    root: &HostRoot,
    devices: impl IntoIterator<Item = &'a PciDevice>,
) -> BTreeMap<PciAddress, Vec<String>> {
    let mut aliases: Option<Option<String>> = None;
    // Each driver's module link is read once, however many devices it has.
    let mut module_of: BTreeMap<String, String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for d in devices {
        if d.is_bridge() {
            continue;
        }
        let mods = match d.driver.as_deref() {
            Some(drv) if drv != "vfio-pci" && drv != "pci-stub" => {
                let module = module_of.entry(drv.to_string()).or_insert_with(|| {
                    root.link_name(format!("/sys/bus/pci/drivers/{drv}/module"))
                        .unwrap_or_else(|_| drv.to_string())
                        .replace('-', "_")
                });
                vec![module.clone()]
            }
            _ => {
                let text = aliases.get_or_insert_with(|| modules_alias(root));
                let modalias = root.read_attr(format!("{PCI_DEVICES}/{}/modalias", d.address)).ok();
                match (text.as_deref(), modalias) {
                    (Some(t), Some(m)) => {
                        kmod::modules_for_alias(t, m.trim()).into_iter().filter(|m| m != "vfio_pci").collect()
                    }
                    _ => Vec::new(),
                }
            }
        };
        if !mods.is_empty() {
            out.insert(d.address, mods);
        }
    }
    out
}

fn modules_alias(root: &HostRoot) -> Option<String> {
    let release = root.read_optional("/proc/sys/kernel/osrelease").ok().flatten()?;
    let release = release.trim();
    ["/lib/modules", "/usr/lib/modules"]
        .iter()
        .find_map(|b| root.read_optional(format!("{b}/{release}/modules.alias")).ok().flatten())
}
