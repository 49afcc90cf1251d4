//! The checks over whole [`Facts`] values.

use std::collections::{BTreeMap, BTreeSet};

use super::*;
use crate::cmdline::Cmdline;
use crate::iomem;
use crate::vendor::CpuVendor;

fn healthy() -> Facts {
    let mut f = Facts::unknown(true, CpuVendor::Amd);
    f.cpu_flags = Some(["svm".to_string()].into_iter().collect());
    f.nodes =
        DeviceNodes { kvm_exists: Some(true), kvm_accessible: Some(true), vhost_net: Some(true), tun: Some(true) };
    f.cgroup_controllers =
        Some(["cpu", "cpuacct", "cpuset", "memory", "devices", "blkio"].iter().map(|s| s.to_string()).collect());
    f.acpi_ivrs = true;
    f.iommu_groups = Some(20);
    f.cmdline = Some(Cmdline::parse("root=/dev/sda1 amd_iommu=on iommu=pt"));
    f.next_boot =
        Some(NextBoot { source: "/etc/default/grub".into(), cmdline: Cmdline::parse("amd_iommu=on iommu=pt quiet") });
    f.kernel_release = Some("6.1.0-18-amd64".into());
    f.modules_available = Some(
        ["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core", "vfio_virqfd"]
            .iter()
            .map(|s| s.to_string())
            .collect(),
    );
    f.module_params.insert(
        "kvm".into(),
        [("ignore_msrs".to_string(), "Y".to_string()), ("report_ignored_msrs".into(), "N".into())].into(),
    );
    f.module_params
        .insert("kvm_amd".into(), [("npt".to_string(), "1".to_string()), ("avic".into(), "1".into())].into());
    f.ovmf = vec!["/usr/share/OVMF/OVMF_CODE_4M.fd".into()];
    f.qemu = Some(Program { path: "/usr/bin/qemu-system-x86_64".into(), version: Some("7.2.0".into()) });
    f.libvirt = Some(Program { path: "/usr/sbin/libvirtd".into(), version: None });
    f.libvirt_reachable = Some(true);
    f
}

#[track_caller]
fn by_id<'a>(c: &'a [Check], id: &str) -> &'a Check {
    declared(c);
    c.iter()
        .find(|x| x.id == id)
        .unwrap_or_else(|| panic!("no {id} in {:?}", c.iter().map(|x| &x.id).collect::<Vec<_>>()))
}

#[test]
fn a_healthy_host_passes_everything_but_notes() {
    let c = run(&healthy(), None);
    assert!(c.iter().all(|x| matches!(x.status, Status::Pass | Status::Note)), "{c:#?}");
    assert!(!any_failed(&c));
}

#[test]
fn no_virtualization_flags_skip_kvm_and_iommu_like_virt_host_validate() {
    let mut f = healthy();
    f.cpu_flags = Some(BTreeSet::new());
    let c = run(&f, None);
    assert_eq!(by_id(&c, "cpu.virtualization").status, Status::Fail);
    assert!(c.iter().all(|x| x.id != "kvm.device" && x.id != "iommu.kernel"));
    assert_eq!(by_id(&c, "iommu.acpi").message, "Unknown if this platform has IOMMU support");
}

/// Regression: inside a virtual machine, `check` told the user to turn the IOMMU on in
/// the firmware setup; the VM's IOMMU is the hypervisor's to give.
#[test]
fn inside_a_vm_the_remedy_is_the_hypervisors_iommu() {
    let mut f = healthy();
    f.iommu_groups = Some(0);
    f.acpi_ivrs = false;
    let firmware = by_id(&run(&f, None), "cmdline.iommu").remedy.clone().unwrap_or_default();
    assert!(firmware.starts_with("enable AMD-Vi"), "{firmware}");
    f.virtual_machine = Some("QEMU Standard PC (Q35 + ICH9, 2009)".into());
    let vm = by_id(&run(&f, None), "cmdline.iommu").remedy.clone().unwrap_or_default();
    assert!(vm.starts_with("this host is a virtual machine (QEMU Standard PC (Q35 + ICH9, 2009))"), "{vm}");
    assert!(vm.contains("-device intel-iommu") && !vm.contains("enable AMD-Vi"), "{vm}");
}

#[test]
fn iommu_off_in_the_kernel() {
    let mut f = healthy();
    f.iommu_groups = Some(0);
    f.vendor = CpuVendor::Intel;
    f.cpu_flags = Some(["vmx".to_string()].into_iter().collect());
    f.acpi_dmar = true;
    f.cmdline = Some(Cmdline::parse("root=/dev/sda1 quiet"));
    let c = run(&f, None);
    assert_eq!(by_id(&c, "iommu.kernel").status, Status::Warn);
    assert!(by_id(&c, "iommu.kernel").message.contains("intel_iommu=on"));
    let i = by_id(&c, "cmdline.iommu");
    assert_eq!(i.status, Status::Fail);
    assert!(i.remedy.as_deref().unwrap_or("").contains("intel_iommu=on"));
    f.cmdline = Some(Cmdline::parse("intel_iommu=off"));
    assert!(by_id(&run(&f, None), "cmdline.iommu").remedy.as_deref().unwrap_or("").contains("remove intel_iommu=off"));
}

#[test]
fn next_boot_drift_is_reported_both_ways() {
    let mut f = healthy();
    f.next_boot = Some(NextBoot {
        source: "/etc/default/grub".into(),
        cmdline: Cmdline::parse("amd_iommu=on iommu=pt vfio-pci.ids=10de:1b06"),
    });
    f.cmdline = Some(Cmdline::parse("amd_iommu=on video=efifb:off"));
    let n = by_id(&run(&f, None), "cmdline.next_boot").clone();
    assert_eq!(n.status, Status::Warn);
    assert!(n.message.contains("not active yet: iommu=pt vfio_pci.ids=10de:1b06"), "{}", n.message);
    assert!(n.message.contains("missing from /etc/default/grub: video=efifb:off"), "{}", n.message);
}

#[test]
fn vfio_modules_depend_on_the_kernel_version() {
    let mut f = healthy();
    f.kernel_release = Some("6.8.0-45-generic".into());
    f.modules_available =
        Some(["vfio", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core"].iter().map(|s| s.to_string()).collect());
    assert_eq!(by_id(&run(&f, None), "vfio.modules").status, Status::Pass);
    f.kernel_release = Some("6.1.0".into());
    let m = by_id(&run(&f, None), "vfio.modules").clone();
    assert_eq!(m.status, Status::Fail);
    assert_eq!(m.message, "missing: vfio_virqfd");
}

/// Regression: a card already on vfio-pci, on a root without a (complete) module list,
/// failed "VFIO modules missing" although the binding proves the modules are there; with
/// no list and no evidence the check is a note, not a failure.
#[test]
fn a_device_on_vfio_pci_proves_the_modules() {
    let mut f = healthy();
    f.kernel_release = Some("6.8.0-45-generic".into());
    f.modules_builtin = None;
    f.modules_available = None;
    assert_eq!(by_id(&run(&f, None), "vfio.modules").status, Status::Note);
    f.vfio_evidence = Some("0000:09:00.0 on vfio-pci now".into());
    let m = by_id(&run(&f, None), "vfio.modules").clone();
    assert_eq!((m.status, m.message.as_str()), (Status::Pass, "0000:09:00.0 on vfio-pci now"));
    f.modules_available = Some(["vfio"].iter().map(|s| s.to_string()).collect());
    let m = by_id(&run(&f, None), "vfio.modules").clone();
    assert_eq!(m.status, Status::Pass);
    assert!(m.message.contains("not listed: vfio_iommu_type1"), "{}", m.message);
}

#[test]
fn kvm_options_and_their_remedies() {
    let mut f = healthy();
    f.module_params.insert("kvm".into(), [("ignore_msrs".to_string(), "N".to_string())].into());
    let c = run(&f, None);
    let m = by_id(&c, "kvm.ignore_msrs");
    assert_eq!(m.status, Status::Warn);
    assert!(m.remedy.as_deref().unwrap_or("").contains("options kvm ignore_msrs=1"));
    f.modprobe.add("options kvm ignore_msrs=1\n");
    assert!(by_id(&run(&f, None), "kvm.ignore_msrs").remedy.as_deref().unwrap_or("").contains("already set"));
}

#[test]
fn a_device_on_its_host_driver_gets_the_missing_steps() {
    use crate::pci::ClassCode;
    let mut gpu = PciDevice::new("0d:00.0".parse().unwrap(), "1002:66af".parse().unwrap(), ClassCode::new(0x030000));
    gpu.driver = Some("amdgpu".into());
    gpu.iommu_group = Some(20);
    gpu.reset_methods = Some(vec![]);
    let devices: BTreeMap<PciAddress, PciDevice> = [(gpu.address, gpu.clone())].into();
    let groups = [IommuGroup { id: 20, devices: vec![gpu.address] }];
    let t = Target { device: &devices[&gpu.address], devices: &devices, groups: &groups };
    let mut f = healthy();
    f.iomem = Some(iomem::parse("e0000000-efffffff : 0000:0d:00.0\n  e0000000-e02fffff : efifb\n"));
    let c = run(&f, Some(&t));
    let fix = by_id(&c, "device.vfio").remedy.clone().unwrap_or_default();
    assert!(fix.contains("vfio-pci.ids=1002:66af") && fix.contains("softdep amdgpu pre: vfio-pci"), "{fix}");
    assert_eq!(by_id(&c, "device.framebuffer").status, Status::Fail);
    assert_eq!(by_id(&c, "device.reset").status, Status::Warn);
    f.cmdline = Some(Cmdline::parse("amd_iommu=on iommu=pt vfio-pci.ids=1002:66af"));
    f.modprobe.add("softdep amdgpu pre: vfio-pci\n");
    let fix = by_id(&run(&f, Some(&t)), "device.vfio").remedy.clone().unwrap_or_default();
    assert!(fix.contains("not in the initramfs"), "{fix}");
    // The initramfs builder's configuration is known (boot::detect reads it): exactly what
    // it lacks, or, when it lacks nothing, the built-in driver.
    f.kernel_release = Some("6.8.0".into());
    f.initramfs_modules = Some(["vfio".to_string()].into());
    let fix = by_id(&run(&f, Some(&t)), "device.vfio").remedy.clone().unwrap_or_default();
    assert!(fix.contains("the initramfs does not load vfio_iommu_type1, vfio_pci_core, vfio_pci"), "{fix}");
    f.initramfs_modules = Some(["vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio_pci"].map(String::from).into());
    let fix = by_id(&run(&f, Some(&t)), "device.vfio").remedy.clone().unwrap_or_default();
    assert!(fix.contains("built into the kernel"), "{fix}");
}

#[test]
fn snapshot_facts_are_notes() {
    let mut f = healthy();
    f.live = false;
    f.nodes = DeviceNodes::default();
    f.libvirt_reachable = None;
    let c = run(&f, None);
    for id in ["kvm.device", "net.vhost", "net.tun", "libvirt.reachable"] {
        assert_eq!(by_id(&c, id).status, Status::Note, "{id}");
        assert_eq!(by_id(&c, id).message, SNAPSHOT);
    }
}

/// Every check comes from a declared rule: its id one of [`RULES`], its area and level
/// those of the rule.
#[track_caller]
fn declared(checks: &[Check]) {
    for c in checks {
        let rule = RULES.iter().find(|r| gives(r, &c.id));
        assert!(rule.is_some_and(|r| r.area == c.area), "{} is no declared rule of area {}", c.id, c.area);
    }
}

#[test]
fn rules_are_unique_and_listed_in_the_readme() {
    let ids: BTreeSet<&str> = RULES.iter().map(|r| r.id).collect();
    assert_eq!(ids.len(), RULES.len());
    let readme = include_str!("../../../../README.md");
    for r in RULES {
        assert!(readme.contains(&format!("`{}`", r.id)), "README does not list {}", r.id);
        assert!(!r.title.is_empty());
    }
}

#[test]
fn every_check_of_a_device_run_is_declared() {
    use crate::pci::ClassCode;
    let mut gpu = PciDevice::new("0d:00.0".parse().unwrap(), "1002:66af".parse().unwrap(), ClassCode::new(0x030000));
    gpu.iommu_group = Some(20);
    let devices: BTreeMap<PciAddress, PciDevice> = [(gpu.address, gpu.clone())].into();
    let groups = [IommuGroup { id: 20, devices: vec![gpu.address] }];
    let t = Target { device: &devices[&gpu.address], devices: &devices, groups: &groups };
    let mut f = healthy();
    f.hugepages = vec![
        HugepagePool { node: Some(0), size_kib: 2048, total: 4, free: 0 },
        HugepagePool { node: None, size_kib: 1048576, total: 1, free: 1 },
    ];
    f.module_params.insert("kvm_amd".into(), [("nested".to_string(), "0".to_string())].into());
    let c = run(&f, Some(&t));
    declared(&c);
    for id in ["cgroup.blkio", "hugepages.node0", "hugepages", "kvm.nested", "device.reset", "vfio.modules"] {
        assert!(c.iter().any(|x| x.id == id), "{id}");
    }
    assert_eq!(by_id(&c, "hugepages.node0").title, "hugepages on NUMA node 0");
    assert_eq!(by_id(&c, "kvm.module").title, "the kvm_amd module is loaded");
    assert_eq!(by_id(&c, "vfio.modules").title, "VFIO modules for kernel 6.1.0-18-amd64");
    assert_eq!(by_id(&c, "device.group").title, "the IOMMU group of 0d:00.0 can be passed");
}
