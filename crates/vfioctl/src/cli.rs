//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};
use vfioctl_core::plan::{BindMode, HugepageChoice, Request};
use vfioctl_core::selector::Selector;

use crate::error::CliError;

#[derive(Debug, Parser)]
#[command(name = "vfioctl", version, about = "Plan and apply GPU/PCIe passthrough for libvirt/KVM, safely.")]
pub struct Cli {
    /// Host root to read from (and later write to): `/` for this machine, or a snapshot
    /// or fixture directory.
    #[arg(long, global = true, env = "VFIOCTL_ROOT", default_value = "/", value_name = "DIR")]
    pub root: PathBuf,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// IOMMU groups and the PCI devices in them.
    List(ListArgs),
    /// CPU packages, NUMA nodes, L3 cache domains, cores and SMT siblings.
    Topology(TopologyArgs),
    /// Host readiness: what stands between this host and a working passthrough VM.
    Check(CheckArgs),
    /// What to reserve, pin and allocate to pass devices to a VM, each decision explained.
    Plan(PlanArgs),
    /// The libvirt domain XML for the plan: pinning, hugepages, Hyper-V, hostdevs, evdev.
    Domain(Box<DomainArgs>),
    /// Lint an existing libvirt domain against this host: what is wrong or missed, and the fix.
    Audit(AuditArgs),
    /// After the reboot: is the host what the applied plan (or a plan for DEVICE…) said?
    Verify(VerifyArgs),
    /// The plan for other platforms: `export kubevirt` writes a KubeVirt VM, the KubeVirt CR
    /// patch and what each node needs.
    Export(ExportArgs),
    /// Write the plan's host configuration as one transaction (see --dry-run).
    Apply(ApplyArgs),
    /// Restore the state before the last apply (or all of them, or a chosen one), byte for byte.
    Rollback(RollbackArgs),
    /// The applies recorded on this host, oldest first, and which are still in effect.
    History(StatusArgs),
    /// What the last apply did, and whether its files changed since.
    Status(StatusArgs),
    /// Pack what vfioctl reads from this host into a directory or .tar.gz for a bug report.
    Snapshot(SnapshotArgs),
    /// Check a GPU ROM file (`--check FILE`) before giving it to QEMU: its images, their
    /// ids against the card's (DEVICE), a flash tool's header to cut (`--out`).
    Rom(RomArgs),
}

#[derive(Debug, clap::Args)]
pub struct RomArgs {
    /// The card the ROM is for (an address, vendor:device, or `gpu`): its ids must match.
    /// Without --check, the card whose ROM is read through sysfs.
    #[arg(required_unless_present = "check")]
    pub device: Option<String>,
    /// The ROM file to check (a dump from GPU-Z, nvflash, TechPowerUp or sysfs).
    #[arg(long, value_name = "FILE")]
    pub check: Option<PathBuf>,
    /// With --check: write the ROM without a flash tool's header (and without trailing
    /// padding) here. Without --check: read DEVICE's ROM through sysfs and write it here
    /// (e.g. /usr/share/vgabios/NAME.rom), when it is valid and the card's.
    #[arg(long, value_name = "FILE", required_unless_present = "check")]
    pub out: Option<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ListFormat {
    /// A table for people.
    Text,
    /// JSON on stdout, for scripts.
    Json,
    /// `IOMMU Group N <lspci -nn line>`, as the classic iommu-groups script prints.
    Lspci,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    Text,
    Json,
}

#[derive(Debug, clap::Args)]
pub struct ListArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub format: ListFormat,
    /// PCI id database to name devices with (default: the system's pci.ids, as lspci finds
    /// it, else the copy built into vfioctl).
    #[arg(long, env = "VFIOCTL_PCI_IDS", value_name = "FILE")]
    pub pci_ids: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct TopologyArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct SnapshotArgs {
    /// Output directory, or a file ending in .tar.gz / .tgz.
    pub out: PathBuf,
    /// Replace OUT if it exists.
    #[arg(long)]
    pub force: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Also check one device: a PCI address (0d:00.0), a vendor:device id, or `gpu`.
    pub device: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HugepagesArg {
    /// 1 GiB pages when the CPU has them and the size allows, else 2 MiB.
    Auto,
    #[value(name = "2M")]
    TwoM,
    #[value(name = "1G")]
    OneG,
    None,
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    /// Devices to pass: PCI addresses (0d:00.0), vendor:device ids, or `gpu`.
    #[arg(required = true)]
    pub devices: Vec<String>,
    /// vCPUs for the guest (default: the free cores of one L3 domain of the device's node).
    #[arg(long)]
    pub vcpus: Option<u32>,
    /// Guest memory, e.g. 16G, 16384M (default: half the node, at most 16 GiB).
    #[arg(long, value_parser = parse_size_mib)]
    pub memory: Option<u64>,
    #[arg(long, value_enum, default_value = "auto")]
    pub hugepages: HugepagesArg,
    /// How vfio-pci gets the devices at boot: `id` (vfio-pci.ids), `address`
    /// (driver_override for exactly these addresses, set by modprobe.d before any driver
    /// loads), or `auto`: by id, and by address a device whose id a device of the host shares.
    #[arg(long, default_value = "auto")]
    pub bind: BindMode,
    /// Pass the asked devices without the rest of their IOMMU group, splitting it with
    /// `pcie_acs_override=downstream,multifunction` (only kernels with the ACS override patch:
    /// linux-zen, Proxmox's): the group's devices then lose their isolation from each other.
    #[arg(long)]
    pub allow_acs_override: bool,
    /// Plan even what vfioctl refuses by default (the boot GPU, a controller holding
    /// mounted filesystems, controllers you did not ask for); the output says what you take on.
    #[arg(long)]
    pub force: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

/// `16G`, `16GiB`, `16384M`, `16384` (MiB) → MiB.
pub fn parse_size_mib(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let (num, mult) = if let Some(n) =
        lower.strip_suffix("gib").or_else(|| lower.strip_suffix("gb")).or_else(|| lower.strip_suffix('g'))
    {
        (n.to_string(), 1024)
    } else if let Some(n) =
        lower.strip_suffix("mib").or_else(|| lower.strip_suffix("mb")).or_else(|| lower.strip_suffix('m'))
    {
        (n.to_string(), 1)
    } else {
        (lower.clone(), 1)
    };
    num.trim()
        .parse::<u64>()
        .ok()
        .and_then(|n| n.checked_mul(mult))
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("`{t}` is not a memory size; use e.g. 16G or 16384M"))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum BootEntry {
    /// Edit the default boot entry.
    Default,
    /// Add a new entry with the passthrough parameters; the default stays as it was.
    Separate,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// Show the diff of every file and the commands, change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Do not ask before changing the host.
    #[arg(long)]
    pub yes: bool,
    #[arg(long, value_enum, default_value = "default")]
    pub boot_entry: BootEntry,
    /// Write the files but do not run update-grub, update-initramfs and the like.
    #[arg(long)]
    pub no_commands: bool,
    /// Keyboard and mouse the VM takes by evdev (`auto` or paths, as for `domain`): with
    /// libvirt before 7.4 they go into qemu.conf's cgroup_device_acl.
    #[arg(long, num_args = 1..)]
    pub evdev: Vec<String>,
    /// Looking Glass at this resolution (e.g. 2560x1440), as for `domain`: the host's files
    /// for its region (with kvmfr: static_size_mb, modules-load.d, the udev rule and
    /// qemu.conf's cgroup_device_acl; with /dev/shm: the tmpfiles rule).
    #[arg(long, value_name = "WxH")]
    pub looking_glass: Option<vfioctl_core::looking_glass::Resolution>,
    /// `kvmfr`, `shm` or `auto` (kvmfr when the host's kernel has the module).
    #[arg(long, value_enum, default_value = "auto", requires = "looking_glass")]
    pub looking_glass_memory: LookingGlassMemory,
    /// The user who runs the Looking Glass client (default: the user who ran sudo).
    #[arg(long, value_name = "NAME", requires = "looking_glass")]
    pub looking_glass_user: Option<String>,
}

#[derive(Debug, clap::Args)]
pub struct RollbackArgs {
    /// Return to the state before this apply (its journal id, from `vfioctl history`),
    /// undoing it and every later one.
    #[arg(conflicts_with = "all")]
    pub id: Option<String>,
    /// Undo every apply still in effect: the host as before the first.
    #[arg(long)]
    pub all: bool,
    /// Restore files changed since the apply too, keeping each as FILE.vfioctl-kept-ID.
    #[arg(long)]
    pub force: bool,
    /// Do not ask.
    #[arg(long)]
    pub yes: bool,
    /// Restore the files but do not rerun the regeneration commands.
    #[arg(long)]
    pub no_commands: bool,
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OsArg {
    Win10,
    Win11,
    Linux,
}

#[derive(Debug, clap::Args)]
pub struct DomainArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// The domain's name (default with --from/--from-libvirt: the domain's own).
    #[arg(long, required_unless_present_any = ["from", "from_libvirt"])]
    pub name: Option<String>,
    /// Patch this domain XML file instead of writing a new domain: everything in it is
    /// kept, only what the plan decides changes, and the diff is shown.
    #[arg(long, value_name = "FILE", conflicts_with = "from_libvirt")]
    pub from: Option<PathBuf>,
    /// Patch the inactive definition of this libvirt domain.
    #[arg(long, value_name = "NAME")]
    pub from_libvirt: Option<String>,
    /// Define the domain in libvirt (through its API).
    #[arg(long)]
    pub define: bool,
    /// libvirt connection URI for --define, --from-libvirt and domain capabilities.
    /// (default qemu:///system). With it, or on the live host when libvirtd answers, the
    /// Hyper-V enlightenments follow libvirt's domain capabilities.
    #[arg(long, value_name = "URI", env = "LIBVIRT_DEFAULT_URI")]
    pub connect: Option<String>,
    /// Guest OS: Windows gets Hyper-V enlightenments; win11 secure boot and a TPM.
    #[arg(long, value_enum, default_value = "win10")]
    pub os: OsArg,
    /// Keyboard and mouse by evdev: `auto` (the -event-kbd and -event-mouse links of
    /// /dev/input/by-id) or paths.
    #[arg(long, num_args = 1..)]
    pub evdev: Vec<String>,
    /// System disk: a stable block device path (/dev/disk/by-id/…) or an image file.
    #[arg(long)]
    pub disk: Option<String>,
    /// Create the --disk image with this size (e.g. 128G): qcow2 by qemu-img when the
    /// name ends in .qcow2, else a sparse raw file. An existing file is never touched.
    #[arg(long, value_name = "SIZE", requires = "disk")]
    pub disk_size: Option<String>,
    /// Bus of the system disk.
    #[arg(long, value_enum, default_value = "scsi")]
    pub disk_bus: DiskBusArg,
    /// Installer or driver ISOs (e.g. Windows and virtio-win), attached as CD-ROMs.
    #[arg(long)]
    pub iso: Vec<String>,
    /// Network: `default` (libvirt's NAT network), `network:NAME`, `bridge:BR`, `direct:IFACE`.
    #[arg(long)]
    pub network: Option<String>,
    /// A ROM file for the passed GPU (an absolute path on the host), checked as `vfioctl rom
    /// --check` does and added as `<rom file>` to its hostdev.
    #[arg(long, value_name = "FILE")]
    pub rom: Option<String>,
    /// Looking Glass for a guest display of this resolution (e.g. 2560x1440): an IVSHMEM
    /// region of two frames and 10 MiB, rounded up to a power of two.
    #[arg(long, value_name = "WxH")]
    pub looking_glass: Option<vfioctl_core::looking_glass::Resolution>,
    /// Where the Looking Glass region lives: `kvmfr` (the kvmfr module's /dev/kvmfr0),
    /// `shm` (/dev/shm/looking-glass), or `auto`: kvmfr when the host's kernel has the module.
    #[arg(long, value_enum, default_value = "auto", requires = "looking_glass")]
    pub looking_glass_memory: LookingGlassMemory,
    /// Write the XML to this file instead of stdout.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LookingGlassMemory {
    Auto,
    Kvmfr,
    Shm,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DiskBusArg {
    Scsi,
    Sata,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// The domain XML file to audit.
    #[arg(required_unless_present = "libvirt", conflicts_with = "libvirt")]
    pub file: Option<PathBuf>,
    /// Audit the inactive definition of this libvirt domain instead.
    #[arg(long, value_name = "NAME")]
    pub libvirt: Option<String>,
    /// libvirt connection URI for --libvirt and --define (default qemu:///system).
    #[arg(long, value_name = "URI", env = "LIBVIRT_DEFAULT_URI")]
    pub connect: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
    /// Write the corrected domain (to stdout or --out), with the diff and what is left on stderr.
    #[arg(long)]
    pub fix: bool,
    /// With --fix: the file to write the corrected domain to.
    #[arg(long, requires = "fix")]
    pub out: Option<PathBuf>,
    /// With --fix: define the corrected domain in libvirt.
    #[arg(long, requires = "fix")]
    pub define: bool,
}

#[derive(Debug, clap::Args)]
pub struct VerifyArgs {
    /// Devices to verify (as for `plan`); default: the plan of the last `vfioctl apply`.
    pub devices: Vec<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: Format,
}

#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    #[command(subcommand)]
    pub target: ExportTarget,
}

#[derive(Debug, Subcommand)]
pub enum ExportTarget {
    /// A KubeVirt VirtualMachine for the plan, the patch for the KubeVirt custom resource
    /// (permitted devices, feature gates) and NODES.md (what each node needs).
    Kubevirt(Box<KubevirtArgs>),
}

#[derive(Debug, clap::Args)]
pub struct KubevirtArgs {
    #[command(flatten)]
    pub plan: PlanArgs,
    /// The VirtualMachine's name (a DNS label).
    #[arg(long)]
    pub name: String,
    /// Its namespace (default: kubectl's current one).
    #[arg(long, value_name = "NS")]
    pub namespace: Option<String>,
    /// The PersistentVolumeClaim holding the system disk (default NAME-root).
    #[arg(long, value_name = "CLAIM")]
    pub disk_pvc: Option<String>,
    /// Bus of the system disk.
    #[arg(long, value_enum, default_value = "scsi")]
    pub disk_bus: DiskBusArg,
    /// The domain of the device resource names (PREFIX/VVVV_DDDD).
    #[arg(long, value_name = "DOMAIN", default_value = "vfioctl.io")]
    pub resource_prefix: String,
    /// Guest OS: Windows gets Hyper-V enlightenments; win11 secure boot and a TPM.
    #[arg(long, value_enum, default_value = "win10")]
    pub os: OsArg,
    /// Write vm.yaml, kubevirt-patch.yaml and NODES.md into this directory instead of
    /// printing the VM.
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl HugepagesArg {
    pub fn choice(self) -> HugepageChoice {
        match self {
            HugepagesArg::Auto => HugepageChoice::Auto,
            HugepagesArg::TwoM => HugepageChoice::Size2M,
            HugepagesArg::OneG => HugepageChoice::Size1G,
            HugepagesArg::None => HugepageChoice::None,
        }
    }
}

impl PlanArgs {
    /// The plan these arguments ask for.
    pub fn request(&self) -> Result<Request, CliError> {
        Ok(Request {
            devices: selectors(&self.devices)?,
            vcpus: self.vcpus,
            memory_mib: self.memory,
            hugepages: self.hugepages.choice(),
            bind: self.bind,
            acs_override: self.allow_acs_override,
            force: self.force,
        })
    }
}

/// Device selectors from the command line.
pub fn selectors(args: &[String]) -> Result<Vec<Selector>, CliError> {
    args.iter().map(|s| s.parse::<Selector>()).collect::<Result<Vec<_>, _>>().map_err(CliError::Selector)
}
