//! Command-line arguments.

use std::path::PathBuf;

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Pack what vfioctl reads from this host into a directory or .tar.gz for a bug report.
    Snapshot(SnapshotArgs),
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
