//! Block devices and mounts: `[[disks]]` (NVMe, SATA and USB disks nested under their PCI
//! controller's sysfs directory), `[[volumes]]` (device-mapper and md devices under
//! `sys/devices/virtual/block`), `[[mounts]]` (`/proc/self/mountinfo`, `/proc/swaps`),
//! plus `sys/dev/block`, `sys/class/block`, `sys/block`, `/proc/partitions` and the
//! `/dev` nodes and links.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use vfioctl_core::pci::PciAddress;

use crate::pci::Dev;
use crate::spec::{size_kib, DiskSpec, Spec};
use crate::system::Kernel;
use crate::tree::Tree;
use crate::Error;

/// What a disk's controller is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Bus {
    Nvme,
    Sata,
    Usb,
}

/// What a block device is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    Disk,
    /// A partition: its number and the index of its disk in `Blocks::devs`.
    Partition {
        number: u32,
        disk: usize,
        start: u64,
    },
    Dm {
        name: String,
        uuid: String,
    },
    Md {
        level: String,
        slaves: usize,
    },
}

/// One block device.
#[derive(Debug, Clone)]
pub struct Blk {
    pub name: String,
    pub major: u32,
    pub minor: u32,
    /// Directory relative to the root.
    pub dir: String,
    pub sectors: u64,
    pub kind: Kind,
    /// Disks: the bus; partitions and volumes: that of their disk (volumes: `None`).
    pub bus: Option<Bus>,
    /// The `/dev` path a mount names.
    pub source: String,
    /// Indexes of the devices below a volume.
    pub slaves: Vec<usize>,
}

/// Every block device, in registration order (disks, each followed by its partitions,
/// then volumes).
#[derive(Debug, Default)]
pub struct Blocks {
    pub devs: Vec<Blk>,
}

impl Blocks {
    fn find(&self, name: &str) -> Option<usize> {
        self.devs.iter().position(|b| b.name == name)
    }
}

fn spec_err(msg: impl Into<String>) -> Error {
    Error::Spec(msg.into())
}

/// Sectors of a disk sold as `gb` GB (IDEMA LBA1-03 for 50 GB and up).
pub fn idema_sectors(gb: u64) -> u64 {
    if gb >= 50 {
        97_696_368 + 1_953_504 * (gb - 50)
    } else {
        gb * 1_000_000_000 / 512
    }
}

/// `sd` + letters: the disk index (`sda` 0, `sdz` 25, `sdaa` 26).
fn sd_index(name: &str) -> Option<u32> {
    let letters = name.strip_prefix("sd")?;
    if letters.is_empty() || letters.len() > 2 || !letters.bytes().all(|b| b.is_ascii_lowercase()) {
        return None;
    }
    let mut n: u32 = 0;
    for b in letters.bytes() {
        n = n * 26 + u32::from(b - b'a') + 1;
    }
    Some(n - 1)
}

/// `nvme<C>n<N>`: (controller instance, namespace).
fn nvme_parts(name: &str) -> Option<(u32, u32)> {
    let rest = name.strip_prefix("nvme")?;
    let (c, n) = rest.split_once('n')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && (s == "0" || !s.starts_with('0'));
    if !digits(c) || !digits(n) {
        return None;
    }
    Some((c.parse().ok()?, n.parse().ok()?))
}

fn padded(s: &str, width: usize) -> String {
    format!("{s:<width$}\n")
}

/// by-id component: spaces become underscores.
fn id_part(s: &str) -> String {
    s.trim().replace(' ', "_")
}

/// Validates `[[disks]]` and `[[volumes]]` and lays out their directories.
pub fn blocks(spec: &Spec, devs: &[Dev]) -> Result<Blocks, Error> {
    let by_addr: BTreeMap<PciAddress, &Dev> = devs.iter().map(|d| (d.addr, d)).collect();
    let usb_ctrls: Vec<PciAddress> = devs.iter().filter(|d| d.class >> 8 == 0x0c03).map(|d| d.addr).collect();
    let mut out = Blocks::default();
    let mut nvme_minor = 0u32;
    let mut nvme_inst: BTreeMap<u32, PciAddress> = BTreeMap::new();
    let mut ata = 0u32;
    let mut scsi_host = 0u32;
    let mut usb_ports: BTreeMap<PciAddress, u32> = BTreeMap::new();
    for d in &spec.disks {
        let err = |msg: String| spec_err(format!("disk {}: {msg}", d.name));
        if out.find(&d.name).is_some() {
            return Err(err("listed twice".into()));
        }
        let addr: PciAddress = d.controller.parse().map_err(|e| err(format!("controller {}: {e}", d.controller)))?;
        let ctrl =
            by_addr.get(&addr).ok_or_else(|| err(format!("controller {} is not a device in [pci]", d.controller)))?;
        let bus = match ctrl.class >> 8 {
            0x0108 => Bus::Nvme,
            0x0106 => Bus::Sata,
            0x0c03 => Bus::Usb,
            c => {
                return Err(err(format!(
                    "controller {} has class {c:04x}, not NVMe (0108), SATA (0106) or USB (0c03)",
                    d.controller
                )))
            }
        };
        match ctrl.driver.as_deref() {
            None | Some("vfio-pci") | Some("pci-stub") => {
                return Err(err(format!(
                    "controller {} has no host driver bound, so the host sees no disk on it",
                    d.controller
                )))
            }
            _ => {}
        }
        let sectors = idema_sectors(d.size_gb);
        if sectors == 0 {
            return Err(err("size_gb must be at least 1".into()));
        }
        let pci = &ctrl.dir;
        let (major, minor, dir, part_sep) = match bus {
            Bus::Nvme => {
                let (inst, _) = nvme_parts(&d.name)
                    .ok_or_else(|| err("a disk on an NVMe controller is named like nvme0n1".into()))?;
                match nvme_inst.get(&inst) {
                    Some(a) if *a != addr => {
                        return Err(err(format!("nvme{inst} is already controller {a}")));
                    }
                    _ => {}
                }
                if let Some((other, _)) = nvme_inst.iter().find(|(i, a)| **a == addr && **i != inst) {
                    return Err(err(format!("controller {} is already nvme{other}", d.controller)));
                }
                nvme_inst.insert(inst, addr);
                let minor = nvme_minor;
                nvme_minor += 1 + d.partitions.len() as u32;
                (259, minor, format!("{pci}/nvme/nvme{inst}/{}", d.name), "p")
            }
            Bus::Sata | Bus::Usb => {
                let idx = sd_index(&d.name).ok_or_else(|| err("a SATA or USB disk is named like sda".into()))?;
                if d.partitions.len() > 15 {
                    return Err(err("an sd disk has at most 15 partitions".into()));
                }
                if out.devs.iter().any(|b| b.major == 8 && b.minor == idx * 16) {
                    return Err(err("listed twice".into()));
                }
                let h = scsi_host;
                scsi_host += 1;
                let scsi = format!("host{h}/target{h}:0:0/{h}:0:0:0");
                let dir = if bus == Bus::Sata {
                    ata += 1;
                    format!("{pci}/ata{ata}/{scsi}/block/{}", d.name)
                } else {
                    let i = usb_ctrls.iter().position(|a| *a == addr).unwrap_or(0) as u32;
                    let port = usb_ports.entry(addr).or_insert(0);
                    *port += 1;
                    // The controller's SuperSpeed root hub is its second bus.
                    let b = 2 * i + 2;
                    format!("{pci}/usb{b}/{b}-{port}/{b}-{port}:1.0/{scsi}/block/{}", d.name)
                };
                (8, idx * 16, dir, "")
            }
        };
        let disk = out.devs.len();
        out.devs.push(Blk {
            name: d.name.clone(),
            major,
            minor,
            dir: dir.clone(),
            sectors,
            kind: Kind::Disk,
            bus: Some(bus),
            source: format!("/dev/{}", d.name),
            slaves: vec![],
        });
        for (i, (start, size)) in partition_layout(d, sectors)?.into_iter().enumerate() {
            let n = i as u32 + 1;
            let name = format!("{}{part_sep}{n}", d.name);
            out.devs.push(Blk {
                name: name.clone(),
                major,
                minor: minor + n,
                dir: format!("{dir}/{name}"),
                sectors: size,
                kind: Kind::Partition { number: n, disk, start },
                bus: Some(bus),
                source: format!("/dev/{name}"),
                slaves: vec![],
            });
        }
    }
    for v in &spec.volumes {
        let err = |msg: String| spec_err(format!("volume {}: {msg}", v.name));
        if out.find(&v.name).is_some() {
            return Err(err("listed twice".into()));
        }
        let number = |prefix: &str| -> Option<u32> {
            let n = v.name.strip_prefix(prefix)?;
            (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then(|| n.parse().ok()).flatten()
        };
        if v.slaves.is_empty() {
            return Err(err("needs at least one slave".into()));
        }
        let mut slaves = Vec::new();
        for s in &v.slaves {
            let i = out.find(s).ok_or_else(|| err(format!("slave {s} is not a disk, partition or earlier volume")))?;
            if slaves.contains(&i) {
                return Err(err(format!("slave {s} listed twice")));
            }
            slaves.push(i);
        }
        let total: u64 = slaves.iter().map(|&i| out.devs[i].sectors).sum();
        let (major, minor, kind, source, sectors) = if let Some(n) = number("dm-") {
            let name = v.dm_name.clone().ok_or_else(|| err("a dm device needs dm_name".into()))?;
            if v.level.is_some() {
                return Err(err("level is for md devices".into()));
            }
            if name.is_empty() || name.contains(['/', ' ']) {
                return Err(err(format!("dm_name `{name}` is not a device-mapper name")));
            }
            let uuid = v.dm_uuid.clone().unwrap_or_default();
            // A LUKS2 header takes 16 MiB of its device.
            let sectors = if uuid.starts_with("CRYPT-") { total.saturating_sub(32768) } else { total };
            (253, n, Kind::Dm { name: name.clone(), uuid }, format!("/dev/mapper/{name}"), sectors)
        } else if let Some(n) = number("md") {
            let level = v.level.clone().ok_or_else(|| err("an md device needs level".into()))?;
            if v.dm_name.is_some() || v.dm_uuid.is_some() {
                return Err(err("dm_name and dm_uuid are for dm devices".into()));
            }
            let min = slaves.iter().map(|&i| out.devs[i].sectors).min().unwrap_or(0);
            let sectors = match level.as_str() {
                "raid0" | "linear" => total,
                "raid1" => min,
                "raid5" => min * (slaves.len() as u64).saturating_sub(1),
                "raid6" => min * (slaves.len() as u64).saturating_sub(2),
                "raid10" => min * slaves.len() as u64 / 2,
                l => return Err(err(format!("level `{l}` is not raid0, raid1, raid5, raid6, raid10 or linear"))),
            };
            (9, n, Kind::Md { level, slaves: slaves.len() }, format!("/dev/{}", v.name), sectors)
        } else {
            return Err(err("a volume is named dm-N (device-mapper) or mdN (md RAID)".into()));
        };
        out.devs.push(Blk {
            name: v.name.clone(),
            major,
            minor,
            dir: format!("sys/devices/virtual/block/{}", v.name),
            sectors,
            kind,
            bus: None,
            source,
            slaves,
        });
    }
    Ok(out)
}

/// (start, size) in sectors of each partition: 1 MiB aligned, GPT at both ends.
fn partition_layout(d: &DiskSpec, sectors: u64) -> Result<Vec<(u64, u64)>, Error> {
    let err = |msg: String| spec_err(format!("disk {}: {msg}", d.name));
    let end = (sectors - 34) / 2048 * 2048;
    let mut start = 2048u64;
    let mut out = Vec::new();
    for (i, p) in d.partitions.iter().enumerate() {
        let size = if p == "*" {
            if i + 1 != d.partitions.len() {
                return Err(err("only the last partition may be \"*\"".into()));
            }
            end.saturating_sub(start)
        } else {
            let kib = size_kib(p)
                .filter(|&k| k > 0)
                .ok_or_else(|| err(format!("partition size `{p}` is not a size like 512M or 100G")))?;
            kib * 2
        };
        if size == 0 || start + size > end {
            return Err(err(format!("partition {} does not fit on the disk", i + 1)));
        }
        out.push((start, size));
        start = (start + size).div_ceil(2048) * 2048;
    }
    Ok(out)
}

/// sysfs, `/proc/partitions` and `/dev` for every block device.
pub fn write(spec: &Spec, devs: &[Dev], blocks: &Blocks, t: &mut Tree) {
    if blocks.devs.is_empty() {
        return;
    }
    let by_addr: BTreeMap<PciAddress, &Dev> = devs.iter().map(|d| (d.addr, d)).collect();
    let mut partitions = String::from("major minor  #blocks  name\n\n");
    for b in &blocks.devs {
        let dir = &b.dir;
        let f = |name: &str| format!("{dir}/{name}");
        t.file(f("dev"), format!("{}:{}\n", b.major, b.minor));
        t.file(f("size"), format!("{}\n", b.sectors));
        t.file(f("ro"), "0\n");
        t.link(f("subsystem"), "sys/class/block");
        let devtype = if matches!(b.kind, Kind::Partition { .. }) { "partition" } else { "disk" };
        let mut uevent = format!("MAJOR={}\nMINOR={}\nDEVNAME={}\nDEVTYPE={devtype}\n", b.major, b.minor, b.name);
        match &b.kind {
            Kind::Partition { number, start, .. } => {
                let _ = writeln!(uevent, "PARTN={number}");
                t.file(f("partition"), format!("{number}\n"));
                t.file(f("start"), format!("{start}\n"));
            }
            Kind::Disk => {
                let removable = b.bus == Some(Bus::Usb);
                t.file(f("removable"), if removable { "1\n" } else { "0\n" });
                t.file(f("queue/rotational"), "0\n");
                t.file(f("queue/logical_block_size"), "512\n");
                t.file(f("queue/hw_sector_size"), "512\n");
            }
            Kind::Dm { name, uuid } => {
                let _ = writeln!(uevent, "DM_NAME={name}");
                t.file(f("removable"), "0\n");
                t.file(f("dm/name"), format!("{name}\n"));
                t.file(f("dm/uuid"), format!("{uuid}\n"));
                t.file(f("dm/suspended"), "0\n");
                t.file(f("queue/rotational"), "0\n");
            }
            Kind::Md { level, slaves } => {
                t.file(f("removable"), "0\n");
                t.file(f("md/level"), format!("{level}\n"));
                t.file(f("md/raid_disks"), format!("{slaves}\n"));
                t.file(f("md/array_state"), "clean\n");
                t.file(f("md/metadata_version"), "1.2\n");
                t.file(f("queue/rotational"), "0\n");
            }
        }
        t.file(f("uevent"), uevent);
        for &s in &b.slaves {
            let slave = &blocks.devs[s];
            t.link(f(&format!("slaves/{}", slave.name)), &slave.dir);
            t.link(format!("{}/holders/{}", slave.dir, b.name), dir);
        }
        t.link(format!("sys/dev/block/{}:{}", b.major, b.minor), dir);
        t.link(format!("sys/class/block/{}", b.name), dir);
        if !matches!(b.kind, Kind::Partition { .. }) {
            t.link(format!("sys/block/{}", b.name), dir);
        }
        let _ = writeln!(partitions, "{:4}  {:7} {:10} {}", b.major, b.minor, b.sectors / 2, b.name);
        t.file(format!("dev/{}", b.name), "");
        if let Kind::Dm { name, .. } = &b.kind {
            t.raw_link(format!("dev/mapper/{name}"), &format!("../{}", b.name));
            t.raw_link(format!("dev/disk/by-id/dm-name-{name}"), &format!("../../{}", b.name));
            t.file("dev/mapper/control", "");
        }
        // Controller-side directories and the disk's device link.
        if b.kind == Kind::Disk {
            let d = spec.disks.iter().find(|d| d.name == b.name);
            let model = d.and_then(|d| d.model.clone()).unwrap_or_default();
            let serial = d.and_then(|d| d.serial.clone()).unwrap_or_default();
            match b.bus {
                Some(Bus::Nvme) => {
                    let ctrl = parent_dir(dir);
                    let inst = ctrl.rsplit('/').next().unwrap_or("nvme0");
                    let pci_dir = parent_dir(parent_dir(ctrl));
                    t.link(f("device"), ctrl);
                    let addr = d.and_then(|d| d.controller.parse::<PciAddress>().ok());
                    if let Some(a) = addr.filter(|a| by_addr.contains_key(a)) {
                        t.file(format!("{ctrl}/address"), format!("{a}\n"));
                    }
                    t.file(format!("{ctrl}/model"), padded(&model, 40));
                    t.file(format!("{ctrl}/serial"), padded(&serial, 20));
                    t.file(format!("{ctrl}/firmware_rev"), padded("1B2QEXM7", 8));
                    t.file(format!("{ctrl}/transport"), "pcie\n");
                    t.file(format!("{ctrl}/state"), "live\n");
                    t.link(format!("{ctrl}/device"), pci_dir);
                    t.link(format!("{ctrl}/subsystem"), "sys/class/nvme");
                    t.link(format!("sys/class/nvme/{inst}"), ctrl);
                    if !model.is_empty() && !serial.is_empty() {
                        by_id(t, &format!("nvme-{}_{}", id_part(&model), id_part(&serial)), b, blocks);
                    }
                }
                Some(bus @ (Bus::Sata | Bus::Usb)) => {
                    // dir = .../H:0:0:0/block/sdX
                    let scsi = parent_dir(parent_dir(dir));
                    t.link(f("device"), scsi);
                    let (vendor, product) = if bus == Bus::Sata {
                        ("ATA".to_string(), model.clone())
                    } else {
                        match model.split_once(' ') {
                            Some((v, m)) => (v.to_string(), m.to_string()),
                            None => (model.clone(), String::new()),
                        }
                    };
                    t.file(format!("{scsi}/vendor"), padded(&vendor, 8));
                    t.file(format!("{scsi}/model"), padded(&product, 16));
                    t.file(format!("{scsi}/rev"), padded(if bus == Bus::Sata { "0101" } else { "0" }, 4));
                    t.file(format!("{scsi}/type"), "0\n");
                    t.file(format!("{scsi}/state"), "running\n");
                    if !model.is_empty() && !serial.is_empty() {
                        let id = if bus == Bus::Sata {
                            format!("ata-{}_{}", id_part(&model), id_part(&serial))
                        } else {
                            format!("usb-{}_{}_{}-0:0", id_part(&vendor), id_part(&product), id_part(&serial))
                        };
                        by_id(t, &id, b, blocks);
                    }
                }
                None => {}
            }
        }
    }
    t.file("proc/partitions", partitions);
}

fn parent_dir(p: &str) -> &str {
    p.rsplit_once('/').map_or("", |(d, _)| d)
}

/// `/dev/disk/by-id/ID` for a disk and `ID-partN` for its partitions.
fn by_id(t: &mut Tree, id: &str, disk: &Blk, blocks: &Blocks) {
    t.raw_link(format!("dev/disk/by-id/{id}"), &format!("../../{}", disk.name));
    for p in &blocks.devs {
        if let Kind::Partition { number, .. } = p.kind {
            if p.dir.starts_with(&format!("{}/", disk.dir)) {
                t.raw_link(format!("dev/disk/by-id/{id}-part{number}"), &format!("../../{}", p.name));
            }
        }
    }
}

/// `[[pools]]`: udev's entries for the members, kstat and module directories for the
/// imported pools.
pub fn write_pools(spec: &Spec, blocks: &Blocks, t: &mut Tree) -> Result<(), Error> {
    for p in &spec.pools {
        let err = |msg: String| spec_err(format!("pool {}: {msg}", p.name));
        if p.name.is_empty() || p.name.contains(['/', ' ', '@', '#']) {
            return Err(err("is not a pool name".into()));
        }
        if p.members.is_empty() {
            return Err(err("needs at least one member".into()));
        }
        // A stable stand-in for the pool's 64-bit GUID.
        let guid = p.guid.clone().unwrap_or_else(|| {
            let h =
                p.name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
            h.to_string()
        });
        for (i, m) in p.members.iter().enumerate() {
            let b = blocks
                .find(m)
                .map(|i| &blocks.devs[i])
                .ok_or_else(|| err(format!("member {m} is not a disk, partition or volume")))?;
            let sub =
                (guid.parse::<u64>().unwrap_or(0) ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15)).to_string();
            t.file(
                format!("run/udev/data/b{}:{}", b.major, b.minor),
                format!(
                    "I:{}\nE:ID_FS_VERSION=5000\nE:ID_FS_LABEL={}\nE:ID_FS_LABEL_ENC={}\nE:ID_FS_UUID={guid}\nE:ID_FS_UUID_ENC={guid}\nE:ID_FS_UUID_SUB={sub}\nE:ID_FS_UUID_SUB_ENC={sub}\nE:ID_FS_TYPE=zfs_member\nE:ID_FS_USAGE=filesystem\nG:systemd\nQ:systemd\nV:1\n",
                    4_200_000 + 1000 * i,
                    p.name,
                    p.name
                ),
            );
        }
        if p.imported {
            let dir = format!("proc/spl/kstat/zfs/{}", p.name);
            t.file(format!("{dir}/state"), "ONLINE\n");
            t.file(format!("{dir}/txgs"), "");
            t.file(format!("{dir}/reads"), "");
            t.file("proc/spl/kstat/zfs/arcstats", "");
            t.file("sys/module/zfs/version", "2.2.2-0ubuntu9\n");
            t.file("sys/module/zfs/initstate", "live\n");
        }
    }
    Ok(())
}

/// One line of mountinfo.
#[derive(Debug, Clone)]
pub struct MountLine {
    pub mount_point: String,
    pub majmin: String,
    pub root: String,
    pub opts: String,
    pub fstype: String,
    pub source: String,
    pub super_opts: String,
}

impl MountLine {
    pub fn new(mount_point: &str, majmin: &str, opts: &str, fstype: &str, source: &str, super_opts: &str) -> Self {
        MountLine {
            mount_point: mount_point.into(),
            majmin: majmin.into(),
            root: "/".into(),
            opts: opts.into(),
            fstype: fstype.into(),
            source: source.into(),
            super_opts: super_opts.into(),
        }
    }
}

/// Typical (mount options, superblock options) of a filesystem type.
fn default_options(fstype: &str, fedora: bool) -> (&'static str, String) {
    let seclabel = if fedora { "seclabel," } else { "" };
    match fstype {
        "ext4" => ("rw,relatime", format!("rw,{seclabel}errors=remount-ro")),
        "xfs" => ("rw,relatime", format!("rw,{seclabel}attr2,inode64,logbufs=8,logbsize=32k,noquota")),
        "btrfs" => ("rw,relatime", format!("rw,{seclabel}compress=zstd:1,ssd,discard=async,space_cache=v2")),
        "vfat" => (
            "rw,relatime",
            "rw,fmask=0077,dmask=0077,codepage=437,iocharset=ascii,shortname=mixed,utf8,errors=remount-ro".into(),
        ),
        _ => ("rw,relatime", "rw".into()),
    }
}

/// The real mounts of `[[mounts]]` as mountinfo lines (the root first), and the
/// `/proc/swaps` text. Validates the entries.
pub fn mounts(spec: &Spec, blocks: &Blocks) -> Result<(Vec<MountLine>, String), Error> {
    let fedora = matches!(spec.host.distro, Some(crate::spec::Distro::Fedora | crate::spec::Distro::Rhel));
    let mut lines: Vec<MountLine> = Vec::new();
    let mut swaps = String::from("Filename\t\t\t\tType\t\tSize\t\tUsed\t\tPriority\n");
    let mut prio = -2i32;
    for m in &spec.mounts {
        let what = m.mount.as_deref().unwrap_or(&m.device);
        let err = |msg: String| spec_err(format!("mount {what}: {msg}"));
        if m.fstype == "zfs" {
            let pool = m.device.split('/').next().unwrap_or_default();
            let imported = spec.pools.iter().find(|p| p.name == pool).map(|p| p.imported);
            if imported != Some(true) {
                return Err(err(format!("dataset {}: no imported pool {pool} in [[pools]]", m.device)));
            }
            let mp = m.mount.as_deref().ok_or_else(|| err("needs a mount point".into()))?;
            if lines.iter().any(|l| l.mount_point == mp) {
                return Err(err("mounted twice".into()));
            }
            let sup = m.options.clone().unwrap_or_else(|| "rw,xattr,noacl,casesensitive".into());
            lines.push(MountLine::new(mp, "", "rw,relatime", "zfs", &m.device, &sup));
            continue;
        }
        let b = blocks
            .find(&m.device)
            .map(|i| &blocks.devs[i])
            .ok_or_else(|| err(format!("device {} is not a disk, partition or volume", m.device)))?;
        if m.fstype == "swap" {
            if m.mount.is_some() || m.subvol.is_some() {
                return Err(err("swap has no mount point or subvolume".into()));
            }
            let kib = b.sectors / 2 - 4;
            let pad = 40usize.saturating_sub(b.source.len()).max(1);
            let small = if kib < 10_000_000 { "\t" } else { "" };
            let _ = writeln!(swaps, "{}{:pad$}partition\t{kib}\t{small}0\t\t{prio}", b.source, "");
            prio -= 1;
            continue;
        }
        let mp = m.mount.as_deref().ok_or_else(|| err("needs a mount point".into()))?;
        let ok = mp.starts_with('/')
            && (mp == "/" || !mp.ends_with('/'))
            && !mp[1..].split('/').any(|c| (c.is_empty() && mp != "/") || c == "." || c == "..")
            && !mp.contains([' ', '\t', '\n']);
        if !ok {
            return Err(err("mount point must be an absolute path without spaces, `.` or `..`".into()));
        }
        if lines.iter().any(|l| l.mount_point == mp) {
            return Err(err("mounted twice".into()));
        }
        if m.fstype.is_empty() || m.fstype.contains(char::is_whitespace) {
            return Err(err("fstype is empty or has spaces".into()));
        }
        let (opts, mut sup) = default_options(&m.fstype, fedora);
        if let Some(o) = &m.options {
            sup = o.clone();
        }
        let mut root = "/".to_string();
        if let Some(sv) = &m.subvol {
            if m.fstype != "btrfs" {
                return Err(err("subvol is for btrfs".into()));
            }
            let sv = format!("/{}", sv.trim_start_matches('/'));
            if m.options.is_none() {
                let id = 256 + lines.iter().filter(|l| l.fstype == "btrfs").count() + 1;
                let _ = write!(sup, ",subvolid={id},subvol={sv}");
            }
            root = sv;
        }
        // btrfs gives every subvolume an anonymous device number (0:N), like the virtual
        // filesystems: mountinfo does not name the block device's MAJ:MIN, only the source.
        let majmin = if m.fstype == "btrfs" { String::new() } else { format!("{}:{}", b.major, b.minor) };
        let mut line = MountLine::new(mp, &majmin, opts, &m.fstype, &b.source, &sup);
        line.root = root;
        lines.push(line);
    }
    if !lines.is_empty() && !lines.iter().any(|l| l.mount_point == "/") {
        return Err(spec_err("[[mounts]] has no root filesystem (mount = \"/\")"));
    }
    lines.sort_by_key(|l| l.mount_point != "/");
    Ok((lines, swaps))
}

/// `/proc/self/mountinfo` (and `/proc/self/mounts`, `/proc/swaps`) from the real mounts,
/// the usual virtual filesystems a systemd host mounts, and the cgroup mounts.
pub fn write_mountinfo(spec: &Spec, real: &[MountLine], swaps: &str, cgroups: &[MountLine], t: &mut Tree) {
    if real.is_empty() {
        // No [[mounts]]: the cgroup lines `system::write_cgroup` wrote stay alone.
        return;
    }
    let debian = matches!(spec.host.distro, Some(crate::spec::Distro::Debian | crate::spec::Distro::Ubuntu));
    let efi = spec.files.keys().any(|k| k.starts_with("/sys/firmware/efi/"));
    let k = spec.host.kernel.as_deref().and_then(|r| Kernel::parse(r).ok());
    let inode64 = if k.as_ref().is_none_or(|k| k.at_least(5, 9)) { ",inode64" } else { "" };
    let mem_kib: u64 = spec.memory.node_mib.iter().sum::<u64>() * 1024;
    let hugesize =
        if spec.host.cmdline.split_whitespace().any(|w| w == "default_hugepagesz=1G") { "1024M" } else { "2M" };
    let mut anon = 20u32;
    let mut next = || {
        anon += 1;
        format!("0:{anon}")
    };
    let nosuid = "rw,nosuid,nodev,noexec,relatime";
    let mut all: Vec<MountLine> = vec![
        MountLine::new("/sys", &next(), nosuid, "sysfs", "sysfs", "rw"),
        MountLine::new("/proc", &next(), nosuid, "proc", "proc", "rw"),
        MountLine::new(
            "/dev",
            "0:5",
            "rw,nosuid,relatime",
            "devtmpfs",
            if debian { "udev" } else { "devtmpfs" },
            &format!("rw,size={}k,nr_inodes={},mode=755{inode64}", mem_kib / 2, mem_kib / 8),
        ),
        MountLine::new(
            "/dev/pts",
            &next(),
            "rw,nosuid,noexec,relatime",
            "devpts",
            "devpts",
            "rw,gid=5,mode=620,ptmxmode=000",
        ),
        MountLine::new(
            "/run",
            &next(),
            "rw,nosuid,nodev,noexec,relatime",
            "tmpfs",
            "tmpfs",
            &format!("rw,size={}k,mode=755{inode64}", mem_kib / 10),
        ),
    ];
    all.push(real[0].clone());
    all.push(MountLine::new("/sys/kernel/security", "0:6", nosuid, "securityfs", "securityfs", "rw"));
    all.push(MountLine::new("/dev/shm", &next(), "rw,nosuid,nodev", "tmpfs", "tmpfs", &format!("rw{inode64}")));
    if debian {
        all.push(MountLine::new("/run/lock", &next(), nosuid, "tmpfs", "tmpfs", &format!("rw,size=5120k{inode64}")));
    }
    for c in cgroups {
        let mut c = c.clone();
        c.majmin = next();
        all.push(c);
    }
    all.push(MountLine::new("/sys/fs/pstore", &next(), nosuid, "pstore", "pstore", "rw"));
    if efi {
        all.push(MountLine::new("/sys/firmware/efi/efivars", &next(), nosuid, "efivarfs", "efivarfs", "rw"));
    }
    all.push(MountLine::new("/sys/fs/bpf", &next(), nosuid, "bpf", "bpf", "rw,mode=700"));
    all.push(MountLine::new(
        "/dev/hugepages",
        &next(),
        "rw,relatime",
        "hugetlbfs",
        "hugetlbfs",
        &format!("rw,pagesize={hugesize}"),
    ));
    all.push(MountLine::new("/dev/mqueue", "0:20", nosuid, "mqueue", "mqueue", "rw"));
    all.push(MountLine::new("/sys/kernel/debug", "0:7", nosuid, "debugfs", "debugfs", "rw"));
    all.push(MountLine::new("/sys/kernel/tracing", "0:12", nosuid, "tracefs", "tracefs", "rw"));
    all.push(MountLine::new("/sys/fs/fuse/connections", &next(), nosuid, "fusectl", "fusectl", "rw"));
    all.push(MountLine::new("/sys/kernel/config", &next(), nosuid, "configfs", "configfs", "rw"));
    all.extend(real[1..].iter().cloned());
    all.push(MountLine::new(
        "/run/user/1000",
        &next(),
        "rw,nosuid,nodev,relatime",
        "tmpfs",
        "tmpfs",
        &format!("rw,size={}k,nr_inodes={},mode=700,uid=1000,gid=1000{inode64}", mem_kib / 10, mem_kib / 40),
    ));

    for l in all.iter_mut().filter(|l| l.majmin.is_empty()) {
        l.majmin = next();
    }
    // Ids in mount order; the root's parent is the initramfs root (id 1); every other
    // mount's parent is the longest mount point above it mounted before it.
    let first = 22u32;
    let mut lines: Vec<(u32, u32, &MountLine)> = Vec::new();
    for (i, l) in all.iter().enumerate() {
        let id = first + i as u32;
        let parent = if l.mount_point == "/" {
            1
        } else {
            lines
                .iter()
                .filter(|(_, _, p)| under(&l.mount_point, &p.mount_point))
                .max_by_key(|(_, _, p)| p.mount_point.len())
                .map(|(pid, _, _)| *pid)
                // Mounted before the root moved over them (from the initramfs).
                .unwrap_or(first + 5)
        };
        lines.push((id, parent, l));
    }
    // Peer groups: the root's is 1, the others in mount order.
    let root_id = first + 5;
    let shared = |id: u32| match id.cmp(&root_id) {
        std::cmp::Ordering::Equal => 1,
        std::cmp::Ordering::Less => id - first + 2,
        std::cmp::Ordering::Greater => id - first + 1,
    };
    t.file("proc/self/mountinfo", render(&lines, &shared));
    let mut mounts = String::new();
    for (_, _, l) in &lines {
        let mut opts: Vec<&str> = l.opts.split(',').collect();
        for o in l.super_opts.split(',') {
            if !opts.contains(&o) {
                opts.push(o);
            }
        }
        let _ = writeln!(mounts, "{} {} {} {} 0 0", l.source, l.mount_point, l.fstype, opts.join(","));
    }
    t.file("proc/self/mounts", mounts);
    t.raw_link("proc/mounts", "self/mounts");
    t.file("proc/swaps", swaps.to_string());
}

fn under(path: &str, mount_point: &str) -> bool {
    mount_point == "/" && path != "/" || path.strip_prefix(mount_point).is_some_and(|r| r.starts_with('/'))
}

fn render(lines: &[(u32, u32, &MountLine)], shared: &dyn Fn(u32) -> u32) -> String {
    let mut s = String::new();
    for (id, parent, l) in lines {
        let _ = writeln!(
            s,
            "{id} {parent} {} {} {} {} shared:{} - {} {} {}",
            l.majmin,
            l.root,
            l.mount_point,
            l.opts,
            shared(*id),
            l.fstype,
            l.source,
            l.super_opts
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tree::Node;

    const BASE: &str = "[host]\nname='t'\ncmdline='ro'\nkernel='6.1.0-18-amd64'\ndistro='debian'\n[cpu]\n\
        vendor='AuthenticAMD'\nmodel_name='x'\nfamily=23\nmodel=1\ncores_per_l3=2\nbase_freq_khz=1\nmax_freq_khz=1\n\
        cache={l1d='32K',l1i='64K',l2='512K',l3='8M'}\n[memory]\nnode_mib=[4096]\n[pci]\ndevices=[\n\
        {addr='00:01.1',id='1022:1453',class='060400',group=0,driver='pcieport'},\n\
        {addr='01:00.0',id='144d:a808',class='010802',group=1,parent='00:01.1',driver='nvme'},\n\
        {addr='00:08.1',id='1022:1454',class='060400',group=2,driver='pcieport'},\n\
        {addr='02:00.2',id='1022:7901',class='010601',group=3,parent='00:08.1',driver='ahci'},\n\
        {addr='02:00.3',id='1022:145c',class='0c0330',group=3,parent='00:08.1',driver='xhci_hcd'},\n\
        {addr='02:00.4',id='1022:1457',class='040300',group=3,parent='00:08.1',driver='snd_hda_intel'},\n]\n";

    const DISKS: &str = "[[disks]]\nname='nvme0n1'\ncontroller='01:00.0'\nsize_gb=1000\npartitions=['512M','*']\n\
        model='Samsung SSD 970 EVO 1TB'\nserial='S1'\n\
        [[disks]]\nname='sda'\ncontroller='02:00.2'\nsize_gb=240\npartitions=['*']\nmodel='OCZ-TRION100'\nserial='X'\n\
        [[disks]]\nname='sdb'\ncontroller='02:00.3'\nsize_gb=64\npartitions=['*']\n\
        [[volumes]]\nname='dm-0'\ndm_name='cryptroot'\nslaves=['nvme0n1p2']\n\
        [[volumes]]\nname='md0'\nlevel='raid1'\nslaves=['sda1','sdb1']\n\
        [[mounts]]\ndevice='dm-0'\nmount='/'\nfstype='ext4'\n\
        [[mounts]]\ndevice='nvme0n1p1'\nmount='/boot/efi'\nfstype='vfat'\n\
        [[mounts]]\ndevice='md0'\nmount='/srv'\nfstype='xfs'\n";

    fn build(extra: &str) -> Result<Tree, Error> {
        let s = crate::spec::parse(&format!("{BASE}{extra}")).map_err(|e| Error::Spec(e.to_string()))?;
        crate::build(&s)
    }

    fn link(t: &Tree, p: &str) -> String {
        match t.get(p) {
            Some(Node::Link(l)) => l.clone(),
            other => panic!("{p}: {other:?}"),
        }
    }

    fn text(t: &Tree, p: &str) -> String {
        match t.get(p) {
            Some(Node::File(b)) => String::from_utf8_lossy(b).into_owned(),
            other => panic!("{p}: {other:?}"),
        }
    }

    #[test]
    fn disks_nest_under_their_controllers() {
        let t = build(DISKS).unwrap();
        let nvme = "devices/pci0000:00/0000:00:01.1/0000:01:00.0/nvme/nvme0/nvme0n1";
        assert_eq!(link(&t, "sys/dev/block/259:2"), format!("../../{nvme}/nvme0n1p2"));
        assert_eq!(link(&t, "sys/class/block/nvme0n1p2"), format!("../../{nvme}/nvme0n1p2"));
        assert_eq!(link(&t, "sys/block/nvme0n1"), format!("../{nvme}"));
        assert_eq!(text(&t, &format!("sys/{nvme}/nvme0n1p2/dev")), "259:2\n");
        assert_eq!(text(&t, &format!("sys/{nvme}/nvme0n1p2/partition")), "2\n");
        assert_eq!(text(&t, &format!("sys/{nvme}/size")), "1953525168\n");
        let sda = "devices/pci0000:00/0000:00:08.1/0000:02:00.2/ata1/host0/target0:0:0/0:0:0:0/block/sda";
        assert_eq!(link(&t, "sys/dev/block/8:1"), format!("../../{sda}/sda1"));
        let sdb = "devices/pci0000:00/0000:00:08.1/0000:02:00.3/usb2/2-1/2-1:1.0/host1/target1:0:0/1:0:0:0/block/sdb";
        assert_eq!(link(&t, "sys/dev/block/8:17"), format!("../../{sdb}/sdb1"));
        assert_eq!(text(&t, &format!("sys/{sdb}/removable")), "1\n");
        assert_eq!(link(&t, "sys/dev/block/253:0"), "../../devices/virtual/block/dm-0");
        assert_eq!(text(&t, "sys/devices/virtual/block/dm-0/dm/name"), "cryptroot\n");
        let under_devices = nvme.trim_start_matches("devices/");
        assert_eq!(
            link(&t, "sys/devices/virtual/block/dm-0/slaves/nvme0n1p2"),
            format!("../../../../{under_devices}/nvme0n1p2")
        );
        assert!(t.get(&format!("sys/{nvme}/nvme0n1p2/holders/dm-0")).is_some());
        assert_eq!(link(&t, "sys/dev/block/9:0"), "../../devices/virtual/block/md0");
        assert!(t.get("sys/devices/virtual/block/md0/slaves/sdb1").is_some());
        assert_eq!(link(&t, "dev/mapper/cryptroot"), "../dm-0");
        assert_eq!(link(&t, "dev/disk/by-id/ata-OCZ-TRION100_X-part1"), "../../sda1");
        assert_eq!(link(&t, "dev/disk/by-id/nvme-Samsung_SSD_970_EVO_1TB_S1"), "../../nvme0n1");
        let mi = text(&t, "proc/self/mountinfo");
        assert!(mi.contains(" 1 253:0 / / rw,relatime shared:1 - ext4 /dev/mapper/cryptroot "), "{mi}");
        assert!(mi.contains(" 259:1 / /boot/efi rw,relatime shared:"), "{mi}");
        assert!(mi.contains(" 9:0 / /srv "), "{mi}");
        assert!(mi.contains(" - cgroup2 cgroup2 ") && mi.contains(" - sysfs sysfs rw\n"), "{mi}");
        // Every parent id is a mount id (or the initramfs root, 1).
        let ids: Vec<&str> = mi.lines().map(|l| l.split(' ').next().unwrap()).collect();
        for l in mi.lines() {
            let parent = l.split(' ').nth(1).unwrap();
            assert!(parent == "1" || ids.contains(&parent), "{l}");
        }
        assert!(text(&t, "proc/partitions").contains(" 253        0 "));
    }

    #[test]
    fn bad_block_specs_are_errors() {
        let disk = |name: &str, ctrl: &str| format!("[[disks]]\nname='{name}'\ncontroller='{ctrl}'\nsize_gb=100\n");
        let err = |extra: &str| build(extra).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(err(&disk("nvme0n1", "05:00.0")).contains("controller 05:00.0 is not a device"));
        assert!(err(&disk("nvme0n1", "02:00.4")).contains("class 0403"));
        assert!(err(&disk("sda", "01:00.0")).contains("nvme0n1"));
        assert!(err(&disk("nvme0n1", "02:00.2")).contains("sda"));
        assert!(err(&format!("{}{}", disk("nvme0n1", "01:00.0"), disk("nvme0n1", "01:00.0"))).contains("twice"));
        let two = format!("{}{}", disk("sda", "02:00.2"), disk("nvme0n1", "01:00.0").replace("nvme0n1", "nvme0n2"));
        assert!(build(&two).is_ok());
        let vol = "[[volumes]]\nname='dm-0'\nslaves=['nvme0n1']\n";
        assert!(err(&format!("{}{vol}", disk("nvme0n1", "01:00.0"))).contains("dm_name"));
        let vol = "[[volumes]]\nname='dm-0'\ndm_name='x'\nslaves=['sdz']\n";
        assert!(err(&format!("{}{vol}", disk("nvme0n1", "01:00.0"))).contains("slave sdz"));
        let mount = "[[mounts]]\ndevice='nvme0n1'\nmount='/data'\nfstype='xfs'\n";
        assert!(err(&format!("{}{mount}", disk("nvme0n1", "01:00.0"))).contains("root filesystem"));
        let mount = "[[mounts]]\ndevice='nvme9n1'\nmount='/'\nfstype='xfs'\n";
        assert!(err(&format!("{}{mount}", disk("nvme0n1", "01:00.0"))).contains("nvme9n1"));
        let parts = "[[disks]]\nname='sda'\ncontroller='02:00.2'\nsize_gb=100\npartitions=['*','1G']\n";
        assert!(err(parts).contains("last"));
        let parts = "[[disks]]\nname='sda'\ncontroller='02:00.2'\nsize_gb=100\npartitions=['200G']\n";
        assert!(err(parts).contains("does not fit"));
        assert!(crate::spec::parse(&format!("{BASE}[[mounts]]\ndevice='x'\nfstype='xfs'\nmountpoint='/'\n")).is_err());
    }

    #[test]
    fn names_and_sizes() {
        assert_eq!(sd_index("sda"), Some(0));
        assert_eq!(sd_index("sdz"), Some(25));
        assert_eq!(sd_index("sdaa"), Some(26));
        assert_eq!(sd_index("sd"), None);
        assert_eq!(sd_index("sdA"), None);
        assert_eq!(nvme_parts("nvme0n1"), Some((0, 1)));
        assert_eq!(nvme_parts("nvme12n3"), Some((12, 3)));
        assert_eq!(nvme_parts("nvme0n1p2"), None);
        assert_eq!(nvme_parts("nvmen1"), None);
        assert_eq!(idema_sectors(1000), 1_953_525_168);
        assert_eq!(idema_sectors(500), 976_773_168);
        assert!(under("/boot/efi", "/boot") && under("/boot", "/") && !under("/bootx", "/boot") && !under("/", "/"));
    }
}
