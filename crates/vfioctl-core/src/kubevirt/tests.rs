use serde_json::json;

use super::*;
use crate::domain::hyperv::REQUIRES;
use crate::plan::pinning::{self, tests::shape};
use crate::plan::{CpuRequest, Hugepages, MemoryPlan};

fn device(addr: &str, vendor: &str, device: &str, class: &str) -> PlannedDevice {
    PlannedDevice {
        address: addr.parse().unwrap(),
        vendor_id: vendor.into(),
        device_id: device.into(),
        class: class.into(),
        iommu_group: Some(20),
        driver: Some("amdgpu".into()),
        reason: "asked for".into(),
    }
}

/// The first guide's Threadripper: 8 vCPUs on node 0, 16 GiB on 1 GiB pages, the Radeon VII
/// and its HDMI audio.
fn plan() -> Plan {
    let t = shape(1, 2, 2, 4, 2, true, &[8192]);
    let mut p = Plan::cpu_and_memory(
        pinning::place(&t, &CpuRequest { vcpus: Some(8), node: Some(0) }).unwrap(),
        MemoryPlan {
            mib: 16384,
            hugepages: Some(Hugepages { size_kib: 1 << 20, count: 16, node: Some(0), reserve_at_boot: true }),
            reasons: Vec::new(),
        },
    );
    p.devices = vec![device("0d:00.0", "1002", "66af", "0300"), device("0d:00.1", "1002", "ab20", "0403")];
    p.vfio_ids = vec!["1002:66af".into(), "1002:ab20".into()];
    p.numa_node = Some(0);
    p
}

fn host() -> KubeVirtHost {
    KubeVirtHost {
        vendor: CpuVendor::Amd,
        invtsc: true,
        host_cpus: "0,16".parse().unwrap(),
        efficiency_cpus: CpuSet::new(),
        node_cpus: "0-7,16-23".parse().unwrap(),
        numa_nodes: 2,
    }
}

fn req(os: GuestOs) -> KubeVirtRequest {
    KubeVirtRequest {
        name: "beast".into(),
        namespace: Some("vms".into()),
        disk_pvc: None,
        disk_bus: DiskBus::Scsi,
        resource_prefix: DEFAULT_RESOURCE_PREFIX.into(),
        os,
        apply_command: "vfioctl apply gpu --vcpus 8 --memory 16G".into(),
    }
}

#[test]
fn the_guides_vm() {
    let e = render(&plan(), &host(), &req(GuestOs::Windows10));
    assert_eq!(validate_rules(&e.vm), Vec::<String>::new());
    let d = &e.vm["spec"]["template"]["spec"]["domain"];
    assert_eq!(d["devices"]["gpus"], json!([{"name": "gpu-0d-00-0", "deviceName": "vfioctl.io/1002_66AF"}]));
    assert_eq!(d["devices"]["hostDevices"], json!([{"name": "hostdev-0d-00-1", "deviceName": "vfioctl.io/1002_AB20"}]));
    assert_eq!(
        d["cpu"],
        json!({"sockets": 1, "cores": 4, "threads": 2, "model": "host-passthrough",
               "dedicatedCpuPlacement": true, "isolateEmulatorThread": true})
    );
    assert_eq!(d["memory"], json!({"guest": "16Gi", "hugepages": {"pageSize": "1Gi"}}));
    assert_eq!(d["features"]["kvm"], json!({"hidden": true}));
    assert_eq!(d["clock"]["timer"]["hyperv"], json!({"present": true}));
    assert_eq!(d["clock"]["timer"]["hpet"], json!({"present": false}));
    assert_eq!(d["firmware"], json!({"bootloader": {"efi": {"secureBoot": false}}}));
    assert_eq!(e.vm["metadata"], json!({"name": "beast", "namespace": "vms"}));
    assert_eq!(
        e.vm["spec"]["template"]["spec"]["volumes"],
        json!([{"name": "root", "persistentVolumeClaim": {"claimName": "beast-root"}}])
    );
    // Every enlightenment of the domain, renamed, in the domain's order.
    let names: Vec<&str> = enlightenments(None, None).iter().map(|e| hyperv::kubevirt_name(e.name).unwrap()).collect();
    assert_eq!(e.summary.hyperv, names);
    assert_eq!(d["features"]["hyperv"].as_object().unwrap().len(), names.len());
    assert_eq!(e.summary.exclusive_cpus, 9);
    assert!(e.summary.warnings.is_empty(), "{:?}", e.summary.warnings);

    assert_eq!(
        e.kubevirt_patch,
        json!({"spec": {"configuration": {
            "permittedHostDevices": {"pciHostDevices": [
                {"pciVendorSelector": "1002:66AF", "resourceName": "vfioctl.io/1002_66AF"},
                {"pciVendorSelector": "1002:AB20", "resourceName": "vfioctl.io/1002_AB20"}]},
            "developerConfiguration": {"featureGates": ["HostDevices", "CPUManager"]}}}})
    );
}

#[test]
fn a_lone_gpu_needs_no_host_devices_gate_and_linux_no_hyperv() {
    let mut p = plan();
    p.devices.truncate(1);
    let e = render(&p, &host(), &req(GuestOs::Linux));
    let d = &e.vm["spec"]["template"]["spec"]["domain"];
    assert!(d["devices"].get("hostDevices").is_none(), "no empty list: the webhook would want the gate");
    assert_eq!(e.summary.feature_gates, ["CPUManager"]);
    assert!(d["features"].get("hyperv").is_none() && d["clock"]["timer"].get("hyperv").is_none());
    assert!(e.summary.hyperv.is_empty());
    assert!(validate_rules(&e.vm).is_empty());
}

#[test]
fn windows_11_gets_secure_boot_smm_and_a_tpm() {
    let e = render(&plan(), &host(), &req(GuestOs::Windows11));
    let d = &e.vm["spec"]["template"]["spec"]["domain"];
    assert_eq!(d["firmware"]["bootloader"]["efi"], json!({"secureBoot": true, "persistent": true}));
    assert_eq!(d["features"]["smm"], json!({"enabled": true}));
    assert_eq!(d["devices"]["tpm"], json!({"persistent": true}));
    assert!(validate_rules(&e.vm).is_empty());
    assert!(e.nodes_md.contains("vmStateStorageClass"));
}

#[test]
fn the_domains_dependencies_hold_in_the_vm() {
    let e = render(&plan(), &host(), &req(GuestOs::Windows10));
    let hv = &e.vm["spec"]["template"]["spec"]["domain"]["features"]["hyperv"];
    for &(needs, dep) in REQUIRES {
        let (n, d) = (hyperv::kubevirt_name(needs).unwrap(), hyperv::kubevirt_name(dep).unwrap());
        assert!(hv.get(n).is_some() && hv.get(d).is_some(), "{n} / {d}");
    }
    // And the webhook's own list is the domain's, renamed, plus evmcs → vapic.
    for &(needs, dep) in REQUIRES {
        let pair = (hyperv::kubevirt_name(needs).unwrap(), hyperv::kubevirt_name(dep).unwrap());
        assert!(rules::HYPERV_REQUIRES.contains(&pair), "{pair:?}");
    }
}

#[test]
fn memory_off_the_page_size_is_caught() {
    let mut p = plan();
    p.memory = MemoryPlan {
        mib: 1025,
        hugepages: Some(Hugepages { size_kib: 2048, count: 513, node: Some(0), reserve_at_boot: false }),
        reasons: Vec::new(),
    };
    let e = render(&p, &host(), &req(GuestOs::Windows10));
    let d = &e.vm["spec"]["template"]["spec"]["domain"];
    assert_eq!(d["memory"], json!({"guest": "1025Mi", "hugepages": {"pageSize": "2Mi"}}));
    let found = validate_rules(&e.vm);
    assert_eq!(found.len(), 1, "{found:?}");
    assert!(found[0].contains("not a multiple of the hugepage size"), "{found:?}");
    // No hugepages: no page size, and nothing to check.
    p.memory.hugepages = None;
    p.memory.mib = 8192;
    let e = render(&p, &host(), &req(GuestOs::Windows10));
    assert!(e.vm["spec"]["template"]["spec"]["domain"]["memory"].get("hugepages").is_none());
    assert!(validate_rules(&e.vm).is_empty());
    assert!(e.nodes_md.contains("No hugepages"));
}

#[test]
fn devices_of_one_model_share_a_resource_and_other_domains_show() {
    let mut p = plan();
    p.devices.push(device("0001:0e:00.0", "1002", "66af", "0300"));
    let e = render(&p, &host(), &req(GuestOs::Windows10));
    let gpus = &e.vm["spec"]["template"]["spec"]["domain"]["devices"]["gpus"];
    assert_eq!(gpus[1], json!({"name": "gpu-0001-0e-00-0", "deviceName": "vfioctl.io/1002_66AF"}));
    assert_eq!(e.summary.permitted.len(), 2, "one entry per id");
    let other = KubeVirtRequest { resource_prefix: "gpus.example.com".into(), ..req(GuestOs::Windows10) };
    let e = render(&p, &host(), &other);
    assert_eq!(e.summary.permitted[0].resource, "gpus.example.com/1002_66AF");
}

#[test]
fn too_few_cpus_for_dedicated_placement_is_a_warning() {
    let h = KubeVirtHost { node_cpus: "0-8,16".parse().unwrap(), ..host() };
    let e = render(&plan(), &h, &req(GuestOs::Windows10));
    assert!(
        e.summary.warnings.iter().any(|w| w.contains("8 CPUs for pods on NUMA node 0")),
        "{:?}",
        e.summary.warnings
    );
    assert!(e.nodes_md.contains("## Warnings"));
}

#[test]
fn nodes_md_is_the_plans() {
    let e = render(&plan(), &host(), &req(GuestOs::Windows10));
    let md = &e.nodes_md;
    for want in [
        "# Nodes for the KubeVirt VM `beast`",
        "    vfioctl apply gpu --vcpus 8 --memory 16G\n",
        "0000:0d:00.0 [1002:66af], 0000:0d:00.1 [1002:ab20]",
        "`vfio-pci.ids=1002:66af,1002:ab20`",
        "16 pages of 1 GiB, reserved when the kernel boots",
        "cpuManagerPolicy: static",
        "reservedSystemCPUs: \"0,16\"",
        "topologyManagerPolicy: single-numa-node",
        "9 CPUs",
        "rm /var/lib/kubelet/cpu_manager_state",
        "kubectl patch kubevirt kubevirt -n kubevirt --type merge --patch-file kubevirt-patch.yaml",
        "JSON merge patch",
        "HostDevices and CPUManager",
        "`vfioctl.io/1002_66AF`, `vfioctl.io/1002_AB20`, `hugepages-1Gi`",
        "PersistentVolumeClaim `beast-root` in namespace `vms`",
        "virtctl start beast",
        "vCPUs on host CPUs 4-7,20-23",
    ] {
        assert!(md.contains(want), "missing {want:?} in\n{md}");
    }
    assert!(!md.contains("## Warnings") && md.ends_with('\n') && !md.ends_with("\n\n"));
    // A one-node hybrid host: no NUMA policies, efficiency cores reserved too.
    let h = KubeVirtHost {
        vendor: CpuVendor::Intel,
        efficiency_cpus: "16-19".parse().unwrap(),
        node_cpus: "0-19".parse().unwrap(),
        host_cpus: "0,1".parse().unwrap(),
        numa_nodes: 1,
        ..host()
    };
    let e = render(&plan(), &h, &req(GuestOs::Windows10));
    assert!(e.nodes_md.contains("reservedSystemCPUs: \"0-1,16-19\""), "{}", e.nodes_md);
    assert!(e.nodes_md.contains("efficiency cores 16-19") && !e.nodes_md.contains("topologyManagerPolicy"));
    assert!(!e.summary.not_carried.iter().any(|n| n.contains("topoext")), "Intel: no topoext");
}

#[test]
fn names_are_checked() {
    assert!(check_request(&req(GuestOs::Linux)).is_empty());
    let req = |os| KubeVirtRequest { disk_pvc: Some("root-disk".into()), ..req(os) };
    for (r, want) in [
        (KubeVirtRequest { name: "Beast".into(), ..req(GuestOs::Linux) }, "--name Beast"),
        (KubeVirtRequest { name: "-x".into(), ..req(GuestOs::Linux) }, "--name -x"),
        (KubeVirtRequest { name: "a.b".into(), ..req(GuestOs::Linux) }, "--name a.b"),
        (KubeVirtRequest { namespace: Some("a_b".into()), ..req(GuestOs::Linux) }, "--namespace a_b"),
        (KubeVirtRequest { disk_pvc: Some("Disk".into()), ..req(GuestOs::Linux) }, "--disk-pvc Disk"),
        (KubeVirtRequest { resource_prefix: "vfioctl".into(), ..req(GuestOs::Linux) }, "--resource-prefix vfioctl"),
        (KubeVirtRequest { resource_prefix: "a/b.io".into(), ..req(GuestOs::Linux) }, "--resource-prefix a/b.io"),
    ] {
        let found = check_request(&r);
        assert!(found.len() == 1 && found[0].starts_with(want), "{found:?}");
    }
    assert!(check_request(&KubeVirtRequest { disk_pvc: Some("win.disk-1".into()), ..req(GuestOs::Linux) }).is_empty());
    let long = KubeVirtRequest { name: "x".repeat(64), disk_pvc: None, ..req(GuestOs::Linux) };
    assert_eq!(check_request(&long).len(), 2, "the name, and NAME-root: a label of a subdomain is at most 63 too");
}

#[test]
fn the_yaml_reads_back_as_the_objects() {
    for os in [GuestOs::Windows10, GuestOs::Windows11, GuestOs::Linux] {
        let e = render(&plan(), &host(), &req(os));
        for v in [&e.vm, &e.kubevirt_patch] {
            let text = yaml::to_yaml(v);
            let docs = yaml_rust2::YamlLoader::load_from_str(&text).unwrap();
            assert_eq!(docs.len(), 1);
            assert_eq!(&to_json(&docs[0]), v, "{text}");
        }
    }
}

/// A YAML value as JSON (integers, booleans, strings, maps, lists).
pub(crate) fn to_json(y: &yaml_rust2::Yaml) -> Value {
    use yaml_rust2::Yaml;
    match y {
        Yaml::Hash(h) => {
            Value::Object(h.iter().map(|(k, v)| (k.as_str().expect("string keys").to_string(), to_json(v))).collect())
        }
        Yaml::Array(a) => Value::Array(a.iter().map(to_json).collect()),
        Yaml::String(s) => json!(s),
        Yaml::Integer(i) => json!(i),
        Yaml::Boolean(b) => json!(b),
        Yaml::Null => Value::Null,
        other => panic!("unexpected YAML value {other:?}"),
    }
}
