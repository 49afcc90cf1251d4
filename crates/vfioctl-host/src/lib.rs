//! # vfioctl-host: reading a host
//!
//! Everything vfioctl knows about a machine is read here, through one [`root::HostRoot`]:
//! the PCI devices and IOMMU groups from `/sys`, the CPU topology from
//! `/sys/devices/system`, and later kernel, boot and module configuration from `/proc`
//! and `/etc`. Pointing the root at a snapshot or a fixture tree reads that instead.

pub mod root;
