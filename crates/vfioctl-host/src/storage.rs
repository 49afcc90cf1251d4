//! Which block devices the host uses, and which PCI controllers hold them: from
//! `/proc/self/mountinfo` (major:minor of each mount; else `/proc/mounts`) through
//! `/sys/dev/block/MAJ:MIN` to the block device's place in sysfs, whose path runs through
//! its PCI controller; swap from `/proc/swaps`; devices others are stacked on from their
//! `holders`. Device-mapper and md devices (LUKS, LVM, RAID) are followed through their
//! `slaves`. ZFS shows its pools' members nowhere in sysfs: the imported pools come from
//! `/proc/spl/kstat/zfs/POOL/` and the ZFS mounts, their members from udev's database
//! (`/run/udev/data/bMAJ:MIN`, `ID_FS_TYPE=zfs_member`, `ID_FS_LABEL=POOL`, what blkid
//! read from the device's label). What cannot be read is an error ([`StorageError`]),
//! never "unused".

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use vfioctl_core::pci::PciAddress;
use vfioctl_core::plan::Mount;

use crate::root::HostRoot;

/// Mounts of block devices: (major:minor, mount point, source).
pub fn block_mounts(mountinfo: &str) -> Vec<(String, String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let f: Vec<&str> = left.split_whitespace().collect();
            let majmin = f.get(2)?;
            let mount_point = f.get(4)?;
            let source = right.split_whitespace().nth(1).unwrap_or("");
            // btrfs and other multi-device filesystems show an anonymous 0:N; their
            // source still names the device.
            (!majmin.starts_with("0:") || source.starts_with("/dev/"))
                .then(|| (majmin.to_string(), unescape(mount_point), source.to_string()))
        })
        .collect()
}

/// mountinfo escapes spaces and the like as `\040`.
fn unescape(s: &str) -> String {
    let mut out = String::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 4 <= b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            let v = u8::from_str_radix(&s[i + 1..i + 4], 8).unwrap_or(b'?');
            out.push(v as char);
            i += 4;
        } else {
            out.push(b[i] as char);
            i += 1;
        }
    }
    out
}

/// The PCI addresses in a sysfs path, outermost first.
fn pci_in_path(path: &Path) -> Vec<PciAddress> {
    path.components().filter_map(|c| c.as_os_str().to_str()?.parse().ok()).collect()
}

/// The host path a sysfs link resolves to, inside the root.
fn resolve(root: &HostRoot, host_path: &Path) -> Option<PathBuf> {
    let real = fs::canonicalize(root.path(host_path)).ok()?;
    let base = fs::canonicalize(root.base()).ok()?;
    Some(Path::new("/").join(real.strip_prefix(&base).ok()?))
}

/// The PCI controllers behind a block device (its sysfs directory), following
/// device-mapper/md slaves.
fn controllers(root: &HostRoot, dir: &Path, depth: usize, out: &mut BTreeSet<PciAddress>) {
    if depth > 8 {
        return;
    }
    if let Some(a) = pci_in_path(dir).last() {
        out.insert(*a);
        return;
    }
    let slaves = dir.join("slaves");
    for s in root.list(&slaves).unwrap_or_default() {
        if let Some(target) = resolve(root, &slaves.join(&s)) {
            controllers(root, &target, depth + 1, out);
        }
    }
}

/// A block device's sysfs directory by its kernel name (`nvme0n1p2`, `dm-0`): through
/// `/sys/class/block`, else `/sys/block` (a partition is a directory of its disk there).
fn by_name(root: &HostRoot, name: &str) -> Option<PathBuf> {
    if name.is_empty() || name.contains('/') {
        return None;
    }
    if let Some(d) = resolve(root, &Path::new("/sys/class/block").join(name)) {
        return Some(d);
    }
    if let Some(d) = resolve(root, &Path::new("/sys/block").join(name)) {
        return Some(d);
    }
    root.list("/sys/block").ok()?.iter().find_map(|disk| {
        let p = Path::new("/sys/block").join(disk).join(name);
        root.exists(&p).then(|| resolve(root, &p)).flatten()
    })
}

/// The sysfs directory of a block device named by a path in `/dev`: `/dev/nvme0n1p3`,
/// `/dev/mapper/NAME` (found by its device-mapper name), or a link such as
/// `/dev/disk/by-id/…` (followed inside the root).
fn by_source(root: &HostRoot, source: &str) -> Option<PathBuf> {
    if let Some(name) = source.strip_prefix("/dev/mapper/") {
        let names = root.list("/sys/class/block").or_else(|_| root.list("/sys/block")).ok()?;
        let dm = names.into_iter().filter(|n| n.starts_with("dm-")).find(|n| {
            ["/sys/class/block", "/sys/block"].iter().any(|d| {
                root.read_optional(format!("{d}/{n}/dm/name")).ok().flatten().is_some_and(|t| t.trim() == name)
            })
        })?;
        return by_name(root, &dm);
    }
    let rest = source.strip_prefix("/dev/")?;
    if !rest.contains('/') {
        return by_name(root, rest);
    }
    // A link in /dev (by-id, by-uuid, a volume group's LV): its target's name.
    let target = resolve(root, Path::new(source))?;
    by_name(root, &target.file_name()?.to_string_lossy())
}

/// What the host's block devices are used for, from a host root.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Storage {
    /// Each use (a mounted filesystem, swap, a device stacked on another) with the PCI
    /// controller holding it: the controllers the plan keeps for the host.
    pub mounts: Vec<Mount>,
    /// The block devices in use, by kernel name (`nvme0n1p2`, `dm-0`), and what uses them.
    pub used: BTreeMap<String, String>,
}

/// A fact about the host's disks that decides safety and cannot be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("cannot tell which disks this host uses: {0}")]
pub struct StorageError(pub String);

impl StorageError {
    pub fn remedy(&self) -> String {
        "run vfioctl as root on the host, or on a `vfioctl snapshot` taken as root, so that /proc/self/mountinfo, /proc/swaps and /sys/dev/block can be read".into()
    }
}

/// ZFS datasets mounted: (mount point, pool) from mountinfo lines of type `zfs`.
pub fn zfs_mounts(mountinfo: &str) -> Vec<(String, String)> {
    mountinfo
        .lines()
        .filter_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split_whitespace();
            (r.next()? == "zfs").then_some(())?;
            let dataset = unescape(r.next()?);
            let mount_point = unescape(left.split_whitespace().nth(4)?);
            Some((mount_point, dataset.split('/').next()?.to_string()))
        })
        .collect()
}

/// What the mount table says: block devices mounted (major:minor when the table says,
/// mount point, source) and ZFS datasets mounted (mount point, pool).
type MountTable = (Vec<(Option<String>, String, String)>, Vec<(String, String)>);

/// The mounted block devices and ZFS datasets, from `/proc/self/mountinfo`, else `/proc/mounts`.
fn mount_table(root: &HostRoot) -> Result<MountTable, StorageError> {
    let mut why = Vec::new();
    match root.read_optional("/proc/self/mountinfo") {
        Ok(Some(info)) => {
            let block = block_mounts(&info).into_iter().map(|(m, p, s)| (Some(m), p, s)).collect();
            return Ok((block, zfs_mounts(&info)));
        }
        Ok(None) => why.push("/proc/self/mountinfo is missing".to_string()),
        Err(e) => why.push(e.to_string()),
    }
    match root.read_optional("/proc/mounts") {
        Ok(Some(t)) => {
            let mut block = Vec::new();
            let mut zfs = Vec::new();
            for l in t.lines() {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (Some(source), Some(mount_point)) = (f.first(), f.get(1)) else { continue };
                if source.starts_with("/dev/") {
                    block.push((None, unescape(mount_point), source.to_string()));
                } else if f.get(2) == Some(&"zfs") {
                    let pool = unescape(source).split('/').next().unwrap_or_default().to_string();
                    zfs.push((unescape(mount_point), pool));
                }
            }
            Ok((block, zfs))
        }
        Ok(None) => {
            why.push("/proc/mounts is missing".to_string());
            Err(StorageError(format!(
                "{}: which filesystems are mounted, and from which disk, is unknown",
                why.join("; ")
            )))
        }
        Err(e) => {
            why.push(e.to_string());
            Err(StorageError(format!(
                "{}: which filesystems are mounted, and from which disk, is unknown",
                why.join("; ")
            )))
        }
    }
}

/// Marks `dir`'s device, and every device under it (its `slaves`), as used for `why`.
fn mark(root: &HostRoot, dir: &Path, why: &str, used: &mut BTreeMap<String, String>, depth: usize) {
    let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else { return };
    used.entry(name.clone()).or_insert_with(|| why.to_string());
    if depth > 8 {
        return;
    }
    let slaves = dir.join("slaves");
    for s in root.list(&slaves).unwrap_or_default() {
        if let Some(target) = resolve(root, &slaves.join(&s)) {
            mark(root, &target, &format!("under {name}, {why}"), used, depth + 1);
        }
    }
}

impl Storage {
    fn add(&mut self, root: &HostRoot, dir: &Path, use_: &str, why: &str, source: &str) {
        mark(root, dir, why, &mut self.used, 0);
        let mut set = BTreeSet::new();
        controllers(root, dir, 0, &mut set);
        for controller in set {
            self.mounts.push(Mount { controller, mount_point: use_.to_string(), source: source.to_string() });
        }
    }

    /// What uses the block device `name` or, for a whole disk, one of its partitions.
    pub fn use_of(&self, root: &HostRoot, name: &str) -> Option<String> {
        if let Some(why) = self.used.get(name) {
            return Some(why.clone());
        }
        let dir = by_name(root, name)?;
        root.list(&dir)
            .ok()?
            .iter()
            .filter(|p| p.starts_with(name) && p.len() > name.len())
            .find_map(|p| self.used.get(p).map(|why| format!("the disk of {p}, which is {why}")))
    }

    /// Every `/dev` path that names a block device the host uses, with what uses it: the
    /// device itself (`/dev/nvme0n1p2`, `/dev/dm-0`), its links in `/dev/disk/by-*` and
    /// `/dev/mapper`, and the whole disks of used partitions (for `audit`).
    pub fn used_paths(&self, root: &HostRoot) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        let mut dirs: Vec<String> = vec!["/dev".into(), "/dev/mapper".into()];
        for d in root.list("/dev/disk").unwrap_or_default() {
            dirs.push(format!("/dev/disk/{d}"));
        }
        for dir in dirs {
            for n in root.list(&dir).unwrap_or_default() {
                let path = format!("{dir}/{n}");
                if let Some((name, why)) = self.use_of_path(root, &path) {
                    out.insert(path, format!("{name} is {why}"));
                }
            }
        }
        out
    }

    /// What uses the block device a `/dev` path names (`None`: nothing the host uses, or
    /// not a block device of this root).
    pub fn use_of_path(&self, root: &HostRoot, path: &str) -> Option<(String, String)> {
        let dir = by_source(root, path)?;
        let name = dir.file_name()?.to_string_lossy().into_owned();
        self.use_of(root, &name).map(|why| (name, why))
    }
}

/// Every use of the host's block devices, with the PCI controllers behind them: mounted
/// filesystems (`/proc/self/mountinfo`, else `/proc/mounts`), swap (`/proc/swaps`), devices
/// others are stacked on (LVM physical volumes, md members, dm-crypt: `holders`) and the
/// other members of a mounted btrfs. A fact that decides this and cannot be read (no mount
/// table; a mounted device sysfs does not show) is an error, never "not used".
pub fn storage(root: &HostRoot) -> Result<Storage, StorageError> {
    let mut s = Storage::default();
    let (block, zfs) = mount_table(root)?;
    for (majmin, mount_point, source) in block {
        let dir = majmin
            .as_deref()
            .filter(|m| !m.starts_with("0:"))
            .and_then(|m| resolve(root, &Path::new("/sys/dev/block").join(m)))
            .or_else(|| by_source(root, &source));
        let Some(dir) = dir else {
            return Err(StorageError(format!(
                "{mount_point} is mounted from {source}{}, which neither /sys/dev/block nor /sys/class/block shows",
                majmin.map(|m| format!(" ({m})")).unwrap_or_default()
            )));
        };
        s.add(root, &dir, &mount_point, &format!("mounted at {mount_point}"), &source);
    }
    match root.read_optional("/proc/swaps") {
        Ok(Some(t)) => {
            for l in t.lines().skip(1) {
                let f: Vec<&str> = l.split_whitespace().collect();
                let (Some(file), Some("partition")) = (f.first(), f.get(1).copied()) else { continue };
                let file = unescape(file);
                let Some(dir) = by_source(root, &file) else {
                    return Err(StorageError(format!("swap is on {file}, which /sys/class/block does not show")));
                };
                s.add(root, &dir, "[swap]", "swap", &file);
            }
        }
        Ok(None) => {}
        Err(e) => return Err(StorageError(e.to_string())),
    }
    // Devices others are stacked on: an LVM volume group, an md array, an open LUKS volume.
    let names = match root.list("/sys/class/block") {
        Ok(n) => n,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(StorageError(e.to_string())),
    };
    for n in &names {
        let holders = root.list(format!("/sys/class/block/{n}/holders")).unwrap_or_default();
        if holders.is_empty() {
            continue;
        }
        if let Some(dir) = by_name(root, n) {
            let why = format!("held by {} (LVM, RAID or encryption)", holders.join(", "));
            s.add(root, &dir, &format!("[{}]", holders.join(", ")), &why, &format!("/dev/{n}"));
        }
    }
    // btrfs over several devices: mountinfo names one; every member is the filesystem's.
    for fs_id in root.list("/sys/fs/btrfs").unwrap_or_default() {
        let members = root.list(format!("/sys/fs/btrfs/{fs_id}/devices")).unwrap_or_default();
        let Some(why) = members.iter().find_map(|m| s.used.get(m).cloned()) else { continue };
        for m in &members {
            if !s.used.contains_key(m) {
                if let Some(dir) = by_name(root, m) {
                    s.add(root, &dir, "[btrfs]", &format!("a device of the btrfs {why}"), &format!("/dev/{m}"));
                }
            }
        }
    }
    zfs_pools(root, &zfs, &mut s)?;
    Ok(s)
}

/// The pools imported now: a directory `/proc/spl/kstat/zfs/POOL` with a `state` file
/// each (the module's own statistics are files beside them).
fn imported_pools(root: &HostRoot) -> Result<BTreeSet<String>, StorageError> {
    let names = match root.list("/proc/spl/kstat/zfs") {
        Ok(n) => n,
        Err(e) if e.is_not_found() => return Ok(BTreeSet::new()),
        Err(e) => return Err(StorageError(format!("{e}: which ZFS pools are imported is unknown"))),
    };
    Ok(names.into_iter().filter(|n| root.exists(format!("/proc/spl/kstat/zfs/{n}/state"))).collect())
}

/// A block device udev's database calls a ZFS pool member.
struct ZfsMember {
    /// Kernel name (`sda1`).
    name: String,
    /// Its sysfs directory.
    dir: PathBuf,
    /// The pool's name (blkid's label).
    pool: String,
}

/// The ZFS pool members udev knows, from `/run/udev/data/bMAJ:MIN` of every block device
/// in `/sys/dev/block`. `None`: udev's database is not there.
fn zfs_members(root: &HostRoot) -> Result<Option<Vec<ZfsMember>>, StorageError> {
    match root.list("/run/udev/data") {
        Ok(_) => {}
        Err(e) if e.is_not_found() => return Ok(None),
        Err(e) => return Err(StorageError(format!("{e}: which disks hold a ZFS pool is unknown"))),
    }
    let devices = match root.list("/sys/dev/block") {
        Ok(n) => n,
        Err(e) if e.is_not_found() => Vec::new(),
        Err(e) => return Err(StorageError(e.to_string())),
    };
    let mut out = Vec::new();
    for majmin in devices {
        let text = match root.read_optional(format!("/run/udev/data/b{majmin}")) {
            Ok(Some(t)) => t,
            Ok(None) => continue,
            Err(e) => return Err(StorageError(format!("{e}: whether it holds a ZFS pool is unknown"))),
        };
        let prop = |key: &str| {
            text.lines().find_map(|l| l.strip_prefix("E:")?.strip_prefix(key)?.strip_prefix('=').map(str::to_string))
        };
        if prop("ID_FS_TYPE").as_deref() != Some("zfs_member") {
            continue;
        }
        let Some(dir) = resolve(root, &Path::new("/sys/dev/block").join(&majmin)) else { continue };
        let Some(name) = dir.file_name().map(|n| n.to_string_lossy().into_owned()) else { continue };
        out.push(ZfsMember { name, dir, pool: prop("ID_FS_LABEL").unwrap_or_default() });
    }
    Ok(Some(out))
}

/// Marks the members of every ZFS pool: those of an imported or mounted pool as its, and
/// those of a pool not imported as its too (the data is on them). An imported pool whose
/// members cannot be told is an error.
fn zfs_pools(root: &HostRoot, mounted: &[(String, String)], s: &mut Storage) -> Result<(), StorageError> {
    let mut pools: BTreeMap<String, Vec<String>> = imported_pools(root)?.into_iter().map(|p| (p, Vec::new())).collect();
    for (mount_point, pool) in mounted {
        pools.entry(pool.clone()).or_default().push(mount_point.clone());
    }
    let members = zfs_members(root)?;
    let Some(members) = members else {
        return match pools.keys().next() {
            None => Ok(()),
            Some(pool) => Err(StorageError(format!(
                "the ZFS pool {pool} is imported, but /run/udev/data (udev's database) is missing, so which disks hold it is unknown"
            ))),
        };
    };
    for (pool, mount_points) in &pools {
        if !members.iter().any(|m| &m.pool == pool) {
            return Err(StorageError(format!(
                "the ZFS pool {pool} is imported, but no block device in /run/udev/data is its member (ID_FS_TYPE=zfs_member, ID_FS_LABEL={pool}), so which disks hold it is unknown"
            )));
        }
        let (use_, why) = match mount_points.first() {
            Some(mp) => (mp.clone(), format!("a member of the ZFS pool {pool}, mounted at {mp}")),
            None => (format!("[zfs {pool}]"), format!("a member of the imported ZFS pool {pool}")),
        };
        for m in members.iter().filter(|m| &m.pool == pool) {
            s.add(root, &m.dir, &use_, &why, &format!("/dev/{}", m.name));
        }
    }
    for m in members.iter().filter(|m| !pools.contains_key(&m.pool)) {
        if !s.used.contains_key(&m.name) {
            let pool = if m.pool.is_empty() { "without a name" } else { &m.pool };
            let why = format!("a member of the ZFS pool {pool}, not imported now");
            s.add(root, &m.dir, &format!("[zfs {pool}]"), &why, &format!("/dev/{}", m.name));
        }
    }
    Ok(())
}

/// Every mounted filesystem with the PCI controller(s) holding it (see [`storage`]).
pub fn mounts(root: &HostRoot) -> Result<Vec<Mount>, StorageError> {
    storage(root).map(|s| s.mounts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_mountinfo() {
        let info = "26 1 259:2 / / rw,relatime shared:1 - ext4 /dev/nvme0n1p2 rw\n\
                    27 26 0:5 / /proc rw - proc proc rw\n\
                    30 26 8:17 / /media/a\\040b rw - vfat /dev/sdb1 rw\n";
        let m = block_mounts(info);
        assert_eq!(m.len(), 2);
        assert_eq!(m[0], ("259:2".into(), "/".into(), "/dev/nvme0n1p2".into()));
        let btrfs = block_mounts("30 1 0:34 /@ / rw - btrfs /dev/nvme0n1p3 rw,subvol=/@\n");
        assert_eq!(btrfs[0].2, "/dev/nvme0n1p3");
        assert_eq!(m[1].1, "/media/a b");
    }

    #[test]
    fn follows_links_and_slaves_to_the_controller() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let nvme = r.join("sys/devices/pci0000:00/0000:00:01.1/0000:01:00.0/nvme/nvme0/nvme0n1/nvme0n1p3");
        fs::create_dir_all(&nvme).unwrap();
        let dm = r.join("sys/devices/virtual/block/dm-0/slaves");
        fs::create_dir_all(&dm).unwrap();
        std::os::unix::fs::symlink(
            "../../../../pci0000:00/0000:00:01.1/0000:01:00.0/nvme/nvme0/nvme0n1/nvme0n1p3",
            dm.join("nvme0n1p3"),
        )
        .unwrap();
        fs::create_dir_all(r.join("sys/dev/block")).unwrap();
        std::os::unix::fs::symlink("../../devices/virtual/block/dm-0", r.join("sys/dev/block/253:0")).unwrap();
        fs::create_dir_all(r.join("proc/self")).unwrap();
        fs::write(r.join("proc/self/mountinfo"), "26 1 253:0 / / rw - ext4 /dev/mapper/cryptroot rw\n").unwrap();
        let m = mounts(&HostRoot::new(r)).unwrap();
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].controller.short(), "01:00.0");
        assert_eq!(m[0].mount_point, "/");
    }

    /// A block device in a test tree: its sysfs directory under a PCI controller (or
    /// virtual), `/sys/class/block/NAME` and `/sys/dev/block/MAJ:MIN` links.
    fn block(r: &Path, name: &str, under: &str, majmin: &str) -> PathBuf {
        let dir = r.join("sys/devices").join(under).join(name);
        fs::create_dir_all(dir.join("holders")).unwrap();
        fs::create_dir_all(dir.join("slaves")).unwrap();
        for (d, link) in [("sys/class/block", name), ("sys/dev/block", majmin)] {
            fs::create_dir_all(r.join(d)).unwrap();
            std::os::unix::fs::symlink(
                dir.strip_prefix(r.join("sys")).map(|p| Path::new("../..").join(p)).unwrap(),
                r.join(d).join(link),
            )
            .unwrap();
        }
        dir
    }

    fn stack(lower: &Path, upper: &Path) {
        let rel = |from: &Path, to: &Path| {
            let up = from.components().count() - 2;
            let base: PathBuf = std::iter::repeat_n("..", up).collect();
            base.join(to.strip_prefix("/").unwrap_or(to))
        };
        let r = lower.ancestors().find(|a| a.join("sys").is_dir() && !a.ends_with("sys")).unwrap().to_path_buf();
        let l = Path::new("/").join(lower.strip_prefix(&r).unwrap());
        let u = Path::new("/").join(upper.strip_prefix(&r).unwrap());
        let name = |p: &Path| p.file_name().unwrap().to_owned();
        std::os::unix::fs::symlink(
            rel(&l.join("holders").join(name(upper)), &u),
            lower.join("holders").join(name(upper)),
        )
        .unwrap();
        std::os::unix::fs::symlink(
            rel(&u.join("slaves").join(name(lower)), &l),
            upper.join("slaves").join(name(lower)),
        )
        .unwrap();
    }

    /// A root on LVM over LUKS over one NVMe, swap on a second NVMe, an unmounted LVM
    /// physical volume on a third, and a two-device btrfs of which mountinfo names one.
    #[test]
    fn every_use_through_every_layer() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let nvme = |bus: &str, n: &str| format!("pci0000:00/0000:00:01.{bus}/0000:0{bus}:00.0/nvme/{n}/{n}n1");
        let p2 = block(r, "nvme0n1p2", &nvme("1", "nvme0"), "259:2");
        let crypt = block(r, "dm-0", "virtual/block", "253:0");
        let lv = block(r, "dm-1", "virtual/block", "253:1");
        stack(&p2, &crypt);
        stack(&crypt, &lv);
        block(r, "nvme1n1p1", &nvme("2", "nvme1"), "259:5");
        let pv = block(r, "nvme2n1p1", &nvme("3", "nvme2"), "259:8");
        let idle = block(r, "dm-2", "virtual/block", "253:2");
        stack(&pv, &idle);
        block(r, "sda1", "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda", "8:1");
        block(r, "sdb1", "pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sdb", "8:17");
        fs::create_dir_all(r.join("sys/fs/btrfs/1234/devices")).unwrap();
        fs::write(r.join("sys/fs/btrfs/1234/devices/sda1"), "").unwrap();
        fs::write(r.join("sys/fs/btrfs/1234/devices/sdb1"), "").unwrap();
        fs::create_dir_all(r.join("proc/self")).unwrap();
        fs::write(
            r.join("proc/self/mountinfo"),
            "26 1 253:1 / / rw - ext4 /dev/mapper/vg-root rw\n40 26 0:40 / /data rw - btrfs /dev/sda1 rw\n",
        )
        .unwrap();
        fs::write(
            r.join("proc/swaps"),
            "Filename\tType\tSize\tUsed\tPriority\n/dev/nvme1n1p1 partition 8388604 0 -2\n",
        )
        .unwrap();
        let root = HostRoot::new(r);
        let s = storage(&root).unwrap();
        assert_eq!(s.used["dm-1"], "mounted at /");
        assert_eq!(s.used["dm-0"], "under dm-1, mounted at /");
        assert_eq!(s.used["nvme0n1p2"], "under dm-0, under dm-1, mounted at /");
        assert_eq!(s.used["nvme1n1p1"], "swap");
        assert!(s.used["nvme2n1p1"].starts_with("held by dm-2"), "{:?}", s.used);
        assert_eq!(s.used["sdb1"], "a device of the btrfs mounted at /data");
        let controllers: BTreeSet<String> = s.mounts.iter().map(|m| m.controller.short()).collect();
        assert_eq!(controllers, ["01:00.0", "02:00.0", "03:00.0", "00:17.0"].iter().map(|c| c.to_string()).collect());
        // What a `--disk` path names.
        fs::create_dir_all(r.join("dev/disk/by-id")).unwrap();
        fs::create_dir_all(r.join("dev")).unwrap();
        fs::write(r.join("dev/nvme0n1p2"), "").unwrap();
        std::os::unix::fs::symlink("../../nvme0n1p2", r.join("dev/disk/by-id/nvme-x-part2")).unwrap();
        assert_eq!(s.use_of_path(&root, "/dev/disk/by-id/nvme-x-part2").unwrap().0, "nvme0n1p2");
        assert!(s.use_of_path(&root, "/dev/nvme9n1").is_none());
    }

    /// ZFS: members of a mounted pool, of an imported pool with nothing mounted, of a pool
    /// not imported; an imported pool without udev's database, or without a member in it,
    /// is unknown, not unused.
    #[test]
    fn zfs_pool_members_from_udev() {
        let dir = tempfile::tempdir().unwrap();
        let r = dir.path();
        let nvme = |bus: &str, n: &str| format!("pci0000:00/0000:00:01.{bus}/0000:0{bus}:00.0/nvme/{n}/{n}n1");
        block(r, "nvme0n1p2", &nvme("1", "nvme0"), "259:2");
        block(r, "nvme1n1p1", &nvme("2", "nvme1"), "259:5");
        block(r, "sda1", "pci0000:00/0000:00:17.0/ata1/host0/target0:0:0/0:0:0:0/block/sda", "8:1");
        block(r, "sdb1", "pci0000:00/0000:00:17.0/ata2/host1/target1:0:0/1:0:0:0/block/sdb", "8:17");
        block(r, "nvme2n1p1", &nvme("3", "nvme2"), "259:8");
        fs::create_dir_all(r.join("proc/self")).unwrap();
        fs::write(
            r.join("proc/self/mountinfo"),
            "26 1 259:2 / / rw - ext4 /dev/nvme0n1p2 rw\n\
             40 26 0:48 / /tank rw shared:30 - zfs tank rw,xattr,noacl\n\
             41 40 0:49 / /tank/vm\\040images rw shared:31 - zfs tank/vm\\040images rw,xattr,noacl\n",
        )
        .unwrap();
        fs::create_dir_all(r.join("proc/spl/kstat/zfs/tank")).unwrap();
        fs::write(r.join("proc/spl/kstat/zfs/tank/state"), "ONLINE\n").unwrap();
        fs::create_dir_all(r.join("proc/spl/kstat/zfs/backup")).unwrap();
        fs::write(r.join("proc/spl/kstat/zfs/backup/state"), "ONLINE\n").unwrap();
        fs::write(r.join("proc/spl/kstat/zfs/arcstats"), "").unwrap();
        let udev = r.join("run/udev/data");
        fs::create_dir_all(&udev).unwrap();
        let member = |pool: &str| {
            format!("S:disk/by-id/x\nE:ID_FS_VERSION=5000\nE:ID_FS_LABEL={pool}\nE:ID_FS_TYPE=zfs_member\nE:ID_FS_USAGE=filesystem\nG:systemd\n")
        };
        fs::write(udev.join("b8:1"), member("tank")).unwrap();
        fs::write(udev.join("b8:17"), member("tank")).unwrap();
        fs::write(udev.join("b259:5"), member("backup")).unwrap();
        fs::write(udev.join("b259:8"), member("old")).unwrap();
        fs::write(udev.join("b259:2"), "E:ID_FS_TYPE=ext4\n").unwrap();
        let s = storage(&HostRoot::new(r)).unwrap();
        assert_eq!(s.used["sda1"], "a member of the ZFS pool tank, mounted at /tank");
        assert_eq!(s.used["sdb1"], "a member of the ZFS pool tank, mounted at /tank");
        assert_eq!(s.used["nvme1n1p1"], "a member of the imported ZFS pool backup");
        assert_eq!(s.used["nvme2n1p1"], "a member of the ZFS pool old, not imported now");
        assert_eq!(s.used["nvme0n1p2"], "mounted at /");
        assert_eq!(
            zfs_mounts("41 40 0:49 / /tank/vm\\040images rw - zfs tank/vm\\040images rw\n")[0].0,
            "/tank/vm images"
        );

        // An imported pool no udev entry names: unknown.
        fs::remove_file(udev.join("b259:5")).unwrap();
        let e = storage(&HostRoot::new(r)).unwrap_err();
        assert!(e.0.contains("backup") && e.0.contains("/run/udev/data"), "{e}");
        // No udev database at all while pools are imported: unknown.
        fs::remove_dir_all(r.join("run")).unwrap();
        let e = storage(&HostRoot::new(r)).unwrap_err();
        assert!(e.0.contains("/run/udev/data") && e.0.contains("missing"), "{e}");
        // No ZFS at all and no udev database: nothing to tell.
        fs::remove_dir_all(r.join("proc/spl")).unwrap();
        fs::write(r.join("proc/self/mountinfo"), "26 1 259:2 / / rw - ext4 /dev/nvme0n1p2 rw\n").unwrap();
        assert!(storage(&HostRoot::new(r)).is_ok());
    }
}
