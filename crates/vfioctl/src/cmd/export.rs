//! `vfioctl export kubevirt DEVICE… [plan options] --name NAME …`: the plan as KubeVirt
//! objects (a VirtualMachine, a merge patch for the KubeVirt custom resource) and NODES.md.

use std::path::PathBuf;

use serde::Serialize;
use vfioctl_core::cpuset::CpuSet;
use vfioctl_core::domain::{DiskBus, GuestOs};
use vfioctl_core::kubevirt::{self, yaml, Export, KubeVirtHost, KubeVirtRequest, KUBEVIRT_CR};
use vfioctl_core::topology::CoreKind;
use vfioctl_host::host::Host;

use vfioctl_core::reservation::BindMode;

use crate::cli::{DiskBusArg, ExportArgs, ExportTarget, Format, HugepagesArg, KubevirtArgs, OsArg, PlanArgs};
use crate::error::{CliError, Exit};
use crate::{ops, output};

pub fn run(host: &Host, args: &ExportArgs) -> Result<Exit, CliError> {
    match &args.target {
        ExportTarget::Kubevirt(a) => kubevirt(host, a),
    }
}

/// A word for a POSIX shell: as it is when it is safe, else in single quotes.
fn shell_word(s: &str) -> String {
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.:/=,+@%".contains(&b)) {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// The `vfioctl apply` line that gives a node the same host configuration.
fn apply_command(p: &PlanArgs) -> String {
    let mut words = vec!["vfioctl".to_string(), "apply".to_string()];
    words.extend(p.devices.iter().map(|d| shell_word(d)));
    if let Some(n) = p.vcpus {
        words.push(format!("--vcpus {n}"));
    }
    if let Some(m) = p.memory {
        words.push(if m % 1024 == 0 { format!("--memory {}G", m / 1024) } else { format!("--memory {m}M") });
    }
    match p.hugepages {
        HugepagesArg::Auto => {}
        HugepagesArg::TwoM => words.push("--hugepages 2M".into()),
        HugepagesArg::OneG => words.push("--hugepages 1G".into()),
        HugepagesArg::None => words.push("--hugepages none".into()),
    }
    if p.bind != BindMode::Auto {
        words.push(format!("--bind {}", p.bind));
    }
    if p.allow_acs_override {
        words.push("--allow-acs-override".into());
    }
    if p.force {
        words.push("--force".into());
    }
    words.join(" ")
}

/// The JSON of `--format json`.
#[derive(Debug, Serialize)]
struct JsonOut<'a> {
    #[serde(flatten)]
    export: &'a Export,
    /// Files written with --out.
    files: Vec<PathBuf>,
}

fn kubevirt(host: &Host, args: &KubevirtArgs) -> Result<Exit, CliError> {
    let os = match args.os {
        OsArg::Win10 => GuestOs::Windows10,
        OsArg::Win11 => GuestOs::Windows11,
        OsArg::Linux => GuestOs::Linux,
    };
    let req = KubeVirtRequest {
        name: args.name.clone(),
        namespace: args.namespace.clone(),
        disk_pvc: args.disk_pvc.clone(),
        disk_bus: match args.disk_bus {
            DiskBusArg::Scsi => DiskBus::Scsi,
            DiskBusArg::Sata => DiskBus::Sata,
        },
        resource_prefix: args.resource_prefix.clone(),
        os,
        apply_command: apply_command(&args.plan),
    };
    let bad = kubevirt::check_request(&req);
    if !bad.is_empty() {
        return Err(CliError::Usage(bad.join("\n")));
    }
    let p = ops::plan(host, &args.plan.request()?)?;
    for w in &p.warnings {
        eprintln_safe!("vfioctl: warning: {w}");
    }
    // The plan read these already (and printed their warnings).
    let (topology, _) = host.topology()?;
    let f = host.facts();
    let efficiency_cpus: CpuSet =
        topology.cores.iter().filter(|c| c.kind == Some(CoreKind::Efficiency)).flat_map(|c| c.cpus.iter()).collect();
    let host = KubeVirtHost {
        vendor: f.vendor,
        invtsc: f.invtsc(),
        host_cpus: topology.core_of(0).map(|c| c.cpus.clone()).unwrap_or_default(),
        efficiency_cpus,
        node_cpus: p.numa_node.and_then(|n| topology.node(n)).map_or_else(|| topology.online(), |n| n.cpus.clone()),
        numa_nodes: topology.nodes.len(),
    };
    let e = kubevirt::render(&p, &host, &req);

    // Never write what KubeVirt's admission webhook would refuse.
    let refused = kubevirt::validate_rules(&e.vm);
    if !refused.is_empty() {
        eprintln_safe!("vfioctl: error: KubeVirt would refuse this VirtualMachine:");
        for r in &refused {
            eprintln_safe!("  - {r}");
        }
        eprintln_safe!(
            "  fix: change the plan options (e.g. --memory a multiple of the hugepage size, or --hugepages none)"
        );
        return Ok(Exit::Finding);
    }
    for w in &e.summary.warnings {
        eprintln_safe!("vfioctl: warning: {w}");
    }

    let vm_yaml = format!(
        "# VirtualMachine {}, written by `vfioctl export kubevirt`; what its nodes need is in NODES.md.\n{}",
        req.name,
        yaml::to_yaml(&e.vm)
    );
    let (cr, ns) = KUBEVIRT_CR;
    let patch_yaml = format!(
        "# A JSON merge patch for KubeVirt's custom resource, written by `vfioctl export kubevirt`:\n\
         #   kubectl patch kubevirt {cr} -n {ns} --type merge --patch-file kubevirt-patch.yaml\n\
         # It replaces the lists it sets: add the feature gates and permitted devices the cluster has already.\n{}",
        yaml::to_yaml(&e.kubevirt_patch)
    );
    let mut files = Vec::new();
    if let Some(dir) = &args.out {
        // The folder itself may be new; its parent must exist.
        if !dir.is_dir() {
            std::fs::create_dir(dir).map_err(|err| CliError::Out(output::OutError::Io { path: dir.clone(), err }))?;
        }
        for (name, text) in [("vm.yaml", &vm_yaml), ("kubevirt-patch.yaml", &patch_yaml), ("NODES.md", &e.nodes_md)] {
            let path = dir.join(name);
            output::write_file(&path, text.as_bytes()).map_err(CliError::Out)?;
            files.push(path);
        }
    }
    match (args.plan.format, &args.out) {
        (Format::Json, _) => output::print_json(&JsonOut { export: &e, files: files.clone() })?,
        (Format::Text, Some(_)) => output::print(&summary_text(&e, &req))?,
        // The summary as YAML comments: stdout stays something `kubectl apply -f -` takes.
        (Format::Text, None) => {
            let commented: String = summary_text(&e, &req)
                .lines()
                .map(|l| if l.is_empty() { "#\n".to_string() } else { format!("# {l}\n") })
                .collect();
            output::print(&format!("{commented}{}", yaml::to_yaml(&e.vm)))?
        }
    }
    if args.plan.format == Format::Text {
        for f in &files {
            eprintln_safe!("vfioctl: wrote {}", f.display());
        }
    }
    Ok(Exit::Ok)
}

/// The summary for people.
fn summary_text(e: &Export, req: &KubeVirtRequest) -> String {
    let s = &e.summary;
    let mut o = String::new();
    let ns = s.namespace.as_deref().map_or("kubectl's current namespace".to_string(), |n| format!("namespace {n}"));
    o.push_str(&format!("VirtualMachine {} ({}) in {ns}, runStrategy Halted:\n", s.name, kubevirt::API_VERSION));
    let width = s.devices.iter().map(|d| d.name.len()).max().unwrap_or(0);
    for d in &s.devices {
        o.push_str(&format!(
            "  {:<12} {:<width$}  {}  ({} [{}:{}])\n",
            d.list, d.name, d.resource, d.address, d.vendor_id, d.device_id
        ));
    }
    o.push_str(&format!(
        "  {:<12} {} vCPUs = {} cores × {} threads, host-passthrough, dedicatedCpuPlacement, isolateEmulatorThread ({} CPUs)\n",
        "cpu", s.vcpus, s.cores, s.threads, s.exclusive_cpus
    ));
    o.push_str(&format!(
        "  {:<12} {}{}\n",
        "memory",
        s.memory,
        s.hugepage_size.as_ref().map_or(", no hugepages".to_string(), |h| format!(" on hugepages of {h}"))
    ));
    if !s.hyperv.is_empty() {
        o.push_str(&format!("  {:<12} {}\n", "hyperv", s.hyperv.join(" ")));
    }
    let hv_timer = if req.os.is_windows() { ", hyperv" } else { "" };
    o.push_str(&format!("  {:<12} kvm hidden; clock utc, rtc catchup, pit delay, no hpet{hv_timer}\n", "features"));
    o.push_str(&format!(
        "  {:<12} EFI, secure boot {}{}\n",
        "firmware",
        if s.secure_boot { "on, SMM" } else { "off" },
        if req.os == GuestOs::Windows11 { ", TPM" } else { "" }
    ));
    o.push_str(&format!("  {:<12} PVC {} on {}\n", "root disk", s.disk_claim, s.disk_bus));
    o.push_str("KubeVirt custom resource (merge patch, kubevirt-patch.yaml):\n");
    let permitted: Vec<String> = s.permitted.iter().map(|p| format!("{} → {}", p.selector, p.resource)).collect();
    o.push_str(&format!("  permittedHostDevices  {}\n", permitted.join(", ")));
    o.push_str(&format!("  featureGates          {}\n", s.feature_gates.join(", ")));
    o.push_str(&format!(
        "Every node that may run it (NODES.md): `{}`, a reboot, and the kubelet's static CPU manager.\n",
        req.apply_command
    ));
    o.push_str("Not carried over from `vfioctl domain`:\n");
    for n in &s.not_carried {
        o.push_str(&format!("  - {n}\n"));
    }
    o.push_str(
        "KubeVirt's admission rules (Hyper-V dependencies, hugepages, dedicated CPUs, secure boot, disks): pass.\n",
    );
    o
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shell_words() {
        assert_eq!(shell_word("0d:00.0"), "0d:00.0");
        assert_eq!(shell_word("a b"), "'a b'");
        assert_eq!(shell_word("it's"), r"'it'\''s'");
    }
}
