//! # The host spec format
//!
//! A host spec is a TOML file describing one machine compactly enough to review in a
//! pull request; [`crate::generate`] expands it into the sysfs/procfs files a real Linux
//! host would show. Unknown keys are errors everywhere (`deny_unknown_fields`), so a typo
//! never silently produces a different host.
//!
//! ```toml
//! [host]
//! name = "tr1950x"                      # short name, used in messages only
//! description = "Threadripper 1950X, guide 000"
//! cmdline = "... amd_iommu=on iommu=pt ..."   # written to proc/cmdline
//! iommu = true                          # default true; false: no iommu_groups, no class/iommu,
//!                                       # no ACPI IVRS/DMAR table
//! kernel = "5.9.8-arch1-1"              # optional: the running kernel's release (see below)
//! distro = "arch"                       # optional: "debian", "ubuntu", "arch", "fedora" or
//!                                       # "rhel" (RHEL and its rebuilds: Rocky, Alma)
//! packages = ["qemu", "ovmf", "libvirt"] # optional: installed packages (default none)
//! cgroup = "v2"                         # optional: "v2" (default, unified) or "v1" (hybrid)
//! builtin_vfio = false                  # optional: vfio built into the kernel (custom kernels)
//! extra_modules = ["updates/dkms/vendor-reset"]   # optional: out-of-tree (DKMS) modules in modules.dep
//!
//! [cpu]
//! vendor = "AuthenticAMD"               # or "GenuineIntel"
//! model_name = "AMD Ryzen Threadripper 1950X 16-Core Processor"
//! family = 23                           # /proc/cpuinfo "cpu family", "model", "stepping"
//! model = 1
//! stepping = 1
//! packages = 1                          # sockets
//! nodes_per_package = 2                 # NUMA nodes (= dies) per package
//! l3_per_node = 2                       # L3 domains (AMD CCX/CCD) per node
//! cores_per_l3 = 4                      # (performance) cores sharing one L3
//! threads_per_core = 2
//! smt_siblings = "split"                # "split": core k has CPUs k and k+cores_total
//!                                       # (how Linux numbers AMD and most Intel hosts);
//!                                       # "adjacent": CPUs 2k and 2k+1 (Intel hybrid)
//! core_id_slots_per_l3 = 4              # optional: core_id stride per L3 (Zen 1/2 skip ids)
//! base_freq_khz = 3400000
//! max_freq_khz = 4000000
//! cache = { l1d = "32K", l1i = "64K", l2 = "512K", l3 = "8M" }   # l3 is per L3 domain
//! l3_sizes = ["96M", "32M"]             # optional: per L3 domain of a package (X3D parts)
//! l3_max_freq_khz = [5250000, 5760000]  # optional: max frequency per L3 domain likewise
//! hybrid = { e_cores = 4, e_cores_per_l2 = 4, e_max_freq_khz = 3800000 }  # optional
//!
//! [memory]
//! node_mib = [32768, 32768]             # installed memory per NUMA node
//! remote_distance = 16                  # node distance table: 10 local, this otherwise
//! hugepages_2m = [0, 0]                 # optional per-node pools
//! hugepages_1g = [0, 0]
//!
//! [pci]
//! # Host bridges `pciDDDD:BB` and their NUMA node (optional domain = "0000"; node = -1:
//! # none, as on most single-node desktops). Root buses not listed get node -1.
//! roots = [{ bus = "00", node = 0 }, { bus = "40", node = 1 }]
//! # One line per PCI function. `parent` is the bridge the function sits behind
//! # (omitted for functions on a root bus); the sysfs directory nests under it.
//! devices = [
//!   { addr = "00:03.1", id = "1022:1453", class = "060400", group = 6, driver = "pcieport" },
//!   { addr = "0d:00.0", id = "1002:66af", class = "030000", rev = "c1", subsystem = "1002:081e",
//!     parent = "0c:00.0", group = 20, driver = "amdgpu", boot_vga = false, reset_method = "bus" },
//! ]
//!
//! # Any other host file, verbatim. Keys are absolute host paths; TOML multi-line
//! # strings keep configuration files readable.
//! [files]
//! "/etc/modprobe.d/kvm.conf" = """
//! options kvm ignore_msrs=1 report_ignored_msrs=0
//! """
//! "/sys/module/kvm/parameters/ignore_msrs" = "Y\n"
//!
//! # Symbolic links, `"/link" = "target"`; the target is written verbatim (relative
//! # targets are relative to the link's directory, as on the host).
//! [links]
//! "/dev/input/by-id/usb-Logitech_USB_Receiver-event-kbd" = "../event3"
//!
//! # Unified kernel images: a PE32+ file with `.osrel`, `.cmdline`, `.uname` sections
//! # (see `uki.rs`), for hosts whose boot loader reads the command line from a UKI.
//! [[ukis]]
//! path = "/efi/EFI/Linux/arch-linux.efi"
//! cmdline = "root=UUID=... rw quiet"
//!
//! # Block devices, volumes and mounts (all optional; see "Disks and mounts" below).
//! [[disks]]
//! name = "nvme0n1"                      # nvme<C>n<N> (NVMe) or sd<letters> (SATA, USB)
//! controller = "09:00.0"                # a [pci] device: class 0108, 0106 or 0c03
//! size_gb = 1000                        # as sold (decimal GB)
//! partitions = ["512M", "*"]            # sizes; "*" (last only): the rest of the disk
//! model = "Samsung SSD 970 EVO 1TB"     # optional; with serial: /dev/disk/by-id links
//! serial = "S467NX0M402183K"
//!
//! [[volumes]]
//! name = "dm-0"                         # dm-N (device-mapper) or mdN (md RAID)
//! dm_name = "cryptroot"                 # dm: required (/dev/mapper/cryptroot)
//! dm_uuid = "CRYPT-LUKS2-6f1d...-cryptroot"   # dm: optional
//! # level = "raid1"                     # md: required
//! slaves = ["nvme0n1p3"]                # disks, partitions or earlier volumes
//!
//! [[mounts]]
//! device = "dm-0"                       # a disk, partition or volume
//! mount = "/"                           # omitted for fstype = "swap"
//! fstype = "ext4"
//! # subvol = "/root"                    # btrfs: the subvolume (mountinfo root field)
//! # options = "rw,errors=remount-ro"    # superblock options; default per fstype
//!
//! [[pools]]                             # a ZFS pool
//! name = "tank"
//! members = ["sda1", "sdb1"]            # disks or partitions
//! # imported = false                    # default true
//!
//! [[mounts]]
//! device = "tank/vms"                   # zfs: a dataset of an imported pool
//! mount = "/var/lib/libvirt/images"
//! fstype = "zfs"
//! ```
//!
//! Device fields: `addr` (`BB:DD.F` or `DDDD:BB:DD.F`), `id` (`vendor:device`), `class`
//! (six hex digits with the programming interface), `rev` (hex, default `00`),
//! `subsystem` (`vendor:device`, default none), `driver` (default: none bound), `group`
//! (IOMMU group; omit for functions outside any group, like the AMD root complex 00:00.0
//! and IOMMU 00:00.2; ignored when `iommu = false`), `node` (default: the root bus's node),
//! `boot_vga` (display devices only; default false), `reset_method` (written verbatim,
//! default: no file), `parent` (bridge address), `secondary_bus` (bridges only, for an
//! empty bridge; otherwise the lowest bus of its children).
//!
//! ## `[files]` and `[links]`
//!
//! Paths must be absolute, without `.`/`..` components, empty components or a trailing
//! slash, and must not be (or lie inside, or contain) a path hostgen generates itself:
//! such a conflict is an error naming the path. The one exception: a `[files]` entry may
//! replace a generated module parameter, `/sys/module/<module>/parameters/<name>`, since
//! those are only the kernel's defaults (e.g. `ignore_msrs` as an `options kvm` line sets
//! it). `[files]` never changes anything else that is generated (`/proc/modules`, ...).
//!
//! ## Disks and mounts
//!
//! Each `[[disks]]` entry is a whole disk on its PCI controller (which must be a device of
//! `[pci]` with a host driver bound; its class decides the bus), laid out as on a live
//! host:
//!
//! * NVMe (class 0108): `<controller dir>/nvme/nvme<C>/nvme<C>n<N>/nvme<C>n<N>p<k>`, the
//!   controller directory with `model`, `serial`, `address`, ...; `/sys/class/nvme/nvme<C>`.
//!   Major 259, minors handed out in spec order (disk, then its partitions). One
//!   controller is one `nvme<C>`.
//! * SATA (class 0106): `<controller dir>/ata<A>/host<H>/target<H>:0:0/<H>:0:0:0/block/sdX/sdX<k>`
//!   with the SCSI device's `vendor` (`ATA`), `model`, `rev`. Major 8, minor 16 × the
//!   disk's letter index (sda 0, sdb 16, ...) + partition. `ata<A>` counts the SATA disks
//!   in spec order from 1, SCSI hosts `<H>` all sd disks from 0.
//! * USB (class 0c03): `<controller dir>/usb<B>/<B>-<P>/<B>-<P>:1.0/host<H>/...` as
//!   SATA, on the controller's SuperSpeed bus (B = 2 × its index among the spec's USB
//!   controllers + 2), ports from 1; `removable` is 1.
//!
//! Every disk and partition (and volume) directory has `dev` (`MAJ:MIN`), `size`
//! (512-byte sectors), `ro`, `uevent` and `subsystem`; disks `removable` and `queue/`,
//! partitions `partition` and `start` (1 MiB aligned). Links: `/sys/dev/block/MAJ:MIN`
//! and `/sys/class/block/NAME` for all, `/sys/block/NAME` for disks and volumes, a disk's
//! `device`. `[[volumes]]` live in `sys/devices/virtual/block/NAME` (dm: major 253,
//! `dm/name`, `dm/uuid`; md: major 9, `md/level`, ...) with `slaves/<dev>` links, and
//! each slave gets `holders/<volume>`. Also `/proc/partitions` and, under `/dev`, an
//! empty file per block device, `/dev/mapper/<dm_name>` and `/dev/disk/by-id` links.
//!
//! `[[mounts]]` needs a root filesystem (`mount = "/"`). Its `/proc/self/mountinfo`
//! is a full systemd host's: sysfs, proc, devtmpfs, devpts, tmpfs `/run`, the root (parent
//! id 1, `shared:1`), securityfs, `/dev/shm`, `/run/lock` (Debian, Ubuntu), the cgroup
//! mounts, pstore, efivarfs (when `[files]` has `/sys/firmware/efi/...`), bpf, hugetlbfs,
//! mqueue, debugfs, tracefs, fusectl, configfs, the other `[[mounts]]` in spec order and
//! `/run/user/1000`; the virtual ones with `0:N` device numbers. The mount source is
//! `/dev/<name>` (`/dev/mapper/<dm_name>` for dm). As on Linux, a btrfs mount shows an
//! anonymous `0:N` device number (one per subvolume), not its block device's `MAJ:MIN`:
//! only its source names the device. `/proc/self/mounts` (and the
//! `/proc/mounts` link) list the same; swap areas go to `/proc/swaps`. Without
//! `[[mounts]]`, mountinfo holds the cgroup lines only.
//!
//! ZFS shows a pool's members nowhere in sysfs (no `holders`), as on Linux: each member of
//! a `[[pools]]` entry gets the udev database entry blkid's probe leaves,
//! `/run/udev/data/bMAJ:MIN` with `ID_FS_TYPE=zfs_member` and `ID_FS_LABEL=<pool>`; an
//! imported pool gets `/proc/spl/kstat/zfs/<pool>/state` (`ONLINE`) and the module's
//! `/sys/module/zfs`. A `zfs` mount names its dataset as the source, with an anonymous
//! `0:N` device number.
//!
//! ## Generated from `[host]` (no spec entries needed)
//!
//! * `iommu = true`: the ACPI table `/sys/firmware/acpi/tables/IVRS` (AMD CPU) or `DMAR`
//!   (Intel): a valid 36-byte ACPI header (signature, length, checksum) and one IOMMU unit.
//! * `kernel`: `/proc/sys/kernel/osrelease`, `/proc/version` (worded like the `distro`'s
//!   kernels), `/lib/modules/<kernel>/modules.builtin` and `modules.dep` (vfio, kvm,
//!   vhost_net, tun and the modules of the drivers the devices are bound to; compressed
//!   names `.ko.zst`/`.ko.xz` where that distro release compresses modules),
//!   `/proc/modules` (the loaded modules: the devices' drivers, kvm and kvm_amd/kvm_intel,
//!   vfio and vfio_iommu_type1 with an IOMMU, vfio_pci when a device is bound to it, and
//!   their dependencies) and `/sys/module/<m>/parameters/*` of kvm, kvm_amd/kvm_intel and
//!   the vfio modules with the kernel's defaults (formatted as that kernel prints them).
//!   `builtin_vfio = true` moves vfio, vfio_iommu_type1, vfio-pci (and friends) into
//!   modules.builtin. `extra_modules` adds out-of-tree modules (DKMS's
//!   `updates/dkms/vendor-reset`) to modules.dep. Without `kernel`, none of these files
//!   are written.
//! * `/dev/kvm`, `/dev/vhost-net`, `/dev/net/tun`, and with vfio `/dev/vfio/vfio` plus
//!   `/dev/vfio/<group>` for each group with a device bound to vfio-pci: empty regular
//!   files standing in for the character devices.
//! * `cgroup`: `/proc/self/cgroup`, the cgroup lines of `/proc/self/mountinfo` and the
//!   mount points under `/sys/fs/cgroup` (v2: one `cgroup2` mount with
//!   `cgroup.controllers`; v1: systemd's hybrid layout, one v1 mount per controller plus
//!   `cgroup2` at `/sys/fs/cgroup/unified`).
//! * `packages` (`qemu`, `ovmf`, `libvirt`): empty marker files where that `distro`
//!   installs the QEMU binary, the OVMF firmware images (and QEMU firmware descriptor)
//!   and libvirtd; the paths are in one table in `system.rs`. Needs `distro`.
//! * `/proc/iomem`: RAM, the usual reserved ranges, the root buses' windows, bridge
//!   windows and every endpoint's BARs (with the driver's claim as a child), and the boot
//!   framebuffer (`efifb` or, from 5.15 on, `BOOTFB`) inside the boot GPU's BAR unless the
//!   cmdline says `video=efifb:off`.

use std::collections::BTreeMap;

use serde::Deserialize;

/// A whole host.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Spec {
    pub host: HostSpec,
    pub cpu: CpuSpec,
    pub memory: MemorySpec,
    #[serde(default)]
    pub pci: PciSpec,
    /// `[files]`: absolute host path to contents.
    #[serde(default)]
    pub files: BTreeMap<String, String>,
    /// `[links]`: absolute host path of a symlink to its (verbatim) target.
    #[serde(default)]
    pub links: BTreeMap<String, String>,
    /// `[[disks]]`: block devices on PCI storage controllers.
    #[serde(default)]
    pub disks: Vec<DiskSpec>,
    /// `[[volumes]]`: device-mapper (`dm-N`) and md RAID (`mdN`) block devices.
    #[serde(default)]
    pub volumes: Vec<VolumeSpec>,
    /// `[[mounts]]`: mounted filesystems and swap.
    #[serde(default)]
    pub mounts: Vec<MountSpec>,
    /// `[[pools]]`: ZFS pools and the block devices that hold them.
    #[serde(default)]
    pub pools: Vec<PoolSpec>,
    /// `[[ukis]]`: unified kernel images (PE files with an embedded command line).
    #[serde(default)]
    pub ukis: Vec<crate::uki::UkiSpec>,
}

/// `[[disks]]`: a whole disk on a PCI storage controller.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskSpec {
    /// `nvme<C>n<N>` on an NVMe controller (class 0108), `sd<letters>` on SATA (0106) or
    /// USB (0c03).
    pub name: String,
    /// PCI address of the controller (a device of `[pci]`).
    pub controller: String,
    /// Capacity in (decimal) GB, as sold; the sector count follows the IDEMA formula.
    pub size_gb: u64,
    /// Partition sizes (`"512M"`, `"100G"`); the last may be `"*"`, the rest of the disk.
    #[serde(default)]
    pub partitions: Vec<String>,
    #[serde(default)]
    pub model: Option<String>,
    /// Serial number: with `model`, names the `/dev/disk/by-id` links.
    #[serde(default)]
    pub serial: Option<String>,
}

/// `[[volumes]]`: a device-mapper or md device built on other block devices.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VolumeSpec {
    /// `dm-N` (major 253, minor N) or `mdN` (major 9, minor N).
    pub name: String,
    /// Block devices below it (disks, partitions or volumes listed before it).
    pub slaves: Vec<String>,
    /// dm only (required): the mapping's name, `/dev/mapper/<dm_name>`.
    #[serde(default)]
    pub dm_name: Option<String>,
    /// dm only: `dm/uuid` (`CRYPT-LUKS2-...`, `LVM-...`); default empty.
    #[serde(default)]
    pub dm_uuid: Option<String>,
    /// md only (required): the RAID level, `raid1`, `raid0`, ...
    #[serde(default)]
    pub level: Option<String>,
}

/// `[[pools]]`: a ZFS pool. Its members get udev database entries
/// (`/run/udev/data/bMAJ:MIN` with `ID_FS_TYPE=zfs_member`, `ID_FS_LABEL=<name>`); an
/// imported pool gets `/proc/spl/kstat/zfs/<name>/state` (and the module
/// `/sys/module/zfs`). Its datasets are mounted by `[[mounts]]` with `fstype = "zfs"` and
/// `device = "<name>/<dataset>"`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSpec {
    pub name: String,
    /// Disks or partitions holding it.
    pub members: Vec<String>,
    /// Imported now (default), or only on the disks.
    #[serde(default = "yes")]
    pub imported: bool,
    /// The pool's GUID (decimal, udev's `ID_FS_UUID`); default derived from the name.
    #[serde(default)]
    pub guid: Option<String>,
}

/// `[[mounts]]`: a filesystem mounted from a block device (or a swap area).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MountSpec {
    /// The block device (a disk, partition or volume name); for `zfs`, the dataset
    /// (`pool/dataset`) of a pool in `[[pools]]`.
    pub device: String,
    /// Mount point; omitted for `fstype = "swap"`.
    #[serde(default)]
    pub mount: Option<String>,
    pub fstype: String,
    /// btrfs subvolume mounted (mountinfo's root field, `subvol=` option).
    #[serde(default)]
    pub subvol: Option<String>,
    /// Superblock options (mountinfo's last field); default: typical ones for the fstype.
    #[serde(default)]
    pub options: Option<String>,
}

/// `[pci]`: root buses and functions.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciSpec {
    #[serde(default)]
    pub roots: Vec<PciRootSpec>,
    #[serde(default)]
    pub devices: Vec<DeviceSpec>,
}

/// `[host]`: metadata, kernel and software.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostSpec {
    pub name: String,
    #[serde(default)]
    pub description: String,
    pub cmdline: String,
    #[serde(default = "yes")]
    pub iommu: bool,
    /// The running kernel's release (`uname -r`).
    #[serde(default)]
    pub kernel: Option<String>,
    #[serde(default)]
    pub distro: Option<Distro>,
    #[serde(default)]
    pub packages: Vec<Package>,
    #[serde(default)]
    pub cgroup: Cgroup,
    /// vfio, vfio_iommu_type1 and vfio-pci built into the kernel rather than modules.
    #[serde(default)]
    pub builtin_vfio: bool,
    /// Out-of-tree modules (DKMS), as paths under `/lib/modules/<kernel>/` without the
    /// suffix (`updates/dkms/vendor-reset`): listed in modules.dep, not loaded.
    #[serde(default)]
    pub extra_modules: Vec<String>,
}

/// The Linux distribution: decides file locations and how its kernels look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Distro {
    Debian,
    Ubuntu,
    Arch,
    Fedora,
    /// Red Hat Enterprise Linux 9 and its rebuilds (Rocky, Alma): Fedora's file layout,
    /// except QEMU, which RHEL ships as `/usr/libexec/qemu-kvm`.
    Rhel,
}

/// An installed package (of the ones a passthrough host needs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Package {
    Qemu,
    Ovmf,
    Libvirt,
}

/// The cgroup layout systemd set up.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Cgroup {
    /// Unified hierarchy only (`cgroup2` at /sys/fs/cgroup).
    #[default]
    V2,
    /// systemd's hybrid layout: v1 controllers, `cgroup2` at /sys/fs/cgroup/unified.
    V1,
}

fn yes() -> bool {
    true
}

/// How sibling threads of one core are numbered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SmtSiblings {
    /// Core `k` runs CPUs `k` and `k + cores_total` (AMD, Intel non-hybrid).
    Split,
    /// Core `k` runs CPUs `2k` and `2k + 1` (Intel hybrid P-cores).
    Adjacent,
}

/// `[cpu]`: the processor and its topology.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuSpec {
    pub vendor: String,
    pub model_name: String,
    pub family: u32,
    pub model: u32,
    #[serde(default)]
    pub stepping: u32,
    #[serde(default)]
    pub microcode: Option<String>,
    #[serde(default = "one")]
    pub packages: u32,
    #[serde(default = "one")]
    pub nodes_per_package: u32,
    #[serde(default = "one")]
    pub l3_per_node: u32,
    pub cores_per_l3: u32,
    #[serde(default = "one")]
    pub threads_per_core: u32,
    #[serde(default = "split")]
    pub smt_siblings: SmtSiblings,
    #[serde(default)]
    pub core_id_slots_per_l3: Option<u32>,
    pub base_freq_khz: u32,
    pub max_freq_khz: u32,
    pub cache: CacheSpec,
    #[serde(default)]
    pub hybrid: Option<HybridSpec>,
    /// Overrides the default `flags` line of /proc/cpuinfo.
    #[serde(default)]
    pub flags: Option<String>,
    /// Per-L3-domain L3 sizes inside a package (overrides `cache.l3`), one entry per L3
    /// of a package, e.g. `["96M", "32M"]` for a 7950X3D (CCD0 with V-Cache).
    #[serde(default)]
    pub l3_sizes: Option<Vec<String>>,
    /// Per-L3-domain maximum frequencies (overrides `max_freq_khz`), like `l3_sizes`.
    #[serde(default)]
    pub l3_max_freq_khz: Option<Vec<u32>>,
}

fn one() -> u32 {
    1
}
fn split() -> SmtSiblings {
    SmtSiblings::Split
}

/// Cache sizes, e.g. `"32K"`, `"8M"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheSpec {
    pub l1d: String,
    pub l1i: String,
    pub l2: String,
    pub l3: String,
}

/// Efficiency cores of a hybrid Intel part (`cpu_atom`); numbered after all P-core threads.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HybridSpec {
    pub e_cores: u32,
    #[serde(default = "four")]
    pub e_cores_per_l2: u32,
    pub e_max_freq_khz: u32,
    #[serde(default)]
    pub e_base_freq_khz: Option<u32>,
    #[serde(default = "e_l1d")]
    pub e_l1d: String,
    #[serde(default = "e_l1i")]
    pub e_l1i: String,
    #[serde(default = "e_l2")]
    pub e_l2: String,
}

fn four() -> u32 {
    4
}
fn e_l1d() -> String {
    "32K".into()
}
fn e_l1i() -> String {
    "64K".into()
}
fn e_l2() -> String {
    "2M".into()
}

/// `[memory]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemorySpec {
    pub node_mib: Vec<u64>,
    #[serde(default = "remote")]
    pub remote_distance: u32,
    #[serde(default)]
    pub hugepages_2m: Vec<u64>,
    #[serde(default)]
    pub hugepages_1g: Vec<u64>,
}

fn remote() -> u32 {
    20
}

/// An entry of `pci.roots`: a PCI host bridge (root bus).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PciRootSpec {
    #[serde(default = "zero_domain")]
    pub domain: String,
    pub bus: String,
    pub node: i32,
}

fn zero_domain() -> String {
    "0000".into()
}

/// One PCI function.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeviceSpec {
    pub addr: String,
    pub id: String,
    pub class: String,
    #[serde(default)]
    pub rev: Option<String>,
    #[serde(default)]
    pub subsystem: Option<String>,
    #[serde(default)]
    pub driver: Option<String>,
    #[serde(default)]
    pub group: Option<u32>,
    #[serde(default)]
    pub node: Option<i32>,
    #[serde(default)]
    pub boot_vga: Option<bool>,
    #[serde(default)]
    pub reset_method: Option<String>,
    #[serde(default)]
    pub parent: Option<String>,
    #[serde(default)]
    pub secondary_bus: Option<String>,
}

/// Parses a spec from TOML text.
pub fn parse(text: &str) -> Result<Spec, toml::de::Error> {
    toml::from_str(text)
}

/// Parses a cache size: `32K`, `8M`, `8192K` or a plain number of KiB.
pub fn size_kib(s: &str) -> Option<u64> {
    let s = s.trim();
    let (num, mult) = match s.as_bytes().last()? {
        b'K' | b'k' => (&s[..s.len() - 1], 1),
        b'M' | b'm' => (&s[..s.len() - 1], 1024),
        b'G' | b'g' => (&s[..s.len() - 1], 1024 * 1024),
        _ => (s, 1),
    };
    num.trim().parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINI: &str = r#"
[host]
name = "mini"
cmdline = "ro quiet"

[cpu]
vendor = "GenuineIntel"
model_name = "Test CPU"
family = 6
model = 151
cores_per_l3 = 4
threads_per_core = 2
base_freq_khz = 3000000
max_freq_khz = 4000000
cache = { l1d = "48K", l1i = "32K", l2 = "1280K", l3 = "12M" }

[memory]
node_mib = [16384]

[pci]
devices = [
  { addr = "00:02.0", id = "8086:4680", class = "030000", rev = "0c", group = 0, boot_vga = true },
]
"#;

    #[test]
    fn parses_minimal_spec_with_defaults() {
        let s = parse(MINI).unwrap();
        assert!(s.host.iommu);
        assert_eq!(s.cpu.packages, 1);
        assert_eq!(s.cpu.smt_siblings, SmtSiblings::Split);
        assert_eq!(s.memory.remote_distance, 20);
        assert_eq!(s.pci.devices.len(), 1);
        assert_eq!(s.pci.devices[0].boot_vga, Some(true));
        assert!(s.pci.devices[0].parent.is_none());
    }

    #[test]
    fn rejects_unknown_fields() {
        let bad = MINI.replace("rev = \"0c\"", "revison = \"0c\"");
        let err = parse(&bad).unwrap_err().to_string();
        assert!(err.contains("revison"), "{err}");
        let bad = MINI.replace("[memory]", "[memory]\nswap_mib = 3");
        assert!(parse(&bad).is_err());
    }

    #[test]
    fn sizes() {
        assert_eq!(size_kib("32K"), Some(32));
        assert_eq!(size_kib("8M"), Some(8192));
        assert_eq!(size_kib("25600K"), Some(25600));
        assert_eq!(size_kib("512"), Some(512));
        assert_eq!(size_kib("x"), None);
        assert_eq!(size_kib(""), None);
    }
}
