//! Gathering the facts `vfioctl check` judges (see `vfioctl_core::check`), from a host
//! root. Facts that only the running machine has (device nodes, daemons, program
//! versions) are asked of it only when the root is `/`; on a snapshot they stay unknown,
//! except program versions a snapshot recorded in its marker files.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vfioctl_core::check::{DeviceNodes, Facts, HugepagePool, Program, Reboot};
use vfioctl_core::cmdline::Cmdline;
use vfioctl_core::edit::modprobe_d;
use vfioctl_core::modprobe::ModprobeConfig;
use vfioctl_core::vendor::{self, CpuVendor};
use vfioctl_core::{iomem, kmod, sysfs_value};

use crate::boot::BootSetup;
use crate::root::HostRoot;

/// Snapshots stand in for programs with a file that starts with this line, followed by
/// what `PROGRAM --version` printed when the snapshot was taken.
pub const PROGRAM_MARKER: &str = "#vfioctl-snapshot: program marker";

/// Where distributions install QEMU's x86_64 system emulator.
pub const QEMU_PATHS: &[&str] =
    &["/usr/bin/qemu-system-x86_64", "/usr/libexec/qemu-kvm", "/usr/bin/qemu-kvm", "/usr/local/bin/qemu-system-x86_64"];
/// libvirt's daemon: monolithic libvirtd, or the modular QEMU driver daemon.
pub const LIBVIRT_PATHS: &[&str] =
    &["/usr/sbin/libvirtd", "/usr/bin/libvirtd", "/usr/sbin/virtqemud", "/usr/bin/virtqemud"];
/// OVMF builds by distribution: Debian/Ubuntu (`ovmf`), Fedora/RHEL (`edk2-ovmf`), Arch
/// (`edk2-ovmf`, new and pre-2023 layouts), openSUSE (`qemu-ovmf-x86_64`).
pub const OVMF_PATHS: &[&str] = &[
    "/usr/share/OVMF/OVMF_CODE_4M.fd",
    "/usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
    "/usr/share/OVMF/OVMF_CODE.fd",
    "/usr/share/OVMF/OVMF_CODE.secboot.fd",
    "/usr/share/edk2/ovmf/OVMF_CODE.fd",
    "/usr/share/edk2/ovmf/OVMF_CODE.secboot.fd",
    "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
    "/usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd",
    "/usr/share/edk2-ovmf/x64/OVMF_CODE.fd",
    "/usr/share/edk2-ovmf/x64/OVMF_CODE.secboot.fd",
    "/usr/share/qemu/ovmf-x86_64-code.bin",
];
/// QEMU firmware descriptors (docs/interop/firmware.json) name the firmware files too.
pub const FIRMWARE_DESCRIPTORS: &[&str] = &["/usr/share/qemu/firmware", "/etc/qemu/firmware"];
pub const LIBVIRT_SOCKETS: &[&str] = &[
    "/run/libvirt/libvirt-sock",
    "/run/libvirt/libvirt-sock-ro",
    "/run/libvirt/virtqemud-sock",
    "/run/libvirt/virtqemud-sock-ro",
    "/var/run/libvirt/libvirt-sock",
];
/// modprobe.d directories, highest priority first (a file name in an earlier one hides
/// the same name in later ones).
pub use vfioctl_core::edit::modprobe_d::DIRS as MODPROBE_DIRS;
/// Modules whose parameters the checks read.
pub const PARAM_MODULES: &[&str] = &["kvm", "kvm_amd", "kvm_intel", "vfio", "vfio_pci", "vfio_iommu_type1"];

fn read(root: &HostRoot, path: &str) -> Option<String> {
    root.read_optional(path).ok().flatten()
}

/// Gathers every fact for `vfioctl check`; the next boot's command line is the one the
/// boot setup (`boot::detect`, done once per command) found.
pub fn gather(root: &HostRoot, boot: &BootSetup) -> Facts {
    let mut f = gather_files(root, boot);
    add_programs(root, &mut f);
    f
}

/// What the live machine says only when asked, by running programs and opening device
/// nodes and sockets: QEMU's and libvirt's versions, /dev/kvm, libvirt's socket. On a
/// snapshot the versions come from its marker files.
pub fn add_programs(root: &HostRoot, f: &mut Facts) {
    let live = f.live;
    if live {
        f.nodes = device_nodes();
        f.libvirt_reachable = Some(LIBVIRT_SOCKETS.iter().any(|s| {
            if let Some(l) = root.log() {
                l.note("connect", Path::new(s));
            }
            std::os::unix::net::UnixStream::connect(s).is_ok()
        }));
    }
    f.qemu = program(root, QEMU_PATHS, live);
    f.libvirt = program(root, LIBVIRT_PATHS, live);
}

/// The facts that files say, without running anything (what `plan` needs).
pub fn gather_files(root: &HostRoot, boot: &BootSetup) -> Facts {
    let live = root.is_live();
    let cpuinfo = read(root, "/proc/cpuinfo");
    let vendor = cpuinfo.as_deref().and_then(CpuVendor::from_cpuinfo).unwrap_or(CpuVendor::Other);
    let mut f = Facts::unknown(live, vendor);
    f.cpu_flags = cpuinfo.as_deref().map(|c| vendor::cpu_flags(c).into_iter().collect());
    f.virtual_machine = virtual_machine(root, f.cpu_flags.as_ref());
    f.cgroup_controllers = cgroup_controllers(root);
    f.acpi_dmar = root.exists("/sys/firmware/acpi/tables/DMAR");
    f.acpi_ivrs = root.exists("/sys/firmware/acpi/tables/IVRS");
    f.iommu_groups = root.list(crate::pci::IOMMU_GROUPS).ok().map(|g| g.len());
    f.cmdline = read(root, "/proc/cmdline").map(|c| Cmdline::parse(&c));
    f.next_boot = boot.next_boot.clone();
    f.next_boot_problem = boot.problem.clone();
    f.initramfs_modules = boot.initramfs_modules.clone();
    f.kernel_release = read(root, "/proc/sys/kernel/osrelease").map(|r| r.trim().to_string()).filter(|r| !r.is_empty());
    if let Some(rel) = f.kernel_release.clone().filter(|r| !r.contains('/')) {
        for base in ["/lib/modules", "/usr/lib/modules"] {
            let b = read(root, &format!("{base}/{rel}/modules.builtin"));
            let d = read(root, &format!("{base}/{rel}/modules.dep"));
            if b.is_some() || d.is_some() {
                f.modules_builtin = b.as_deref().map(kmod::builtin);
                f.modules_available = d.as_deref().map(kmod::available);
                break;
            }
        }
    }
    f.modules_loaded = read(root, "/proc/modules").as_deref().map(kmod::loaded);
    f.vfio_evidence = vfio_evidence(root);
    for m in PARAM_MODULES {
        let dir = format!("/sys/module/{m}/parameters");
        if let Ok(names) = root.list(&dir) {
            let params = names
                .into_iter()
                .filter_map(|n| root.read_attr(format!("{dir}/{n}")).ok().map(|v| (n, v.trim().to_string())))
                .collect();
            f.module_params.insert(m.to_string(), params);
        }
    }
    f.modprobe = modprobe(root);
    f.hugepages = hugepages(root);
    f.ovmf = ovmf(root);
    f.iomem = read(root, "/proc/iomem").map(|t| iomem::parse(&t));
    f.reboot = reboot(root);
    f
}

/// Whether the last apply in effect waits for a reboot: its journal's time against the
/// running kernel's boot time (`btime` in `/proc/stat`). A journal or `/proc/stat` that
/// cannot be read makes it unknown, naming what could not be read.
pub fn reboot(root: &HostRoot) -> Reboot {
    let j = match crate::apply::Journal::last_applied(root) {
        Ok(Some(j)) => j,
        Ok(None) => return Reboot::NotPending,
        Err(e) => {
            return Reboot::Unknown {
                journal: crate::apply::JOURNAL_DIR.to_string(),
                reason: format!("the journals cannot be read: {e}"),
            }
        }
    };
    let unknown = |reason: String| Reboot::Unknown { journal: j.id.clone(), reason };
    match root.read_optional("/proc/stat") {
        Ok(Some(stat)) => match Reboot::boot_time(&stat) {
            Some(boot) => Reboot::judge(&j.id, j.created, boot, j.expect.clone()),
            None => unknown("/proc/stat has no btime line".into()),
        },
        Ok(None) => unknown("/proc/stat does not exist (a snapshot taken without it)".into()),
        Err(e) => unknown(format!("/proc/stat: {e}")),
    }
}

fn device_nodes() -> DeviceNodes {
    let exists = |p: &str| Path::new(p).exists();
    let kvm_exists = exists("/dev/kvm");
    DeviceNodes {
        kvm_exists: Some(kvm_exists),
        // Opening it read-write is what QEMU does; it has no side effect.
        kvm_accessible: Some(kvm_exists && std::fs::OpenOptions::new().read(true).write(true).open("/dev/kvm").is_ok()),
        vhost_net: Some(exists("/dev/vhost-net")),
        tun: Some(exists("/dev/net/tun")),
    }
}

/// Controllers usable by this process, as libvirt finds them: cgroup v1 hierarchies
/// mounted with the controller, and on cgroup v2 the controllers listed in the
/// process's cgroup (`cpuacct` is always there on v2, `blkio` is `io`, `devices` is a BPF
/// program on v2 and always available on kernels that have cgroup v2 devices control).
pub fn cgroup_controllers(root: &HostRoot) -> Option<BTreeSet<String>> {
    let mountinfo = read(root, "/proc/self/mountinfo")?;
    let placement = read(root, "/proc/self/cgroup").unwrap_or_default();
    Some(controllers_from(&mountinfo, &placement, |path| read(root, path)))
}

fn controllers_from(mountinfo: &str, placement: &str, read: impl Fn(&str) -> Option<String>) -> BTreeSet<String> {
    let mut set = BTreeSet::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else { continue };
        let mut r = right.split_whitespace();
        let (Some(fstype), _, Some(opts)) = (r.next(), r.next(), r.next()) else { continue };
        let mount_point = left.split_whitespace().nth(4).unwrap_or("");
        match fstype {
            "cgroup" => {
                for o in opts.split(',') {
                    if matches!(
                        o,
                        "cpu"
                            | "cpuacct"
                            | "cpuset"
                            | "memory"
                            | "devices"
                            | "blkio"
                            | "freezer"
                            | "net_cls"
                            | "perf_event"
                    ) {
                        set.insert(o.to_string());
                    }
                }
            }
            "cgroup2" => {
                let path = placement
                    .lines()
                    .find_map(|l| l.strip_prefix("0::"))
                    .map(|p| p.trim().trim_end_matches('/').to_string())
                    .unwrap_or_default();
                let file = format!("{mount_point}{path}/cgroup.controllers");
                if let Some(text) = read(&file).or_else(|| read(&format!("{mount_point}/cgroup.controllers"))) {
                    for c in text.split_whitespace() {
                        set.insert(if c == "io" { "blkio".to_string() } else { c.to_string() });
                    }
                    set.insert("cpuacct".to_string());
                    set.insert("devices".to_string());
                }
            }
            _ => {}
        }
    }
    set
}

/// What proves vfio-pci is on this host: a device bound to it, the driver registered, or
/// the module loaded (sysfs shows them whatever the module lists say).
fn vfio_evidence(root: &HostRoot) -> Option<String> {
    let drv = "/sys/bus/pci/drivers/vfio-pci";
    if let Ok(names) = root.list(drv) {
        let bound: Vec<String> =
            names.iter().filter(|n| n.parse::<vfioctl_core::pci::PciAddress>().is_ok()).cloned().collect();
        return Some(if bound.is_empty() {
            format!("the vfio-pci driver is registered ({drv})")
        } else {
            format!("{} on vfio-pci now", bound.join(", "))
        });
    }
    root.exists("/sys/module/vfio_pci").then(|| "vfio_pci is loaded (/sys/module/vfio_pci)".to_string())
}

/// DMI vendors of virtual machines' firmware.
const VM_VENDORS: &[&str] = &[
    "QEMU",
    "innotek GmbH",
    "VMware, Inc.",
    "Xen",
    "Parallels",
    "Red Hat",
    "Microsoft Corporation",
    "Amazon EC2",
    "Google",
];

/// The hypervisor, when this host is a virtual machine: the CPU's `hypervisor` flag, or
/// a DMI vendor that only virtual firmware reports (Microsoft only with "Virtual Machine").
pub fn virtual_machine(root: &HostRoot, flags: Option<&BTreeSet<String>>) -> Option<String> {
    let dmi =
        |f: &str| read(root, &format!("/sys/class/dmi/id/{f}")).map(|t| t.trim().to_string()).filter(|t| !t.is_empty());
    let vendor = dmi("sys_vendor");
    let product = dmi("product_name");
    let by_dmi = vendor.as_deref().is_some_and(|v| {
        VM_VENDORS.contains(&v)
            && (v != "Microsoft Corporation" || product.as_deref().is_some_and(|p| p.contains("Virtual Machine")))
    });
    let flag = flags.is_some_and(|f| f.contains("hypervisor"));
    if !by_dmi && !flag {
        return None;
    }
    let name = [vendor, product].into_iter().flatten().collect::<Vec<_>>().join(" ");
    Some(if name.is_empty() { "the CPU reports a hypervisor".to_string() } else { name })
}

fn modprobe(root: &HostRoot) -> ModprobeConfig {
    let listing: Vec<(&str, Vec<String>)> =
        MODPROBE_DIRS.iter().map(|d| (*d, root.list(d).unwrap_or_default())).collect();
    let mut config = ModprobeConfig::default();
    for path in modprobe_d::order(&listing) {
        if let Some(t) = read(root, &path) {
            config.add(&t);
        }
    }
    config
}

/// The modprobe.d files of the root in kmod's order, with their text; a directory or file
/// that cannot be read is an error (only "no such file" is absent).
pub fn modprobe_files(root: &HostRoot) -> Result<Vec<modprobe_d::File>, crate::root::RootError> {
    // MODPROBE_DIRS is kmod's priority order, which `config_files` keeps.
    let files = crate::boot::config_files(root, None, MODPROBE_DIRS, ".conf")?;
    Ok(files.into_iter().map(|(path, text)| modprobe_d::File { path: path.display().to_string(), text }).collect())
}

fn hugepages(root: &HostRoot) -> Vec<HugepagePool> {
    let pools_in = |dir: &str, node: Option<u32>| -> Vec<HugepagePool> {
        root.list(dir)
            .unwrap_or_default()
            .into_iter()
            .filter_map(|n| {
                let size_kib = n.strip_prefix("hugepages-")?.strip_suffix("kB")?.parse().ok()?;
                let num = |f: &str| read(root, &format!("{dir}/{n}/{f}")).and_then(|v| sysfs_value::dec_u32(&v).ok());
                Some(HugepagePool {
                    node,
                    size_kib,
                    total: u64::from(num("nr_hugepages")?),
                    free: u64::from(num("free_hugepages").unwrap_or(0)),
                })
            })
            .collect()
    };
    let nodes: Vec<u32> = root
        .list("/sys/devices/system/node")
        .unwrap_or_default()
        .iter()
        .filter_map(|n| n.strip_prefix("node")?.parse().ok())
        .collect();
    let mut pools: Vec<HugepagePool> =
        nodes.iter().flat_map(|n| pools_in(&format!("/sys/devices/system/node/node{n}/hugepages"), Some(*n))).collect();
    if pools.is_empty() {
        pools = pools_in("/sys/kernel/mm/hugepages", None);
    }
    pools
}

fn ovmf(root: &HostRoot) -> Vec<String> {
    let mut found: BTreeSet<String> =
        OVMF_PATHS.iter().filter(|p| root.path(p).is_file()).map(|p| p.to_string()).collect();
    for dir in FIRMWARE_DESCRIPTORS {
        for name in root.list(dir).unwrap_or_default().into_iter().filter(|n| n.ends_with(".json")) {
            let Some(text) = read(root, &format!("{dir}/{name}")) else { continue };
            let Ok(v) = serde_json::from_str::<serde_json::Value>(&text) else { continue };
            if !v["targets"].as_array().is_some_and(|t| t.iter().any(|t| t["architecture"] == "x86_64")) {
                continue;
            }
            if let Some(file) = v["mapping"]["executable"]["filename"].as_str() {
                if root.path(file).is_file() {
                    found.insert(file.to_string());
                }
            }
        }
    }
    found.into_iter().collect()
}

fn program(root: &HostRoot, paths: &[&str], live: bool) -> Option<Program> {
    let path = paths.iter().find(|p| root.path(p).is_file())?;
    let version = if live {
        if let Some(l) = root.log() {
            l.note_program(&[path, "--version"]);
        }
        run_version(path)
    } else {
        read(root, path).and_then(|t| t.strip_prefix(PROGRAM_MARKER).map(|v| version_of(v.trim())))
    };
    Some(Program { path: path.to_string(), version: version.filter(|v| !v.is_empty()) })
}

/// `QEMU emulator version 7.2.9 (Debian …)` → `7.2.9`; `libvirtd (libvirt) 9.0.0` → `9.0.0`.
pub fn version_of(output: &str) -> String {
    let first = output.lines().next().unwrap_or("");
    first
        .split_whitespace()
        .find(|w| w.chars().next().is_some_and(|c| c.is_ascii_digit()) && w.contains('.'))
        .unwrap_or(first)
        .trim_end_matches(',')
        .to_string()
}

/// Runs `PROGRAM --version` with a time limit, returning its first line.
pub fn version_output(path: &str) -> Option<String> {
    let mut child = Command::new(path)
        .arg("--version")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    let start = Instant::now();
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if start.elapsed() < Duration::from_secs(5) => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                return None;
            }
        }
    }
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take()?, &mut out).ok()?;
    out.lines().next().map(str::to_string)
}

fn run_version(path: &str) -> Option<String> {
    version_output(path).map(|o| version_of(&o))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroup_v1_and_v2() {
        let v1 = "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n\
                  33 31 0:30 / /sys/fs/cgroup/cpuacct rw - cgroup cgroup rw,cpuacct\n\
                  41 31 0:38 / /sys/fs/cgroup/unified rw - cgroup2 cgroup2 rw\n";
        let set = controllers_from(v1, "0::/\n", |_| None);
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["cpu", "cpuacct"]);
        let v2 = "30 23 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        let set = controllers_from(v2, "0::/user.slice/session-1.scope\n", |p| {
            (p == "/sys/fs/cgroup/user.slice/session-1.scope/cgroup.controllers")
                .then(|| "cpu io memory pids\n".to_string())
        });
        assert_eq!(set.into_iter().collect::<Vec<_>>(), ["blkio", "cpu", "cpuacct", "devices", "memory", "pids"]);
    }

    #[test]
    fn versions_and_globs() {
        assert_eq!(version_of("QEMU emulator version 7.2.9 (Debian 1:7.2+dfsg-7+deb12u6)\nCopyright"), "7.2.9");
        assert_eq!(version_of("libvirtd (libvirt) 9.0.0"), "9.0.0");
    }
}
