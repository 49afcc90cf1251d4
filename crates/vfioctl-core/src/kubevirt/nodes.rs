//! `NODES.md`: what every node that may run the exported VM needs, written for this plan.
//! Paragraphs are single lines (Markdown wraps them); commands are indented code blocks.

use std::fmt::Write as _;

use crate::plan::Plan;

use super::{KubeVirtHost, KubeVirtRequest, Summary, KUBEVIRT_CR};

fn size(kib: u64) -> String {
    if kib % (1 << 20) == 0 {
        format!("{} GiB", kib >> 20)
    } else {
        format!("{} MiB", kib >> 10)
    }
}

/// Lines as an indented code block, with the blank line after it.
fn code(w: &mut String, lines: &[&str]) {
    for l in lines {
        let _ = writeln!(w, "    {l}");
    }
    let _ = writeln!(w);
}

/// The text of NODES.md.
pub fn render(plan: &Plan, host: &KubeVirtHost, req: &KubeVirtRequest, s: &Summary) -> String {
    let mut o = String::new();
    let w = &mut o;
    let name = &req.name;
    let numa = host.numa_nodes > 1;
    let _ = writeln!(w, "# Nodes for the KubeVirt VM `{name}`\n");
    let _ = writeln!(
        w,
        "Written by `vfioctl export kubevirt` from the plan for this host. Kubernetes starts `{name}` only on a node \
         that offers everything below, so give it to every node that may run the VM.\n"
    );

    // 1. The host configuration.
    let _ = writeln!(w, "## 1. The host: `vfioctl apply`\n");
    let _ = writeln!(w, "On the node, as root:\n");
    code(w, &[&req.apply_command, "reboot", "vfioctl verify"]);
    let devices: Vec<String> =
        plan.devices.iter().map(|d| format!("{} [{}:{}]", d.address, d.vendor_id, d.device_id)).collect();
    let _ = write!(w, "On this host that binds {} to vfio-pci", devices.join(", "));
    if !plan.vfio_ids.is_empty() {
        let _ = write!(w, " (`vfio-pci.ids={}`)", plan.vfio_ids.join(","));
    }
    let _ = writeln!(
        w,
        "; the firmware setup must have {} on. `gpu` and `vendor:device` find the node's own device; an address \
         names this host's slot, so name the node's device by its own address where it sits elsewhere.\n",
        host.vendor.firmware_setting()
    );
    match &plan.memory.hugepages {
        Some(h) if h.reserve_at_boot => {
            let _ = writeln!(
                w,
                "Hugepages: {} pages of {}, reserved when the kernel boots (`hugepagesz=1G` on the kernel command \
                 line): 1 GiB pages cannot be had later. The kubelet offers the hugepages that exist (`hugepages-1Gi` \
                 in `kubectl describe node`); restart it if they do not show after the reboot.\n",
                h.count,
                size(h.size_kib)
            );
        }
        Some(h) => {
            let _ = write!(
                w,
                "Hugepages: {} pages of {}. The kubelet offers only the hugepages that exist (`hugepages-2Mi` in \
                 `kubectl describe node`), so they must be there before the VM is scheduled, not allocated when it \
                 starts: ",
                h.count,
                size(h.size_kib),
            );
            if numa {
                let n = h.node.unwrap_or(0);
                let _ = write!(
                    w,
                    "allocate them on node {n} at boot, before the kubelet starts \
                     (`echo {} > /sys/devices/system/node/node{n}/hugepages/hugepages-2048kB/nr_hugepages`).",
                    h.count
                );
            } else {
                let _ = write!(
                    w,
                    "`vfioctl apply` writes `vm.nr_hugepages = {}` to /etc/sysctl.d/80-vfioctl-hugepages.conf.",
                    h.count
                );
            }
            let _ = writeln!(w, " Restart the kubelet if they do not show.\n");
        }
        None => {
            let _ = writeln!(w, "No hugepages: the guest's memory comes from ordinary pages.\n");
        }
    }

    // 2. The kubelet.
    let _ = writeln!(w, "## 2. The kubelet: dedicated CPUs\n");
    let _ = writeln!(
        w,
        "The VM runs on CPUs of its own (`dedicatedCpuPlacement`), one per vCPU, and one more for QEMU's emulator \
         thread (`isolateEmulatorThread`): {} CPUs, which the kubelet's static CPU manager hands out. In the \
         kubelet's configuration (/var/lib/kubelet/config.yaml):\n",
        s.exclusive_cpus
    );
    let mut reserved = host.host_cpus.clone();
    for c in host.efficiency_cpus.iter() {
        reserved.insert(c);
    }
    let mut config = vec!["cpuManagerPolicy: static".to_string()];
    if !reserved.is_empty() {
        config.push(format!("reservedSystemCPUs: \"{reserved}\""));
    }
    if numa {
        config.push("topologyManagerPolicy: single-numa-node".into());
        config.push("memoryManagerPolicy: Static".into());
    }
    code(w, &config.iter().map(String::as_str).collect::<Vec<_>>());
    if !reserved.is_empty() {
        let _ = write!(
            w,
            "`reservedSystemCPUs` keeps what the plan leaves to the host out of the kubelet's pool: CPUs {} (the core of CPU 0)",
            host.host_cpus
        );
        if !host.efficiency_cpus.is_empty() {
            let _ = write!(
                w,
                " and the efficiency cores {}: the plan gives a guest performance cores only, and the kubelet does \
                 not tell them apart",
                host.efficiency_cpus
            );
        }
        let _ = writeln!(w, ".");
    }
    if numa {
        let node = plan.numa_node.map_or("the devices' node".to_string(), |n| format!("node {n}"));
        let _ = writeln!(
            w,
            "On a NUMA host the topology manager keeps the VM's CPUs and devices on one node, as the plan keeps them \
             on {node}, and the Static memory manager (it needs `reservedMemory` for each node) its hugepages too."
        );
    }
    let _ = writeln!(w, "\nAfter changing the CPU manager policy:\n");
    code(w, &["systemctl stop kubelet", "rm /var/lib/kubelet/cpu_manager_state", "systemctl start kubelet"]);
    let _ = writeln!(
        w,
        "With the CPUManager feature gate (step 3) virt-handler labels such a node `kubevirt.io/cpumanager=true`, \
         and only those get VMs with dedicated CPUs. The kubelet chooses which CPUs: the plan's pinning (vCPUs on \
         host CPUs {}) does not carry over.\n",
        plan.cpu.guest_cpus
    );

    // 3. The KubeVirt custom resource.
    let (cr, ns) = KUBEVIRT_CR;
    let _ = writeln!(w, "## 3. The cluster, once: the KubeVirt custom resource\n");
    let _ = writeln!(
        w,
        "`kubevirt-patch.yaml` is a JSON merge patch (not a whole object) for KubeVirt's custom resource:\n"
    );
    code(w, &[&format!("kubectl patch kubevirt {cr} -n {ns} --type merge --patch-file kubevirt-patch.yaml")]);
    let permitted: Vec<String> = s.permitted.iter().map(|p| format!("{} as `{}`", p.selector, p.resource)).collect();
    let _ = writeln!(
        w,
        "It permits the passed devices (`permittedHostDevices.pciHostDevices`: {}), so that virt-handler's device \
         plugin offers them on every node where vfio-pci holds them, and turns on the feature gates {}. A merge \
         patch replaces lists: if `kubectl get kubevirt {cr} -n {ns} -o yaml` shows feature gates or permitted \
         devices already, add them to the file first.\n",
        permitted.join(", "),
        s.feature_gates.join(" and ")
    );
    let mut resources: Vec<String> = s.permitted.iter().map(|p| format!("`{}`", p.resource)).collect();
    if let Some(h) = &s.hugepage_size {
        resources.push(format!("`hugepages-{h}`"));
    }
    let _ = write!(
        w,
        "A node is ready when `kubectl get node NODE -o jsonpath='{{.status.allocatable}}'` lists {}. Each \
         function is a resource of its own: on a node with two cards of one model, a GPU and its audio function \
         may come from different cards.",
        resources.join(", ")
    );
    if !s.hyperv.is_empty() {
        let _ = write!(
            w,
            " A VM with Hyper-V enlightenments goes only to nodes whose KVM offers them (virt-handler's \
             `hyperv.node.kubevirt.io/…` labels)."
        );
    }
    let _ = writeln!(w, "\n");

    // 4. The VM.
    let _ = writeln!(w, "## 4. The VM\n");
    let ns_text = req.namespace.as_deref().map_or("the VM's namespace".to_string(), |n| format!("namespace `{n}`"));
    let _ = writeln!(
        w,
        "The system disk is the PersistentVolumeClaim `{}` in {ns_text}: create it first (e.g. with CDI). Then:\n",
        s.disk_claim
    );
    code(w, &["kubectl apply -f vm.yaml", &format!("virtctl start {name}")]);
    if s.secure_boot {
        let _ = writeln!(
            w,
            "The EFI variables (secure boot) and the TPM persist in the VM's state volume, which KubeVirt creates \
             with the storage class `vmStateStorageClass` of its custom resource (else the cluster's default).\n"
        );
    }
    if !s.warnings.is_empty() {
        let _ = writeln!(w, "## Warnings\n");
        for x in &s.warnings {
            let _ = writeln!(w, "- {x}");
        }
    }
    while o.ends_with("\n\n") {
        o.pop();
    }
    o
}
