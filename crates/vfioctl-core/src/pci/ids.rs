//! Vendor/device id pairs (`1002:66af`) and class codes.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Why a string is not a `vendor:device` id.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a vendor:device id; expected two 4-digit hex numbers, e.g. 1002:66af")]
pub struct ParseVendorDeviceError(String);

/// A PCI vendor id and device id, as in `vfio-pci.ids=1002:66af`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VendorDevice {
    pub vendor: u16,
    pub device: u16,
}

impl fmt::Display for VendorDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:04x}", self.vendor, self.device)
    }
}

impl Serialize for VendorDevice {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl FromStr for VendorDevice {
    type Err = ParseVendorDeviceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = || ParseVendorDeviceError(s.to_string());
        let (v, d) = s.split_once(':').ok_or_else(err)?;
        let hex4 = |x: &str| {
            if x.len() == 4 && x.bytes().all(|b| b.is_ascii_hexdigit()) {
                u16::from_str_radix(x, 16).ok()
            } else {
                None
            }
        };
        Ok(VendorDevice { vendor: hex4(v).ok_or_else(err)?, device: hex4(d).ok_or_else(err)? })
    }
}

/// The 24-bit PCI class code: base class, subclass, programming interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ClassCode(u32);

impl ClassCode {
    pub fn new(code: u32) -> Self {
        ClassCode(code & 0x00ff_ffff)
    }
    pub fn from_parts(base: u8, sub: u8, prog_if: u8) -> Self {
        ClassCode(u32::from(base) << 16 | u32::from(sub) << 8 | u32::from(prog_if))
    }
    pub fn base(self) -> u8 {
        (self.0 >> 16) as u8
    }
    pub fn sub(self) -> u8 {
        (self.0 >> 8) as u8
    }
    pub fn prog_if(self) -> u8 {
        self.0 as u8
    }
    /// The 16-bit `class<<8 | subclass` that lspci prints as `[0300]`.
    pub fn class16(self) -> u16 {
        (self.0 >> 8) as u16
    }
    pub fn raw(self) -> u32 {
        self.0
    }
    /// VGA compatible (0300) or 3D (0302) controller: what users call a GPU.
    /// Display controllers of other kinds (0380) count too.
    pub fn is_display(self) -> bool {
        self.base() == 0x03
    }
    pub fn is_storage(self) -> bool {
        self.base() == 0x01
    }
    pub fn is_network(self) -> bool {
        self.base() == 0x02
    }
    /// USB controller (0c03).
    pub fn is_usb(self) -> bool {
        self.class16() == 0x0c03
    }
    /// PCI-to-PCI (0604), semi-transparent (0609) and CardBus (0607) bridges: they forward
    /// to a secondary bus and stay with the host when their devices are passed.
    pub fn is_pci_bridge(self) -> bool {
        matches!(self.class16(), 0x0604 | 0x0607 | 0x0609)
    }
}

impl fmt::Display for ClassCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}", self.class16())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_device_round_trip() {
        let id: VendorDevice = "1002:66AF".parse().unwrap();
        assert_eq!(id.to_string(), "1002:66af");
        for bad in ["", "1002", "1002:66a", "1002:66afx", "g002:66af", "1002-66af"] {
            assert!(bad.parse::<VendorDevice>().is_err(), "{bad}");
        }
    }

    #[test]
    fn class_parts() {
        let c = ClassCode::new(0x030000);
        assert!(c.is_display());
        assert_eq!(c.to_string(), "0300");
        assert!(ClassCode::new(0x060400).is_pci_bridge());
        assert!(!ClassCode::new(0x060000).is_pci_bridge());
        assert!(ClassCode::new(0x0c0330).is_usb());
        assert_eq!(ClassCode::from_parts(1, 8, 2).raw(), 0x010802);
    }
}
