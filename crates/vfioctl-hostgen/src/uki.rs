//! # Unified kernel images (`[[ukis]]`)
//!
//! A UKI is one UEFI PE executable holding a boot stub, the kernel, its initrd and the
//! kernel command line, each in a named PE section (`.linux`, `.initrd`, `.cmdline`,
//! `.osrel`, `.uname`, ...). systemd-boot lists every `ESP/EFI/Linux/*.efi` it finds
//! without any loader entry file, and the stub boots the command line *embedded at build
//! time*: on such a host `/etc/kernel/cmdline` is only the input of the next build
//! (`mkinitcpio -P`, `kernel-install add`, `ukify build`), not what the next boot reads.
//!
//! An example host therefore needs a UKI whose `.cmdline` can be read back. This module
//! writes a small but well-formed PE32+ image: DOS header, `PE\0\0`, COFF header (x86-64),
//! a PE32+ optional header (subsystem EFI application) and these sections, in the order
//! `ukify` lays them out:
//!
//! | section    | contents                                              |
//! |------------|-------------------------------------------------------|
//! | `.osrel`   | the spec's `/etc/os-release` from `[files]`, if any   |
//! | `.cmdline` | `cmdline`, as given (no trailing newline or NUL)      |
//! | `.uname`   | `uname`, default `host.kernel`                        |
//! | `.initrd`  | a one-line stand-in text                              |
//! | `.linux`   | a one-line stand-in text                              |
//!
//! Each section's `VirtualSize` is the exact length of its contents; the raw data is
//! padded with zeros to the file alignment (512 bytes), as linkers do. There is no real
//! code: the image is for reading, not booting.
//!
//! ```toml
//! [[ukis]]
//! path = "/efi/EFI/Linux/arch-linux.efi"
//! cmdline = "root=UUID=... rw quiet splash"
//! # uname = "6.12.1-arch1-1"           # optional; default host.kernel
//! ```

use serde::Deserialize;

use crate::{Error, Spec, Tree};

/// `[[ukis]]`: one unified kernel image.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UkiSpec {
    /// Absolute host path, e.g. `/efi/EFI/Linux/arch-linux.efi`.
    pub path: String,
    /// The embedded kernel command line (`.cmdline`).
    pub cmdline: String,
    /// The embedded kernel release (`.uname`); default `host.kernel`.
    #[serde(default)]
    pub uname: Option<String>,
}

const FILE_ALIGN: u32 = 0x200;
const SECTION_ALIGN: u32 = 0x1000;
/// PE32+ optional header with its 16 data directories.
const OPTIONAL_HEADER_LEN: u16 = 240;
/// `IMAGE_SCN_CNT_INITIALIZED_DATA | IMAGE_SCN_MEM_READ`.
const DATA_SECTION: u32 = 0x4000_0040;

fn align(n: u32, to: u32) -> u32 {
    n.div_ceil(to) * to
}

fn put16(b: &mut Vec<u8>, v: u16) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put32(b: &mut Vec<u8>, v: u32) {
    b.extend_from_slice(&v.to_le_bytes());
}
fn put64(b: &mut Vec<u8>, v: u64) {
    b.extend_from_slice(&v.to_le_bytes());
}

/// The bytes of a PE32+ image with the given (name, contents) data sections.
pub fn image(sections: &[(&str, &[u8])]) -> Result<Vec<u8>, Error> {
    let count = u16::try_from(sections.len()).map_err(|_| Error::Spec("too many UKI sections".into()))?;
    let too_big = || Error::Spec("UKI section too large".into());
    let pe_offset: u32 = 0x40;
    let headers_end = pe_offset + 4 + 20 + u32::from(OPTIONAL_HEADER_LEN) + 40 * u32::from(count);
    let size_of_headers = align(headers_end, FILE_ALIGN);
    // (virtual address, file offset, raw size) per section.
    let mut layout = Vec::new();
    let (mut va, mut off) = (align(size_of_headers, SECTION_ALIGN), size_of_headers);
    for (_, data) in sections {
        let len = u32::try_from(data.len()).map_err(|_| too_big())?;
        let raw = align(len.max(1), FILE_ALIGN);
        layout.push((va, off, raw));
        va = va.checked_add(align(len.max(1), SECTION_ALIGN)).ok_or_else(too_big)?;
        off = off.checked_add(raw).ok_or_else(too_big)?;
    }
    let size_of_image = va;
    let initialized: u32 = layout.iter().map(|(_, _, raw)| raw).sum();

    let mut b = Vec::with_capacity(off as usize);
    // DOS header: "MZ", e_lfanew at 0x3c.
    b.extend_from_slice(b"MZ");
    b.resize(0x3c, 0);
    put32(&mut b, pe_offset);
    // PE signature and COFF header.
    b.extend_from_slice(b"PE\0\0");
    put16(&mut b, 0x8664); // x86-64
    put16(&mut b, count);
    put32(&mut b, 0); // TimeDateStamp: none, so the output is deterministic
    put32(&mut b, 0); // PointerToSymbolTable
    put32(&mut b, 0); // NumberOfSymbols
    put16(&mut b, OPTIONAL_HEADER_LEN);
    put16(&mut b, 0x0222); // executable, large address aware, debug stripped
                           // PE32+ optional header.
    put16(&mut b, 0x020b);
    b.extend_from_slice(&[0, 0]); // linker version
    put32(&mut b, 0); // SizeOfCode
    put32(&mut b, initialized);
    put32(&mut b, 0); // SizeOfUninitializedData
    put32(&mut b, 0); // AddressOfEntryPoint: no code
    put32(&mut b, 0); // BaseOfCode
    put64(&mut b, 0); // ImageBase
    put32(&mut b, SECTION_ALIGN);
    put32(&mut b, FILE_ALIGN);
    for _ in 0..6 {
        put16(&mut b, 0); // OS, image and subsystem versions
    }
    put32(&mut b, 0); // Win32VersionValue
    put32(&mut b, size_of_image);
    put32(&mut b, size_of_headers);
    put32(&mut b, 0); // CheckSum
    put16(&mut b, 10); // IMAGE_SUBSYSTEM_EFI_APPLICATION
    put16(&mut b, 0); // DllCharacteristics
    for _ in 0..4 {
        put64(&mut b, 0); // stack and heap sizes
    }
    put32(&mut b, 0); // LoaderFlags
    put32(&mut b, 16); // NumberOfRvaAndSizes
    b.resize(b.len() + 16 * 8, 0); // data directories, all empty
                                   // Section table.
    for ((name, data), (va, off, raw)) in sections.iter().zip(&layout) {
        let mut n = [0u8; 8];
        let nb = name.as_bytes();
        if nb.len() > 8 {
            return Err(Error::Spec(format!("UKI section name {name} is longer than 8 bytes")));
        }
        n[..nb.len()].copy_from_slice(nb);
        b.extend_from_slice(&n);
        put32(&mut b, data.len() as u32); // VirtualSize: the exact length
        put32(&mut b, *va);
        put32(&mut b, *raw);
        put32(&mut b, *off);
        put32(&mut b, 0); // PointerToRelocations
        put32(&mut b, 0); // PointerToLinenumbers
        put16(&mut b, 0);
        put16(&mut b, 0);
        put32(&mut b, DATA_SECTION);
    }
    b.resize(size_of_headers as usize, 0);
    for ((_, data), (_, off, raw)) in sections.iter().zip(&layout) {
        debug_assert_eq!(b.len(), *off as usize);
        b.extend_from_slice(data);
        b.resize((*off + *raw) as usize, 0);
    }
    Ok(b)
}

/// Adds the spec's `[[ukis]]` to the tree (paths checked like `[files]` keys).
pub fn write(spec: &Spec, t: &mut Tree) -> Result<(), Error> {
    for u in &spec.ukis {
        let rel = crate::host_path("ukis", &u.path)?;
        let uname = u
            .uname
            .as_deref()
            .or(spec.host.kernel.as_deref())
            .ok_or_else(|| Error::Spec(format!("[[ukis]] {}: needs `uname` or host.kernel", u.path)))?;
        if t.get(rel).is_some() || spec.files.contains_key(&u.path) || spec.links.contains_key(&u.path) {
            return Err(Error::Spec(format!("[[ukis]] {}: the path is already taken", u.path)));
        }
        let osrel = spec.files.get("/etc/os-release").map(String::as_bytes).unwrap_or_default();
        let sections: [(&str, &[u8]); 5] = [
            (".osrel", osrel),
            (".cmdline", u.cmdline.as_bytes()),
            (".uname", uname.as_bytes()),
            (".initrd", b"hostgen: stand-in for the initrd\n"),
            (".linux", b"hostgen: stand-in for the kernel image\n"),
        ];
        t.bytes(rel, image(&sections)?);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn u16_at(b: &[u8], i: usize) -> u16 {
        u16::from_le_bytes([b[i], b[i + 1]])
    }
    fn u32_at(b: &[u8], i: usize) -> u32 {
        u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
    }

    /// Reads a section back the way a PE reader does: e_lfanew, COFF header, table.
    fn section<'a>(b: &'a [u8], want: &str) -> Option<&'a [u8]> {
        let pe = u32_at(b, 0x3c) as usize;
        assert_eq!(&b[pe..pe + 4], b"PE\0\0");
        let count = u16_at(b, pe + 6) as usize;
        let table = pe + 24 + u16_at(b, pe + 20) as usize;
        (0..count).find_map(|i| {
            let h = &b[table + 40 * i..table + 40 * (i + 1)];
            let name = std::str::from_utf8(&h[..8]).ok()?.trim_end_matches('\0');
            (name == want).then(|| {
                let (size, off) = (u32_at(h, 8) as usize, u32_at(h, 20) as usize);
                &b[off..off + size]
            })
        })
    }

    #[test]
    fn sections_read_back() {
        let b =
            image(&[(".osrel", b"ID=arch\n"), (".cmdline", b"root=UUID=x rw quiet"), (".uname", b"6.12.1-arch1-1")])
                .unwrap();
        assert_eq!(&b[..2], b"MZ");
        assert_eq!(b.len() % FILE_ALIGN as usize, 0);
        let pe = u32_at(&b, 0x3c) as usize;
        assert_eq!(u16_at(&b, pe + 4), 0x8664);
        assert_eq!(u16_at(&b, pe + 24), 0x020b);
        assert_eq!(u16_at(&b, pe + 24 + 68), 10, "EFI application");
        assert_eq!(section(&b, ".cmdline"), Some(&b"root=UUID=x rw quiet"[..]));
        assert_eq!(section(&b, ".osrel"), Some(&b"ID=arch\n"[..]));
        assert_eq!(section(&b, ".uname"), Some(&b"6.12.1-arch1-1"[..]));
        assert_eq!(section(&b, ".linux"), None);
        assert!(image(&[(".toolongname", b"x")]).is_err());
    }
}
