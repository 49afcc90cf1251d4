//! What the kernel command line, modprobe.d and the initramfs need for the plan.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cmdline::{Cmdline, Param};
use crate::pci::{PciAddress, VendorDevice};
use crate::reservation::Needs;
use crate::vendor::CpuVendor;

use super::memory::MemoryPlan;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct CmdlineChange {
    pub add: Vec<String>,
    pub remove: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigFile {
    pub path: String,
    pub content: String,
}

/// What the kernel side needs to know about the host.
#[derive(Debug, Clone)]
pub struct KernelHost<'a> {
    pub vendor: CpuVendor,
    pub kernel: Option<(u32, u32)>,
    /// The command line that will be edited (the next boot's, else the running one).
    pub base: Cmdline,
    /// The running kernel's command line.
    pub running: Option<&'a Cmdline>,
    pub iommu_active: bool,
    /// The next kernels turn the IOMMU on without a parameter (see `PlanHost`).
    pub iommu_on_by_default: bool,
    pub multi_node: bool,
    /// Modules that claim each passed device on the host (for softdeps).
    pub host_modules: &'a BTreeMap<PciAddress, Vec<String>>,
    /// Boot framebuffers inside passed devices' memory.
    pub framebuffers: Vec<String>,
    /// Ids of devices that must not be reserved (mounted storage, boot GPU), with the device.
    pub protected_ids: BTreeMap<VendorDevice, String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KernelPlan {
    pub kernel_cmdline: CmdlineChange,
    pub modprobe: Vec<ConfigFile>,
    pub initramfs_modules: Vec<String>,
    #[serde(skip)]
    pub reasons: Vec<String>,
    #[serde(skip)]
    pub warnings: Vec<String>,
}

/// Plans the boot configuration for passing `ids` (and `vga` when a VGA device goes).
pub fn plan(
    host: &KernelHost<'_>,
    ids: &[VendorDevice],
    addresses: &[PciAddress],
    vga: bool,
    memory: &MemoryPlan,
    passed: &[PciAddress],
) -> KernelPlan {
    let base = &host.base;
    let mut add = Vec::new();
    let mut remove = Vec::new();
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();
    let keep_param = |p: &Param| p.to_string();

    // The IOMMU.
    for p in base.params.iter().filter(|p| {
        (p.name_is("iommu") || p.name_is("intel_iommu") || p.name_is("amd_iommu")) && p.value.as_deref() == Some("off")
    }) {
        remove.push(keep_param(p));
    }
    let param = host.vendor.iommu_parameter();
    let (pname, pval) = param.split_once('=').unwrap_or((param, "on"));
    let running_has = host.running.is_some_and(|r| r.has_value(pname, pval));
    if !base.has_value(pname, pval) && (!host.iommu_active || running_has || !host.iommu_on_by_default) {
        add.push(param.to_string());
        reasons.push(if !host.iommu_active {
            format!("{param}: the IOMMU is not on yet")
        } else if running_has {
            format!("{param}: the running kernel has it, the next boot would not")
        } else {
            format!("{param}: the IOMMU is on by this kernel's build default, which the next kernel need not share (its /boot/config does not say CONFIG_INTEL_IOMMU_DEFAULT_ON=y)")
        });
    }
    if !base.has_value("iommu", "pt") {
        add.push("iommu=pt".into());
        reasons.push("iommu=pt: the host's own devices skip IOMMU translation".into());
    }

    // vfio-pci.ids: the planned ids plus older ones that are still safe.
    let old: Vec<&Param> =
        base.params.iter().filter(|p| p.name_is("vfio-pci.ids") || p.name_is("vfio_pci.ids")).collect();
    let mut merged: Vec<String> = Vec::new();
    for p in &old {
        for id in p.value.as_deref().unwrap_or("").split(',').filter(|s| !s.is_empty()) {
            match id.parse::<VendorDevice>().ok().and_then(|v| host.protected_ids.get(&v)) {
                Some(what) => {
                    warnings.push(format!("dropping {id} from the existing vfio-pci.ids: it would also take {what}"))
                }
                None => {
                    if !merged.iter().any(|m| m == id) {
                        merged.push(id.to_string());
                    }
                }
            }
        }
    }
    for id in ids {
        let s = id.to_string();
        if !merged.contains(&s) {
            merged.push(s);
        }
    }
    let new_param = format!("vfio-pci.ids={}", merged.join(","));
    let unchanged = old.len() == 1 && old[0].to_string() == new_param;
    if !merged.is_empty() && !unchanged {
        for p in &old {
            remove.push(keep_param(p));
        }
        add.push(new_param);
        reasons.push("vfio-pci.ids: vfio-pci claims the devices by id before their host drivers".into());
    }

    // Hugepages reserved at boot.
    if let Some(h) = memory.hugepages.as_ref().filter(|h| h.reserve_at_boot) {
        for p in base
            .params
            .iter()
            .filter(|p| p.name_is("hugepages") || p.name_is("hugepagesz") || p.name_is("default_hugepagesz"))
        {
            remove.push(keep_param(p));
        }
        let size = if h.size_kib == 1 << 20 { "1G" } else { "2M" };
        add.push(format!("default_hugepagesz={size}"));
        add.push(format!("hugepagesz={size}"));
        match (h.node, host.multi_node, host.kernel) {
            (Some(n), true, Some(v)) if v >= (5, 12) => add.push(format!("hugepages={n}:{}", h.count)),
            (_, true, _) => {
                add.push(format!("hugepages={}", h.count));
                warnings.push(
                    "this kernel cannot reserve boot-time hugepages on one node (hugepages=N:COUNT needs Linux 5.12): they are spread over all nodes"
                        .into(),
                );
            }
            _ => add.push(format!("hugepages={}", h.count)),
        }
    }

    // A boot-time reservation the plan does not use (its pages are allocated when the guest
    // starts, or it uses none): the trio an earlier plan (or a guide) wrote would keep that
    // memory from the host for good, and `default_hugepagesz` would change the size the
    // domain's <hugepages/> takes. Removed, so that applying this plan after another leaves
    // what applying it alone would.
    if !memory.hugepages.as_ref().is_some_and(|h| h.reserve_at_boot) {
        let named = |n: &str| base.params.iter().filter(|p| p.name_is(n)).collect::<Vec<_>>();
        let (default, size, count) = (named("default_hugepagesz"), named("hugepagesz"), named("hugepages"));
        if !default.is_empty() && !size.is_empty() && !count.is_empty() {
            for p in default.iter().chain(&size).chain(&count) {
                remove.push(keep_param(p));
            }
            reasons.push(
                "default_hugepagesz, hugepagesz, hugepages: this plan reserves no hugepages at boot, and that reservation would hold the memory from the host for good (keep it with --hugepages 1G)"
                    .into(),
            );
        }
    }

    // Boot framebuffers in a passed GPU's memory.
    if host.framebuffers.iter().any(|f| f == "efifb") && !base.fb_off("efifb") {
        add.push("video=efifb:off".into());
        reasons.push("video=efifb:off: efifb holds part of the GPU's memory".into());
    } else if host.framebuffers.iter().any(|f| f == "vesafb") && !base.fb_off("vesafb") {
        add.push("video=vesafb:off".into());
    } else if host.framebuffers.iter().any(|f| f != "efifb" && f != "vesafb")
        && !base.has_value("initcall_blacklist", "sysfb_init")
    {
        add.push("initcall_blacklist=sysfb_init".into());
        reasons.push("initcall_blacklist=sysfb_init: a simpledrm/sysfb framebuffer holds the GPU's memory".into());
    }
    // A parameter both removed (as the host has it) and added (as the plan wants it) is
    // already right: neither, so the plan is a fixed point of its own result.
    let kept: Vec<String> = add.iter().filter(|a| remove.contains(a)).cloned().collect();
    add.retain(|a| !kept.contains(a));
    remove.retain(|r| !kept.contains(r));

    // modprobe.d: the ids, and vfio-pci before the passed devices' host drivers.
    let needs = Needs::new(
        ids.iter().copied(),
        host.host_modules.iter().filter(|(a, _)| passed.contains(a)).flat_map(|(_, m)| m.iter().map(String::as_str)),
        host.kernel,
    )
    .by_address(
        addresses,
        host.host_modules.iter().filter(|(a, _)| addresses.contains(a)).flat_map(|(_, m)| m.iter().map(String::as_str)),
    );
    let mut vfio = format!(
        "# Written by vfioctl: reserve {} for vfio-pci.\n",
        passed.iter().map(|a| a.to_string()).collect::<Vec<_>>().join(", ")
    );
    if !needs.ids.is_empty() {
        vfio.push_str(&format!(
            "options vfio-pci ids={}{}\n",
            needs.ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(","),
            if vga { " disable_vga=1" } else { "" }
        ));
    } else if vga {
        vfio.push_str("options vfio-pci disable_vga=1\n");
    }
    for line in needs.install_lines() {
        vfio.push_str(&line);
        vfio.push('\n');
    }
    if !needs.addresses.is_empty() {
        reasons.push(format!(
            "install vfio_pci{}: {} go to vfio-pci by address (driver_override) before any driver can claim them",
            needs.address_drivers.iter().map(|d| format!(", install {d}")).collect::<String>(),
            needs.addresses.iter().map(|a| a.short()).collect::<Vec<_>>().join(", ")
        ));
    }
    for line in needs.softdep_lines() {
        vfio.push_str(&line);
        vfio.push('\n');
    }
    if !needs.drivers.is_empty() {
        reasons.push(format!(
            "softdep: vfio-pci loads before {}, the passed devices' host drivers",
            needs.drivers.join(", ")
        ));
    }
    let kvm = "# Written by vfioctl: guests touching unknown MSRs get no exception, and the log stays quiet.\n\
               options kvm ignore_msrs=1 report_ignored_msrs=0\n"
        .to_string();
    let modprobe = vec![
        ConfigFile { path: "/etc/modprobe.d/vfio.conf".into(), content: vfio },
        ConfigFile { path: "/etc/modprobe.d/kvm.conf".into(), content: kvm },
    ];

    // Early modules, in load order.
    let initramfs_modules: Vec<String> = needs.modules.iter().map(|m| m.to_string()).collect();
    reasons.push(format!(
        "initramfs loads {} early{}",
        initramfs_modules.join(", "),
        match host.kernel {
            Some(v) if v >= (6, 2) => " (vfio_virqfd is part of vfio since Linux 6.2)",
            None => " (kernel version unknown: the pre-6.2 list)",
            _ => "",
        }
    ));
    KernelPlan { kernel_cmdline: CmdlineChange { add, remove }, modprobe, initramfs_modules, reasons, warnings }
}
