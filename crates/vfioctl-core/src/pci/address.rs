//! PCI addresses: `domain:bus:device.function`, as the kernel names devices in sysfs.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

/// Why a string is not a PCI address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a PCI address ({reason}); expected DDDD:BB:DD.F or BB:DD.F, e.g. 0000:0d:00.0")]
pub struct ParseAddressError {
    input: String,
    reason: &'static str,
}

/// A PCI function address. The domain is 32 bits wide because VMD and some
/// hypervisors use domains above 0xffff.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress {
    pub domain: u32,
    pub bus: u8,
    pub device: u8,
    pub function: u8,
}

impl PciAddress {
    /// Builds an address, checking the device (0..32) and function (0..8) ranges.
    pub fn new(domain: u32, bus: u8, device: u8, function: u8) -> Option<Self> {
        (device < 32 && function < 8).then_some(PciAddress { domain, bus, device, function })
    }

    /// The same slot (domain, bus, device) with another function number.
    pub fn same_slot(&self, other: &PciAddress) -> bool {
        self.domain == other.domain && self.bus == other.bus && self.device == other.device
    }

    /// `bus:device.function` without the domain, as lspci prints it on single-domain hosts.
    pub fn short(&self) -> String {
        format!("{:02x}:{:02x}.{:x}", self.bus, self.device, self.function)
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04x}:{:02x}:{:02x}.{:x}", self.domain, self.bus, self.device, self.function)
    }
}

impl Serialize for PciAddress {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn hex_field<T: TryFrom<u32>>(
    input: &str,
    field: &str,
    max_len: usize,
    reason: &'static str,
) -> Result<T, ParseAddressError> {
    let err = || ParseAddressError { input: input.to_string(), reason };
    if field.is_empty() || field.len() > max_len || !field.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(err());
    }
    let v = u32::from_str_radix(field, 16).map_err(|_| err())?;
    T::try_from(v).map_err(|_| err())
}

impl FromStr for PciAddress {
    type Err = ParseAddressError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let err = |reason| ParseAddressError { input: s.to_string(), reason };
        let (head, function) = s.rsplit_once('.').ok_or_else(|| err("no `.function`"))?;
        let parts: Vec<&str> = head.split(':').collect();
        let (domain, bus, device) = match parts.as_slice() {
            [bus, device] => ("0", *bus, *device),
            [domain, bus, device] => (*domain, *bus, *device),
            _ => return Err(err("wrong number of `:` separated fields")),
        };
        let domain: u32 = hex_field(s, domain, 8, "bad domain")?;
        let bus: u8 = hex_field(s, bus, 2, "bad bus")?;
        let device: u8 = hex_field(s, device, 2, "bad device")?;
        let function: u8 = hex_field(s, function, 1, "bad function")?;
        PciAddress::new(domain, bus, device, function)
            .ok_or_else(|| err("device must be below 0x20 and function below 8"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_full_and_short_forms() {
        let a: PciAddress = "0000:0d:00.1".parse().unwrap();
        assert_eq!(a, PciAddress::new(0, 0x0d, 0, 1).unwrap());
        assert_eq!("0d:00.1".parse::<PciAddress>().unwrap(), a);
        assert_eq!(a.to_string(), "0000:0d:00.1");
        assert_eq!(a.short(), "0d:00.1");
        let vmd: PciAddress = "10000:e1:1f.7".parse().unwrap();
        assert_eq!(vmd.to_string(), "10000:e1:1f.7");
    }

    #[test]
    fn rejects_garbage_without_panicking() {
        for bad in ["", "0d:00", "0d:20.0", "0d:00.8", "zz:00.0", "0:0:0:0.0", "0d:00.", "1ff:00.0", ".", "::."] {
            assert!(bad.parse::<PciAddress>().is_err(), "{bad}");
        }
        let msg = "x".parse::<PciAddress>().unwrap_err().to_string();
        assert!(msg.contains("`x`") && msg.contains("0000:0d:00.0"), "{msg}");
    }

    #[test]
    fn orders_like_lspci() {
        let mut v: Vec<PciAddress> =
            ["0000:40:01.0", "0000:00:08.1", "0000:00:01.3"].iter().map(|s| s.parse().unwrap()).collect();
        v.sort();
        assert_eq!(v[0].short(), "00:01.3");
        assert_eq!(v[2].short(), "40:01.0");
    }
}
