//! Which PCI controllers hold mounted filesystems: from `/proc/self/mountinfo`
//! (major:minor of each mount) through `/sys/dev/block/MAJ:MIN` to the block device's
//! place in sysfs, whose path runs through its PCI controller. Device-mapper and md
//! devices (LUKS, LVM, RAID) are followed through their `slaves`.

use std::collections::BTreeSet;
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

/// The sysfs directory of a block device named by a mount source: `/dev/nvme0n1p3`, or
/// `/dev/mapper/NAME` (found by its device-mapper name).
fn by_source(root: &HostRoot, source: &str) -> Option<PathBuf> {
    if let Some(name) = source.strip_prefix("/dev/mapper/") {
        let dm = root.list("/sys/class/block").ok()?.into_iter().filter(|n| n.starts_with("dm-")).find(|n| {
            root.read_optional(format!("/sys/class/block/{n}/dm/name")).ok().flatten().is_some_and(|t| t.trim() == name)
        })?;
        return resolve(root, &Path::new("/sys/class/block").join(dm));
    }
    let name = source.strip_prefix("/dev/")?;
    if name.contains('/') || name.is_empty() {
        return None;
    }
    resolve(root, &Path::new("/sys/class/block").join(name))
}

/// Every mounted filesystem with the PCI controller(s) holding it.
pub fn mounts(root: &HostRoot) -> Vec<Mount> {
    let Ok(Some(info)) = root.read_optional("/proc/self/mountinfo") else { return Vec::new() };
    let mut out = Vec::new();
    for (majmin, mount_point, source) in block_mounts(&info) {
        let dir =
            if majmin.starts_with("0:") { None } else { resolve(root, &Path::new("/sys/dev/block").join(&majmin)) };
        let Some(dir) = dir.or_else(|| by_source(root, &source)) else { continue };
        let mut set = BTreeSet::new();
        controllers(root, &dir, 0, &mut set);
        for controller in set {
            out.push(Mount { controller, mount_point: mount_point.clone(), source: source.clone() });
        }
    }
    out
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
        let m = mounts(&HostRoot::new(r));
        assert_eq!(m.len(), 1);
        assert_eq!(m[0].controller.short(), "01:00.0");
        assert_eq!(m[0].mount_point, "/");
    }
}
