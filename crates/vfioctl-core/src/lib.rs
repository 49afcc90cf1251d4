//! # vfioctl-core: the pure part of vfioctl
//!
//! PCI passthrough hands a physical device to a virtual machine. The kernel can only
//! isolate devices in units of **IOMMU groups**; every endpoint of a group has to be
//! bound to the `vfio-pci` driver before QEMU may use any of them, while bridges in the
//! group stay with the host. A GPU usually comes with sibling functions (HDMI audio,
//! USB-C) in the same slot. The CPU side matters as much: vCPUs run best on whole host
//! cores (both SMT siblings), on the NUMA node of the device, inside one L3 cache domain
//! (an AMD CCX/CCD).
//!
//! This crate holds the types for those ideas ([`pci::PciAddress`], [`pci::VendorDevice`],
//! [`iommu::IommuGroup`], [`cpuset::CpuSet`], [`topology::Topology`]), parsers for the
//! text the kernel prints in sysfs ([`sysfs_value`]), the PCI id database
//! ([`pci_ids::PciIds`]) and renderers ([`lspci`]). Nothing here touches the file system:
//! `vfioctl-host` reads a host root and hands the values to these functions.
//!
//! libvirt domains are read and written through [`xml`], the lossless XML tree of the
//! leaf crate `vfioctl-xml` (re-exported here): [`domain`] renders a domain from a plan and
//! merges it into a user's file ([`domain::patch`]) without losing their comments or
//! layout, and [`audit`] reads a domain from it, with the line and column of each finding.

pub mod audit;
pub mod check;
pub mod cmdline;
pub mod cpuset;
pub mod domain;
pub mod edit;
pub mod iomem;
pub mod iommu;
pub mod kmod;
pub mod kubevirt;
pub mod looking_glass;
pub mod lspci;
pub mod modprobe;
pub mod pci;
pub mod pci_ids;
pub mod plan;
pub mod reservation;
pub mod rom;
pub mod selector;
pub mod sysfs_value;
pub mod topology;
pub mod units;
pub mod vendor;
pub mod verify;

/// The lossless XML tree, its own leaf crate ([`vfioctl_xml`]); re-exported here so
/// `vfioctl_core::xml::…` is the one path the other crates use.
pub use vfioctl_xml as xml;
