//! Facts from `/proc`: the CPU vendor and the running kernel's command line.

pub use vfioctl_core::vendor::CpuVendor;

use crate::root::HostRoot;

/// The CPU vendor of the host, if `/proc/cpuinfo` says.
pub fn cpu_vendor(root: &HostRoot) -> Option<CpuVendor> {
    root.read_optional("/proc/cpuinfo").ok().flatten().as_deref().and_then(CpuVendor::from_cpuinfo)
}

/// The running kernel's command line, if readable.
pub fn cmdline(root: &HostRoot) -> Option<String> {
    root.read_optional("/proc/cmdline").ok().flatten().map(|s| s.trim().to_string())
}
