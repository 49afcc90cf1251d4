//! Finding the PCI id database. Names must match what `lspci` prints on the machine
//! running vfioctl, so this reads the same files lspci does on that machine (not under
//! `--root`: the database describes ids, not the host), and falls back to a copy built
//! into vfioctl.

use std::collections::BTreeSet;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

use flate2::read::GzDecoder;
use vfioctl_core::pci_ids::PciIds;

/// The built-in copy (pci.ids from the PCI ID Repository, GPL-2.0-or-later or BSD-3-Clause).
const EMBEDDED: &[u8] = include_bytes!("../data/pci.ids.gz");

/// Where distributions install pci.ids, in the order tried. lspci tries `NAME.gz` then
/// `NAME` in its one configured directory: Debian and Gentoo `/usr/share/misc`, Fedora,
/// Arch and Alpine `/usr/share/hwdata`, openSUSE `/usr/share`.
pub const SYSTEM_PATHS: &[&str] = &[
    "/usr/share/misc/pci.ids.gz",
    "/usr/share/misc/pci.ids",
    "/usr/share/hwdata/pci.ids.gz",
    "/usr/share/hwdata/pci.ids",
    "/usr/share/pci.ids.gz",
    "/usr/share/pci.ids",
    "/usr/local/share/pci.ids",
];

/// Where the names came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdsSource {
    File(PathBuf),
    Embedded,
}

#[derive(Debug, thiserror::Error)]
#[error("cannot read the PCI id database {path}: {source}")]
pub struct IdsError {
    pub path: PathBuf,
    #[source]
    pub source: std::io::Error,
}

fn decode(bytes: Vec<u8>) -> std::io::Result<String> {
    let bytes = if bytes.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        GzDecoder::new(&bytes[..]).read_to_end(&mut out)?;
        out
    } else {
        bytes
    };
    // The file is UTF-8 in practice: keep its buffer rather than copy it.
    Ok(String::from_utf8(bytes).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()))
}

fn read_file(path: &Path, vendors: Option<&BTreeSet<u16>>) -> Result<PciIds, IdsError> {
    let err = |source| IdsError { path: path.to_path_buf(), source };
    let text = decode(fs::read(path).map_err(err)?).map_err(err)?;
    Ok(PciIds::parse_for(text, vendors))
}

/// The built-in database.
pub fn embedded() -> PciIds {
    embedded_for(None)
}

fn embedded_for(vendors: Option<&BTreeSet<u16>>) -> PciIds {
    // The embedded copy is known-good; a decoding failure would only give empty names.
    PciIds::parse_for(decode(EMBEDDED.to_vec()).unwrap_or_default(), vendors)
}

/// Loads the database: `explicit` when given (an error if unreadable), else the first
/// system file that exists, else the built-in copy.
pub fn load(explicit: Option<&Path>) -> Result<(PciIds, IdsSource), IdsError> {
    load_for(explicit, None)
}

/// [`load`], keeping device names only for the given vendors (see [`PciIds::parse_for`]).
pub fn load_for(explicit: Option<&Path>, vendors: Option<&BTreeSet<u16>>) -> Result<(PciIds, IdsSource), IdsError> {
    if let Some(path) = explicit {
        return Ok((read_file(path, vendors)?, IdsSource::File(path.to_path_buf())));
    }
    for p in SYSTEM_PATHS {
        let path = Path::new(p);
        if path.is_file() {
            if let Ok(db) = read_file(path, vendors) {
                if db.vendor_count() > 0 {
                    return Ok((db, IdsSource::File(path.to_path_buf())));
                }
            }
        }
    }
    Ok((embedded_for(vendors), IdsSource::Embedded))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_copy_names_common_devices() {
        let db = embedded();
        assert_eq!(db.vendor(0x1002), Some("Advanced Micro Devices, Inc. [AMD/ATI]"));
        assert_eq!(db.device(0x10de, 0x1b06), Some("GP102 [GeForce GTX 1080 Ti]"));
        assert_eq!(db.class_name(0x03, 0x00), Some("VGA compatible controller"));
    }

    #[test]
    fn explicit_file_plain_or_gzip() {
        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("pci.ids");
        fs::write(&plain, "abcd  Test Vendor\n").unwrap();
        let (db, src) = load(Some(&plain)).unwrap();
        assert_eq!(db.vendor(0xabcd), Some("Test Vendor"));
        assert_eq!(src, IdsSource::File(plain));
        let gz = dir.path().join("pci.ids.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        std::io::Write::write_all(&mut enc, b"abcd  Zipped Vendor\n").unwrap();
        fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert_eq!(load(Some(&gz)).unwrap().0.vendor(0xabcd), Some("Zipped Vendor"));
        let missing = load(Some(&dir.path().join("nope"))).unwrap_err();
        assert!(missing.to_string().contains("nope"));
    }
}
