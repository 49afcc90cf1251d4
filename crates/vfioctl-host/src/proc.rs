//! Facts from `/proc`: the CPU vendor and the running kernel's command line.

use crate::root::HostRoot;

/// The CPU vendor, from `vendor_id` in `/proc/cpuinfo`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuVendor {
    Amd,
    Intel,
    Other,
}

impl CpuVendor {
    /// Parses `/proc/cpuinfo` text.
    pub fn from_cpuinfo(text: &str) -> Option<CpuVendor> {
        let line = text.lines().find(|l| l.starts_with("vendor_id"))?;
        let value = line.split_once(':')?.1.trim();
        Some(match value {
            "AuthenticAMD" | "HygonGenuine" => CpuVendor::Amd,
            "GenuineIntel" => CpuVendor::Intel,
            _ => CpuVendor::Other,
        })
    }

    /// The kernel parameter that turns the IOMMU on for this vendor. AMD IOMMUs are on by
    /// default when the firmware enables them; Intel's are on by default only on some
    /// distributions' kernels (CONFIG_INTEL_IOMMU_DEFAULT_ON).
    pub fn iommu_parameter(self) -> &'static str {
        match self {
            CpuVendor::Amd => "amd_iommu=on",
            CpuVendor::Intel | CpuVendor::Other => "intel_iommu=on",
        }
    }

    /// What the firmware setting is called.
    pub fn firmware_setting(self) -> &'static str {
        match self {
            CpuVendor::Amd => "AMD-Vi / IOMMU (and SVM)",
            CpuVendor::Intel => "VT-d (and VT-x)",
            CpuVendor::Other => "the IOMMU (VT-d or AMD-Vi)",
        }
    }
}

/// The CPU vendor of the host, if `/proc/cpuinfo` says.
pub fn cpu_vendor(root: &HostRoot) -> Option<CpuVendor> {
    root.read_optional("/proc/cpuinfo").ok().flatten().as_deref().and_then(CpuVendor::from_cpuinfo)
}

/// The running kernel's command line, if readable.
pub fn cmdline(root: &HostRoot) -> Option<String> {
    root.read_optional("/proc/cmdline").ok().flatten().map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_from_cpuinfo() {
        assert_eq!(CpuVendor::from_cpuinfo("processor\t: 0\nvendor_id\t: AuthenticAMD\n"), Some(CpuVendor::Amd));
        assert_eq!(CpuVendor::from_cpuinfo("vendor_id : GenuineIntel"), Some(CpuVendor::Intel));
        assert_eq!(CpuVendor::from_cpuinfo("nothing"), None);
        assert_eq!(CpuVendor::Amd.iommu_parameter(), "amd_iommu=on");
    }
}
