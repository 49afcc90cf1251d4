//! Which devices go to the guest: the ones asked for, every other function of their
//! slots, every endpoint of their IOMMU groups; never a bridge. And the refusals that
//! keep a host bootable.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;

use crate::iommu::IommuGroup;
use crate::pci::{PciAddress, PciDevice};
use crate::selector::{Selector, SelectorError};

/// A filesystem mounted from a block device behind a PCI controller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mount {
    pub controller: PciAddress,
    pub mount_point: String,
    pub source: String,
}

/// One device of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PlannedDevice {
    pub address: PciAddress,
    pub vendor_id: String,
    pub device_id: String,
    pub class: String,
    pub iommu_group: Option<u32>,
    pub driver: Option<String>,
    /// Why it is in the plan.
    pub reason: String,
}

/// A reason not to go ahead, and what `--force` would mean.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub devices: Vec<PciAddress>,
    pub reason: String,
    /// `None`: not even `--force` can do it.
    pub force: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    pub devices: Vec<PlannedDevice>,
    pub refusals: Vec<Refusal>,
    pub warnings: Vec<String>,
}

fn short(a: &[PciAddress]) -> String {
    a.iter().map(PciAddress::short).collect::<Vec<_>>().join(", ")
}

/// Expands the selectors into the devices to pass and checks them.
/// What the ACS override would do, and what it costs, in the words the plan uses.
pub const ACS_OVERRIDE_NOTE: &str = "on a kernel that carries the ACS override patch (linux-zen, Proxmox's, some distributions' kernels) --allow-acs-override passes the asked device alone with pcie_acs_override=downstream,multifunction, at a cost: the devices of the group can then reach each other's memory, and the guest's isolation from them is lost";

pub fn select(
    selectors: &[Selector],
    devices: &BTreeMap<PciAddress, PciDevice>,
    groups: &[IommuGroup],
    mounts: &[Mount],
    acs_override: bool,
) -> Result<Selection, SelectorError> {
    let mut asked: Vec<&PciDevice> = Vec::new();
    for s in selectors {
        let d = s.resolve(devices)?;
        if !asked.iter().any(|a| a.address == d.address) {
            asked.push(d);
        }
    }
    let asked_set: BTreeSet<PciAddress> = asked.iter().map(|d| d.address).collect();
    let mut reason: BTreeMap<PciAddress, String> = asked.iter().map(|d| (d.address, "asked for".to_string())).collect();
    let mut queue: Vec<PciAddress> = asked.iter().map(|d| d.address).collect();
    let mut warnings = Vec::new();
    while let Some(a) = queue.pop() {
        for d in devices.values().filter(|d| d.address.same_slot(&a) && !d.is_bridge()) {
            if let std::collections::btree_map::Entry::Vacant(e) = reason.entry(d.address) {
                e.insert(format!("another function of {}'s slot", a.short()));
                queue.push(d.address);
            }
        }
        // The ACS override isolates every downstream port and function: the group's other
        // slots stay behind.
        let group = devices
            .get(&a)
            .and_then(|d| d.iommu_group)
            .and_then(|g| groups.iter().find(|x| x.id == g))
            .filter(|_| !acs_override);
        if let Some(g) = group {
            for m in &g.devices {
                let Some(d) = devices.get(m) else { continue };
                if d.is_bridge() || reason.contains_key(m) {
                    continue;
                }
                reason.insert(*m, format!("in IOMMU group {} with {}", g.id, a.short()));
                queue.push(*m);
            }
        }
    }
    if groups.is_empty() {
        warnings.push("the IOMMU is off: group members cannot be known yet; plan again after enabling it".into());
    }

    // A card's USB-C and UCSI functions are the card's, not the board's.
    for (a, why) in reason.iter_mut() {
        let Some(d) = devices.get(a) else { continue };
        let slot = || devices.values().filter(|o| o.address.same_slot(a));
        if !asked_set.contains(a) && d.is_card_function(slot()) {
            let what = if d.class.is_usb() { "USB-C (xHCI) controller" } else { "USB-C (UCSI) controller" };
            let gpu = slot().find(|g| g.is_gpu()).map(|g| g.address.short()).unwrap_or_default();
            *why = format!("the card's own {what}, passed with {gpu} like its HDMI audio");
        }
    }
    let planned: Vec<&PciDevice> = reason.keys().filter_map(|a| devices.get(a)).collect();
    let mut refusals = Vec::new();
    let platform: Vec<PciAddress> = planned.iter().filter(|d| d.is_platform()).map(|d| d.address).collect();
    if !platform.is_empty() {
        refusals.push(Refusal {
            reason: format!(
                "{} belong to the chipset (host or ISA bridge) and share the group: this group cannot be passed",
                short(&platform)
            ),
            devices: platform,
            force: None,
        });
    }
    let boot: Vec<PciAddress> = planned.iter().filter(|d| d.boot_vga == Some(true)).map(|d| d.address).collect();
    if !boot.is_empty() {
        refusals.push(Refusal {
            reason: format!("{} drives the boot console: the host would lose its display", short(&boot)),
            devices: boot,
            force: Some("the host has no console while the guest runs (single-GPU passthrough); you need another way in (SSH) and video=efifb:off".into()),
        });
    }
    let mut by_controller: BTreeMap<PciAddress, Vec<&Mount>> = BTreeMap::new();
    for m in mounts {
        if reason.contains_key(&m.controller) {
            by_controller.entry(m.controller).or_default().push(m);
        }
    }
    for (c, ms) in by_controller {
        let root = ms.iter().any(|m| m.mount_point == "/");
        let points: Vec<String> = ms.iter().map(|m| format!("{} ({})", m.mount_point, m.source)).collect();
        refusals.push(Refusal {
            devices: vec![c],
            reason: format!(
                "{} holds {}disks the host uses: {}",
                c.short(),
                if root { "the root filesystem and other " } else { "" },
                points.join(", ")
            ),
            force: Some(if root {
                "the host loses its root filesystem the moment vfio-pci takes the controller: it will not boot".into()
            } else {
                "they vanish from the host: first unmount them, turn their swap off, export their ZFS pools, close what is stacked on them (LVM, RAID, LUKS) and take them out of /etc/fstab".into()
            }),
        });
    }
    let unasked: Vec<&PciDevice> = planned
        .iter()
        .copied()
        .filter(|d| !asked_set.contains(&d.address))
        .filter(|d| d.class.is_storage() || d.class.is_network() || d.class.is_usb())
        // A card's own USB-C controller passes with the card, like its HDMI audio.
        .filter(|d| !d.is_card_function(devices.values().filter(|o| o.address.same_slot(&d.address))))
        .collect();
    if !unasked.is_empty() {
        let list: Vec<String> =
            unasked.iter().map(|d| format!("{} ({})", d.address.short(), reason[&d.address])).collect();
        // The bridges of the shared groups are the ones that do not isolate what is below them.
        let shared: BTreeSet<u32> = unasked.iter().filter_map(|d| d.iommu_group).collect();
        let bridges: Vec<PciAddress> = groups
            .iter()
            .filter(|g| shared.contains(&g.id))
            .flat_map(|g| g.devices.iter())
            .filter(|a| devices.get(a).is_some_and(PciDevice::is_bridge))
            .copied()
            .collect();
        let acs = if bridges.is_empty() {
            String::new()
        } else {
            format!(
                " (the group is shared because its bridges {} do not isolate the devices below them: no ACS; {ACS_OVERRIDE_NOTE})",
                short(&bridges)
            )
        };
        refusals.push(Refusal {
            devices: unasked.iter().map(|d| d.address).collect(),
            reason: format!(
                "storage, network or USB controllers you did not ask for come along: {}{acs}",
                list.join(", ")
            ),
            force: Some(
                "the host loses these controllers and whatever hangs off them (disks, network, keyboard)".into(),
            ),
        });
    }
    for d in &planned {
        if let Some(r) = crate::pci::reset::risk(d, devices.values()) {
            // The known-bad generations are the plan's own (vendor-reset, see `build`).
            if !matches!(r, crate::pci::reset::ResetRisk::KnownBad { .. }) {
                warnings.push(format!("{}; {}", r.message(d), r.remedy(d, false)));
            }
        } else if d.reset_methods.as_ref().is_some_and(|m| m.is_empty()) {
            warnings.push(format!(
                "{} has no reset method: it may not work again after the guest reboots",
                d.address.short()
            ));
        }
    }
    let out = planned
        .iter()
        .map(|d| PlannedDevice {
            address: d.address,
            vendor_id: format!("{:04x}", d.id.vendor),
            device_id: format!("{:04x}", d.id.device),
            class: d.class.to_string(),
            iommu_group: d.iommu_group,
            driver: d.driver.clone(),
            reason: reason[&d.address].clone(),
        })
        .collect();
    Ok(Selection { devices: out, refusals, warnings })
}
