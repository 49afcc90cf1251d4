//! The PCI id database (`pci.ids`, the file lspci reads) and the name formatting lspci
//! applies to it, so that vfioctl prints the same text as `lspci -nn` on the same machine.
//!
//! The parser follows the file format described in pci.ids(5): top-level vendor lines
//! (`1002  Advanced Micro Devices, Inc. [AMD/ATI]`), device lines indented by one tab,
//! subsystem lines by two; `C` class blocks with subclasses and programming interfaces;
//! other letter blocks are skipped. The first entry for an id wins; lines that do not
//! parse are skipped rather than failing the whole lookup.

use std::collections::HashMap;

type Span = (u32, u32);

/// A parsed `pci.ids`. Names are slices of the original text, so the database costs the
/// size of the file plus a small index.
#[derive(Debug, Default)]
pub struct PciIds {
    text: String,
    vendors: HashMap<u16, Span>,
    devices: HashMap<(u16, u16), Span>,
    subsystems: HashMap<(u16, u16, u16, u16), Span>,
    classes: HashMap<u8, Span>,
    subclasses: HashMap<(u8, u8), Span>,
    prog_ifs: HashMap<(u8, u8, u8), Span>,
}

#[derive(Clone, Copy)]
enum Block {
    None,
    Vendor(u16),
    Device(u16, u16),
    Class(u8),
    Subclass(u8, u8),
    Skip,
}

fn hex<const N: usize>(s: &str) -> Option<u32> {
    let b = s.as_bytes();
    if b.len() < N + 1 || !b[..N].iter().all(u8::is_ascii_hexdigit) || !matches!(b[N], b' ' | b'\t') {
        return None;
    }
    u32::from_str_radix(&s[..N], 16).ok()
}

impl PciIds {
    /// An empty database: every lookup misses, names print as lspci -nn prints unknown ids.
    pub fn empty() -> Self {
        PciIds::default()
    }

    /// Parses the text of a `pci.ids` file.
    pub fn parse(text: String) -> Self {
        Self::parse_for(text, None)
    }

    /// Parses only what is needed to name devices of the given vendors (their devices and
    /// subsystems, every vendor name, every class): much less work than the whole file
    /// when a host has a handful of vendors. `None` keeps everything.
    pub fn parse_for(text: String, vendors: Option<&std::collections::BTreeSet<u16>>) -> Self {
        let mut db = PciIds { text: String::new(), ..Default::default() };
        let mut block = Block::None;
        let mut offset = 0usize;
        for raw in text.split_inclusive('\n') {
            let line_start = offset;
            offset += raw.len();
            // Most lines are devices and subsystems of vendors not wanted: nested lines in a
            // skipped block name nothing, so they are passed over unread.
            if raw.starts_with('\t') && matches!(block, Block::Skip | Block::None) {
                continue;
            }
            let mut line = raw.trim_end_matches(['\n', '\r']);
            // lspci drops one trailing blank character.
            if let Some(l) = line.strip_suffix([' ', '\t']) {
                line = l;
            }
            let trimmed = line.trim_start_matches([' ', '\t']);
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let body = line.trim_start_matches('\t');
            let nest = line.len() - body.len();
            let name_of = |rest: &str| -> Option<Span> {
                let name = rest.trim_start_matches([' ', '\t']);
                if name.is_empty() {
                    return None;
                }
                let start = line_start + (name.as_ptr() as usize - raw.as_ptr() as usize);
                Some((start as u32, (start + name.len()) as u32))
            };
            match nest {
                0 => {
                    let b = body.as_bytes();
                    if b.len() > 1 && b[0] == b'C' && b[1] == b' ' {
                        block = match hex::<2>(&body[2..]) {
                            Some(c) => {
                                let c = c as u8;
                                if let Some(span) = name_of(&body[5..]) {
                                    db.classes.entry(c).or_insert(span);
                                }
                                Block::Class(c)
                            }
                            None => Block::Skip,
                        };
                    } else if b.len() > 1 && b[0].is_ascii_uppercase() && b[1] == b' ' {
                        block = Block::Skip;
                    } else {
                        block = match hex::<4>(body) {
                            Some(v) => {
                                let v = v as u16;
                                if let Some(span) = name_of(&body[5..]) {
                                    db.vendors.entry(v).or_insert(span);
                                }
                                if vendors.is_none_or(|set| set.contains(&v)) {
                                    Block::Vendor(v)
                                } else {
                                    Block::Skip
                                }
                            }
                            None => Block::Skip,
                        };
                    }
                }
                1 => match block {
                    Block::Vendor(v) | Block::Device(v, _) => {
                        if let Some(d) = hex::<4>(body) {
                            let d = d as u16;
                            if let Some(span) = name_of(&body[5..]) {
                                db.devices.entry((v, d)).or_insert(span);
                            }
                            block = Block::Device(v, d);
                        }
                    }
                    Block::Class(c) | Block::Subclass(c, _) => {
                        if let Some(s) = hex::<2>(body) {
                            let s = s as u8;
                            if let Some(span) = name_of(&body[3..]) {
                                db.subclasses.entry((c, s)).or_insert(span);
                            }
                            block = Block::Subclass(c, s);
                        }
                    }
                    Block::None | Block::Skip => {}
                },
                2 => match block {
                    Block::Device(v, d) => {
                        if let (Some(sv), Some(sd)) = (hex::<4>(body), body.get(5..).and_then(hex::<4>)) {
                            if let Some(span) = name_of(&body[10..]) {
                                db.subsystems.entry((v, d, sv as u16, sd as u16)).or_insert(span);
                            }
                        }
                    }
                    Block::Subclass(c, s) => {
                        if let Some(p) = hex::<2>(body) {
                            if let Some(span) = name_of(&body[3..]) {
                                db.prog_ifs.entry((c, s, p as u8)).or_insert(span);
                            }
                        }
                    }
                    _ => {}
                },
                _ => {}
            }
        }
        db.text = text;
        db
    }

    fn get(&self, span: Option<&Span>) -> Option<&str> {
        span.and_then(|&(a, b)| self.text.get(a as usize..b as usize))
    }

    pub fn vendor(&self, vendor: u16) -> Option<&str> {
        self.get(self.vendors.get(&vendor))
    }
    pub fn device(&self, vendor: u16, device: u16) -> Option<&str> {
        self.get(self.devices.get(&(vendor, device)))
    }
    /// The subsystem's name, as lspci -v finds it: the per-device entry, else the
    /// subsystem's own device name when subsystem ids equal the device ids.
    pub fn subsystem(&self, vendor: u16, device: u16, sub_vendor: u16, sub_device: u16) -> Option<&str> {
        self.get(self.subsystems.get(&(vendor, device, sub_vendor, sub_device))).or_else(|| {
            if vendor == sub_vendor && device == sub_device {
                self.device(vendor, device)
            } else {
                None
            }
        })
    }
    pub fn class(&self, class: u8) -> Option<&str> {
        self.get(self.classes.get(&class))
    }
    pub fn subclass(&self, class: u8, sub: u8) -> Option<&str> {
        self.get(self.subclasses.get(&(class, sub)))
    }
    pub fn prog_if(&self, class: u8, sub: u8, prog_if: u8) -> Option<&str> {
        self.get(self.prog_ifs.get(&(class, sub, prog_if)))
    }

    /// The class name lspci shows: the subclass name, else the base class name.
    pub fn class_name(&self, class: u8, sub: u8) -> Option<&str> {
        self.subclass(class, sub).or_else(|| self.class(class))
    }

    /// Number of vendors known, to tell an empty or wrong file from a real one.
    pub fn vendor_count(&self) -> usize {
        self.vendors.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "# comment\n\
1002  Advanced Micro Devices, Inc. [AMD/ATI]\n\
\t66af  Vega 20 [Radeon VII]\n\
\t\t1002 081e  Radeon VII\n\
\tab20  Vega 20 HDMI Audio [Radeon VII] \n\
10de  NVIDIA Corporation\n\
\t1b06  GP102 [GeForce GTX 1080 Ti]\n\
\t1b06  Duplicate later entry\n\
zzzz  not hex\n\
\t1234  orphan\n\
C 03  Display controller\n\
\t00  VGA compatible controller\n\
\t\t00  VGA controller\n\
\t\t01  8514 controller\n\
C ff  Unassigned class\n\
R 01  Some future block\n\
\t01  nested in unknown block\n";

    #[test]
    fn looks_up_every_kind_of_entry() {
        let db = PciIds::parse(SAMPLE.to_string());
        assert_eq!(db.vendor(0x1002), Some("Advanced Micro Devices, Inc. [AMD/ATI]"));
        assert_eq!(db.device(0x1002, 0x66af), Some("Vega 20 [Radeon VII]"));
        assert_eq!(db.device(0x1002, 0xab20), Some("Vega 20 HDMI Audio [Radeon VII]"));
        assert_eq!(db.subsystem(0x1002, 0x66af, 0x1002, 0x081e), Some("Radeon VII"));
        assert_eq!(db.subsystem(0x10de, 0x1b06, 0x10de, 0x1b06), Some("GP102 [GeForce GTX 1080 Ti]"));
        assert_eq!(db.device(0x10de, 0x1b06), Some("GP102 [GeForce GTX 1080 Ti]"));
        assert_eq!(db.class_name(0x03, 0x00), Some("VGA compatible controller"));
        assert_eq!(db.class_name(0x03, 0x80), Some("Display controller"));
        assert_eq!(db.class_name(0xff, 0xff), Some("Unassigned class"));
        assert_eq!(db.prog_if(0x03, 0x00, 0x01), Some("8514 controller"));
        assert_eq!(db.class_name(0x12, 0x00), None);
        assert_eq!(db.vendor_count(), 2);
    }

    #[test]
    fn filtered_parse_keeps_only_wanted_vendors_devices() {
        let wanted = [0x10de].into_iter().collect();
        let db = PciIds::parse_for(SAMPLE.to_string(), Some(&wanted));
        assert_eq!(db.device(0x10de, 0x1b06), Some("GP102 [GeForce GTX 1080 Ti]"));
        assert_eq!(db.device(0x1002, 0x66af), None);
        assert_eq!(db.vendor(0x1002), Some("Advanced Micro Devices, Inc. [AMD/ATI]"));
        assert_eq!(db.class_name(0x03, 0x00), Some("VGA compatible controller"));
    }

    #[test]
    fn crlf_and_empty_input() {
        let db = PciIds::parse("1af4  Red Hat, Inc.\r\n\t1041  Virtio network\r\n".to_string());
        assert_eq!(db.device(0x1af4, 0x1041), Some("Virtio network"));
        assert_eq!(PciIds::parse(String::new()).vendor(0x1af4), None);
        let garbage: String = (0..2000u32).map(|i| char::from_u32(i % 300 + 9).unwrap_or('x')).collect();
        let _ = PciIds::parse(garbage);
    }
}
