//! The plan as KubeVirt objects: the same passthrough VM `vfioctl domain` writes for libvirt,
//! for a Kubernetes cluster running KubeVirt (`kubevirt.io/v1`).
//!
//! [`render`] is pure: from a [`Plan`], a little about the host ([`KubeVirtHost`]) and the
//! request ([`KubeVirtRequest`]) it builds
//! - a `VirtualMachine`: the passed display devices under `devices.gpus`, every other passed
//!   function under `devices.hostDevices`, each by a resource name made of its ids
//!   (`vfioctl.io/1002_66AF`) that KubeVirt's device plugin offers on every node where the
//!   id is bound to vfio-pci; the plan's cores and threads on dedicated CPUs with the emulator
//!   thread apart; the plan's memory on its hugepage size; the domain's Hyper-V
//!   enlightenments ([`hyperv`]), `kvm.hidden`, clock and timers; EFI; a root disk from a PVC;
//! - a merge patch for the `KubeVirt` custom resource: `permittedHostDevices` for every
//!   passed id and the feature gates the VM needs;
//! - `NODES.md` ([`nodes`]): what every node that may run the VM needs.
//!
//! [`validate_rules`] holds KubeVirt's admission rules for these fields; [`yaml::to_yaml`]
//! writes the objects for `kubectl apply -f`.

pub mod hyperv;
pub mod nodes;
pub mod rules;
pub mod yaml;

use serde::Serialize;
use serde_json::{json, Map, Value};

use crate::cpuset::CpuSet;
use crate::domain::{enlightenments, DiskBus, GuestOs};
use crate::plan::{Plan, PlannedDevice};
use crate::vendor::CpuVendor;

pub use rules::validate_rules;

pub const API_VERSION: &str = "kubevirt.io/v1";
/// The domain of the resource names unless `--resource-prefix` says otherwise.
pub const DEFAULT_RESOURCE_PREFIX: &str = "vfioctl.io";
/// Where KubeVirt's operator keeps its custom resource (the default install).
pub const KUBEVIRT_CR: (&str, &str) = ("kubevirt", "kubevirt");

/// What the objects depend on besides the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeVirtHost {
    pub vendor: CpuVendor,
    /// The host has an invariant TSC (the domain requires `invtsc` then).
    pub invtsc: bool,
    /// The CPUs the host keeps for itself (the core of CPU 0): kubelet's reservedSystemCPUs.
    pub host_cpus: CpuSet,
    /// Efficiency cores of a hybrid CPU, which the plan never gives a guest.
    pub efficiency_cpus: CpuSet,
    /// The online CPUs of the plan's NUMA node (of the host when the node is unknown).
    pub node_cpus: CpuSet,
    pub numa_nodes: usize,
}

/// What the user asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KubeVirtRequest {
    pub name: String,
    pub namespace: Option<String>,
    /// The PersistentVolumeClaim holding the system disk (default `NAME-root`).
    pub disk_pvc: Option<String>,
    pub disk_bus: DiskBus,
    /// The domain part of the device resource names (`vfioctl.io`).
    pub resource_prefix: String,
    pub os: GuestOs,
    /// The `vfioctl apply …` command line that gives a node this plan's host configuration.
    pub apply_command: String,
}

impl KubeVirtRequest {
    pub fn claim(&self) -> String {
        self.disk_pvc.clone().unwrap_or_else(|| format!("{}-root", self.name))
    }
}

/// One passed device in the VM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ExportedDevice {
    /// `gpus` or `hostDevices`.
    pub list: &'static str,
    pub name: String,
    pub resource: String,
    pub address: String,
    pub vendor_id: String,
    pub device_id: String,
}

/// One `permittedHostDevices.pciHostDevices` entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PermittedDevice {
    pub selector: String,
    pub resource: String,
}

/// What was exported, for the text and JSON summaries.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub name: String,
    pub namespace: Option<String>,
    pub devices: Vec<ExportedDevice>,
    pub permitted: Vec<PermittedDevice>,
    pub feature_gates: Vec<&'static str>,
    /// KubeVirt's names of the enlightenments, in the domain's (dependency) order.
    pub hyperv: Vec<&'static str>,
    pub vcpus: u32,
    pub sockets: u32,
    pub cores: u32,
    pub threads: u32,
    /// CPUs the VM's pod takes for itself: one per vCPU and one for the emulator thread.
    pub exclusive_cpus: u32,
    pub memory: String,
    pub hugepage_size: Option<String>,
    pub disk_claim: String,
    pub disk_bus: &'static str,
    pub secure_boot: bool,
    /// What the libvirt domain of the same plan has that these objects cannot say.
    pub not_carried: Vec<String>,
    pub warnings: Vec<String>,
}

/// Everything `vfioctl export kubevirt` writes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Export {
    pub vm: Value,
    /// A JSON merge patch for the `KubeVirt` custom resource.
    pub kubevirt_patch: Value,
    pub nodes_md: String,
    pub summary: Summary,
}

/// Checks the names the request puts into Kubernetes objects; one message per bad name.
pub fn check_request(req: &KubeVirtRequest) -> Vec<String> {
    let mut out = Vec::new();
    if !dns_label(&req.name) {
        out.push(format!(
            "--name {}: a VM name must be a DNS label (lowercase letters, digits and '-', at most 63, starting and ending with a letter or digit)",
            req.name
        ));
    }
    if let Some(ns) = req.namespace.as_deref().filter(|n| !dns_label(n)) {
        out.push(format!(
            "--namespace {ns}: a namespace must be a DNS label (lowercase letters, digits and '-', at most 63)"
        ));
    }
    let claim = req.claim();
    if !dns_subdomain(&claim) {
        out.push(format!(
            "--disk-pvc {claim}: a claim name must be a DNS subdomain (lowercase letters, digits, '-' and '.', at most 253)"
        ));
    }
    if !dns_subdomain(&req.resource_prefix) || !req.resource_prefix.contains('.') {
        out.push(format!(
            "--resource-prefix {}: the domain of a resource name, e.g. vfioctl.io or example.com (a DNS subdomain with a dot)",
            req.resource_prefix
        ));
    }
    out
}

fn dns_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b.iter().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == b'-')
        && b.first().is_some_and(u8::is_ascii_alphanumeric)
        && b.last().is_some_and(u8::is_ascii_alphanumeric)
}

fn dns_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(dns_label)
}

/// The resource name KubeVirt's device plugin offers a device id as: `PREFIX/VVVV_DDDD`.
pub fn resource_name(prefix: &str, vendor_id: &str, device_id: &str) -> String {
    format!("{prefix}/{}_{}", vendor_id.to_ascii_uppercase(), device_id.to_ascii_uppercase())
}

/// A display controller (class 03xx) goes under `gpus`, everything else under `hostDevices`.
fn is_display(d: &PlannedDevice) -> bool {
    d.class.starts_with("03")
}

/// `gpu-0d-00-0`, with the PCI domain when it is not 0 (`gpu-0001-0d-00-0`).
fn device_name(kind: &str, d: &PlannedDevice) -> String {
    let a = d.address;
    if a.domain == 0 {
        format!("{kind}-{:02x}-{:02x}-{:x}", a.bus, a.device, a.function)
    } else {
        format!("{kind}-{:04x}-{:02x}-{:02x}-{:x}", a.domain, a.bus, a.device, a.function)
    }
}

/// A memory size as a quantity: `16Gi` when whole GiB, else `1536Mi`.
pub fn mib_quantity(mib: u64) -> String {
    if mib % 1024 == 0 {
        format!("{}Gi", mib / 1024)
    } else {
        format!("{mib}Mi")
    }
}

fn page_quantity(kib: u64) -> String {
    if kib % (1 << 20) == 0 {
        format!("{}Gi", kib >> 20)
    } else if kib % 1024 == 0 {
        format!("{}Mi", kib >> 10)
    } else {
        format!("{kib}Ki")
    }
}

/// The feature gates a VM needs from KubeVirt (v1.9): `HostDevices` for any
/// `devices.hostDevices` (the webhook refuses them without it; `gpus` need no gate since
/// the GPU gate went GA), `CPUManager` for dedicated CPUs (virt-handler labels nodes whose
/// kubelet runs the static CPU manager only with it).
pub fn feature_gates(vm: &Value) -> Vec<&'static str> {
    let domain = vm.pointer("/spec/template/spec/domain");
    let mut gates = Vec::new();
    if domain.and_then(|d| d.pointer("/devices/hostDevices")).is_some() {
        gates.push("HostDevices");
    }
    if domain.and_then(|d| d.pointer("/cpu/dedicatedCpuPlacement")).and_then(Value::as_bool) == Some(true) {
        gates.push("CPUManager");
    }
    gates
}

/// Builds the VM, the KubeVirt CR patch and NODES.md.
pub fn render(plan: &Plan, host: &KubeVirtHost, req: &KubeVirtRequest) -> Export {
    let c = &plan.cpu;
    let mut warnings = Vec::new();

    // Devices.
    let mut devices = Vec::new();
    let mut permitted: Vec<PermittedDevice> = Vec::new();
    for d in &plan.devices {
        let (list, kind) = if is_display(d) { ("gpus", "gpu") } else { ("hostDevices", "hostdev") };
        let resource = resource_name(&req.resource_prefix, &d.vendor_id, &d.device_id);
        let selector = format!("{}:{}", d.vendor_id.to_ascii_uppercase(), d.device_id.to_ascii_uppercase());
        if !permitted.iter().any(|p| p.selector == selector) {
            permitted.push(PermittedDevice { selector, resource: resource.clone() });
        }
        devices.push(ExportedDevice {
            list,
            name: device_name(kind, d),
            resource,
            address: d.address.to_string(),
            vendor_id: d.vendor_id.clone(),
            device_id: d.device_id.clone(),
        });
    }
    let entries = |list: &str| -> Vec<Value> {
        devices.iter().filter(|d| d.list == list).map(|d| json!({"name": d.name, "deviceName": d.resource})).collect()
    };
    let disk_bus = match req.disk_bus {
        DiskBus::Scsi => "scsi",
        DiskBus::Sata => "sata",
    };
    let claim = req.claim();
    let mut dev = Map::new();
    dev.insert("autoattachMemBalloon".into(), json!(false));
    dev.insert("disks".into(), json!([{"name": "root", "bootOrder": 1, "disk": {"bus": disk_bus}}]));
    let gpus = entries("gpus");
    if !gpus.is_empty() {
        dev.insert("gpus".into(), Value::Array(gpus));
    }
    // An empty list would still make the webhook ask for the HostDevices gate.
    let host_devices = entries("hostDevices");
    if !host_devices.is_empty() {
        dev.insert("hostDevices".into(), Value::Array(host_devices));
    }
    if req.os == GuestOs::Windows11 {
        dev.insert("tpm".into(), json!({"persistent": true}));
    }

    // Features, clock, firmware.
    let windows = req.os.is_windows();
    let mut features = Map::new();
    features.insert("acpi".into(), json!({}));
    features.insert("apic".into(), json!({}));
    let mut hyperv_names = Vec::new();
    if windows {
        let list = enlightenments(None, None);
        let (hv, unsupported) = hyperv::features(&list);
        for u in unsupported {
            warnings.push(format!("the domain's Hyper-V enlightenment {u} has no field in KubeVirt: left out"));
        }
        hyperv_names =
            list.iter().filter_map(|e| hyperv::kubevirt_name(e.name)).filter(|n| hv.contains_key(*n)).collect();
        features.insert("hyperv".into(), Value::Object(hv));
    }
    features.insert("kvm".into(), json!({"hidden": true}));
    let secure_boot = req.os == GuestOs::Windows11;
    if secure_boot {
        features.insert("smm".into(), json!({"enabled": true}));
    }
    let mut timer = json!({
        "rtc": {"tickPolicy": "catchup"},
        "pit": {"tickPolicy": "delay"},
        "hpet": {"present": false},
    });
    if windows {
        timer["hyperv"] = json!({"present": true});
    }
    let mut efi = json!({"secureBoot": secure_boot});
    if secure_boot {
        // Secure boot keys and the TPM live in the VM's persistent state.
        efi["persistent"] = json!(true);
    }

    let mut memory = json!({"guest": mib_quantity(plan.memory.mib)});
    let hugepage_size = plan.memory.hugepages.as_ref().map(|h| page_quantity(h.size_kib));
    if let Some(size) = &hugepage_size {
        memory["hugepages"] = json!({"pageSize": size});
    }
    let domain = json!({
        "cpu": {
            "sockets": c.topology.sockets,
            "cores": c.topology.cores,
            "threads": c.topology.threads,
            "model": "host-passthrough",
            "dedicatedCpuPlacement": true,
            "isolateEmulatorThread": true,
        },
        "memory": memory,
        "features": Value::Object(features),
        "clock": {"utc": {}, "timer": timer},
        "firmware": {"bootloader": {"efi": efi}},
        "devices": Value::Object(dev),
    });
    let mut metadata = json!({"name": req.name});
    if let Some(ns) = &req.namespace {
        metadata["namespace"] = json!(ns);
    }
    let vm = json!({
        "apiVersion": API_VERSION,
        "kind": "VirtualMachine",
        "metadata": metadata,
        "spec": {
            // Started by hand (`virtctl start`) once the nodes are ready.
            "runStrategy": "Halted",
            "template": {
                "metadata": {"labels": {"kubevirt.io/vm": req.name}},
                "spec": {
                    "domain": domain,
                    "volumes": [{"name": "root", "persistentVolumeClaim": {"claimName": claim}}],
                },
            },
        },
    });

    let gates = feature_gates(&vm);
    let kubevirt_patch = json!({"spec": {"configuration": {
        "permittedHostDevices": {"pciHostDevices": permitted.iter()
            .map(|p| json!({"pciVendorSelector": p.selector, "resourceName": p.resource}))
            .collect::<Vec<_>>()},
        "developerConfiguration": {"featureGates": gates},
    }}});

    // What the domain says and KubeVirt cannot.
    let mut not_carried = vec![format!(
        "the pinning (vCPUs on host CPUs {}, emulator and I/O thread on {}): kubelet's static CPU manager chooses the CPUs",
        c.guest_cpus, c.emulatorpin
    )];
    if let (Some(n), true) = (plan.numa_node, host.numa_nodes > 1) {
        not_carried.push(format!(
            "NUMA node {n}: kubelet's topology and memory managers keep the CPUs, hugepages and devices on one node (NODES.md)"
        ));
    }
    let mut cpu_features = Vec::new();
    if host.vendor == CpuVendor::Amd && c.topology.threads > 1 {
        cpu_features.push("topoext");
    }
    if host.invtsc {
        cpu_features.push("invtsc");
    }
    if !cpu_features.is_empty() {
        not_carried.push(format!(
            "the CPU features {}: host-passthrough passes the host's CPU, and KubeVirt would make a required feature a node selector",
            cpu_features.join(", ")
        ));
    }
    if windows {
        not_carried.push(
            "the local-time clock: KubeVirt's clock is UTC here (set RealTimeIsUniversal in Windows, or spec.domain.clock.timezone)"
                .into(),
        );
    }
    // (vmport needs nothing: virt-launcher turns it off on x86 itself.)
    not_carried.push("ioapic driver kvm: KubeVirt's API has no field for it".into());

    let exclusive = c.vcpus + 1;
    let free =
        host.node_cpus.iter().filter(|x| !host.host_cpus.contains(*x) && !host.efficiency_cpus.contains(*x)).count();
    if (free as u64) < u64::from(exclusive) {
        warnings.push(format!(
            "a node like this one has {free} CPUs for pods on {}, but the VM takes {exclusive} ({} vCPUs and one for the emulator thread): ask for fewer vCPUs",
            plan.numa_node.map_or("the host".to_string(), |n| format!("NUMA node {n}")),
            c.vcpus
        ));
    }

    let summary = Summary {
        name: req.name.clone(),
        namespace: req.namespace.clone(),
        devices,
        permitted,
        feature_gates: gates,
        hyperv: hyperv_names,
        vcpus: c.vcpus,
        sockets: c.topology.sockets,
        cores: c.topology.cores,
        threads: c.topology.threads,
        exclusive_cpus: exclusive,
        memory: mib_quantity(plan.memory.mib),
        hugepage_size,
        disk_claim: claim,
        disk_bus,
        secure_boot,
        not_carried,
        warnings,
    };
    let nodes_md = nodes::render(plan, host, req, &summary);
    Export { vm, kubevirt_patch, nodes_md, summary }
}

#[cfg(test)]
mod tests;
