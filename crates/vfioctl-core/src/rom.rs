//! PCI option ROMs: what a card's ROM file holds, read as the PCI Firmware Specification
//! lays it out, so that a ROM given to QEMU (`<rom file>`) is one the guest can run.
//!
//! A ROM is a chain of images. Each starts with the signature `55 AA`; at offset 0x18 a
//! 16-bit pointer leads to its PCI data structure (`PCIR`): the vendor and device ids, the
//! image length in 512-byte units, the code type (0 legacy x86 for SeaBIOS and the VGA
//! BIOS, 3 UEFI, which OVMF needs for the card's GOP driver) and the last-image flag. A
//! legacy image's bytes sum to zero. Dumps made by flash tools on Windows (NVIDIA's
//! nvflash, GPU-Z) often carry a header before the first image, which must be cut.

use serde::Serialize;

/// One image of the chain.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Image {
    /// Where it starts in the file.
    pub offset: usize,
    pub vendor: u16,
    pub device: u16,
    /// Code type: 0 x86 (legacy), 1 Open Firmware, 2 PA-RISC, 3 UEFI, others vendor's.
    pub code_type: u8,
    /// Length in bytes (the PCIR's, in 512-byte units).
    pub length: usize,
    pub last: bool,
    /// For a legacy image: its bytes sum to zero.
    pub checksum_ok: Option<bool>,
}

impl Image {
    pub fn kind(&self) -> String {
        match self.code_type {
            0 => "legacy x86 (VGA BIOS)".into(),
            1 => "Open Firmware".into(),
            2 => "PA-RISC".into(),
            3 => "UEFI (GOP driver)".into(),
            t => format!("type 0x{t:02x}"),
        }
    }
}

/// What a ROM file holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Rom {
    /// Bytes before the first image (a flash tool's header): they must be cut.
    pub header: usize,
    pub images: Vec<Image>,
    /// Bytes after the last image (padding of the flash chip; harmless).
    pub trailing: usize,
}

/// Why a file is not a ROM.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RomError {
    #[error("the file is empty")]
    Empty,
    #[error("no PCI option ROM image in the file (no 55 AA signature followed by a PCIR structure)")]
    NoImage,
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_le_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The image at `at`, when one starts there.
fn image_at(b: &[u8], at: usize) -> Option<Image> {
    if b.get(at..at + 2)? != [0x55, 0xaa] {
        return None;
    }
    let pcir = at + usize::from(u16_at(b, at + 0x18)?);
    if b.get(pcir..pcir + 4)? != b"PCIR" {
        return None;
    }
    let units = usize::from(u16_at(b, pcir + 0x10)?);
    let length = units * 512;
    let code_type = *b.get(pcir + 0x14)?;
    let last = b.get(pcir + 0x15)? & 0x80 != 0;
    if length == 0 {
        return None;
    }
    let checksum_ok = (code_type == 0)
        .then(|| b.get(at..at + length).is_some_and(|img| img.iter().fold(0u8, |s, x| s.wrapping_add(*x)) == 0));
    Some(Image {
        offset: at,
        vendor: u16_at(b, pcir + 4)?,
        device: u16_at(b, pcir + 6)?,
        code_type,
        length,
        last,
        checksum_ok,
    })
}

/// Reads the chain of images; a header before the first is found by looking for the first
/// `55 AA` that starts a real image (512-byte aligned offsets first, then any).
pub fn parse(b: &[u8]) -> Result<Rom, RomError> {
    if b.is_empty() {
        return Err(RomError::Empty);
    }
    let first = (0..b.len())
        .step_by(512)
        .find(|&at| image_at(b, at).is_some())
        .or_else(|| (0..b.len().saturating_sub(1)).find(|&at| image_at(b, at).is_some()))
        .ok_or(RomError::NoImage)?;
    let mut images = Vec::new();
    let mut at = first;
    while let Some(img) = image_at(b, at) {
        let (next, last) = (at + img.length, img.last);
        images.push(img);
        if last || next >= b.len() || images.len() >= 16 {
            break;
        }
        at = next;
    }
    let end = images.last().map_or(first, |i| (i.offset + i.length).min(b.len()));
    Ok(Rom { header: first, images, trailing: b.len() - end })
}

/// How a ROM fares for a card (`ids`: its vendor and device, when known) and a firmware.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Verdict {
    /// Problems that make the ROM unusable as it is.
    pub errors: Vec<String>,
    /// What may not work (legacy only under OVMF, a bad checksum).
    pub warnings: Vec<String>,
}

pub fn judge(rom: &Rom, ids: Option<(u16, u16)>) -> Verdict {
    let mut errors = Vec::new();
    let mut warnings = Vec::new();
    if rom.header > 0 {
        errors.push(format!(
            "{} bytes before the first image (a flash tool's header, as nvflash and GPU-Z dumps have): cut them (vfioctl rom --check FILE --out CUT writes the ROM without them)",
            rom.header
        ));
    }
    if let (Some((v, d)), Some(first)) = (ids, rom.images.first()) {
        if (first.vendor, first.device) != (v, d) {
            errors.push(format!(
                "the ROM is for {:04x}:{:04x}, the card is {v:04x}:{d:04x}: another card's ROM does not run on it",
                first.vendor, first.device
            ));
        }
    }
    if !rom.images.iter().any(|i| i.code_type == 3) {
        warnings.push("no UEFI image: under OVMF the card shows nothing until the guest's driver loads (no boot screen); SeaBIOS guests are fine".into());
    }
    if !rom.images.iter().any(|i| i.code_type == 0) {
        warnings.push("no legacy x86 image: SeaBIOS guests get no VGA BIOS".into());
    }
    for i in &rom.images {
        if i.checksum_ok == Some(false) {
            warnings.push(format!(
                "the legacy image at offset {} fails its checksum: a damaged or modified dump",
                i.offset
            ));
        }
    }
    Verdict { errors, warnings }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A ROM image the test builds: `55 AA`, a PCIR at 0x40 with the ids, `units` of 512
    /// bytes, the code type, the last flag, and (legacy) a checksum byte that makes it sum
    /// to zero.
    pub(crate) fn image(vendor: u16, device: u16, code_type: u8, units: u16, last: bool) -> Vec<u8> {
        let mut b = vec![0u8; usize::from(units) * 512];
        b[0] = 0x55;
        b[1] = 0xaa;
        b[2] = units as u8;
        b[0x18..0x1a].copy_from_slice(&0x40u16.to_le_bytes());
        b[0x40..0x44].copy_from_slice(b"PCIR");
        b[0x44..0x46].copy_from_slice(&vendor.to_le_bytes());
        b[0x46..0x48].copy_from_slice(&device.to_le_bytes());
        b[0x4a..0x4c].copy_from_slice(&0x18u16.to_le_bytes());
        b[0x4d..0x50].copy_from_slice(&[0x00, 0x00, 0x03]);
        b[0x50..0x52].copy_from_slice(&units.to_le_bytes());
        b[0x54] = code_type;
        b[0x55] = if last { 0x80 } else { 0 };
        if code_type == 0 {
            let sum = b.iter().fold(0u8, |s, x| s.wrapping_add(*x));
            let n = b.len();
            b[n - 1] = 0u8.wrapping_sub(sum);
        }
        b
    }

    #[test]
    fn a_card_rom_with_legacy_and_uefi_images() {
        let mut rom = image(0x10de, 0x1f02, 0, 2, false);
        rom.extend(image(0x10de, 0x1f02, 3, 4, true));
        rom.extend(vec![0xff; 1024]);
        let r = parse(&rom).unwrap();
        assert_eq!((r.header, r.trailing, r.images.len()), (0, 1024, 2));
        assert_eq!((r.images[1].offset, r.images[1].code_type, r.images[1].last), (1024, 3, true));
        assert_eq!(r.images[0].checksum_ok, Some(true));
        let v = judge(&r, Some((0x10de, 0x1f02)));
        assert!(v.errors.is_empty() && v.warnings.is_empty(), "{v:?}");
        // Another card's ROM.
        assert!(judge(&r, Some((0x10de, 0x2484))).errors[0].contains("the ROM is for 10de:1f02"));
    }

    #[test]
    fn a_flash_tool_dump_with_a_header_is_found_and_named() {
        let mut rom = vec![0x4e; 0x600];
        rom[0x100] = 0x55;
        rom[0x101] = 0xaa; // a stray signature without a PCIR is not an image
        rom.extend(image(0x10de, 0x1f02, 0, 1, false));
        rom.extend(image(0x10de, 0x1f02, 3, 1, true));
        let r = parse(&rom).unwrap();
        assert_eq!(r.header, 0x600);
        let v = judge(&r, None);
        assert!(v.errors[0].contains("1536 bytes before the first image"), "{v:?}");
    }

    #[test]
    fn legacy_only_damaged_and_not_a_rom() {
        let mut rom = image(0x1002, 0x687f, 0, 2, true);
        rom[100] ^= 0xff;
        let v = judge(&parse(&rom).unwrap(), Some((0x1002, 0x687f)));
        assert!(v.warnings.iter().any(|w| w.contains("no UEFI image")), "{v:?}");
        assert!(v.warnings.iter().any(|w| w.contains("fails its checksum")), "{v:?}");
        assert_eq!(parse(&[]), Err(RomError::Empty));
        assert_eq!(parse(b"MZ not a rom at all"), Err(RomError::NoImage));
        // Truncated: an image claiming more than the file holds still parses; no panic on
        // any prefix.
        let full = image(0x10de, 0x1f02, 0, 2, true);
        for n in 0..full.len() {
            let _ = parse(&full[..n]);
        }
    }
}
