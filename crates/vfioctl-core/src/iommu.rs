//! IOMMU groups: the smallest sets of devices the IOMMU can isolate. A group is passed to
//! a VM as a whole: every endpoint in it must be bound to `vfio-pci`; bridges stay with
//! the host.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::pci::{PciAddress, PciDevice};

/// One IOMMU group and the devices in it, in address order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IommuGroup {
    pub id: u32,
    pub devices: Vec<PciAddress>,
}

/// What a group means for passthrough.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct GroupAssessment {
    /// The group holds a display controller.
    pub gpu: bool,
    /// The group holds the device that drives the boot console.
    pub boot_vga: bool,
    /// Endpoints that would have to be bound to vfio-pci to pass the group.
    pub endpoints: Vec<PciAddress>,
    /// Bridges in the group; they stay with the host.
    pub bridges: Vec<PciAddress>,
    /// The group can be handed to a VM as a whole: it has endpoints and none of them is
    /// part of the chipset (host or ISA bridge).
    pub passable: bool,
    /// A GPU shares the group with storage, network or USB controllers: passing the GPU
    /// takes them away from the host too.
    pub mixed: bool,
    /// Plain-language notes, one per reason the group needs care.
    pub notes: Vec<String>,
}

/// Assesses a group from its devices. Devices missing from `devices` (vanished while the
/// host was read) are ignored.
pub fn assess(group: &IommuGroup, devices: &BTreeMap<PciAddress, PciDevice>) -> GroupAssessment {
    let members: Vec<&PciDevice> = group.devices.iter().filter_map(|a| devices.get(a)).collect();
    let gpu = members.iter().any(|d| d.is_gpu());
    let boot_vga = members.iter().any(|d| d.boot_vga == Some(true));
    let endpoints: Vec<PciAddress> = members.iter().filter(|d| !d.is_bridge()).map(|d| d.address).collect();
    let bridges: Vec<PciAddress> = members.iter().filter(|d| d.is_bridge()).map(|d| d.address).collect();
    let platform: Vec<&&PciDevice> = members.iter().filter(|d| !d.is_bridge() && d.is_platform()).collect();
    let others: Vec<&&PciDevice> = members
        .iter()
        .filter(|d| !d.is_bridge() && (d.class.is_storage() || d.class.is_network() || d.class.is_usb()))
        // A card's own USB-C controller is the card.
        .filter(|d| !d.is_card_function(devices.values().filter(|o| o.address.same_slot(&d.address))))
        .collect();
    let mixed = gpu && !others.is_empty();
    let mut notes = Vec::new();
    if boot_vga {
        notes.push("holds the boot GPU (drives the host console)".to_string());
    }
    if mixed {
        let names: Vec<String> = others.iter().map(|d| d.address.short()).collect();
        notes.push(format!("GPU shares the group with storage/network/USB controllers: {}", names.join(", ")));
    }
    if !platform.is_empty() {
        let names: Vec<String> = platform.iter().map(|d| d.address.short()).collect();
        notes.push(format!("chipset devices (host/ISA bridge) cannot be passed: {}", names.join(", ")));
    }
    if endpoints.is_empty() {
        notes.push("only bridges: nothing to pass".to_string());
    }
    GroupAssessment {
        gpu,
        boot_vga,
        passable: !endpoints.is_empty() && platform.is_empty(),
        endpoints,
        bridges,
        mixed,
        notes,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{ClassCode, VendorDevice};

    fn dev(addr: &str, class: u32, header: u8) -> PciDevice {
        let mut d = PciDevice::new(addr.parse().unwrap(), VendorDevice { vendor: 1, device: 2 }, ClassCode::new(class));
        d.header_type = Some(header);
        d
    }

    fn map(devs: Vec<PciDevice>) -> (IommuGroup, BTreeMap<PciAddress, PciDevice>) {
        let g = IommuGroup { id: 1, devices: devs.iter().map(|d| d.address).collect() };
        (g, devs.into_iter().map(|d| (d.address, d)).collect())
    }

    #[test]
    fn gpu_with_its_audio_is_clean() {
        let (g, m) = map(vec![dev("43:00.0", 0x030000, 0), dev("43:00.1", 0x040300, 0)]);
        let a = assess(&g, &m);
        assert!(a.gpu && a.passable && !a.mixed);
        assert_eq!(a.endpoints.len(), 2);
    }

    /// Issue 18: a Turing card's USB-C (xHCI) and UCSI functions made its group "not
    /// clean"; they are the card's. An APU's USB controllers beside its iGPU (the CPU
    /// vendor's id, not the GPU's) still are the board's.
    #[test]
    fn a_cards_own_usb_c_functions_keep_its_group_clean() {
        let card = |addr: &str, vendor: u16, class: u32| {
            let mut d = dev(addr, class, 0);
            d.id.vendor = vendor;
            d
        };
        let (g, m) = map(vec![
            card("09:00.0", 0x10de, 0x030000),
            card("09:00.1", 0x10de, 0x040300),
            card("09:00.2", 0x10de, 0x0c0330),
            card("09:00.3", 0x10de, 0x0c8000),
        ]);
        let a = assess(&g, &m);
        assert!(a.gpu && a.passable && !a.mixed, "{:?}", a.notes);
        let (g, m) = map(vec![card("0e:00.0", 0x1002, 0x030000), card("0e:00.3", 0x1022, 0x0c0330)]);
        assert!(assess(&g, &m).mixed);
        // A board's USB controller in another slot of the group stays a board's.
        let (g, m) = map(vec![card("09:00.0", 0x10de, 0x030000), card("0a:00.0", 0x10de, 0x0c0330)]);
        assert!(assess(&g, &m).mixed);
    }

    #[test]
    fn chipset_group_is_mixed_and_bridges_stay() {
        let (g, m) = map(vec![
            dev("01:00.0", 0x0c0330, 0),
            dev("01:00.1", 0x010601, 0),
            dev("02:00.0", 0x060400, 1),
            dev("05:00.0", 0x020000, 0),
            dev("06:00.0", 0x030000, 0),
        ]);
        let a = assess(&g, &m);
        assert!(a.mixed && a.passable);
        assert_eq!(a.bridges.len(), 1);
        assert!(a.notes[0].contains("01:00.0, 01:00.1, 05:00.0"), "{:?}", a.notes);
    }

    #[test]
    fn host_bridges_are_not_passable() {
        let (g, m) = map(vec![dev("00:14.0", 0x0c0500, 0), dev("00:14.3", 0x060100, 0)]);
        assert!(!assess(&g, &m).passable);
        let (g, m) = map(vec![dev("00:01.1", 0x060400, 1)]);
        assert!(!assess(&g, &m).passable);
    }
}
