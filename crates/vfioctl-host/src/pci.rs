//! Reading PCI devices and IOMMU groups from `/sys` under a host root.
//!
//! Mandatory facts (vendor, device, class) missing for a device mean the device vanished
//! or the tree is damaged: the device is left out with a warning naming the file. Optional
//! facts that are missing or garbage become unknown (`None`) with a warning when garbage.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use vfioctl_core::iommu::IommuGroup;
use vfioctl_core::pci::{ClassCode, PciAddress, PciDevice, VendorDevice};
use vfioctl_core::sysfs_value::{self, ValueError};

use crate::root::{HostDir, HostRoot, RootError};
use crate::{HostError, Warning};

pub const PCI_DEVICES: &str = "/sys/bus/pci/devices";
pub const IOMMU_GROUPS: &str = "/sys/kernel/iommu_groups";

/// All PCI devices of a host and its IOMMU groups.
#[derive(Debug, Clone, Default)]
pub struct PciInventory {
    pub devices: BTreeMap<PciAddress, PciDevice>,
    /// Sorted by group number. Empty when the IOMMU is off.
    pub groups: Vec<IommuGroup>,
    pub warnings: Vec<Warning>,
}

impl PciInventory {
    /// True when any device has a non-zero PCI domain; lspci then prints domains.
    pub fn multi_domain(&self) -> bool {
        self.devices.keys().any(|a| a.domain != 0)
    }

    /// Devices that no IOMMU group lists.
    pub fn ungrouped(&self) -> Vec<&PciDevice> {
        self.devices.values().filter(|d| d.iommu_group.is_none()).collect()
    }
}

/// Reads one device's attributes from its directory, held open ([`HostDir`]) so each read
/// looks up one name; by full path when the directory cannot be held (messages are the
/// same either way).
struct DeviceReader<'a> {
    root: &'a HostRoot,
    dir: String,
    held: Option<HostDir<'a>>,
    warnings: &'a mut Vec<Warning>,
}

impl<'a> DeviceReader<'a> {
    fn new(root: &'a HostRoot, address: PciAddress, warnings: &'a mut Vec<Warning>) -> Self {
        let dir = format!("{PCI_DEVICES}/{address}");
        let held = root.open_dir(&dir).ok();
        DeviceReader { root, dir, held, warnings }
    }

    fn path(&self, attr: &str) -> String {
        format!("{}/{attr}", self.dir)
    }

    fn warn(&mut self, path: String, message: String) {
        self.warnings.push(Warning { path: PathBuf::from(path), message });
    }

    fn read_attr(&self, attr: &str) -> Result<String, RootError> {
        match &self.held {
            Some(d) => d.read_attr(attr),
            None => self.root.read_attr(self.path(attr)),
        }
    }

    fn read_attr_optional(&self, attr: &str) -> Result<Option<String>, RootError> {
        match &self.held {
            Some(d) => d.read_attr_optional(attr),
            None => self.root.read_attr_optional(self.path(attr)),
        }
    }

    /// The first `limit` bytes of a binary attribute (`config`).
    fn read_bytes(&self, attr: &str, limit: usize) -> Result<Vec<u8>, RootError> {
        match &self.held {
            Some(d) => d.read_bytes(attr, limit),
            None => self.root.read_bytes(self.path(attr), limit as u64),
        }
    }

    /// A mandatory attribute: an error when absent or garbage.
    fn required<T>(&mut self, attr: &str, parse: fn(&str) -> Result<T, ValueError>) -> Result<T, Warning> {
        let text =
            self.read_attr(attr).map_err(|e| Warning { path: self.path(attr).into(), message: e.to_string() })?;
        parse(&text).map_err(|e| Warning { path: self.path(attr).into(), message: e.to_string() })
    }

    /// An optional attribute: `None` when absent; garbage warns and is `None`.
    fn optional<T>(&mut self, attr: &str, parse: impl Fn(&str) -> Result<T, ValueError>) -> Option<T> {
        let read = self.read_attr_optional(attr);
        let path = self.path(attr);
        crate::parse_optional(read, &path, parse, self.warnings)
    }

    fn link(&mut self, attr: &str) -> Option<String> {
        let name = match &self.held {
            Some(d) => d.link_name(attr),
            None => self.root.link_name(self.path(attr)),
        };
        match name {
            Ok(name) if !name.is_empty() => Some(name),
            Ok(_) => None,
            Err(e) if e.is_not_found() => None,
            Err(e) => {
                self.warn(self.path(attr), e.to_string());
                None
            }
        }
    }
}

/// How much of each device to read: the names lspci prints, or everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fields {
    /// Ids, class and revision: enough for `lspci -nn` lines.
    Names,
    /// Also the header type, driver and boot_vga: what the `list` table shows.
    Table,
    /// Everything `PciDevice` holds.
    All,
}

fn read_device(
    root: &HostRoot,
    address: PciAddress,
    fields: Fields,
    warnings: &mut Vec<Warning>,
) -> Result<PciDevice, Warning> {
    let mut r = DeviceReader::new(root, address, warnings);
    // The first 64 bytes of config space are readable without privileges.
    let config = r.read_bytes("config", 64).unwrap_or_default();
    let header = Header::of(&config);
    let ids = match header {
        Some(h) => h.ids,
        None => VendorDevice {
            vendor: r.required("vendor", sysfs_value::hex_u16)?,
            device: r.required("device", sysfs_value::hex_u16)?,
        },
    };
    // Always sysfs's: quirks change the class (and it is what drivers match).
    let class = r.required("class", sysfs_value::hex_u32)?;
    let mut dev = PciDevice::new(address, ids, ClassCode::new(class));
    if let Some(&h) = config.get(0x0e) {
        dev.header_type = Some(h & 0x7f);
        dev.multifunction = Some(h & 0x80 != 0);
    }
    dev.revision = match header {
        Some(h) => Some(h.revision),
        None => r.optional("revision", sysfs_value::hex_u8).or_else(|| config.get(0x08).copied()),
    };
    if fields == Fields::Names {
        return Ok(dev);
    }
    dev.driver = r.link("driver");
    // Only display devices have `boot_vga`.
    if dev.is_gpu() {
        dev.boot_vga = r.optional("boot_vga", sysfs_value::flag);
    }
    if fields == Fields::Table {
        return Ok(dev);
    }
    dev.subsystem = match header.and_then(|h| h.subsystem) {
        Some(s) => Some(s),
        None => {
            let sv = r.optional("subsystem_vendor", sysfs_value::hex_u16);
            let sd = r.optional("subsystem_device", sysfs_value::hex_u16);
            sv.zip(sd).map(|(vendor, device)| VendorDevice { vendor, device })
        }
    };
    dev.numa_node = r.optional("numa_node", sysfs_value::numa_node).flatten();
    dev.reset_methods = r.optional("reset_method", |s| Ok(sysfs_value::words(s)));
    Ok(dev)
}

/// What the first bytes of a device's config space say, when they are a device's header:
/// the vendor and device ids, the revision and (type 0) the subsystem ids, which is where
/// the kernel reads its `vendor`, `device`, `revision`, `subsystem_vendor` and
/// `subsystem_device` from at enumeration. Reading them from the one `config` file saves
/// five opens per device. A header that reads vendor 0xffff (an SR-IOV virtual function's,
/// or a device gone) or 0x0000, or that is too short, is not used: the sysfs files are read.
#[derive(Debug, Clone, Copy)]
struct Header {
    ids: VendorDevice,
    revision: u8,
    /// A type-0 header's subsystem ids (0x2c, 0x2e). A bridge's come from a capability:
    /// `None`, and the files are read.
    subsystem: Option<VendorDevice>,
}

impl Header {
    fn of(config: &[u8]) -> Option<Header> {
        // The kernel hands out at least the 64-byte standard header (256 or 4096 bytes to
        // root): anything shorter is not a config space.
        if config.len() < 64 {
            return None;
        }
        let word = |at: usize| config.get(at..at + 2).map(|b| u16::from_le_bytes([b[0], b[1]]));
        let ids = VendorDevice { vendor: word(0)?, device: word(2)? };
        if ids.vendor == 0xffff || ids.vendor == 0 {
            return None;
        }
        let revision = *config.get(0x08)?;
        let subsystem = match config.get(0x0e).map(|h| h & 0x7f) {
            Some(0) => word(0x2c).zip(word(0x2e)).map(|(vendor, device)| VendorDevice { vendor, device }),
            _ => None,
        };
        Some(Header { ids, revision, subsystem })
    }
}

/// Reads every PCI device and IOMMU group under the root.
pub fn read(root: &HostRoot) -> Result<PciInventory, HostError> {
    read_fields(root, Fields::All)
}

type DeviceResult = (PciAddress, Result<PciDevice, Warning>, Vec<Warning>);

/// The raw listing of `/sys/kernel/iommu_groups`: each group directory's name and the
/// listing of its `devices` directory, before they are matched with the devices read.
type GroupListing = Result<Vec<(String, Result<Vec<String>, RootError>)>, RootError>;

/// Devices read per claim of the shared work counter: large enough that claiming costs
/// nothing next to the reads, small enough that a thread slowed by a busy CPU hands the
/// rest of the work to the others.
const BATCH: usize = 32;

fn list_groups(root: &HostRoot) -> GroupListing {
    let names = root.list(IOMMU_GROUPS)?;
    Ok(names
        .into_iter()
        .map(|name| {
            let members = root.list(format!("{IOMMU_GROUPS}/{name}/devices"));
            (name, members)
        })
        .collect())
}

/// Reads the devices and lists the IOMMU groups, spread over the CPUs: thousands of small
/// sysfs reads, each mostly waiting on the kernel. The calling thread works too. Work is
/// handed out in small batches from a shared counter (job 0 is the group listing), so a
/// thread that gets less CPU time takes less of the work; results keep their order.
fn read_all(root: &HostRoot, addresses: &[PciAddress], fields: Fields) -> (Vec<DeviceResult>, GroupListing) {
    let one = |a: &PciAddress| {
        let mut w = Vec::new();
        let r = read_device(root, *a, fields, &mut w);
        (*a, r, w)
    };
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(4);
    if threads < 2 || addresses.len() < 256 {
        return (addresses.iter().map(one).collect(), list_groups(root));
    }
    let next = AtomicUsize::new(0);
    let work = || {
        let mut done = Vec::new();
        let mut groups = None;
        loop {
            let job = next.fetch_add(1, Ordering::Relaxed);
            if job == 0 {
                groups = Some(list_groups(root));
                continue;
            }
            let start = (job - 1) * BATCH;
            let Some(part) = addresses.get(start..addresses.len().min(start + BATCH)) else { break };
            if part.is_empty() {
                break;
            }
            done.push((job, part.iter().map(one).collect::<Vec<_>>()));
        }
        (done, groups)
    };
    let mut parts = Vec::with_capacity(addresses.len().div_ceil(BATCH));
    let mut groups = None;
    std::thread::scope(|s| {
        let helpers: Vec<_> = (1..threads).map(|_| s.spawn(work)).collect();
        let mine = work();
        for done in std::iter::once(Ok(mine)).chain(helpers.into_iter().map(|h| h.join())) {
            // A reader that panicked is a bug: pass the panic on rather than lose devices.
            let (done, g) = done.unwrap_or_else(|p| std::panic::resume_unwind(p));
            parts.extend(done);
            if g.is_some() {
                groups = g;
            }
        }
    });
    parts.sort_unstable_by_key(|(job, _)| *job);
    let devices = parts.into_iter().flat_map(|(_, r)| r).collect();
    // Job 0 is always claimed first, so the listing is there; list here if it is not.
    (devices, groups.unwrap_or_else(|| list_groups(root)))
}

/// Reads the devices (only `fields` of each) and the IOMMU groups.
pub fn read_fields(root: &HostRoot, fields: Fields) -> Result<PciInventory, HostError> {
    let names =
        root.list(PCI_DEVICES).map_err(|e| HostError::NoPciBus { root: root.base().to_path_buf(), source: e })?;
    let mut inv = PciInventory::default();
    let mut addresses = Vec::with_capacity(names.len());
    for name in names {
        match name.parse::<PciAddress>() {
            Ok(a) => addresses.push(a),
            Err(e) => {
                inv.warnings.push(Warning { path: format!("{PCI_DEVICES}/{name}").into(), message: e.to_string() })
            }
        }
    }
    let (devices, groups) = read_all(root, &addresses, fields);
    for (address, result, warnings) in devices {
        inv.warnings.extend(warnings);
        match result {
            Ok(dev) => {
                inv.devices.insert(address, dev);
            }
            Err(w) => inv
                .warnings
                .push(Warning { message: format!("device {address} left out: {}", w.message), path: w.path }),
        }
    }
    inv.groups = match_groups(groups, &mut inv)?;
    Ok(inv)
}

fn match_groups(listing: GroupListing, inv: &mut PciInventory) -> Result<Vec<IommuGroup>, HostError> {
    let listing = match listing {
        Ok(l) => l,
        Err(e) if e.is_not_found() => return Ok(Vec::new()),
        Err(e) => return Err(HostError::Root(e)),
    };
    let mut groups = Vec::new();
    for (name, members) in listing {
        let Ok(id) = name.parse::<u32>() else {
            inv.warnings
                .push(Warning { path: format!("{IOMMU_GROUPS}/{name}").into(), message: "not a group number".into() });
            continue;
        };
        let dir = format!("{IOMMU_GROUPS}/{name}/devices");
        let members = match members {
            Ok(m) => m,
            Err(e) => {
                inv.warnings.push(Warning { path: dir.into(), message: e.to_string() });
                continue;
            }
        };
        let mut devices = Vec::new();
        for m in members {
            match m.parse::<PciAddress>() {
                Ok(a) => {
                    if let Some(dev) = inv.devices.get_mut(&a) {
                        dev.iommu_group = Some(id);
                        devices.push(a);
                    } else {
                        inv.warnings.push(Warning {
                            path: format!("{dir}/{m}").into(),
                            message: "listed in the group but not readable under /sys/bus/pci/devices".into(),
                        });
                    }
                }
                // Non-PCI members (platform devices) are not ours to list.
                Err(_) => continue,
            }
        }
        devices.sort();
        groups.push(IommuGroup { id, devices });
    }
    groups.sort_by_key(|g| g.id);
    Ok(groups)
}

impl PciInventory {
    /// The read problems that concern `passed` devices: a file of a device in the same
    /// slot as one of them or in one of their IOMMU groups (its `numa_node`, its group
    /// link, the device left out altogether), or of one of their groups' listings. Any of
    /// them makes a plan a guess: half a card, a group member not seen, vCPUs on the wrong
    /// node.
    pub fn problems_for(&self, passed: &[PciAddress]) -> Vec<&Warning> {
        let groups: BTreeSet<u32> = passed.iter().filter_map(|a| self.devices.get(a)?.iommu_group).collect();
        let slot = |a: &PciAddress| (a.domain, a.bus, a.device);
        let slots: BTreeSet<_> = passed.iter().map(slot).collect();
        let in_groups: BTreeSet<PciAddress> =
            self.groups.iter().filter(|g| groups.contains(&g.id)).flat_map(|g| g.devices.iter().copied()).collect();
        self.warnings
            .iter()
            .filter(|w| {
                let mut parts = w.path.strip_prefix(PCI_DEVICES).ok().into_iter().flat_map(|p| p.components());
                let device = parts.next().and_then(|c| c.as_os_str().to_str()?.parse::<PciAddress>().ok());
                if let Some(a) = device {
                    return slots.contains(&slot(&a)) || in_groups.contains(&a);
                }
                let mut parts = w.path.strip_prefix(IOMMU_GROUPS).ok().into_iter().flat_map(|p| p.components());
                let group = parts.next().and_then(|c| c.as_os_str().to_str()?.parse::<u32>().ok());
                // A group whose members could not be read may be any device's.
                group.is_some_and(|g| groups.contains(&g) || !self.groups.iter().any(|x| x.id == g))
            })
            .collect()
    }
}

/// Which IOMMU the firmware exposes, for the remedy text.
pub fn iommu_hardware(root: &HostRoot) -> Vec<String> {
    root.list("/sys/class/iommu").unwrap_or_default()
}

/// Why a device's ROM could not be read through sysfs.
#[derive(Debug, thiserror::Error)]
pub enum RomReadError {
    #[error("cannot enable the ROM read ({path}): {err}")]
    Enable { path: PathBuf, err: std::io::Error },
    #[error(transparent)]
    Read(RootError),
    #[error("the ROM was read, but reading could not be turned off again ({path}): {err}")]
    Disable { path: PathBuf, err: std::io::Error },
}

/// The largest expansion ROM read (ROM BARs are 128 KiB to 1 MiB on graphics cards).
pub const ROM_LIMIT: u64 = 16 << 20;

/// Reads a device's expansion ROM through sysfs, as the kernel documents it: `1` into the
/// device's `rom` file enables reading, the file then holds the ROM, and `0` turns reading
/// off again (also after a failed read). The file is written through the host root.
pub fn read_rom(root: &HostRoot, address: PciAddress) -> Result<Vec<u8>, RomReadError> {
    let host_path = PathBuf::from(format!("{PCI_DEVICES}/{address}/rom"));
    let set = |value: &[u8]| -> Result<(), std::io::Error> {
        let real = root.real_path(&host_path).map_err(|e| std::io::Error::other(e.to_string()))?;
        if let Some(log) = root.log() {
            log.note("write", &host_path);
        }
        // The attribute exists or not: it is never created (and sysfs has nothing to truncate).
        let mut f = std::fs::OpenOptions::new().write(true).open(real)?;
        std::io::Write::write_all(&mut f, value)
    };
    set(b"1").map_err(|err| RomReadError::Enable { path: host_path.clone(), err })?;
    let read = root.read_bytes(&host_path, ROM_LIMIT);
    let off = set(b"0");
    let bytes = read.map_err(RomReadError::Read)?;
    off.map_err(|err| RomReadError::Disable { path: host_path, err })?;
    Ok(bytes)
}
