//! Device selectors as users type them: a PCI address with or without the domain
//! (`0000:0d:00.0`, `0d:00.0`), a `vendor:device` id (`1002:66af`), or the word `gpu`
//! (the one GPU, VGA 0300 or 3D 0302, that does not drive the boot console).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use crate::pci::{PciAddress, PciDevice, VendorDevice};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Selector {
    Address(PciAddress),
    Id(VendorDevice),
    Gpu,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error("`{0}` is not a device selector; use a PCI address (0d:00.0), a vendor:device id (1002:66af) or `gpu`")]
    Syntax(String),
    #[error("no PCI device {0} on this host")]
    NoSuchDevice(String),
    #[error("`gpu` is ambiguous: {count} GPUs do not drive the boot console ({candidates}); name one by address")]
    AmbiguousGpu { count: usize, candidates: String },
    #[error("no GPU other than the boot GPU on this host{boot}")]
    NoGpu { boot: String },
    #[error("{id} matches {count} devices ({candidates}); name one by address")]
    AmbiguousId { id: VendorDevice, count: usize, candidates: String },
}

impl FromStr for Selector {
    type Err = SelectorError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let t = s.trim();
        if t.eq_ignore_ascii_case("gpu") {
            return Ok(Selector::Gpu);
        }
        if t.contains('.') {
            return t.parse().map(Selector::Address).map_err(|_| SelectorError::Syntax(s.to_string()));
        }
        t.parse().map(Selector::Id).map_err(|_| SelectorError::Syntax(s.to_string()))
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Address(a) => write!(f, "{a}"),
            Selector::Id(id) => write!(f, "{id}"),
            Selector::Gpu => f.write_str("gpu"),
        }
    }
}

fn list(devs: &[&PciDevice]) -> String {
    devs.iter().map(|d| format!("{} [{}]", d.address.short(), d.id)).collect::<Vec<_>>().join(", ")
}

/// Whether the device counts for `gpu`: a VGA (0300) or 3D (0302) controller.
pub fn is_selectable_gpu(d: &PciDevice) -> bool {
    matches!(d.class.class16(), 0x0300 | 0x0302)
}

impl Selector {
    /// The one device this selector names on a host.
    pub fn resolve<'a>(&self, devices: &'a BTreeMap<PciAddress, PciDevice>) -> Result<&'a PciDevice, SelectorError> {
        match self {
            Selector::Address(a) => devices.get(a).ok_or_else(|| SelectorError::NoSuchDevice(a.to_string())),
            Selector::Id(id) => {
                let m: Vec<&PciDevice> = devices.values().filter(|d| d.id == *id).collect();
                match m.as_slice() {
                    [one] => Ok(one),
                    [] => Err(SelectorError::NoSuchDevice(id.to_string())),
                    _ => Err(SelectorError::AmbiguousId { id: *id, count: m.len(), candidates: list(&m) }),
                }
            }
            Selector::Gpu => {
                let gpus: Vec<&PciDevice> = devices.values().filter(|d| is_selectable_gpu(d)).collect();
                let free: Vec<&PciDevice> = gpus.iter().copied().filter(|d| d.boot_vga != Some(true)).collect();
                match free.as_slice() {
                    [one] => Ok(one),
                    [] => {
                        let boot: Vec<&PciDevice> = gpus.iter().copied().filter(|d| d.boot_vga == Some(true)).collect();
                        Err(SelectorError::NoGpu {
                            boot: if boot.is_empty() { String::new() } else { format!(" (boot GPU: {})", list(&boot)) },
                        })
                    }
                    _ => Err(SelectorError::AmbiguousGpu { count: free.len(), candidates: list(&free) }),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::ClassCode;

    fn host() -> BTreeMap<PciAddress, PciDevice> {
        let mk = |a: &str, id: &str, class: u32, boot: Option<bool>| {
            let mut d = PciDevice::new(a.parse().unwrap(), id.parse().unwrap(), ClassCode::new(class));
            d.boot_vga = boot;
            (d.address, d)
        };
        [
            mk("0d:00.0", "1002:66af", 0x030000, Some(false)),
            mk("0d:00.1", "1002:ab20", 0x040300, None),
            mk("43:00.0", "1002:67df", 0x030000, Some(true)),
            mk("41:00.0", "144d:a808", 0x010802, None),
            mk("42:00.0", "144d:a808", 0x010802, None),
        ]
        .into_iter()
        .collect()
    }

    #[test]
    fn resolves_each_kind() {
        let h = host();
        assert_eq!("gpu".parse::<Selector>().unwrap().resolve(&h).unwrap().address.short(), "0d:00.0");
        assert_eq!("0d:00.1".parse::<Selector>().unwrap().resolve(&h).unwrap().id.to_string(), "1002:ab20");
        assert_eq!("0000:43:00.0".parse::<Selector>().unwrap().resolve(&h).unwrap().boot_vga, Some(true));
        assert_eq!("1002:66af".parse::<Selector>().unwrap().resolve(&h).unwrap().address.short(), "0d:00.0");
    }

    #[test]
    fn errors_name_the_candidates() {
        let h = host();
        let e = "144d:a808".parse::<Selector>().unwrap().resolve(&h).unwrap_err().to_string();
        assert!(e.contains("41:00.0") && e.contains("42:00.0"), "{e}");
        assert!("01:00.0".parse::<Selector>().unwrap().resolve(&h).is_err());
        assert!("banana".parse::<Selector>().is_err());
        let mut h2 = h.clone();
        h2.remove(&"0d:00.0".parse().unwrap());
        let e = Selector::Gpu.resolve(&h2).unwrap_err().to_string();
        assert!(e.contains("boot GPU: 43:00.0"), "{e}");
        let mut h3 = h;
        let mut extra = h3[&"0d:00.0".parse().unwrap()].clone();
        extra.address = "44:00.0".parse().unwrap();
        h3.insert(extra.address, extra);
        assert!(matches!(Selector::Gpu.resolve(&h3), Err(SelectorError::AmbiguousGpu { count: 2, .. })));
    }
}
