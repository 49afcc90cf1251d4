//! The one-line device description of `lspci -nn` (what `lspci -nns ADDR` prints), built
//! from the same id database so the text is identical.

use crate::pci::PciDevice;
use crate::pci_ids::PciIds;

/// lspci formats names into 256-byte buffers; longer names end in `...`.
const LSPCI_BUF: usize = 256;

fn clip(mut s: String) -> String {
    if s.len() >= LSPCI_BUF {
        let mut cut = LSPCI_BUF - 4;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
        s.push_str("...");
    }
    s
}

/// `VGA compatible controller [0300]` or `Class [1234]` for unknown classes.
pub fn class_text(db: &PciIds, dev: &PciDevice) -> String {
    let c = dev.class;
    clip(match db.class_name(c.base(), c.sub()) {
        Some(name) => format!("{name} [{:04x}]", c.class16()),
        None => format!("Class [{:04x}]", c.class16()),
    })
}

/// `Vendor Name Device Name [vvvv:dddd]` with lspci's fallbacks for unknown ids.
pub fn device_text(db: &PciIds, dev: &PciDevice) -> String {
    let id = dev.id;
    let num = id.to_string();
    clip(match (db.vendor(id.vendor), db.device(id.vendor, id.device)) {
        (Some(v), Some(d)) => format!("{v} {d} [{num}]"),
        (None, _) => format!("Device [{num}]"),
        (Some(v), None) => format!("{v} Device [{num}]"),
    })
}

/// What `lspci -nns ADDR` prints for the device, without the newline. `with_domain` is
/// true when any device on the host has a non-zero PCI domain (lspci then shows domains
/// on every line).
pub fn line(db: &PciIds, dev: &PciDevice, with_domain: bool) -> String {
    let slot = if with_domain { dev.address.to_string() } else { dev.address.short() };
    let mut s = format!("{slot} {}: {}", class_text(db, dev), device_text(db, dev));
    if let Some(rev) = dev.revision.filter(|&r| r != 0) {
        s.push_str(&format!(" (rev {rev:02x})"));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pci::{ClassCode, PciAddress, VendorDevice};

    fn db() -> PciIds {
        PciIds::parse(
            "1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\t66af  Vega 20 [Radeon VII]\n\
             C 03  Display controller\n\t00  VGA compatible controller\nC 06  Bridge\n\t04  PCI bridge\n"
                .to_string(),
        )
    }

    fn dev(addr: &str, id: &str, class: u32, rev: u8) -> PciDevice {
        let mut d = PciDevice::new(
            addr.parse::<PciAddress>().unwrap(),
            id.parse::<VendorDevice>().unwrap(),
            ClassCode::new(class),
        );
        d.revision = Some(rev);
        d
    }

    #[test]
    fn known_ids() {
        let d = dev("0d:00.0", "1002:66af", 0x030000, 0xc1);
        assert_eq!(
            line(&db(), &d, false),
            "0d:00.0 VGA compatible controller [0300]: Advanced Micro Devices, Inc. [AMD/ATI] Vega 20 [Radeon VII] [1002:66af] (rev c1)"
        );
        assert!(line(&db(), &d, true).starts_with("0000:0d:00.0 "));
    }

    #[test]
    fn unknown_ids_fall_back_like_lspci() {
        let d = dev("0b:00.0", "1002:14a0", 0x060400, 0);
        assert_eq!(
            line(&db(), &d, false),
            "0b:00.0 PCI bridge [0604]: Advanced Micro Devices, Inc. [AMD/ATI] Device [1002:14a0]"
        );
        let d = dev("00:00.0", "abcd:0001", 0x038000, 1);
        assert_eq!(line(&db(), &d, false), "00:00.0 Display controller [0380]: Device [abcd:0001] (rev 01)");
        let d = dev("00:00.0", "abcd:0001", 0x120000, 0);
        assert_eq!(line(&PciIds::empty(), &d, false), "00:00.0 Class [1200]: Device [abcd:0001]");
    }

    #[test]
    fn long_names_are_clipped_like_lspci() {
        let long = "x".repeat(300);
        let db = PciIds::parse(format!("1002  {long}\n\t66af  y\n"));
        let d = dev("0d:00.0", "1002:66af", 0x030000, 0);
        let text = device_text(&db, &d);
        assert_eq!(text.len(), 255);
        assert!(text.ends_with("..."));
    }
}
