//! `vfioctl snapshot`: packs exactly what vfioctl reads from a host into a directory or a
//! `.tar.gz`, so `vfioctl --root SNAPSHOT …` gives the same answers as the host did.
//!
//! What is copied is an allow-list per area (PCI attributes, IOMMU groups, CPU and NUMA
//! topology, hugepages, KVM/VFIO module parameters, a few /proc files, the configuration
//! files later commands edit, `/dev/input/by-id` links). Never copied: files that act when
//! read or written (`reset`, `remove`, `rescan`, `rom`, BAR `resource*` files), PCIe
//! extended config space (it holds the Device Serial Number: only the first 256 bytes of
//! `config` are kept), serial numbers (`serial` files; serials inside `/dev/input/by-id`
//! names are replaced by `SERIAL`), and anything under /home, /root or /proc/*/.
//! Symbolic links are kept, always relative, so the tree works wherever it is unpacked.

use std::collections::BTreeSet;
use std::fs;
use std::io;
use std::path::{Component, Path, PathBuf};

use crate::root::HostRoot;

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("{0} already exists")]
    Exists(PathBuf),
    #[error("cannot write {path}: {err}")]
    Write { path: PathBuf, err: io::Error },
    #[error("{0} exists and is not a vfioctl snapshot; not replacing it")]
    NotASnapshot(PathBuf),
    #[error("{root} does not look like a Linux host root: no {missing}")]
    NotAHost { root: PathBuf, missing: &'static str },
}

impl SnapshotError {
    pub fn remedy(&self) -> Option<String> {
        match self {
            SnapshotError::Exists(_) => {
                Some("choose another name, or pass --force to replace an older snapshot".into())
            }
            SnapshotError::NotASnapshot(_) => Some("choose another name".into()),
            SnapshotError::Write { .. } => Some("check that the output's directory exists and is writable".into()),
            SnapshotError::NotAHost { .. } => Some("run on the host itself (--root /) or on a host root".into()),
        }
    }
}

/// What a snapshot holds.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Summary {
    pub files: usize,
    pub links: usize,
    /// Host paths that exist but could not be read (e.g. root-only files when run as a user).
    pub unreadable: Vec<PathBuf>,
    /// Names changed to hide serial numbers.
    pub redacted: usize,
}

/// PCI device attributes copied; everything else in a device directory is left out.
const PCI_ATTRS: &[&str] = &[
    "vendor",
    "device",
    "class",
    "revision",
    "subsystem_vendor",
    "subsystem_device",
    "numa_node",
    "boot_vga",
    "reset_method",
    "irq",
    "local_cpulist",
    "local_cpus",
    "enable",
    "modalias",
    "d3cold_allowed",
    "driver_override",
    "current_link_speed",
    "current_link_width",
    "max_link_speed",
    "max_link_width",
];
const PCI_LINKS: &[&str] = &["driver", "iommu_group"];
/// First 256 bytes: the standard header and capabilities, not the extended space.
const CONFIG_BYTES: u64 = 256;

/// Small files copied whole when present.
const FILES: &[&str] = &[
    "/sys/devices/system/cpu/online",
    "/sys/devices/system/cpu/possible",
    "/sys/devices/system/cpu/present",
    "/sys/devices/system/cpu/offline",
    "/sys/devices/system/cpu/kernel_max",
    "/sys/devices/system/cpu/isolated",
    "/sys/devices/system/cpu/smt/active",
    "/sys/devices/system/cpu/smt/control",
    "/sys/devices/system/node/online",
    "/sys/devices/system/node/possible",
    "/sys/devices/system/node/has_cpu",
    "/sys/devices/system/node/has_memory",
    "/sys/devices/system/node/has_normal_memory",
    "/sys/devices/cpu_core/cpus",
    "/sys/devices/cpu_atom/cpus",
    "/sys/kernel/mm/transparent_hugepage/enabled",
    "/proc/cpuinfo",
    "/proc/meminfo",
    "/proc/cmdline",
    "/proc/version",
    "/proc/iomem",
    "/proc/sys/kernel/osrelease",
    "/proc/modules",
    // btime: whether an apply waits for a reboot.
    "/proc/stat",
    "/proc/self/cgroup",
    "/boot/loader/loader.conf",
    "/efi/loader/loader.conf",
    "/boot/efi/loader/loader.conf",
    "/boot/grub2/grubenv",
    "/boot/EFI/limine/limine.conf",
    "/etc/os-release",
    "/etc/default/grub",
    "/etc/initramfs-tools/modules",
    "/etc/mkinitcpio.conf",
    "/etc/dracut.conf",
    "/etc/kernel/cmdline",
    "/etc/booster.yaml",
    "/etc/sysctl.conf",
    "/etc/libvirt/qemu.conf",
    "/boot/refind_linux.conf",
    "/boot/limine.conf",
    "/boot/limine/limine.conf",
    "/etc/kernelstub/configuration",
    // systemd-boot's choice of entry (see boot.rs).
    "/sys/firmware/efi/efivars/LoaderEntryDefault-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f",
    "/sys/firmware/efi/efivars/LoaderEntryOneShot-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f",
    "/sys/firmware/efi/efivars/LoaderEntryLastBooted-4a67b082-0a4c-41cf-b6c7-440b29bb8c4f",
];

/// Directories whose regular files (one level) are copied.
const DIRS: &[&str] = &[
    "/etc/modprobe.d",
    "/etc/mkinitcpio.conf.d",
    "/etc/dracut.conf.d",
    "/usr/lib/dracut/dracut.conf.d",
    "/etc/sysctl.d",
    "/etc/default/grub.d",
    "/boot/loader/entries",
    "/efi/loader/entries",
    "/boot/efi/loader/entries",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/usr/lib/modprobe.d",
    "/lib/modprobe.d",
    "/usr/share/qemu/firmware",
    "/etc/qemu/firmware",
];

const MODULES: &[&str] = &["kvm", "kvm_amd", "kvm_intel", "vfio", "vfio_pci", "vfio_pci_core", "vfio_iommu_type1"];

struct Copier<'a> {
    src: &'a HostRoot,
    dest: PathBuf,
    summary: Summary,
    done: BTreeSet<PathBuf>,
}

fn relative_target(link_host_path: &Path, target_host_path: &Path) -> PathBuf {
    let from: Vec<Component> = link_host_path.parent().unwrap_or(Path::new("/")).components().collect();
    let to: Vec<Component> = target_host_path.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut rel = PathBuf::new();
    for _ in common..from.len() {
        rel.push("..");
    }
    for c in &to[common..] {
        rel.push(c);
    }
    rel
}

impl Copier<'_> {
    fn out(&self, host_path: &Path) -> PathBuf {
        self.dest.join(host_path.strip_prefix("/").unwrap_or(host_path))
    }

    fn write_err(path: PathBuf) -> impl FnOnce(io::Error) -> SnapshotError {
        move |err| SnapshotError::Write { path, err }
    }

    fn mkdir(&self, host_path: &Path) -> Result<(), SnapshotError> {
        let out = self.out(host_path);
        fs::create_dir_all(&out).map_err(Self::write_err(out))
    }

    fn put(&mut self, host_path: &Path, bytes: &[u8]) -> Result<(), SnapshotError> {
        let out = self.out(host_path);
        if let Some(parent) = out.parent() {
            fs::create_dir_all(parent).map_err(Self::write_err(parent.to_path_buf()))?;
        }
        fs::write(&out, bytes).map_err(Self::write_err(out))?;
        self.summary.files += 1;
        Ok(())
    }

    /// Copies a file if it exists; an unreadable one is noted, a missing one ignored.
    fn file(&mut self, host_path: &Path, limit: u64) -> Result<(), SnapshotError> {
        if !self.done.insert(host_path.to_path_buf()) {
            return Ok(());
        }
        let real = self.src.path(host_path);
        if !real.is_file() {
            return Ok(());
        }
        match self.src.read_bytes(host_path, limit) {
            Ok(bytes) => self.put(host_path, &bytes),
            Err(_) => {
                self.summary.unreadable.push(host_path.to_path_buf());
                Ok(())
            }
        }
    }

    /// Copies a symbolic link as a relative link, returning the host path it points to.
    fn link(&mut self, host_path: &Path) -> Result<Option<PathBuf>, SnapshotError> {
        let real = self.src.path(host_path);
        let Ok(target) = fs::read_link(&real) else { return Ok(None) };
        let parent = host_path.parent().unwrap_or(Path::new("/"));
        let target_host = normalize(&if target.is_absolute() { target.clone() } else { parent.join(&target) });
        if self.done.insert(host_path.to_path_buf()) {
            let out = self.out(host_path);
            if let Some(p) = out.parent() {
                fs::create_dir_all(p).map_err(Self::write_err(p.to_path_buf()))?;
            }
            let _ = fs::remove_file(&out);
            std::os::unix::fs::symlink(relative_target(host_path, &target_host), &out).map_err(Self::write_err(out))?;
            self.summary.links += 1;
        }
        Ok(Some(target_host))
    }

    /// Regular files of one directory, by name filter.
    fn dir_files(&mut self, host_dir: &Path, keep: impl Fn(&str) -> bool) -> Result<(), SnapshotError> {
        let Ok(names) = self.src.list(host_dir) else { return Ok(()) };
        for name in names.iter().filter(|n| keep(n)) {
            self.file(&host_dir.join(name), 1 << 20)?;
        }
        Ok(())
    }

    /// A path that may be a link to a directory (sysfs `cpufreq` → `../cpufreq/policy0`):
    /// copies the link and returns the directory to read files from.
    fn follow(&mut self, host_path: &Path) -> Result<PathBuf, SnapshotError> {
        if fs::symlink_metadata(self.src.path(host_path)).map(|m| m.file_type().is_symlink()).unwrap_or(false) {
            if let Some(t) = self.link(host_path)? {
                return Ok(t);
            }
        }
        Ok(host_path.to_path_buf())
    }

    fn pci(&mut self) -> Result<(), SnapshotError> {
        let bus = Path::new(crate::pci::PCI_DEVICES);
        let Ok(names) = self.src.list(bus) else { return Ok(()) };
        self.mkdir(bus)?;
        for name in names {
            let dev = self.follow(&bus.join(&name))?;
            self.mkdir(&dev)?;
            for attr in PCI_ATTRS {
                self.file(&dev.join(attr), 4096)?;
            }
            self.file(&dev.join("config"), CONFIG_BYTES)?;
            for l in PCI_LINKS {
                if let Some(t) = self.link(&dev.join(l))? {
                    self.mkdir(&t)?;
                    // The driver's module (absent for built-in drivers): the softdep name.
                    if *l == "driver" {
                        if let Some(m) = self.link(&t.join("module"))? {
                            self.mkdir(&m)?;
                        }
                    }
                }
            }
        }
        let groups = Path::new(crate::pci::IOMMU_GROUPS);
        let Ok(ids) = self.src.list(groups) else { return Ok(()) };
        self.mkdir(groups)?;
        for id in ids {
            let g = groups.join(&id);
            self.mkdir(&g.join("devices"))?;
            self.file(&g.join("type"), 64)?;
            for m in self.src.list(g.join("devices")).unwrap_or_default() {
                self.link(&g.join("devices").join(m))?;
            }
        }
        for unit in self.src.list("/sys/class/iommu").unwrap_or_default() {
            self.mkdir(&Path::new("/sys/class/iommu").join(unit))?;
        }
        for table in ["DMAR", "IVRS"] {
            let path = Path::new("/sys/firmware/acpi/tables").join(table);
            self.file(&path, 1 << 16)?;
            // Only root may read ACPI tables; that the table exists is what matters.
            if self.src.path(&path).exists() && !self.out(&path).exists() {
                self.put(&path, b"")?;
            }
        }
        if self.src.exists("/sys/firmware/efi") {
            self.mkdir(Path::new("/sys/firmware/efi"))?;
        }
        Ok(())
    }

    fn cpu(&mut self) -> Result<(), SnapshotError> {
        let cpu = Path::new("/sys/devices/system/cpu");
        let is_num = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
        for name in self.src.list(cpu).unwrap_or_default() {
            let Some(n) = name.strip_prefix("cpu").filter(|n| is_num(n)) else { continue };
            let _ = n;
            let c = cpu.join(&name);
            self.mkdir(&c)?;
            self.file(&c.join("online"), 64)?;
            self.dir_files(&c.join("topology"), |_| true)?;
            for idx in self.src.list(c.join("cache")).unwrap_or_default() {
                if idx.starts_with("index") {
                    self.dir_files(&c.join("cache").join(idx), |n| n != "uevent")?;
                }
            }
            if self.src.exists(c.join("cpufreq")) {
                let f = self.follow(&c.join("cpufreq"))?;
                self.dir_files(&f, |n| n.starts_with("cpuinfo_") || n == "base_frequency" || n == "scaling_driver")?;
            }
        }
        let node = Path::new("/sys/devices/system/node");
        for name in self.src.list(node).unwrap_or_default() {
            if name.strip_prefix("node").is_some_and(is_num) {
                let d = node.join(&name);
                self.dir_files(&d, |n| matches!(n, "cpulist" | "cpumap" | "meminfo" | "distance"))?;
                self.hugepages(&d.join("hugepages"))?;
            }
        }
        self.hugepages(Path::new("/sys/kernel/mm/hugepages"))
    }

    fn hugepages(&mut self, dir: &Path) -> Result<(), SnapshotError> {
        for size in self.src.list(dir).unwrap_or_default() {
            if size.starts_with("hugepages-") {
                self.dir_files(&dir.join(size), |n| n.ends_with("_hugepages") || n == "nr_hugepages_mempolicy")?;
            }
        }
        Ok(())
    }

    fn config(&mut self) -> Result<(), SnapshotError> {
        for f in FILES {
            self.file(Path::new(f), 1 << 20)?;
        }
        for d in DIRS {
            self.dir_files(Path::new(d), |n| !n.starts_with('.'))?;
        }
        for m in MODULES {
            let p = Path::new("/sys/module").join(m).join("parameters");
            self.dir_files(&p, |_| true)?;
        }
        if let Ok(Some(release)) = self.src.read_optional("/proc/sys/kernel/osrelease") {
            let release = release.trim();
            if !release.is_empty() && !release.contains('/') {
                let dir = Path::new("/lib/modules").join(release);
                for f in ["modules.builtin", "modules.dep", "modules.alias"] {
                    self.file(&dir.join(f), 4 << 20)?;
                }
            }
        }
        self.cgroups()?;
        self.storage()?;
        self.programs()
    }

    /// The cgroup mounts (only those lines of mountinfo) and the cgroup v2 controllers of
    /// this process's cgroup: what `check` needs to tell which controllers QEMU gets.
    fn cgroups(&mut self) -> Result<(), SnapshotError> {
        let Ok(Some(mountinfo)) = self.src.read_optional("/proc/self/mountinfo") else { return Ok(()) };
        let lines: Vec<&str> =
            mountinfo.lines().filter(|l| l.contains(" - cgroup ") || l.contains(" - cgroup2 ")).collect();
        // Filesystems on block devices, for `plan`'s refusal to pass their controllers;
        // mount points under home and removable-media directories lose their names.
        let mut block: Vec<String> = mountinfo
            .lines()
            .filter(|l| l.split_once(" - ").is_some_and(|(_, r)| r.starts_with("zfs ")))
            .map(redact_mount_line)
            .collect();
        for (majmin, _, _) in crate::storage::block_mounts(&mountinfo) {
            let Some(line) = mountinfo.lines().find(|l| l.split_whitespace().nth(2) == Some(majmin.as_str())) else {
                continue;
            };
            block.push(redact_mount_line(line));
            let link = Path::new("/sys/dev/block").join(&majmin);
            if let Some(dir) = self.link(&link)? {
                self.block_dir(&dir, 0)?;
            }
        }
        block.sort();
        block.dedup();
        let all: Vec<String> = block.into_iter().chain(lines.iter().map(|l| l.to_string())).collect();
        self.put(Path::new("/proc/self/mountinfo"), (all.join("\n") + "\n").as_bytes())?;
        let placement = self.src.read_optional("/proc/self/cgroup").ok().flatten().unwrap_or_default();
        let path = placement
            .lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/")
            .trim()
            .trim_end_matches('/')
            .to_string();
        for l in &lines {
            if l.contains(" - cgroup2 ") {
                if let Some(mp) = l.split(" - ").next().and_then(|left| left.split_whitespace().nth(4)) {
                    self.file(&Path::new(mp).join("cgroup.controllers"), 4096)?;
                    self.file(&PathBuf::from(format!("{mp}{path}/cgroup.controllers")), 4096)?;
                }
            }
        }
        Ok(())
    }

    /// What `storage` reads besides the mounts: swap, every block device with the devices
    /// stacked on it (`holders`), the members of each btrfs, the imported ZFS pools and,
    /// from udev's database, only the filesystem type and label of each block device.
    fn storage(&mut self) -> Result<(), SnapshotError> {
        self.file(Path::new("/proc/swaps"), 1 << 20)?;
        for d in ["/sys/class/block", "/sys/dev/block"] {
            for name in self.src.list(d).unwrap_or_default() {
                let Some(dir) = self.link(&Path::new(d).join(&name))? else { continue };
                self.block_dir(&dir, 0)?;
                let holders = dir.join("holders");
                self.mkdir(&holders)?;
                for h in self.src.list(&holders).unwrap_or_default() {
                    if let Some(t) = self.link(&holders.join(h))? {
                        self.block_dir(&t, 0)?;
                    }
                }
                if d == "/sys/dev/block" {
                    self.udev_fs(&name)?;
                }
            }
        }
        for fs_id in self.src.list("/sys/fs/btrfs").unwrap_or_default() {
            let devices = Path::new("/sys/fs/btrfs").join(fs_id).join("devices");
            for m in self.src.list(&devices).unwrap_or_default() {
                self.link(&devices.join(m))?;
            }
        }
        for pool in self.src.list("/proc/spl/kstat/zfs").unwrap_or_default() {
            self.file(&Path::new("/proc/spl/kstat/zfs").join(pool).join("state"), 4096)?;
        }
        Ok(())
    }

    /// `/run/udev/data/bMAJ:MIN` reduced to the filesystem type and label (no serials).
    fn udev_fs(&mut self, majmin: &str) -> Result<(), SnapshotError> {
        let path = Path::new("/run/udev/data").join(format!("b{majmin}"));
        let text = match self.src.read_optional(&path) {
            Ok(Some(t)) => t,
            Ok(None) => return Ok(()),
            Err(_) => {
                self.summary.unreadable.push(path);
                return Ok(());
            }
        };
        let kept: String = text
            .lines()
            .filter(|l| l.starts_with("E:ID_FS_TYPE=") || l.starts_with("E:ID_FS_LABEL="))
            .map(|l| format!("{l}\n"))
            .collect();
        if kept.is_empty() {
            return Ok(());
        }
        self.put(&path, kept.as_bytes())
    }

    /// A block device's sysfs directory (its `dev` file) and, for device-mapper and md,
    /// its `slaves` links, recursively.
    fn block_dir(&mut self, dir: &Path, depth: usize) -> Result<(), SnapshotError> {
        if depth > 8 {
            return Ok(());
        }
        self.mkdir(dir)?;
        self.file(&dir.join("dev"), 64)?;
        self.file(&dir.join("dm/name"), 256)?;
        for s in self.src.list(dir.join("slaves")).unwrap_or_default() {
            if let Some(t) = self.link(&dir.join("slaves").join(s))? {
                self.block_dir(&t, depth + 1)?;
            }
        }
        Ok(())
    }

    /// Stand-ins for QEMU, libvirt and OVMF: existence is what `check` reads, plus the
    /// programs' versions, recorded from `--version` when snapshotting the live machine.
    fn programs(&mut self) -> Result<(), SnapshotError> {
        let live = self.src.is_live();
        for p in crate::facts::QEMU_PATHS.iter().chain(crate::facts::LIBVIRT_PATHS) {
            let path = Path::new(p);
            if !self.src.path(path).is_file() || !self.done.insert(path.to_path_buf()) {
                continue;
            }
            let version = if live {
                crate::facts::version_output(p).unwrap_or_default()
            } else {
                self.src
                    .read_optional(path)
                    .ok()
                    .flatten()
                    .and_then(|t| t.strip_prefix(crate::facts::PROGRAM_MARKER).map(|v| v.trim().to_string()))
                    .unwrap_or_default()
            };
            self.put(path, format!("{}\n{version}\n", crate::facts::PROGRAM_MARKER).as_bytes())?;
        }
        let mut firmware: Vec<String> = crate::facts::OVMF_PATHS.iter().map(|p| p.to_string()).collect();
        for dir in crate::facts::FIRMWARE_DESCRIPTORS {
            for name in self.src.list(dir).unwrap_or_default() {
                let text = self.src.read_optional(Path::new(dir).join(&name)).ok().flatten().unwrap_or_default();
                if let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) {
                    if let Some(f) = v["mapping"]["executable"]["filename"].as_str() {
                        firmware.push(f.to_string());
                    }
                }
            }
        }
        for f in firmware {
            let path = PathBuf::from(&f);
            if path.is_absolute() && self.src.path(&path).is_file() && self.done.insert(path.clone()) {
                self.put(&path, b"")?;
            }
        }
        Ok(())
    }

    /// `/dev/input/by-id` links, with serial numbers taken out of their names.
    fn input(&mut self) -> Result<(), SnapshotError> {
        let by_id = Path::new("/dev/input/by-id");
        let Ok(names) = self.src.list(by_id) else { return Ok(()) };
        self.mkdir(by_id)?;
        for name in names {
            let real = self.src.path(by_id.join(&name));
            let Ok(target) = fs::read_link(&real) else { continue };
            let serials = input_serials(self.src, &target);
            let mut clean = name.clone();
            for s in &serials {
                clean = clean.replace(s.as_str(), "SERIAL");
            }
            if clean != name {
                self.summary.redacted += 1;
            }
            let out = self.out(&by_id.join(&clean));
            let _ = fs::remove_file(&out);
            std::os::unix::fs::symlink(&target, &out).map_err(Self::write_err(out))?;
            self.summary.links += 1;
        }
        Ok(())
    }
}

/// A mountinfo line with the mount point shortened when it names a person's files.
fn redact_mount_line(line: &str) -> String {
    let mut f: Vec<String> = line.split(' ').map(str::to_string).collect();
    if let Some(mp) = f.get_mut(4) {
        for base in ["/home/", "/media/", "/run/media/", "/mnt/", "/root/"] {
            if mp.starts_with(base) {
                *mp = format!("{base}REDACTED");
            }
        }
    }
    f.join(" ")
}

/// Serial numbers of the USB device behind an input event node (`../event3`), found in
/// `serial` files of the device's ancestors in sysfs.
fn input_serials(root: &HostRoot, event_target: &Path) -> Vec<String> {
    let Some(event) = event_target.file_name() else { return Vec::new() };
    let dev = Path::new("/sys/class/input").join(event).join("device");
    let Ok(mut dir) = fs::canonicalize(root.path(&dev)) else { return Vec::new() };
    let base = fs::canonicalize(root.base()).unwrap_or_else(|_| root.base().to_path_buf());
    let mut serials = Vec::new();
    while dir.starts_with(&base) && dir != base {
        if let Ok(s) = fs::read_to_string(dir.join("serial")) {
            let s = s.trim();
            if s.len() >= 4 {
                serials.push(s.to_string());
            }
        }
        if !dir.pop() {
            break;
        }
    }
    serials
}

/// Resolves `.` and `..` lexically.
fn normalize(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Copies the host at `src` into the directory `dest`, which must not exist yet.
pub fn write_dir(src: &HostRoot, dest: &Path) -> Result<Summary, SnapshotError> {
    if !src.exists(crate::pci::PCI_DEVICES) && !src.exists("/sys/devices/system/cpu") {
        return Err(SnapshotError::NotAHost {
            root: src.base().to_path_buf(),
            missing: "/sys/bus/pci or /sys/devices/system/cpu",
        });
    }
    fs::create_dir(dest).map_err(|err| SnapshotError::Write { path: dest.to_path_buf(), err })?;
    let mut c = Copier { src, dest: dest.to_path_buf(), summary: Summary::default(), done: BTreeSet::new() };
    c.pci()?;
    c.cpu()?;
    c.config()?;
    c.input()?;
    let mut summary = c.summary;
    summary.unreadable.sort();
    Ok(summary)
}

/// The file at the top of every snapshot: what it is and what it lacks.
pub const MANIFEST: &str = "VFIOCTL-SNAPSHOT";

/// Whether the output is a directory or a compressed tar file, from its name.
pub fn is_archive_name(path: &Path) -> bool {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    name.ends_with(".tar.gz") || name.ends_with(".tgz")
}

fn manifest(src: &HostRoot, summary: &Summary) -> String {
    let release = src.read_optional("/proc/sys/kernel/osrelease").ok().flatten().unwrap_or_default();
    let mut m = format!(
        "vfioctl snapshot\nvfioctl {}\nkernel {}\nfiles {}\nlinks {}\nredacted-names {}\n",
        env!("CARGO_PKG_VERSION"),
        release.trim(),
        summary.files,
        summary.links,
        summary.redacted
    );
    for p in &summary.unreadable {
        m.push_str(&format!("unreadable {}\n", p.display()));
    }
    m
}

/// Writes a snapshot of `src` to `out` (a directory, or a `.tar.gz`/`.tgz` file). The
/// snapshot is built beside `out` and moved into place only when complete. An existing
/// `out` is replaced only with `force`, and only when it is itself a snapshot.
pub fn create(src: &HostRoot, out: &Path, force: bool) -> Result<Summary, SnapshotError> {
    let archive = is_archive_name(out);
    if fs::symlink_metadata(out).is_ok() {
        let is_snapshot = if archive { out.is_file() } else { out.join(MANIFEST).is_file() };
        if !force {
            return Err(SnapshotError::Exists(out.to_path_buf()));
        }
        if !is_snapshot {
            return Err(SnapshotError::NotASnapshot(out.to_path_buf()));
        }
    }
    let parent = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
        _ => PathBuf::from("."),
    };
    let name = out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "snapshot".into());
    let staging = parent.join(format!(".{name}.partial-{}", std::process::id()));
    let _ = fs::remove_dir_all(&staging);
    let result = (|| {
        let summary = write_dir(src, &staging)?;
        let mpath = staging.join(MANIFEST);
        fs::write(&mpath, manifest(src, &summary)).map_err(|err| SnapshotError::Write { path: mpath, err })?;
        if archive {
            let tmp = parent.join(format!(".{name}.partial-{}.tar.gz", std::process::id()));
            pack_tar_gz(&staging, &tmp)?;
            fs::rename(&tmp, out).map_err(|err| SnapshotError::Write { path: out.to_path_buf(), err })?;
        } else {
            if fs::symlink_metadata(out).is_ok() {
                fs::remove_dir_all(out).map_err(|err| SnapshotError::Write { path: out.to_path_buf(), err })?;
            }
            fs::rename(&staging, out).map_err(|err| SnapshotError::Write { path: out.to_path_buf(), err })?;
        }
        Ok(summary)
    })();
    let _ = fs::remove_dir_all(&staging);
    result
}

/// Packs a directory into a gzip-compressed tar file, keeping symbolic links.
pub fn pack_tar_gz(dir: &Path, out: &Path) -> Result<(), SnapshotError> {
    let err = |err| SnapshotError::Write { path: out.to_path_buf(), err };
    let file = fs::File::create(out).map_err(err)?;
    let gz = flate2::write::GzEncoder::new(file, flate2::Compression::default());
    let mut tar = tar::Builder::new(gz);
    tar.follow_symlinks(false);
    tar.append_dir_all(".", dir).map_err(err)?;
    let gz = tar.into_inner().map_err(err)?;
    let file = gz.finish().map_err(err)?;
    file.sync_all().map_err(err)
}

/// Unpacks a snapshot `.tar.gz` into `dest` (for `--root SNAPSHOT.tar.gz`).
pub fn unpack_tar_gz(archive: &Path, dest: &Path) -> io::Result<()> {
    let file = fs::File::open(archive)?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    tar.set_preserve_permissions(false);
    tar.unpack(dest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_links() {
        assert_eq!(
            relative_target(
                Path::new("/sys/bus/pci/devices/0000:00:01.0"),
                Path::new("/sys/devices/pci0000:00/0000:00:01.0")
            ),
            Path::new("../../../devices/pci0000:00/0000:00:01.0")
        );
        assert_eq!(normalize(Path::new("/sys/bus/pci/devices/../../../devices/x")), Path::new("/sys/devices/x"));
    }

    #[test]
    fn serial_numbers_leave_input_link_names() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        let usb = s.join("sys/devices/pci0000:00/0000:00:14.0/usb1/1-1");
        let input = usb.join("1-1:1.0/0003:046D:C08B.0001/input/input3");
        fs::create_dir_all(input.join("event3")).unwrap();
        fs::write(usb.join("serial"), "0D3A39583231\n").unwrap();
        fs::create_dir_all(s.join("sys/class/input")).unwrap();
        std::os::unix::fs::symlink(
            "../../devices/pci0000:00/0000:00:14.0/usb1/1-1/1-1:1.0/0003:046D:C08B.0001/input/input3/event3",
            s.join("sys/class/input/event3"),
        )
        .unwrap();
        std::os::unix::fs::symlink("..", input.join("event3/device")).unwrap();
        fs::create_dir_all(s.join("dev/input/by-id")).unwrap();
        let name = "usb-Logitech_G502_HERO_Gaming_Mouse_0D3A39583231-event-mouse";
        std::os::unix::fs::symlink("../event3", s.join("dev/input/by-id").join(name)).unwrap();
        std::os::unix::fs::symlink("../event4", s.join("dev/input/by-id/usb-Metadot_Das_Keyboard-event-kbd")).unwrap();
        fs::create_dir_all(s.join("sys/devices/system/cpu")).unwrap();

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("snap");
        let sum = write_dir(&HostRoot::new(s), &dest).unwrap();
        let names = HostRoot::new(&dest).list("/dev/input/by-id").unwrap();
        assert_eq!(
            names,
            ["usb-Logitech_G502_HERO_Gaming_Mouse_SERIAL-event-mouse", "usb-Metadot_Das_Keyboard-event-kbd"]
        );
        assert_eq!(sum.redacted, 1);
        assert_eq!(
            fs::read_link(dest.join("dev/input/by-id/usb-Logitech_G502_HERO_Gaming_Mouse_SERIAL-event-mouse")).unwrap(),
            Path::new("../event3")
        );
    }

    #[test]
    fn copies_only_the_allow_list_and_keeps_links() {
        let src = tempfile::tempdir().unwrap();
        let s = src.path();
        let dev = s.join("sys/devices/pci0000:00/0000:00:02.0");
        fs::create_dir_all(&dev).unwrap();
        for (f, v) in [
            ("vendor", "0x1af4\n"),
            ("device", "0x1042\n"),
            ("class", "0x018000\n"),
            ("rom", "x"),
            ("reset", "x"),
            ("serial", "ABC"),
        ] {
            fs::write(dev.join(f), v).unwrap();
        }
        fs::write(dev.join("config"), vec![0u8; 4096]).unwrap();
        fs::create_dir_all(s.join("sys/bus/pci/devices")).unwrap();
        fs::create_dir_all(s.join("sys/bus/pci/drivers/virtio-pci")).unwrap();
        std::os::unix::fs::symlink(
            "../../../devices/pci0000:00/0000:00:02.0",
            s.join("sys/bus/pci/devices/0000:00:02.0"),
        )
        .unwrap();
        std::os::unix::fs::symlink("../../../bus/pci/drivers/virtio-pci", dev.join("driver")).unwrap();
        fs::create_dir_all(s.join("home/alice")).unwrap();
        fs::write(s.join("home/alice/secret"), "x").unwrap();

        let out = tempfile::tempdir().unwrap();
        let dest = out.path().join("snap");
        let sum = write_dir(&HostRoot::new(s), &dest).unwrap();
        let d = dest.join("sys/devices/pci0000:00/0000:00:02.0");
        assert_eq!(fs::read_to_string(d.join("vendor")).unwrap(), "0x1af4\n");
        assert_eq!(fs::metadata(d.join("config")).unwrap().len(), 256);
        for gone in ["rom", "reset", "serial"] {
            assert!(!d.join(gone).exists(), "{gone}");
        }
        assert!(!dest.join("home").exists());
        assert_eq!(fs::read_link(d.join("driver")).unwrap(), Path::new("../../../bus/pci/drivers/virtio-pci"));
        assert!(dest.join("sys/bus/pci/devices/0000:00:02.0/vendor").exists());
        assert!(sum.files >= 4 && sum.links == 2, "{sum:?}");
        assert!(matches!(write_dir(&HostRoot::new(s), &dest), Err(SnapshotError::Write { .. })));
    }
}
