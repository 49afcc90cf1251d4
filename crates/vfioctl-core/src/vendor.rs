//! The CPU vendor, which decides the IOMMU parameter, the KVM module and its options.

/// CPU vendor, from `vendor_id` in `/proc/cpuinfo`.
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
    /// default when the firmware enables them; Intel's only on kernels built with
    /// CONFIG_INTEL_IOMMU_DEFAULT_ON.
    pub fn iommu_parameter(self) -> &'static str {
        match self {
            CpuVendor::Amd => "amd_iommu=on",
            CpuVendor::Intel | CpuVendor::Other => "intel_iommu=on",
        }
    }

    /// How to turn the IOMMU on where it is off: in the firmware setup, or, inside a
    /// virtual machine (`vm`: the hypervisor's name), in the hypervisor's settings for it.
    pub fn enable_iommu(self, vm: Option<&str>) -> String {
        match vm {
            Some(hv) => format!(
                "this host is a virtual machine ({hv}): its IOMMU is a virtual one the hypervisor must give it (QEMU: -machine q35,kernel-irqchip=split -device intel-iommu,intremap=on,caching-mode=on; libvirt: <iommu model='intel'><driver intremap='on' caching_mode='on'/></iommu> under <devices>, with <ioapic driver='qemu'/> under <features>; VMware: \"Enable IOMMU\" in the VM's CPU settings), not the firmware setup"
            ),
            None => format!("enable {} in the firmware (BIOS/UEFI) setup", self.firmware_setting()),
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

    /// The vendor's KVM module (`kvm_amd`, `kvm_intel`).
    pub fn kvm_module(self) -> Option<&'static str> {
        match self {
            CpuVendor::Amd => Some("kvm_amd"),
            CpuVendor::Intel => Some("kvm_intel"),
            CpuVendor::Other => None,
        }
    }
}

/// The `flags` of the first CPU in `/proc/cpuinfo`.
pub fn cpu_flags(cpuinfo: &str) -> Vec<String> {
    cpuinfo
        .lines()
        .find(|l| l.starts_with("flags"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, f)| f.split_whitespace().map(str::to_string).collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vendor_and_flags_from_cpuinfo() {
        let info = "processor\t: 0\nvendor_id\t: AuthenticAMD\nflags\t\t: fpu vme svm sev\n";
        assert_eq!(CpuVendor::from_cpuinfo(info), Some(CpuVendor::Amd));
        assert_eq!(CpuVendor::from_cpuinfo("vendor_id : GenuineIntel"), Some(CpuVendor::Intel));
        assert_eq!(CpuVendor::from_cpuinfo("nothing"), None);
        assert_eq!(cpu_flags(info), ["fpu", "vme", "svm", "sev"]);
        assert!(cpu_flags("").is_empty());
        assert_eq!(CpuVendor::Amd.kvm_module(), Some("kvm_amd"));
    }
}
