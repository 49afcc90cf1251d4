//! One PCI function as the kernel describes it in sysfs.

use super::{ClassCode, PciAddress, VendorDevice};

/// A PCI function. Fields the host did not provide (or provided as garbage) are `None`;
/// the reader records a warning naming the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciDevice {
    pub address: PciAddress,
    pub id: VendorDevice,
    pub class: ClassCode,
    pub revision: Option<u8>,
    pub subsystem: Option<VendorDevice>,
    /// The driver bound now (`driver` link), e.g. `amdgpu` or `vfio-pci`.
    pub driver: Option<String>,
    pub numa_node: Option<u32>,
    /// `boot_vga`: only display devices have it; `Some(true)` drives the boot console.
    pub boot_vga: Option<bool>,
    /// `reset_method` (Linux 5.15+); `None` when the kernel does not say.
    pub reset_methods: Option<Vec<String>>,
    /// Header type from config space (0 endpoint, 1 PCI bridge, 2 CardBus), without the
    /// multi-function bit.
    pub header_type: Option<u8>,
    pub multifunction: Option<bool>,
    pub iommu_group: Option<u32>,
}

impl PciDevice {
    /// A minimal device; tests and generators fill in the rest.
    pub fn new(address: PciAddress, id: VendorDevice, class: ClassCode) -> Self {
        PciDevice {
            address,
            id,
            class,
            revision: None,
            subsystem: None,
            driver: None,
            numa_node: None,
            boot_vga: None,
            reset_methods: None,
            header_type: None,
            multifunction: None,
            iommu_group: None,
        }
    }

    /// A bridge forwards to another bus; it stays with the host when the devices behind
    /// it are passed through. Decided by the header type when config space was readable,
    /// by the class code otherwise.
    pub fn is_bridge(&self) -> bool {
        match self.header_type {
            Some(1 | 2) => true,
            Some(_) => false,
            None => self.class.is_pci_bridge(),
        }
    }

    /// A display controller (VGA 0300, XGA 0301, 3D 0302, other 0380).
    pub fn is_gpu(&self) -> bool {
        self.class.is_display()
    }

    /// Host bridges and ISA/LPC bridges are part of the chipset: never passable.
    pub fn is_platform(&self) -> bool {
        matches!(self.class.class16(), 0x0600 | 0x0601)
    }

    /// A function of a graphics card itself, not a controller of the board: a USB (0c03)
    /// or other serial-bus (0c80, a USB-C UCSI controller) function in the slot of a GPU
    /// of the same vendor. Turing and later NVIDIA cards and AMD's reference RX 6000 cards
    /// have them, passed with the card like its HDMI audio. An APU's USB controllers share
    /// the iGPU's slot but carry the CPU vendor's id (AMD: 1022 beside the iGPU's 1002),
    /// so they stay the board's.
    pub fn is_card_function<'a>(&self, slot: impl IntoIterator<Item = &'a PciDevice>) -> bool {
        let serial_bus = self.class.is_usb() || self.class.class16() == 0x0c80;
        serial_bus
            && slot.into_iter().any(|g| {
                g.address != self.address
                    && g.address.same_slot(&self.address)
                    && g.is_gpu()
                    && g.id.vendor == self.id.vendor
            })
    }
}
