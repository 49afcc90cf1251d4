//! Gathering the facts `vfioctl check` judges (see `vfioctl_core::check`), from a host
//! root. Facts that only the running machine has (device nodes, daemons, program
//! versions) are asked of it only when the root is `/`; on a snapshot they stay unknown,
//! except program versions a snapshot recorded in its marker files.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vfioctl_core::check::{DeviceNodes, Facts, HugepagePool, NextBoot, Program};
use vfioctl_core::cmdline::Cmdline;
use vfioctl_core::modprobe::ModprobeConfig;
use vfioctl_core::vendor::{self, CpuVendor};
use vfioctl_core::{grub, iomem, kmod, sysfs_value};

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
pub const MODPROBE_DIRS: &[&str] =
    &["/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/usr/lib/modprobe.d", "/lib/modprobe.d"];
/// Modules whose parameters the checks read.
pub const PARAM_MODULES: &[&str] = &["kvm", "kvm_amd", "kvm_intel", "vfio", "vfio_pci", "vfio_iommu_type1"];

fn read(root: &HostRoot, path: &str) -> Option<String> {
    root.read_optional(path).ok().flatten()
}

/// Gathers every fact for `vfioctl check`.
pub fn gather(root: &HostRoot) -> Facts {
    let live = root.is_live();
    let cpuinfo = read(root, "/proc/cpuinfo");
    let vendor = cpuinfo.as_deref().and_then(CpuVendor::from_cpuinfo).unwrap_or(CpuVendor::Other);
    let mut f = Facts::unknown(live, vendor);
    f.cpu_flags = cpuinfo.as_deref().map(|c| vendor::cpu_flags(c).into_iter().collect());
    if live {
        f.nodes = device_nodes();
        f.libvirt_reachable = Some(LIBVIRT_SOCKETS.iter().any(|s| std::os::unix::net::UnixStream::connect(s).is_ok()));
    }
    f.cgroup_controllers = cgroup_controllers(root);
    f.acpi_dmar = root.exists("/sys/firmware/acpi/tables/DMAR");
    f.acpi_ivrs = root.exists("/sys/firmware/acpi/tables/IVRS");
    f.iommu_groups = root.list(crate::pci::IOMMU_GROUPS).ok().map(|g| g.len());
    f.cmdline = read(root, "/proc/cmdline").map(|c| Cmdline::parse(&c));
    f.next_boot = next_boot(root);
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
    f.qemu = program(root, QEMU_PATHS, live);
    f.libvirt = program(root, LIBVIRT_PATHS, live);
    f.iomem = read(root, "/proc/iomem").map(|t| iomem::parse(&t));
    f
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

/// The kernel command line the next boot will use, from the boot loader configuration
/// this host has, most specific first.
pub fn next_boot(root: &HostRoot) -> Option<NextBoot> {
    let found = |source: String, text: &str| Some(NextBoot { source, cmdline: Cmdline::parse(text) });
    if let Some(t) = read(root, "/etc/kernel/cmdline") {
        return found("/etc/kernel/cmdline".into(), &t);
    }
    for dir in ["/boot/loader/entries", "/efi/loader/entries", "/boot/efi/loader/entries"] {
        let Ok(names) = root.list(dir) else { continue };
        let entries: Vec<&String> = names.iter().filter(|n| n.ends_with(".conf")).collect();
        if entries.is_empty() {
            continue;
        }
        let loader = dir.trim_end_matches("/entries");
        let default = read(root, &format!("{loader}/loader.conf"))
            .and_then(|t| t.lines().find_map(|l| l.trim().strip_prefix("default").map(|v| v.trim().to_string())));
        let chosen = default
            .as_deref()
            .and_then(|pat| {
                entries.iter().find(|e| kmod::glob_match(pat, e) || kmod::glob_match(&format!("{pat}.conf"), e))
            })
            .or(entries.last())
            .copied()?;
        let path = format!("{dir}/{chosen}");
        let text = read(root, &path)?;
        let mut options: Vec<&str> =
            text.lines().filter_map(|l| l.trim().strip_prefix("options")).map(str::trim).collect();
        let grubenv;
        if options.iter().any(|o| o.contains("$kernelopts")) {
            // Fedora/RHEL BLS entries under GRUB take $kernelopts from grubenv.
            grubenv = read(root, "/boot/grub2/grubenv")
                .and_then(|t| t.lines().find_map(|l| l.strip_prefix("kernelopts=").map(str::to_string)))
                .unwrap_or_default();
            options = options.iter().map(|o| if o.contains("$kernelopts") { grubenv.as_str() } else { o }).collect();
        }
        return found(format!("boot loader entry {path}"), &options.join(" "));
    }
    if let Some(main) = read(root, "/etc/default/grub") {
        let mut files = vec![main];
        let mut source = "/etc/default/grub".to_string();
        if let Ok(names) = root.list("/etc/default/grub.d") {
            for n in names.iter().filter(|n| n.ends_with(".cfg")) {
                if let Some(t) = read(root, &format!("/etc/default/grub.d/{n}")) {
                    files.push(t);
                    source.push_str(&format!(" + grub.d/{n}"));
                }
            }
        }
        if let Some(c) = grub::kernel_cmdline(files.iter().map(String::as_str)) {
            return found(source, &c);
        }
    }
    if let Some(t) = read(root, "/boot/refind_linux.conf") {
        let line = t.lines().map(str::trim).find(|l| !l.is_empty() && !l.starts_with('#'))?;
        let quoted: Vec<&str> = line.split('"').skip(1).step_by(2).collect();
        return found("/boot/refind_linux.conf".into(), quoted.get(1).copied().unwrap_or(""));
    }
    if let Some(t) = read(root, "/etc/kernelstub/configuration") {
        let v: serde_json::Value = serde_json::from_str(&t).ok()?;
        let opts: Vec<&str> = v["user"]["kernel_options"].as_array()?.iter().filter_map(|o| o.as_str()).collect();
        return found("kernelstub (/etc/kernelstub/configuration)".into(), &opts.join(" "));
    }
    for path in ["/boot/limine.conf", "/boot/limine/limine.conf", "/boot/EFI/limine/limine.conf"] {
        if let Some(t) = read(root, path) {
            let line = t.lines().find_map(|l| {
                let l = l.trim();
                l.strip_prefix("cmdline:")
                    .or_else(|| l.strip_prefix("kernel_cmdline:"))
                    .or_else(|| l.strip_prefix("CMDLINE="))
            });
            if let Some(l) = line {
                return found(path.to_string(), l.trim());
            }
        }
    }
    None
}

fn modprobe(root: &HostRoot) -> ModprobeConfig {
    let mut files: BTreeMap<String, String> = BTreeMap::new();
    for dir in MODPROBE_DIRS {
        for name in root.list(dir).unwrap_or_default().into_iter().filter(|n| n.ends_with(".conf")) {
            if !files.contains_key(&name) {
                files.insert(name.clone(), format!("{dir}/{name}"));
            }
        }
    }
    let mut config = ModprobeConfig::default();
    for path in files.values() {
        if let Some(t) = read(root, path) {
            config.add(&t);
        }
    }
    config
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

    #[test]
    fn next_boot_from_each_loader() {
        let dir = tempfile::tempdir().unwrap();
        let root = HostRoot::new(dir.path());
        let w = |p: &str, t: &str| {
            let real = root.path(p);
            std::fs::create_dir_all(real.parent().unwrap()).unwrap();
            std::fs::write(real, t).unwrap();
        };
        assert_eq!(next_boot(&root), None);
        w("/boot/refind_linux.conf", "\"Boot with standard options\"  \"ro root=UUID=x quiet amd_iommu=on\"\n");
        assert_eq!(next_boot(&root).unwrap().cmdline.value("amd_iommu"), Some("on"));
        w("/etc/default/grub", "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\"\nGRUB_CMDLINE_LINUX=\"intel_iommu=on\"\n");
        w("/etc/default/grub.d/90-vfio.cfg", "GRUB_CMDLINE_LINUX_DEFAULT=\"$GRUB_CMDLINE_LINUX_DEFAULT iommu=pt\"\n");
        let nb = next_boot(&root).unwrap();
        assert_eq!(nb.cmdline.to_string(), "intel_iommu=on quiet splash iommu=pt");
        assert!(nb.source.contains("grub.d/90-vfio.cfg"));
        w("/boot/loader/loader.conf", "default arch.conf\n");
        w(
            "/boot/loader/entries/arch.conf",
            "title Arch\nlinux /vmlinuz-linux\noptions root=PARTLABEL=x amd_iommu=on\noptions iommu=pt\n",
        );
        w("/boot/loader/entries/arch-lts.conf", "options root=PARTLABEL=x\n");
        let nb = next_boot(&root).unwrap();
        assert_eq!(nb.source, "boot loader entry /boot/loader/entries/arch.conf");
        assert!(nb.cmdline.has_value("iommu", "pt"));
        w("/etc/kernel/cmdline", "root=UUID=y rw\n");
        assert_eq!(next_boot(&root).unwrap().source, "/etc/kernel/cmdline");
    }
}
