//! The software side of a host: kernel release and version, kernel modules (available,
//! built in, loaded, parameters), device nodes, cgroup mounts, installed packages and the
//! ACPI IOMMU tables.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use crate::block::MountLine;
use crate::pci::Dev;
use crate::spec::{Cgroup, Distro, Package, Spec};
use crate::tree::Tree;
use crate::Error;

/// A kernel release split into the parts that matter here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kernel {
    pub release: String,
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
    /// The distribution ABI number (`45` of `6.8.0-45-generic`), else 1.
    pub abi: u32,
}

impl Kernel {
    pub fn parse(release: &str) -> Result<Self, Error> {
        let bad = || Error::Spec(format!("host.kernel `{release}` is not a release like 6.1.0-18-amd64"));
        if release.is_empty() || release.contains(|c: char| c.is_whitespace() || c == '/') {
            return Err(bad());
        }
        let (version, local) = release.split_once('-').unwrap_or((release, ""));
        let mut nums = version.split('.').map(str::parse::<u32>);
        let major = nums.next().and_then(Result::ok).ok_or_else(bad)?;
        let minor = nums.next().and_then(Result::ok).ok_or_else(bad)?;
        let patch = nums.next().and_then(Result::ok).unwrap_or(0);
        let abi = local.split(['-', '.']).next().and_then(|s| s.parse().ok()).unwrap_or(1);
        Ok(Kernel { release: release.to_string(), major, minor, patch, abi })
    }

    /// At least `major.minor`.
    pub fn at_least(&self, major: u32, minor: u32) -> bool {
        (self.major, self.minor) >= (major, minor)
    }
}

/// The module file suffix of a distro's kernel build.
fn suffix(distro: Option<Distro>, k: &Kernel) -> &'static str {
    match distro {
        // Arch compressed with xz, then zstd from 5.13 (2021).
        Some(Distro::Arch) if k.at_least(5, 13) => ".ko.zst",
        Some(Distro::Arch) => ".ko.xz",
        // Ubuntu compresses with zstd since 23.10 (6.5).
        Some(Distro::Ubuntu) if k.at_least(6, 5) => ".ko.zst",
        Some(Distro::Fedora | Distro::Rhel) => ".ko.xz",
        // Debian 12 and older Ubuntu: uncompressed.
        _ => ".ko",
    }
}

/// `/proc/version` as the distro's kernel packages print it.
pub fn proc_version(distro: Option<Distro>, k: &Kernel) -> String {
    let r = &k.release;
    let (maj, min, patch) = (k.major, k.minor, k.patch);
    match distro {
        Some(Distro::Debian) => format!(
            "Linux version {r} (debian-kernel@lists.debian.org) (gcc-12 (Debian 12.2.0-14) 12.2.0, GNU ld (GNU Binutils for Debian) 2.40) #1 SMP PREEMPT_DYNAMIC Debian {maj}.{min}.{}-1 (2024-02-01)\n",
            patch.max(76)
        ),
        Some(Distro::Ubuntu) if k.at_least(6, 8) => format!(
            "Linux version {r} (buildd@lcy02-amd64-115) (x86_64-linux-gnu-gcc-13 (Ubuntu 13.2.0-23ubuntu4) 13.2.0, GNU ld (GNU Binutils for Ubuntu) 2.42) #{}-Ubuntu SMP PREEMPT_DYNAMIC Fri Aug 30 12:02:04 UTC 2024\n",
            k.abi
        ),
        Some(Distro::Ubuntu) if k.at_least(5, 15) => format!(
            "Linux version {r} (buildd@lcy02-amd64-086) (gcc (Ubuntu 11.4.0-1ubuntu1~22.04) 11.4.0, GNU ld (GNU Binutils for Ubuntu) 2.38) #{}-Ubuntu SMP Fri Aug 2 19:25:20 UTC 2024\n",
            k.abi + 10
        ),
        Some(Distro::Ubuntu) => format!(
            "Linux version {r} (buildd@lgw01-amd64-015) (gcc version 7.4.0 (Ubuntu 7.4.0-1ubuntu1~18.04.1)) #{}~18.04.1-Ubuntu SMP Thu Oct 10 10:36:02 UTC 2019\n",
            k.abi + 1
        ),
        Some(Distro::Arch) if k.at_least(6, 0) => format!(
            "Linux version {r} (linux@archlinux) (gcc (GCC) 14.2.1 20240910, GNU ld (GNU Binutils) 2.43.0) #1 SMP PREEMPT_DYNAMIC Tue, 22 Oct 2024 18:31:38 +0000\n"
        ),
        Some(Distro::Arch) => format!(
            "Linux version {r} (linux@archlinux) (gcc (GCC) 10.2.0, GNU ld (GNU Binutils) 2.35.1) #1 SMP PREEMPT Tue, 10 Nov 2020 22:44:11 +0000\n"
        ),
        Some(Distro::Fedora) if r.contains(".fc40.") => format!(
            "Linux version {r} (mockbuild@de4b6cbb3ba04ac8ab5b3e3fbe2a7cf9) (gcc (GCC) 14.0.1 20240411 (Red Hat 14.0.1-0), GNU ld version 2.41-34.fc40) #1 SMP PREEMPT_DYNAMIC Thu Apr 11 18:25:26 UTC 2024\n"
        ),
        Some(Distro::Fedora) => format!(
            "Linux version {r} (mockbuild@bkernel01.iad2.fedoraproject.org) (gcc (GCC) 13.2.1 20240316 (Red Hat 13.2.1-7), GNU ld version 2.40-14.fc39) #1 SMP PREEMPT_DYNAMIC Mon Apr  1 17:58:11 UTC 2024\n"
        ),
        Some(Distro::Rhel) => format!(
            "Linux version {r} (mockbuild@x86-64-01.build.eng.rdu2.redhat.com) (gcc (GCC) 11.4.1 20231218 (Red Hat 11.4.1-3), GNU ld version 2.35.2-43.el9) #1 SMP PREEMPT_DYNAMIC Wed Apr 10 10:29:16 EDT 2024\n"
        ),
        None => format!("Linux version {r} (builder@localhost) (gcc (GCC) 12.2.0, GNU ld 2.40) #1 SMP PREEMPT_DYNAMIC\n"),
    }
}

/// A kernel module: its path under `kernel/` (without suffix), its dependencies (module
/// names), and a plausible size for /proc/modules.
#[derive(Debug, Clone)]
struct Module {
    path: String,
    deps: Vec<&'static str>,
    size: u32,
    /// Out-of-tree proprietary module: `(POE)` taint in /proc/modules.
    proprietary: bool,
}

/// Module name from a file path: the base name, `-` as `_`.
fn module_name(path: &str) -> String {
    path.rsplit('/').next().unwrap_or(path).replace('-', "_")
}

/// Every module the generated modules.dep knows, by module name.
fn catalog(k: &Kernel, distro: Option<Distro>) -> BTreeMap<String, Module> {
    let mut m = BTreeMap::new();
    let mut add = |path: &str, deps: &[&'static str], size: u32| {
        m.insert(module_name(path), Module { path: path.into(), deps: deps.to_vec(), size, proprietary: false });
    };
    // vfio: virqfd was merged into vfio in 6.2, vfio-pci-core split out in 5.16, iommufd
    // appeared in 6.2.
    let old_virqfd = !k.at_least(6, 2);
    if old_virqfd {
        add("kernel/drivers/vfio/vfio", &[], 45056);
        add("kernel/drivers/vfio/vfio_virqfd", &[], 16384);
    } else {
        add("kernel/drivers/iommu/iommufd/iommufd", &[], 98304);
        add("kernel/drivers/vfio/vfio", &["iommufd"], 69632);
    }
    add("kernel/drivers/vfio/vfio_iommu_type1", &["vfio"], 45056);
    add("kernel/virt/lib/irqbypass", &[], 16384);
    let virqfd: &[&'static str] = if old_virqfd { &["vfio_virqfd"] } else { &[] };
    if k.at_least(5, 16) {
        let core: Vec<&'static str> = [&["vfio", "irqbypass"][..], virqfd].concat();
        add("kernel/drivers/vfio/pci/vfio-pci-core", &core, 86016);
        let pci: Vec<&'static str> = [&["vfio_pci_core", "vfio", "irqbypass"][..], virqfd].concat();
        add("kernel/drivers/vfio/pci/vfio-pci", &pci, 16384);
    } else {
        let pci: Vec<&'static str> = [&["vfio", "irqbypass"][..], virqfd].concat();
        add("kernel/drivers/vfio/pci/vfio-pci", &pci, 53248);
    }
    add("kernel/arch/x86/kvm/kvm", &["irqbypass"], 1146880);
    add("kernel/arch/x86/kvm/kvm-amd", &["kvm", "ccp"], 200704);
    add("kernel/arch/x86/kvm/kvm-intel", &["kvm"], 401408);
    add("kernel/drivers/crypto/ccp/ccp", &[], 118784);
    let iotlb: &[&'static str] = if k.at_least(5, 8) { &["vhost_iotlb"] } else { &[] };
    if k.at_least(5, 8) {
        add("kernel/drivers/vhost/vhost_iotlb", &[], 16384);
    }
    add("kernel/drivers/vhost/vhost", iotlb, 61440);
    let net: Vec<&'static str> = [&["vhost", "tap", "tun"][..], iotlb].concat();
    add("kernel/drivers/vhost/vhost_net", &net, 36864);
    add("kernel/drivers/net/tun", &[], 61440);
    add("kernel/drivers/net/tap", &[], 28672);
    // Graphics.
    add("kernel/drivers/gpu/drm/drm", &[], 622592);
    add("kernel/drivers/gpu/drm/drm_kms_helper", &["drm"], 196608);
    add("kernel/drivers/gpu/drm/ttm/ttm", &["drm"], 106496);
    add("kernel/drivers/gpu/drm/scheduler/gpu-sched", &["drm"], 45056);
    add("kernel/drivers/i2c/algos/i2c-algo-bit", &[], 16384);
    add("kernel/drivers/acpi/video", &[], 61440);
    add(
        "kernel/drivers/gpu/drm/amd/amdgpu/amdgpu",
        &["gpu_sched", "i2c_algo_bit", "ttm", "drm_kms_helper", "drm"],
        5910528,
    );
    add("kernel/drivers/gpu/drm/radeon/radeon", &["i2c_algo_bit", "ttm", "drm_kms_helper", "drm"], 1466368);
    add("kernel/drivers/gpu/drm/i915/i915", &["i2c_algo_bit", "ttm", "drm_kms_helper", "drm", "video"], 3559424);
    add("kernel/drivers/gpu/drm/nouveau/nouveau", &["i2c_algo_bit", "ttm", "drm_kms_helper", "drm", "video"], 2891776);
    add("kernel/drivers/gpu/drm/ast/ast", &["i2c_algo_bit", "drm_kms_helper", "drm"], 61440);
    add("kernel/drivers/i2c/busses/i2c-nvidia-gpu", &[], 16384);
    // Sound.
    add("kernel/sound/soundcore", &[], 16384);
    add("kernel/sound/core/snd", &["soundcore"], 98304);
    add("kernel/sound/core/snd-timer", &["snd"], 40960);
    add("kernel/sound/core/snd-pcm", &["snd_timer", "snd"], 135168);
    add("kernel/sound/core/snd-hwdep", &["snd"], 20480);
    add("kernel/sound/hda/snd-hda-core", &["snd_pcm", "snd"], 94208);
    add("kernel/sound/pci/hda/snd-hda-codec", &["snd_hwdep", "snd_hda_core", "snd_pcm", "snd"], 143360);
    let hda: &[&'static str] = if k.at_least(5, 6) {
        add("kernel/sound/hda/snd-intel-dspcfg", &["snd_hda_core"], 24576);
        &["snd_intel_dspcfg", "snd_hda_codec", "snd_hda_core", "snd_pcm", "snd"]
    } else {
        &["snd_hda_codec", "snd_hda_core", "snd_pcm", "snd"]
    };
    add("kernel/sound/pci/hda/snd-hda-intel", hda, 45056);
    // Storage.
    add("kernel/drivers/nvme/host/nvme-core", &[], 118784);
    add("kernel/drivers/nvme/host/nvme", &["nvme_core"], 45056);
    add("kernel/drivers/ata/libata", &[], 245760);
    add("kernel/drivers/ata/libahci", &["libata"], 36864);
    add("kernel/drivers/ata/ahci", &["libahci", "libata"], 40960);
    add("kernel/drivers/scsi/mpt3sas/mpt3sas", &[], 368640);
    // USB.
    add("kernel/drivers/usb/common/usb-common", &[], 16384);
    add("kernel/drivers/usb/core/usbcore", &["usb_common"], 290816);
    add("kernel/drivers/usb/host/xhci-hcd", &["usbcore"], 266240);
    add("kernel/drivers/usb/host/xhci-pci", &["xhci_hcd", "usbcore"], 24576);
    // Network.
    add("kernel/drivers/pps/pps_core", &[], 24576);
    add("kernel/drivers/ptp/ptp", &["pps_core"], 32768);
    add("kernel/drivers/dca/dca", &[], 16384);
    add("kernel/drivers/net/ethernet/intel/igb/igb", &["dca", "i2c_algo_bit", "ptp"], 237568);
    add("kernel/drivers/net/ethernet/intel/igc/igc", &["ptp"], 163840);
    add("kernel/drivers/net/ethernet/intel/i40e/i40e", &["ptp"], 462848);
    add("kernel/drivers/net/ethernet/mellanox/mlx5/core/mlx5_core", &["ptp"], 1802240);
    add("kernel/drivers/net/ethernet/aquantia/atlantic/atlantic", &["ptp"], 180224);
    add("kernel/drivers/net/ethernet/realtek/r8169", &[], 110592);
    add("kernel/net/wireless/cfg80211", &[], 974848);
    add("kernel/drivers/net/wireless/intel/iwlwifi/iwlwifi", &["cfg80211"], 466944);
    add("kernel/drivers/misc/mei/mei", &[], 163840);
    add("kernel/drivers/misc/mei/mei-me", &["mei"], 49152);
    add("kernel/net/mac80211/mac80211", &["cfg80211"], 913408);
    add("kernel/drivers/net/wireless/ath/ath", &["cfg80211"], 32768);
    add("kernel/drivers/net/wireless/ath/ath10k/ath10k_core", &["ath", "mac80211", "cfg80211"], 471040);
    add("kernel/drivers/net/wireless/ath/ath10k/ath10k_pci", &["ath10k_core", "ath", "mac80211", "cfg80211"], 49152);
    add("kernel/drivers/net/wireless/ath/wil6210/wil6210", &["cfg80211"], 208896);
    // Platform.
    add("kernel/drivers/hwmon/k10temp", &[], 16384);
    add("kernel/drivers/i2c/busses/i2c-piix4", &[], 28672);
    add("kernel/drivers/i2c/i2c-smbus", &[], 20480);
    add("kernel/drivers/i2c/busses/i2c-i801", &["i2c_smbus"], 36864);
    if k.at_least(5, 18) {
        add("kernel/drivers/spi/spi-intel", &[], 32768);
        add("kernel/drivers/spi/spi-intel-pci", &["spi_intel"], 16384);
    } else {
        add("kernel/drivers/mtd/spi-nor/controllers/intel-spi", &[], 24576);
        add("kernel/drivers/mtd/spi-nor/controllers/intel-spi-pci", &["intel_spi"], 16384);
    }
    // NVIDIA's driver: out of tree, built by DKMS (Ubuntu: its prebuilt module package).
    let nvidia = match distro {
        Some(Distro::Arch) => "extramodules/nvidia",
        Some(Distro::Ubuntu) if k.at_least(6, 8) => "kernel/nvidia-550/nvidia",
        // Fedora: akmod-nvidia (RPM Fusion).
        Some(Distro::Fedora) => "extra/nvidia/nvidia",
        // RHEL: NVIDIA's precompiled kmod packages.
        Some(Distro::Rhel) => "extra/drivers/video/nvidia/nvidia",
        _ => "updates/dkms/nvidia",
    };
    m.insert("nvidia".into(), Module { path: nvidia.into(), deps: vec![], size: 56_807_424, proprietary: true });
    m
}

/// The module (by name) that provides a PCI driver, or `None` if the driver is built in
/// (like pcieport) or unknown to us and thus assumed a module of its own name.
fn driver_module(driver: &str, k: &Kernel) -> Option<String> {
    let m = match driver {
        "pcieport" | "shpchp" => return None,
        "xhci_hcd" => "xhci_pci",
        "piix4_smbus" => "i2c_piix4",
        "i801_smbus" => "i2c_i801",
        "intel-spi" if k.at_least(5, 18) => "spi_intel_pci",
        "intel-spi" => "intel_spi_pci",
        "nvidia-gpu" => "i2c_nvidia_gpu",
        "vfio-pci" => "vfio_pci",
        d => return Some(d.replace('-', "_")),
    };
    Some(m.into())
}

/// Modules every distro kernel builds in (tristate options set to `y`), plus Ubuntu's
/// extra built-ins. Paths without suffix.
fn builtins(distro: Option<Distro>) -> Vec<&'static str> {
    let mut v = vec![
        "kernel/arch/x86/crypto/aesni-intel",
        "kernel/crypto/crc32c_generic",
        "kernel/drivers/char/hw_random/rng-core",
        "kernel/drivers/input/keyboard/atkbd",
        "kernel/drivers/input/serio/i8042",
        "kernel/drivers/input/serio/serio",
        "kernel/drivers/pci/hotplug/acpiphp",
        "kernel/drivers/rtc/rtc-cmos",
        "kernel/drivers/tty/serial/8250/8250",
        "kernel/drivers/tty/serial/8250/8250_pci",
        "kernel/drivers/video/fbdev/core/fb",
        "kernel/fs/configfs/configfs",
        "kernel/fs/efivarfs/efivarfs",
        "kernel/lib/crc32",
    ];
    if distro == Some(Distro::Ubuntu) {
        // Ubuntu builds USB, ext4 and pci-stub into its generic kernel.
        v.extend([
            "kernel/drivers/pci/pci-stub",
            "kernel/drivers/usb/common/usb-common",
            "kernel/drivers/usb/core/usbcore",
            "kernel/drivers/usb/host/xhci-hcd",
            "kernel/drivers/usb/host/xhci-pci",
            "kernel/fs/ext4/ext4",
            "kernel/fs/jbd2/jbd2",
            "kernel/fs/mbcache",
        ]);
    }
    v
}

/// The vfio modules `builtin_vfio` moves into the kernel.
const VFIO_MODULES: &[&str] = &["vfio", "vfio_virqfd", "vfio_iommu_type1", "vfio_pci", "vfio_pci_core", "iommufd"];

/// Kernel modules: modules.builtin, modules.dep, /proc/modules, parameters.
pub fn write_modules(spec: &Spec, devs: &[Dev], t: &mut Tree) -> Result<(), Error> {
    let Some(release) = &spec.host.kernel else { return Ok(()) };
    let k = Kernel::parse(release)?;
    let distro = spec.host.distro;
    let intel = spec.cpu.vendor == "GenuineIntel";
    let mut cat = catalog(&k, distro);
    let mut builtin: BTreeSet<String> = builtins(distro).iter().map(|p| module_name(p)).collect();
    let mut builtin_paths: Vec<String> = builtins(distro).iter().map(|p| format!("{p}.ko")).collect();
    if spec.host.builtin_vfio {
        for name in VFIO_MODULES {
            if let Some(m) = cat.get(*name) {
                builtin_paths.push(format!("{}.ko", m.path));
                builtin.insert((*name).into());
            }
        }
    }
    // Each bound driver's `module` link names its module, as sysfs has it (xhci_hcd is
    // xhci_pci's driver, nvidia-gpu i2c_nvidia_gpu's).
    let bound: BTreeSet<&str> = devs.iter().filter_map(|d| d.driver.as_deref()).collect();
    for drv in bound {
        if let Some(m) = driver_module(drv, &k) {
            t.link(format!("sys/bus/pci/drivers/{drv}/module"), &format!("sys/module/{m}"));
        }
    }
    // Unknown drivers: a module of their own name.
    for d in devs {
        if let Some(name) = d.driver.as_deref().and_then(|drv| driver_module(drv, &k)) {
            cat.entry(name.clone()).or_insert_with(|| Module {
                path: format!("kernel/drivers/misc/{}", name),
                deps: vec![],
                size: 16384,
                proprietary: false,
            });
        }
    }
    for m in builtin.iter() {
        cat.remove(m);
    }
    for path in &spec.host.extra_modules {
        cat.insert(module_name(path), Module { path: path.clone(), deps: vec![], size: 16384, proprietary: false });
    }
    builtin_paths.sort();
    t.file(format!("lib/modules/{release}/modules.builtin"), lines(&builtin_paths));

    let sfx = suffix(distro, &k);
    let closure = |name: &str, cat: &BTreeMap<String, Module>| -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        let mut stack = vec![name.to_string()];
        while let Some(n) = stack.pop() {
            if let Some(m) = cat.get(&n) {
                for d in &m.deps {
                    if cat.contains_key(*d) && !out.iter().any(|o| o == d) {
                        out.push((*d).to_string());
                        stack.push((*d).to_string());
                    }
                }
            }
        }
        out
    };
    let mut dep: Vec<String> = cat
        .iter()
        .map(|(name, m)| {
            let mut line = format!("{}{sfx}:", m.path);
            for d in closure(name, &cat) {
                let _ = write!(line, " {}{sfx}", cat[&d].path);
            }
            line
        })
        .collect();
    dep.sort();
    t.file(format!("lib/modules/{release}/modules.dep"), lines(&dep));

    // Loaded modules.
    let mut want: BTreeSet<String> = BTreeSet::new();
    want.insert("kvm".into());
    want.insert(if intel { "kvm_intel" } else { "kvm_amd" }.into());
    if spec.host.iommu {
        want.insert("vfio".into());
        want.insert("vfio_iommu_type1".into());
    }
    for d in devs {
        if let Some(name) = d.driver.as_deref().and_then(|drv| driver_module(drv, &k)) {
            want.insert(name);
        }
    }
    let mut loaded: BTreeSet<String> = BTreeSet::new();
    for w in &want {
        if cat.contains_key(w) {
            loaded.insert(w.clone());
            loaded.extend(closure(w, &cat));
        }
    }
    // Users of each loaded module.
    let mut users: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
    for name in &loaded {
        for d in &cat[name].deps {
            if loaded.contains(*d) {
                users.entry(d).or_default().push(name);
            }
        }
    }
    let mut proc_lines: Vec<(u32, String)> = Vec::new();
    for name in &loaded {
        let m = &cat[name];
        let u = users.get(name.as_str()).cloned().unwrap_or_default();
        let bound = devs
            .iter()
            .filter(|d| d.driver.as_deref().and_then(|x| driver_module(x, &k)).as_deref() == Some(name.as_str()))
            .count();
        let refs = u.len() + bound;
        let used_by = if u.is_empty() { "-".to_string() } else { u.iter().map(|x| format!("{x},")).collect() };
        let taint = if m.proprietary { " (POE)" } else { "" };
        proc_lines.push((m.size, format!("{name} {} {refs} {used_by} Live 0x0000000000000000{taint}\n", m.size)));
    }
    // The kernel lists the most recently loaded first; sizes order them plausibly enough
    // (big driver stacks late). Deterministic either way.
    proc_lines.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    t.file("proc/modules", proc_lines.into_iter().map(|(_, l)| l).collect::<String>());

    // Parameters with the kernel's defaults, as that kernel prints them.
    let mut params = |module: &str, list: &[(&str, &str)]| {
        let present = loaded.contains(module) || builtin.contains(module);
        if present {
            for (p, v) in list {
                t.file(format!("sys/module/{module}/parameters/{p}"), format!("{v}\n"));
            }
        }
    };
    let grow = if k.at_least(5, 8) { "0" } else { "2" };
    let mut kvm: Vec<(&str, &str)> = vec![
        ("enable_vmware_backdoor", "N"),
        ("halt_poll_ns", "200000"),
        ("halt_poll_ns_grow", grow),
        ("halt_poll_ns_grow_start", "10000"),
        ("halt_poll_ns_shrink", "0"),
        ("ignore_msrs", "N"),
        ("kvmclock_periodic_sync", "Y"),
        ("lapic_timer_advance_ns", "-1"),
        ("min_timer_period_us", "200"),
        ("report_ignored_msrs", "Y"),
        ("tsc_tolerance_ppm", "250"),
    ];
    if k.at_least(5, 15) {
        kvm.push(("tdp_mmu", "Y"));
    }
    params("kvm", &kvm);
    if intel {
        params(
            "kvm_intel",
            &[
                ("emulate_invalid_guest_state", "Y"),
                ("enable_apicv", "Y"),
                ("enable_shadow_vmcs", "Y"),
                ("ept", "Y"),
                ("flexpriority", "Y"),
                ("nested", "Y"),
                ("pml", "Y"),
                ("unrestricted_guest", "Y"),
                ("vpid", "Y"),
            ],
        );
    } else {
        // npt and avic became bools in 5.11 (were ints), sev in 5.16.
        let new = k.at_least(5, 11);
        let (npt, avic) = if new { ("Y", "N") } else { ("1", "0") };
        let sev = if k.at_least(5, 16) { "N" } else { "0" };
        params(
            "kvm_amd",
            &[
                ("avic", avic),
                ("nested", "1"),
                ("npt", npt),
                ("pause_filter_count", "3000"),
                ("pause_filter_thresh", "128"),
                ("sev", sev),
                ("vgif", "1"),
                ("vls", "1"),
            ],
        );
    }
    params(
        "vfio_iommu_type1",
        &[("allow_unsafe_interrupts", "N"), ("disable_hugepages", "N"), ("dma_entry_limit", "65535")],
    );
    let mut vfio_pci = vec![("disable_idle_d3", "N"), ("disable_vga", "N"), ("nointxmask", "N")];
    if k.at_least(5, 4) {
        vfio_pci.push(("enable_sriov", "N"));
    }
    if k.at_least(5, 9) {
        vfio_pci.push(("disable_denylist", "N"));
    }
    params("vfio_pci", &vfio_pci);
    Ok(())
}

fn lines(v: &[String]) -> String {
    v.iter().map(|l| format!("{l}\n")).collect()
}

/// Device nodes (empty regular files standing in for character devices).
pub fn write_dev(spec: &Spec, devs: &[Dev], t: &mut Tree) {
    t.file("dev/kvm", "");
    t.file("dev/vhost-net", "");
    t.file("dev/net/tun", "");
    if spec.host.iommu {
        t.file("dev/vfio/vfio", "");
        for g in devs.iter().filter(|d| d.driver.as_deref() == Some("vfio-pci")).filter_map(|d| d.group) {
            t.file(format!("dev/vfio/{g}"), "");
        }
    }
}

/// `/proc/self/cgroup`, the cgroup lines of `/proc/self/mountinfo`, and the mounts.
/// Returns the cgroup mounts for a full mountinfo (`block::write_mountinfo`).
pub fn write_cgroup(spec: &Spec, t: &mut Tree) -> Vec<MountLine> {
    let nosuid = "rw,nosuid,nodev,noexec,relatime";
    let mut out = Vec::new();
    let k = spec.host.kernel.as_deref().and_then(|r| Kernel::parse(r).ok());
    let at_least = |a, b| k.as_ref().is_none_or(|k| k.at_least(a, b));
    let scope = "/user.slice/user-1000.slice/session-2.scope";
    match spec.host.cgroup {
        Cgroup::V2 => {
            t.file("proc/self/cgroup", format!("0::{scope}\n"));
            let opts = if at_least(5, 7) { "rw,nsdelegate,memory_recursiveprot" } else { "rw,nsdelegate" };
            out.push(MountLine::new("/sys/fs/cgroup", "0:30", nosuid, "cgroup2", "cgroup2", opts));
            t.file(
                "proc/self/mountinfo",
                format!(
                    "35 24 0:30 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 {opts}\n"
                ),
            );
            let controllers = if at_least(5, 13) {
                "cpuset cpu io memory hugetlb pids rdma misc"
            } else {
                "cpuset cpu io memory hugetlb pids rdma"
            };
            t.file("sys/fs/cgroup/cgroup.controllers", format!("{controllers}\n"));
            t.file("sys/fs/cgroup/cgroup.subtree_control", "cpu io memory pids\n");
        }
        Cgroup::V1 => {
            // systemd's hybrid layout (Ubuntu 18.04 .. 20.10, Debian 10): hierarchy id,
            // mount directory, mount options, path of this process.
            let v1: [(u32, &str, &str, &str); 11] = [
                (11, "cpuset", "cpuset", "/"),
                (10, "memory", "memory", "/user.slice"),
                (9, "devices", "devices", "/user.slice"),
                (8, "freezer", "freezer", "/"),
                (7, "blkio", "blkio", "/user.slice"),
                (6, "pids", "pids", scope),
                (5, "cpu,cpuacct", "cpu,cpuacct", "/user.slice"),
                (4, "net_cls,net_prio", "net_cls,net_prio", "/"),
                (3, "perf_event", "perf_event", "/"),
                (2, "hugetlb", "hugetlb", "/"),
                (1, "systemd", "xattr,name=systemd", scope),
            ];
            let mut cg = String::new();
            for (id, _, opts, path) in &v1 {
                let name = opts.strip_prefix("xattr,").unwrap_or(opts);
                let _ = writeln!(cg, "{id}:{name}:{path}");
            }
            let _ = writeln!(cg, "0::{scope}");
            t.file("proc/self/cgroup", cg);
            out.push(MountLine::new(
                "/sys/fs/cgroup",
                "0:22",
                "ro,nosuid,nodev,noexec",
                "tmpfs",
                "tmpfs",
                "ro,mode=755",
            ));
            out.push(MountLine::new("/sys/fs/cgroup/unified", "0:23", nosuid, "cgroup2", "cgroup", "rw"));
            for (_, dir, opts, _) in v1.iter().rev() {
                out.push(MountLine::new(
                    &format!("/sys/fs/cgroup/{dir}"),
                    "0:0",
                    nosuid,
                    "cgroup",
                    "cgroup",
                    &format!("rw,{opts}"),
                ));
            }
            let mut mi = String::from(
                "26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup rw\n",
            );
            for (i, (_, dir, opts, _)) in v1.iter().rev().enumerate() {
                let n = 27 + i as u32;
                let _ = writeln!(
                    mi,
                    "{n} 25 0:{} / /sys/fs/cgroup/{dir} rw,nosuid,nodev,noexec,relatime shared:{} - cgroup cgroup rw,{opts}",
                    n - 3,
                    n - 16
                );
            }
            t.file("proc/self/mountinfo", mi);
            t.file("sys/fs/cgroup/unified/cgroup.controllers", "");
            for (_, dir, _, _) in &v1 {
                t.file(format!("sys/fs/cgroup/{dir}/cgroup.procs"), "");
            }
            for (link, target) in [
                ("cpu", "cpu,cpuacct"),
                ("cpuacct", "cpu,cpuacct"),
                ("net_cls", "net_cls,net_prio"),
                ("net_prio", "net_cls,net_prio"),
            ] {
                t.link(format!("sys/fs/cgroup/{link}"), &format!("sys/fs/cgroup/{target}"));
            }
        }
    }
    out
}

/// Where each distro installs what a package provides. Empty marker files stand for the
/// installed files; `ovmf` also installs a QEMU firmware descriptor (a real JSON file).
///
/// (distro, "old era" (kernel before the cut-off release), package, paths)
const PACKAGE_FILES: &[(Distro, bool, Package, &[&str])] = &[
    // Debian 11+/Ubuntu 22.04+: qemu-system-x86, ovmf (4 MiB images), libvirt-daemon.
    (Distro::Debian, false, Package::Qemu, &["usr/bin/qemu-system-x86_64"]),
    (
        Distro::Debian,
        false,
        Package::Ovmf,
        &[
            "usr/share/OVMF/OVMF_CODE_4M.fd",
            "usr/share/OVMF/OVMF_CODE_4M.secboot.fd",
            "usr/share/OVMF/OVMF_VARS_4M.fd",
            "usr/share/OVMF/OVMF_VARS_4M.ms.fd",
        ],
    ),
    (Distro::Debian, false, Package::Libvirt, &["usr/sbin/libvirtd", "usr/bin/virsh"]),
    // Debian 10 and older: 2 MiB images.
    (Distro::Debian, true, Package::Qemu, &["usr/bin/qemu-system-x86_64"]),
    (Distro::Debian, true, Package::Ovmf, &["usr/share/OVMF/OVMF_CODE.fd", "usr/share/OVMF/OVMF_VARS.fd"]),
    (Distro::Debian, true, Package::Libvirt, &["usr/sbin/libvirtd", "usr/bin/virsh"]),
    // Ubuntu uses Debian's packages and paths (mapped where the table is read); only its era cut-off differs.
    // Arch since edk2-ovmf 202202: /usr/share/edk2/x64, 4 MiB images.
    (Distro::Arch, false, Package::Qemu, &["usr/bin/qemu-system-x86_64"]),
    (
        Distro::Arch,
        false,
        Package::Ovmf,
        &[
            "usr/share/edk2/x64/OVMF_CODE.4m.fd",
            "usr/share/edk2/x64/OVMF_CODE.secboot.4m.fd",
            "usr/share/edk2/x64/OVMF_VARS.4m.fd",
        ],
    ),
    (Distro::Arch, false, Package::Libvirt, &["usr/bin/libvirtd", "usr/bin/virsh"]),
    // Arch in 2020 (guide 000's <loader>): /usr/share/edk2-ovmf/x64.
    (Distro::Arch, true, Package::Qemu, &["usr/bin/qemu-system-x86_64"]),
    (
        Distro::Arch,
        true,
        Package::Ovmf,
        &[
            "usr/share/edk2-ovmf/x64/OVMF_CODE.fd",
            "usr/share/edk2-ovmf/x64/OVMF_CODE.secboot.fd",
            "usr/share/edk2-ovmf/x64/OVMF_VARS.fd",
        ],
    ),
    (Distro::Arch, true, Package::Libvirt, &["usr/bin/libvirtd", "usr/bin/virsh"]),
    // Fedora (edk2-ovmf): the same in every release we model.
    (Distro::Fedora, false, Package::Qemu, &["usr/bin/qemu-system-x86_64"]),
    (
        Distro::Fedora,
        false,
        Package::Ovmf,
        &[
            "usr/share/edk2/ovmf/OVMF_CODE.fd",
            "usr/share/edk2/ovmf/OVMF_CODE.secboot.fd",
            "usr/share/edk2/ovmf/OVMF_VARS.fd",
        ],
    ),
    (Distro::Fedora, false, Package::Libvirt, &["usr/sbin/libvirtd", "usr/bin/virsh"]),
    // RHEL 9 (qemu-kvm): QEMU outside $PATH; edk2-ovmf and libvirt as on Fedora.
    (Distro::Rhel, false, Package::Qemu, &["usr/libexec/qemu-kvm"]),
    (
        Distro::Rhel,
        false,
        Package::Ovmf,
        &[
            "usr/share/edk2/ovmf/OVMF_CODE.fd",
            "usr/share/edk2/ovmf/OVMF_CODE.secboot.fd",
            "usr/share/edk2/ovmf/OVMF_VARS.fd",
        ],
    ),
    (Distro::Rhel, false, Package::Libvirt, &["usr/sbin/libvirtd", "usr/bin/virsh"]),
];

/// The "old era" of each distro: kernels before these releases (Debian 11, Ubuntu 22.04,
/// Arch 2022).
fn old_era(distro: Distro, k: Option<&Kernel>) -> bool {
    let Some(k) = k else { return false };
    match distro {
        Distro::Debian => !k.at_least(5, 10),
        Distro::Ubuntu => !k.at_least(5, 15),
        Distro::Arch => !k.at_least(5, 16),
        Distro::Fedora | Distro::Rhel => false,
    }
}

/// QEMU firmware descriptor (docs/interop/firmware.json) for the plain (no Secure Boot)
/// image; (path, code, vars).
fn firmware_descriptor(distro: Distro, old: bool) -> Option<(&'static str, &'static str, &'static str)> {
    match (distro, old) {
        (Distro::Debian | Distro::Ubuntu, false) => Some((
            "usr/share/qemu/firmware/60-edk2-x86_64.json",
            "/usr/share/OVMF/OVMF_CODE_4M.fd",
            "/usr/share/OVMF/OVMF_VARS_4M.fd",
        )),
        (Distro::Arch, false) => Some((
            "usr/share/qemu/firmware/50-edk2-ovmf-4m-x64-nosb.json",
            "/usr/share/edk2/x64/OVMF_CODE.4m.fd",
            "/usr/share/edk2/x64/OVMF_VARS.4m.fd",
        )),
        (Distro::Arch, true) => Some((
            "usr/share/qemu/firmware/60-edk2-ovmf-x64.json",
            "/usr/share/edk2-ovmf/x64/OVMF_CODE.fd",
            "/usr/share/edk2-ovmf/x64/OVMF_VARS.fd",
        )),
        (Distro::Fedora | Distro::Rhel, _) => Some((
            "usr/share/qemu/firmware/50-edk2-ovmf-x64-nosb.json",
            "/usr/share/edk2/ovmf/OVMF_CODE.fd",
            "/usr/share/edk2/ovmf/OVMF_VARS.fd",
        )),
        _ => None,
    }
}

/// Marker files of the installed packages.
pub fn write_packages(spec: &Spec, t: &mut Tree) -> Result<(), Error> {
    if spec.host.packages.is_empty() {
        return Ok(());
    }
    let distro = spec.host.distro.ok_or_else(|| Error::Spec("host.packages needs host.distro".into()))?;
    let k = spec.host.kernel.as_deref().map(Kernel::parse).transpose()?;
    let old = old_era(distro, k.as_ref());
    for pkg in &spec.host.packages {
        let layout = if distro == Distro::Ubuntu { Distro::Debian } else { distro };
        for (_, _, _, paths) in PACKAGE_FILES.iter().filter(|(d, o, p, _)| *d == layout && *o == old && p == pkg) {
            for p in *paths {
                t.file(*p, "");
            }
        }
        if *pkg == Package::Ovmf {
            if let Some((path, code, vars)) = firmware_descriptor(distro, old) {
                t.file(path, descriptor_json(code, vars));
            }
        }
    }
    Ok(())
}

fn descriptor_json(code: &str, vars: &str) -> String {
    format!(
        r#"{{
    "description": "OVMF without SB+SMM, empty varstore",
    "interface-types": [
        "uefi"
    ],
    "mapping": {{
        "device": "flash",
        "mode" : "split",
        "executable": {{
            "filename": "{code}",
            "format": "raw"
        }},
        "nvram-template": {{
            "filename": "{vars}",
            "format": "raw"
        }}
    }},
    "targets": [
        {{
            "architecture": "x86_64",
            "machines": [
                "pc-i440fx-*",
                "pc-q35-*"
            ]
        }}
    ],
    "features": [
        "acpi-s3",
        "amd-sev",
        "verbose-dynamic"
    ],
    "tags": [

    ]
}}
"#
    )
}

/// A 36-byte ACPI table header followed by `body`, with length and checksum filled in.
pub fn acpi_table(sig: &[u8; 4], revision: u8, oem_id: &[u8; 6], table_id: &[u8; 8], body: &[u8]) -> Vec<u8> {
    let mut t = Vec::with_capacity(36 + body.len());
    t.extend_from_slice(sig);
    t.extend_from_slice(&((36 + body.len()) as u32).to_le_bytes());
    t.push(revision);
    t.push(0); // checksum, below
    t.extend_from_slice(oem_id);
    t.extend_from_slice(table_id);
    t.extend_from_slice(&1u32.to_le_bytes()); // OEM revision
    t.extend_from_slice(if sig == b"IVRS" { b"AMD " } else { b"INTL" }); // creator id
    t.extend_from_slice(&0x0001_0013u32.to_le_bytes()); // creator revision
    t.extend_from_slice(body);
    let sum = t.iter().fold(0u8, |a, b| a.wrapping_add(*b));
    t[9] = 0u8.wrapping_sub(sum);
    t
}

/// IVRS (AMD) or DMAR (Intel) under /sys/firmware/acpi/tables when the IOMMU is on.
pub fn write_acpi(spec: &Spec, devs: &[Dev], t: &mut Tree) {
    if !spec.host.iommu {
        return;
    }
    if spec.cpu.vendor == "GenuineIntel" {
        let mut body = vec![38u8, 0x05]; // host address width - 1 (39 bits), INTR_REMAP | X2APIC_OPT_OUT
        body.extend_from_slice(&[0; 10]);
        // A DRHD for the integrated GPU (scoped to 00:02.0), if there is one.
        if devs.iter().any(|d| d.addr.domain == 0 && d.addr.bus == 0 && d.addr.device == 2 && d.class >> 16 == 3) {
            body.extend_from_slice(&0u16.to_le_bytes()); // type DRHD
            body.extend_from_slice(&24u16.to_le_bytes());
            body.extend_from_slice(&[0, 0, 0, 0]); // flags, reserved, segment
            body.extend_from_slice(&0xfed9_0000u64.to_le_bytes());
            body.extend_from_slice(&[1, 8, 0, 0, 0, 0, 2, 0]); // scope: endpoint 00:02.0
        }
        // The catch-all DRHD (INCLUDE_PCI_ALL).
        body.extend_from_slice(&0u16.to_le_bytes());
        body.extend_from_slice(&16u16.to_le_bytes());
        body.extend_from_slice(&[1, 0, 0, 0]);
        body.extend_from_slice(&0xfed9_1000u64.to_le_bytes());
        t.bytes("sys/firmware/acpi/tables/DMAR", acpi_table(b"DMAR", 1, b"INTEL ", b"EDK2    ", &body));
    } else {
        let mut body = Vec::new();
        body.extend_from_slice(&0x0020_3041u32.to_le_bytes()); // IVinfo: VA 64, PA 48, GVA 48
        body.extend_from_slice(&[0; 8]);
        // One IVHD (type 10h) per IOMMU function (class 0806), else one for 00:00.2.
        let mut iommus: Vec<u16> = devs
            .iter()
            .filter(|d| d.class >> 8 == 0x0806)
            .map(|d| u16::from(d.addr.bus) << 8 | u16::from(d.addr.device) << 3 | u16::from(d.addr.function))
            .collect();
        if iommus.is_empty() {
            iommus.push(0x0002);
        }
        for (i, devid) in iommus.iter().enumerate() {
            let bus = (devid >> 8) as u8;
            let base = 0xfeb8_0000u64 - (i as u64) * 0x0010_0000;
            body.push(0x10);
            body.push(0xb0); // flags: coherent, IotlbSup, ...
            body.extend_from_slice(&32u16.to_le_bytes()); // length: 24 + two 4-byte entries
            body.extend_from_slice(&devid.to_le_bytes());
            body.extend_from_slice(&0x40u16.to_le_bytes()); // capability offset
            body.extend_from_slice(&base.to_le_bytes());
            body.extend_from_slice(&0u16.to_le_bytes()); // PCI segment
            body.extend_from_slice(&0u16.to_le_bytes()); // IOMMU info
            body.extend_from_slice(&0x8004_8f6eu32.to_le_bytes()); // feature reporting
                                                                   // Device entries: select all (start of range) .. end of range on its buses.
            body.extend_from_slice(&[3]);
            body.extend_from_slice(&(u16::from(bus) << 8).to_le_bytes());
            body.push(0);
            body.extend_from_slice(&[4]);
            body.extend_from_slice(&((u16::from(bus) << 8) | 0x3fff).to_le_bytes());
            body.push(0);
        }
        t.bytes("sys/firmware/acpi/tables/IVRS", acpi_table(b"IVRS", 2, b"AMD   ", b"AmdTable", &body));
    }
}

/// `/proc/sys/kernel/osrelease` and `/proc/version`.
pub fn write_kernel(spec: &Spec, t: &mut Tree) -> Result<(), Error> {
    let Some(release) = &spec.host.kernel else { return Ok(()) };
    let k = Kernel::parse(release)?;
    t.file("proc/sys/kernel/osrelease", format!("{release}\n"));
    t.file("proc/version", proc_version(spec.host.distro, &k));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_releases() {
        let k = Kernel::parse("6.8.0-45-generic").unwrap();
        assert_eq!((k.major, k.minor, k.patch, k.abi), (6, 8, 0, 45));
        let k = Kernel::parse("5.9.8-arch1-1").unwrap();
        assert_eq!((k.major, k.minor, k.patch), (5, 9, 8));
        assert!(k.at_least(5, 9) && !k.at_least(5, 10));
        assert!(Kernel::parse("six").is_err());
        assert!(Kernel::parse("6.1 x").is_err());
        assert!(Kernel::parse("").is_err());
    }

    #[test]
    fn acpi_header_is_consistent() {
        let t = acpi_table(b"IVRS", 2, b"AMD   ", b"AmdTable", &[1, 2, 3]);
        assert_eq!(&t[0..4], b"IVRS");
        assert_eq!(u32::from_le_bytes([t[4], t[5], t[6], t[7]]) as usize, t.len());
        assert_eq!(t.len(), 39);
        assert_eq!(t.iter().fold(0u8, |a, b| a.wrapping_add(*b)), 0);
    }

    #[test]
    fn vfio_modules_follow_the_kernel_version() {
        let old = catalog(&Kernel::parse("5.0.0-32-generic").unwrap(), Some(Distro::Ubuntu));
        assert!(old.contains_key("vfio_virqfd") && !old.contains_key("vfio_pci_core"));
        let mid = catalog(&Kernel::parse("6.1.0-18-amd64").unwrap(), Some(Distro::Debian));
        assert!(mid.contains_key("vfio_virqfd") && mid.contains_key("vfio_pci_core"));
        let new = catalog(&Kernel::parse("6.8.0-45-generic").unwrap(), Some(Distro::Ubuntu));
        assert!(!new.contains_key("vfio_virqfd") && new.contains_key("vfio_pci_core"));
        assert_eq!(suffix(Some(Distro::Ubuntu), &Kernel::parse("6.8.0-45-generic").unwrap()), ".ko.zst");
        assert_eq!(suffix(Some(Distro::Debian), &Kernel::parse("6.1.0-18-amd64").unwrap()), ".ko");
    }
}
