//! `vfioctl plan` on the guides' machines and the other example hosts.

use std::path::Path;

use crate::util::{example_host, vfioctl};

fn plan_json(host: &str, args: &[&str]) -> serde_json::Value {
    let mut a = vec!["plan", "--format", "json"];
    a.extend_from_slice(args);
    let run = vfioctl(&example_host(host), &a);
    assert_eq!(run.code, 0, "{host} {args:?}: {}", run.stderr);
    serde_json::from_str(&run.stdout).expect("json")
}

fn pins(v: &serde_json::Value) -> Vec<String> {
    v["cpu"]["vcpupin"]
        .as_array()
        .expect("vcpupin")
        .iter()
        .map(|p| p["cpuset"].as_str().expect("cpuset").to_string())
        .collect()
}

#[test]
fn threadripper_radeon_vii_gets_the_guides_cpus() {
    let v = plan_json("tr1950x", &["gpu", "--vcpus", "8", "--memory", "16G"]);
    assert_eq!(pins(&v), ["4", "20", "5", "21", "6", "22", "7", "23"]);
    assert_eq!(v["cpu"]["emulatorpin"], "0-3,16-19");
    assert_eq!(v["cpu"]["topology"], serde_json::json!({"sockets":1,"dies":1,"cores":4,"threads":2}));
    assert_eq!(v["numa_node"], 0);
    let addrs: Vec<&str> =
        v["devices"].as_array().expect("devices").iter().filter_map(|d| d["address"].as_str()).collect();
    assert_eq!(addrs, ["0000:0d:00.0", "0000:0d:00.1"], "the audio function comes along although it is in group 21");
    assert_eq!(v["vfio_ids"], serde_json::json!(["1002:66af", "1002:ab20"]));
    assert_eq!(v["devices"][0]["iommu_group"], 20);
    assert_eq!(v["memory"]["mib"], 16384);
    let modprobe = v["modprobe"][0]["content"].as_str().expect("content");
    assert!(modprobe.contains("softdep amdgpu pre: vfio-pci"), "{modprobe}");
    // The guide's vfio-pci.ids reserves 144d:a808, the id of the NVMe drives: the plan drops it.
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("dropping 144d:a808"), "{warnings}");
}

#[test]
fn ryzen_keeps_core_0_and_its_sibling() {
    let v = plan_json("r2600x", &["gpu", "--vcpus", "8", "--memory", "16G", "--hugepages", "2M"]);
    assert_eq!(pins(&v), ["2", "8", "3", "9", "4", "10", "5", "11"], "the guide's own pinning");
    assert_eq!(v["cpu"]["emulatorpin"], "0-1,6-7");
    // 16 GiB is 8192 pages of 2 MiB, not the guide's 8600.
    assert_eq!(
        v["memory"]["hugepages"],
        serde_json::json!({"size_kib":2048,"count":8192,"node":0,"reserve_at_boot":false})
    );
    assert_eq!(v["initramfs_modules"], serde_json::json!(["vfio", "vfio_iommu_type1", "vfio_virqfd", "vfio_pci"]));
}

#[test]
fn the_boot_gpu_is_refused_unless_forced() {
    let host = example_host("tr1950x");
    let run = vfioctl(&host, &["plan", "43:00.0"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("drives the boot console"), "{}", run.stderr);
    assert!(run.stderr.contains("--force would pass it anyway"), "{}", run.stderr);
    let run = vfioctl(&host, &["plan", "43:00.0", "--force", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert!(v["warnings"].to_string().contains("you take on"), "{}", v["warnings"]);
    assert_eq!(v["forced"][0]["devices"][0], "0000:43:00.0");
}

#[test]
fn controllers_nobody_asked_for_are_refused() {
    // The X399 chipset USB controller shares group 15 with SATA, Wi-Fi and Ethernet.
    let run = vfioctl(&example_host("tr1950x"), &["plan", "01:00.0"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("storage, network or USB controllers you did not ask for"), "{}", run.stderr);
    assert!(run.stderr.contains("05:00.0"), "{}", run.stderr);
}

#[test]
fn memory_that_does_not_fit_is_refused_with_the_numbers() {
    let run = vfioctl(&example_host("r2600x"), &["plan", "gpu", "--memory", "40G"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("40960 MiB do not fit NUMA node 0"), "{}", run.stderr);
}

#[test]
fn bad_requests_are_usage_errors() {
    let host = example_host("r2600x");
    assert_eq!(vfioctl(&host, &["plan", "zz"]).code, 2);
    assert_eq!(vfioctl(&host, &["plan", "77:00.0"]).code, 2);
    assert_eq!(vfioctl(&host, &["plan", "gpu", "--memory", "lots"]).code, 2);
    assert_eq!(vfioctl(&host, &["plan"]).code, 2);
}

#[test]
fn plan_text_is_stable() {
    for (host, args) in [
        ("tr1950x", ["gpu", "--vcpus", "8", "--memory", "16G"]),
        ("r2600x", ["gpu", "--vcpus", "8", "--memory", "16G"]),
    ] {
        let mut a = vec!["plan"];
        a.extend_from_slice(&args);
        let run = vfioctl(&example_host(host), &a);
        insta::assert_snapshot!(format!("plan-{host}"), format!("exit {}\n{}{}", run.code, run.stdout, run.stderr));
    }
}

/// On this machine: the controller of the root filesystem is refused.
#[test]
fn the_root_filesystems_controller_is_refused_on_this_machine() {
    let root = vfioctl_host::root::HostRoot::live();
    let Ok(mounts) = vfioctl_host::storage::mounts(&root) else {
        eprintln!("this machine's mounts cannot be read here; nothing to check");
        return;
    };
    let Some(m) = mounts.iter().find(|m| m.mount_point == "/") else {
        eprintln!("the root filesystem is not on a PCI device here; nothing to check");
        return;
    };
    let run = vfioctl(Path::new("/"), &["plan", &m.controller.to_string()]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stderr.contains("holds the root filesystem"), "{}", run.stderr);
}

#[test]
fn dual_socket_puts_everything_on_the_gpus_socket() {
    let v = plan_json("xeon-2s", &["gpu", "--vcpus", "8", "--memory", "32G"]);
    assert_eq!(v["numa_node"], 1);
    let node1 = |c: u32| (20..40).contains(&c) || (60..80).contains(&c);
    for p in pins(&v) {
        assert!(node1(p.parse().expect("cpu")), "vCPU on {p}, not node 1");
    }
    let emu: vfioctl_core::cpuset::CpuSet =
        v["cpu"]["emulatorpin"].as_str().expect("emulatorpin").parse().expect("cpuset");
    assert!(emu.iter().all(node1));
    assert_eq!(
        v["memory"]["hugepages"],
        serde_json::json!({"size_kib":1048576,"count":32,"node":1,"reserve_at_boot":true})
    );
    let add = v["kernel_cmdline"]["add"].to_string();
    assert!(add.contains("hugepages=1:32"), "per-node boot reservation on 5.15: {add}");
}

#[test]
fn v_cache_die_is_preferred_by_default() {
    let v = plan_json("r7950x3d", &["gpu"]);
    assert_eq!(v["cpu"]["vcpus"], 14, "the V-Cache die minus the host's core");
    assert_eq!(v["cpu"]["l3"], serde_json::json!([0]));
    assert_eq!(v["initramfs_modules"], serde_json::json!(["vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio_pci"]));
}

#[test]
fn a_laptop_3d_controller_is_the_gpu() {
    let v = plan_json("laptop-3d", &["gpu", "--memory", "8G"]);
    assert_eq!(v["devices"][0]["address"], "0000:01:00.0");
    assert_eq!(v["devices"][0]["class"], "0302");
    assert_eq!(v["vfio_ids"], serde_json::json!(["10de:24dd", "10de:228b"]));
}

/// Issue 18: a Turing card's own USB-C controller (function 2) was counted as a host USB
/// controller "you did not ask for" and the plan refused; `list` called the group not
/// clean. They are the card: passed with it, bound early (softdeps name the modules the
/// drivers come from: xhci_pci, i2c_nvidia_gpu), and the group is clean.
#[test]
fn a_turing_cards_usb_c_functions_pass_with_it() {
    let v = plan_json("r2600x-turing", &["09:00.0", "--memory", "8G"]);
    let addrs: Vec<&str> = v["devices"].as_array().unwrap().iter().map(|d| d["address"].as_str().unwrap()).collect();
    assert_eq!(addrs, ["0000:09:00.0", "0000:09:00.1", "0000:09:00.2", "0000:09:00.3"]);
    assert!(v["devices"][2]["reason"].as_str().unwrap().contains("the card's own USB-C (xHCI) controller"));
    assert_eq!(v["vfio_ids"], serde_json::json!(["10de:1f02", "10de:10f9", "10de:1ada", "10de:1adb"]));
    let text = serde_json::to_string(&v["modprobe"]).unwrap();
    for dep in ["softdep xhci_pci pre: vfio-pci", "softdep i2c_nvidia_gpu pre: vfio-pci"] {
        assert!(text.contains(dep), "{dep}: {text}");
    }
    let list = vfioctl(&example_host("r2600x-turing"), &["list"]);
    assert!(
        list.stdout.contains("group  16: clean, pass as a whole: 09:00.0, 09:00.1, 09:00.2, 09:00.3"),
        "{}",
        list.stdout
    );
}

/// Issue 18: `check` of a Vega 56 said its reset passes ("bus"); Vega 10 is the
/// best-known card that does not come back from a guest reboot. Now it warns, with
/// vendor-reset, which the plan then loads early, with its `device_specific` reset.
#[test]
fn check_names_the_reset_risk_of_a_vega() {
    let run = vfioctl(&example_host("r2600x-turing"), &["check", "08:00.0", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let reset = v["checks"].as_array().unwrap().iter().find(|c| c["id"] == "device.reset").expect("device.reset");
    assert_eq!(reset["status"], "warn", "{reset}");
    assert!(reset["message"].as_str().unwrap().contains("AMD Vega 10"), "{reset}");
    let remedy = reset["remedy"].as_str().unwrap();
    assert!(remedy.contains("vendor-reset") && remedy.contains("then plan and apply again"), "{remedy}");
    // The RTX 2070 beside it resets by a bus reset of its own bus: no risk.
    let run = vfioctl(&example_host("r2600x-turing"), &["check", "09:00.0", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let reset = v["checks"].as_array().unwrap().iter().find(|c| c["id"] == "device.reset").expect("device.reset");
    assert_eq!(reset["status"], "pass", "{reset}");
}

#[test]
fn a_gpu_in_the_chipset_group_is_refused_with_the_root_disk_named() {
    let run = vfioctl(&example_host("b450-chipset-gpu"), &["plan", "gpu"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("02:00.1 holds the root filesystem"), "{}", run.stderr);
    assert!(run.stderr.contains("08:00.0 (in IOMMU group 3 with 06:00.0)"), "{}", run.stderr);
}

/// Issue 18: a GPU whose group is shared because the chipset's ports have no ACS. Without
/// the override the refusal names the bridges and what --allow-acs-override would do; on a
/// kernel with the ACS override patch it passes the card's slot alone and adds the
/// parameter, warning of the cost; on a kernel without the patch the override is refused.
#[test]
fn the_acs_override_passes_the_card_alone_on_a_kernel_that_has_it() {
    let host = example_host("b450-acs-xanmod");
    let run = vfioctl(&host, &["plan", "gpu"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(run.stderr.contains("do not isolate the devices below them: no ACS"), "{}", run.stderr);
    assert!(run.stderr.contains("--allow-acs-override passes the asked device alone"), "{}", run.stderr);
    let v = plan_json("b450-acs-xanmod", &["gpu", "--allow-acs-override"]);
    let addrs: Vec<&str> =
        v["devices"].as_array().expect("devices").iter().filter_map(|d| d["address"].as_str()).collect();
    assert!(!addrs.is_empty() && addrs.iter().all(|a| a.starts_with("0000:06:00.")), "only the card's slot: {addrs:?}");
    let add: Vec<&str> =
        v["kernel_cmdline"]["add"].as_array().expect("add").iter().filter_map(|a| a.as_str()).collect();
    assert!(add.contains(&"pcie_acs_override=downstream,multifunction"), "{add:?}");
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("isolation from them is lost"), "{warnings}");
    assert!(v["forced"].as_array().is_none_or(|f| f.is_empty()), "{}", v["forced"]);
    // Debian's own kernel has no such patch: the override is refused, saying why.
    let run = vfioctl(&example_host("b450-chipset-gpu"), &["plan", "gpu", "--allow-acs-override"]);
    assert_eq!(run.code, 1, "{}", run.stderr);
    assert!(
        run.stderr.contains("this kernel (6.1.0-25-amd64) does not carry the ACS override patch"),
        "{}",
        run.stderr
    );
}

#[test]
fn hybrid_cpus_give_the_guest_performance_cores_only() {
    let v = plan_json("i7-12700k", &["gpu", "--vcpus", "12", "--memory", "8G"]);
    for p in pins(&v) {
        let cpu: u32 = p.parse().expect("cpu");
        assert!((2..16).contains(&cpu), "vCPU on {cpu}: not a P-core, or the host's core 0");
    }
    assert_eq!(v["cpu"]["topology"]["threads"], 2);
    assert!(v["cpu"]["emulatorpin"].as_str().expect("emulatorpin").contains("16-19"));
}

/// Regression: without a readable mount table the plan of the NVMe controller holding `/`
/// passed (unknown was taken as "nothing mounted"). Now any plan refuses, naming the files;
/// with only `/proc/mounts` and `/sys/block` (no `/sys/dev/block`, no `/sys/class/block`)
/// the root filesystem is still found and its controller refused.
#[test]
fn an_unreadable_mount_table_stops_the_plan() {
    let (_t, root) = crate::util::copy_host("r2600x");
    std::fs::remove_file(root.join("proc/self/mountinfo")).expect("rm");
    let mounts = std::fs::read_to_string(root.join("proc/mounts")).expect("mounts");
    std::fs::remove_file(root.join("proc/mounts")).expect("rm");
    let _ = std::fs::remove_file(root.join("proc/self/mounts"));
    for args in [&["plan", "01:00.0"][..], &["plan", "gpu"]] {
        let run = vfioctl(&root, args);
        assert_eq!(run.code, 2, "{args:?}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("cannot tell which disks this host uses"), "{}", run.stderr);
        assert!(run.stderr.contains("/proc/self/mountinfo is missing; /proc/mounts is missing"), "{}", run.stderr);
    }
    std::fs::write(root.join("proc/mounts"), mounts).expect("write");
    std::fs::remove_dir_all(root.join("sys/dev/block")).expect("rm");
    std::fs::remove_dir_all(root.join("sys/class/block")).expect("rm");
    let run = vfioctl(&root, &["plan", "01:00.0"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("holds the root filesystem"), "{}", run.stderr);
    assert_eq!(vfioctl(&root, &["plan", "gpu"]).code, 0);
}

/// Regression: on an Intel host whose kernel turns the IOMMU on by its build default, the
/// plan added no `intel_iommu=on`, so a next kernel with another default would silently
/// turn passthrough off. Only every `/boot/config-*` saying `CONFIG_INTEL_IOMMU_DEFAULT_ON=y`
/// leaves it out.
#[test]
fn intel_iommu_on_does_not_rely_on_a_build_default() {
    let (_t, root) = crate::util::copy_host("i7-12700k");
    for f in ["proc/cmdline", "etc/default/grub"] {
        let t = std::fs::read_to_string(root.join(f)).expect("read").replace(" intel_iommu=on", "");
        std::fs::write(root.join(f), t).expect("write");
    }
    let add = |root: &Path| {
        let run = vfioctl(root, &["plan", "gpu", "--format", "json"]);
        assert_eq!(run.code, 0, "{}", run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        v["kernel_cmdline"]["add"]
            .as_array()
            .expect("add")
            .iter()
            .map(|a| a.as_str().unwrap_or("").to_string())
            .collect::<Vec<_>>()
    };
    assert!(add(&root).contains(&"intel_iommu=on".to_string()));
    std::fs::create_dir_all(root.join("boot")).expect("mkdir");
    std::fs::write(
        root.join("boot/config-6.8.0-45-generic"),
        "CONFIG_INTEL_IOMMU=y\nCONFIG_INTEL_IOMMU_DEFAULT_ON=y\n",
    )
    .expect("write");
    assert!(!add(&root).contains(&"intel_iommu=on".to_string()));
    // A second kernel without it: the parameter again.
    std::fs::write(
        root.join("boot/config-6.11.0-9-generic"),
        "CONFIG_INTEL_IOMMU=y\n# CONFIG_INTEL_IOMMU_DEFAULT_ON is not set\n",
    )
    .expect("write");
    assert!(add(&root).contains(&"intel_iommu=on".to_string()));
}

/// Regression: unreadable sysfs values that decide the plan (a passed device's
/// `numa_node`, its IOMMU group's member list) gave a plan in silence; now the plan refuses
/// naming the file, and `--force` plans with a warning of what it takes on. Files of
/// devices elsewhere do not matter.
#[test]
fn a_passed_devices_unreadable_facts_stop_the_plan() {
    let (_t, root) = crate::util::copy_host("r2600x");
    let dev = |a: &str| root.join("sys/bus/pci/devices").join(a);
    let numa = dev("0000:09:00.1").join("numa_node");
    let real = std::fs::canonicalize(&numa).expect("numa_node");
    std::fs::write(&real, "zero\n").expect("write");
    let run = vfioctl(&root, &["plan", "gpu"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot plan from a guess: /sys/bus/pci/devices/0000:09:00.1/numa_node"),
        "{}",
        run.stderr
    );
    let forced = vfioctl(&root, &["plan", "gpu", "--force"]);
    assert_eq!(forced.code, 0, "{}", forced.stderr);
    assert!(
        forced.stdout.contains("--force: planned without /sys/bus/pci/devices/0000:09:00.1/numa_node"),
        "{}",
        forced.stdout
    );
    std::fs::write(&real, "0\n").expect("write");
    assert_eq!(vfioctl(&root, &["plan", "gpu"]).code, 0);
    // The group's member list, unreadable: which devices share it is unknown.
    let members = root.join("sys/kernel/iommu_groups/16/devices");
    let real = std::fs::canonicalize(&members).expect("group");
    std::fs::remove_dir_all(&real).expect("rm");
    std::fs::write(&real, "").expect("a file, not a directory");
    let run = vfioctl(&root, &["plan", "gpu"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("/sys/kernel/iommu_groups/16/devices"), "{}", run.stderr);
}

/// Unknown is not safe: `/proc/iomem` that cannot be read (here a directory) would hide a
/// boot framebuffer inside the passed GPU; the plan stops naming it instead of leaving
/// `video=efifb:off` out.
#[test]
fn an_unreadable_iomem_stops_the_plan() {
    let (_t, root) = crate::util::copy_host("r2600x");
    let _ = std::fs::remove_file(root.join("proc/iomem"));
    std::fs::create_dir_all(root.join("proc/iomem")).expect("mkdir");
    let run = vfioctl(&root, &["plan", "gpu"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("/proc/iomem"), "{}", run.stderr);
    std::fs::remove_dir(root.join("proc/iomem")).expect("rm");
    assert_eq!(vfioctl(&root, &["plan", "gpu"]).code, 0, "absent is no framebuffer known");
}

/// Unknown is not safe, property-style on r2600x: each file that decides the plan, filled
/// with garbage or made unreadable (a directory), either stops the plan naming it or gives
/// the very plan the intact host gives, never another plan in silence.
#[test]
fn a_broken_fact_refuses_naming_it_or_changes_nothing() {
    let host = example_host("r2600x");
    let plan = |root: &Path| {
        let run = vfioctl(root, &["plan", "gpu", "--format", "json"]);
        let v: Option<serde_json::Value> = serde_json::from_str(&run.stdout).ok();
        let stable = v.map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("warnings");
                o.remove("reasons");
            }
            v
        });
        (run.code, stable, run.stderr)
    };
    let (code, intact, _) = plan(&host);
    assert_eq!(code, 0);
    let dev = "sys/devices/pci0000:00/0000:00:03.1";
    let files = [
        "proc/cpuinfo".to_string(),
        "proc/self/mountinfo".into(),
        "proc/iomem".into(),
        "sys/devices/system/node/node0/cpulist".into(),
        "sys/devices/system/node/node0/meminfo".into(),
        format!("{dev}/0000:09:00.0/config"),
        format!("{dev}/0000:09:00.0/class"),
        format!("{dev}/0000:09:00.0/numa_node"),
        format!("{dev}/0000:09:00.0/boot_vga"),
        format!("{dev}/0000:09:00.1/vendor"),
        format!("{dev}/0000:09:00.1/reset_method"),
    ];
    let mut failures = Vec::new();
    for f in &files {
        for garbage in [true, false] {
            let (_t, root) = crate::util::copy_host("r2600x");
            let p = root.join(f);
            assert!(p.is_file(), "{f}");
            if garbage {
                std::fs::write(&p, "zz\u{1}garbage\n").expect("write");
            } else {
                std::fs::remove_file(&p).expect("rm");
                std::fs::create_dir(&p).expect("mkdir");
            }
            let (code, got, stderr) = plan(&root);
            // The file by its own path, or by the device link sysfs readers use.
            let name = f.rsplit('/').next().unwrap_or(f);
            let named =
                stderr.contains(f.as_str()) || (stderr.contains(name) && stderr.contains("cannot plan from a guess"));
            let ok = if code == 0 { got == intact } else { named };
            if !ok {
                failures.push(format!(
                    "{f} ({}): exit {code}: {}",
                    if garbage { "garbage" } else { "unreadable" },
                    stderr.lines().last().unwrap_or("")
                ));
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Regression (the IOMMU lab's AMD guest): L3 cache ids that disagree with
/// `shared_cpu_list` are a reading the CPU reader settles itself (domains numbered by first
/// CPU), with a warning; it must not stop the plan as an unknown fact does.
#[test]
fn a_settled_cpu_reading_does_not_stop_the_plan() {
    let (_t, root) = crate::util::copy_host("r2600x");
    let id = root.join("sys/devices/system/cpu/cpu0/cache/index3/id");
    let real = std::fs::canonicalize(&id).expect("index3/id");
    std::fs::write(real, "9\n").expect("write");
    let run = vfioctl(&root, &["plan", "gpu"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("L3 domains are numbered by first CPU"), "{}", run.stderr);
}

/// Regression (issue 16): every kind of storage the host uses keeps its controller for the
/// host, on x670-luks-zfs: root on LVM over LUKS, swap on a second NVMe, a mounted ZFS
/// mirror on SATA, a ZFS pool not imported on a USB disk. Only the empty NVMe passes.
#[test]
fn every_kind_of_host_storage_keeps_its_controller() {
    let root = example_host("x670-luks-zfs");
    for (controller, what) in [
        ("02:00.0", "holds the root filesystem and other disks the host uses: / (/dev/mapper/ubuntu--vg-ubuntu--lv)"),
        ("09:00.0", "holds disks the host uses: [swap] (/dev/nvme1n1p1)"),
        ("08:00.0", "holds disks the host uses: /tank (/dev/sda1), /tank (/dev/sdb1)"),
        ("07:00.0", "holds disks the host uses: [zfs backup] (/dev/sdc1)"),
    ] {
        let run = vfioctl(&root, &["plan", controller]);
        assert_eq!(run.code, 1, "{controller}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(&format!("{controller} {what}")), "{controller}: {}", run.stderr);
    }
    let run = vfioctl(&root, &["plan", "0a:00.0"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Without udev's database the ZFS mirror's disks are unknown: no plan passes what might
    // hold them.
    let (_tmp, copy) = crate::util::copy_host("x670-luks-zfs");
    std::fs::remove_dir_all(copy.join("run/udev")).unwrap();
    let run = vfioctl(&copy, &["plan", "0a:00.0"]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("the ZFS pool tank is imported, but /run/udev/data"), "{}", run.stderr);
}

/// Regression (issue 16): guide 001's `vm.nr_hugepages = 8600` in /etc/sysctl.conf holds
/// 16.8 GiB at boot; a plan without hugepages left it there and gave the guest 16 GiB of
/// ordinary memory besides, on a 32 GiB host. Now what the next boot and the guest hold
/// is counted against the host's memory less what it keeps.
#[test]
fn reservations_the_plan_leaves_count_against_the_host() {
    let root = example_host("r2600x");
    let run = vfioctl(&root, &["plan", "gpu", "--hugepages", "none", "--memory", "16G"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("17200 MiB in vm.nr_hugepages = 8600 (/etc/sysctl.conf) + 16 GiB of the guest's memory"),
        "{}",
        run.stderr
    );
    let run = vfioctl(&root, &["plan", "gpu", "--hugepages", "none", "--memory", "16G", "--force"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("! --force: the next boot and the guest would hold"), "{}", run.stdout);
    // With hugepages, the plan's count replaces sysctl's (apply comments that line out).
    for args in [&["--hugepages", "2M", "--memory", "16G"][..], &["--hugepages", "none", "--memory", "8G"]] {
        let mut a = vec!["plan", "gpu"];
        a.extend_from_slice(args);
        let run = vfioctl(&root, &a);
        assert_eq!(run.code, 0, "{args:?}: {}", run.stderr);
    }
}

/// Regression (issue 16): a `/etc/default/grub` that is not a shell text (binary bytes) or
/// whose quote never closes read as "no command line", and the plan went on to edit it.
/// Now it is unknown: `plan` refuses naming the file (exit 2), `check` fails its next-boot
/// line. bash, which grub-mkconfig sources it with, refuses the same files.
#[test]
fn a_grub_file_the_shell_cannot_read_is_unknown_not_empty() {
    let mut garbage: Vec<u8> = (0u32..2048).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    garbage.extend_from_slice(b"\0\xff\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet\"\n");
    for (content, says) in [
        (garbage, "(not a text file)"),
        (
            b"GRUB_DEFAULT=0\nGRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash\nGRUB_TIMEOUT=5\n".to_vec(),
            "a quote is never closed",
        ),
    ] {
        let (_tmp, root) = crate::util::copy_host("r2600x");
        let grub = root.join("etc/default/grub");
        std::fs::write(&grub, &content).unwrap();
        let bash = std::process::Command::new("bash").arg("-n").arg(&grub).output().expect("bash");
        assert!(!bash.status.success() || says.contains("text"), "bash reads it: {says}");
        let run = vfioctl(&root, &["plan", "gpu"]);
        assert_eq!(run.code, 2, "{says}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains("/etc/default/grub") && run.stderr.contains(says), "{}", run.stderr);
        let run = vfioctl(&root, &["check"]);
        assert!(
            run.stdout.lines().any(|l| l.contains("next boot") && l.contains("FAIL") && l.contains(says)),
            "{}",
            run.stdout
        );
        let run = vfioctl(&root, &["apply", "gpu", "--dry-run"]);
        assert_ne!(run.code, 0, "{}", run.stdout);
        assert_eq!(std::fs::read(&grub).unwrap(), content, "{says}: the file is left as it was");
    }
}

/// The same property over every generated example host, on the files the plan itself
/// reads (its read log), sampled by a fixed seed: a sysfs/procfs fact filled with garbage
/// or made unreadable, or a configuration file made unreadable, either stops the plan
/// naming the file or leaves the plan as the intact host's. (Garbage in a configuration
/// file is a different configuration, not an unknown fact, and is left out.)
#[test]
fn a_broken_fact_on_any_host_refuses_naming_it_or_changes_nothing() {
    let plan = |root: &Path, log: Option<&Path>| {
        let mut env = vec![];
        let l;
        if let Some(p) = log {
            l = p.to_str().expect("utf8").to_string();
            env.push(("VFIOCTL_READ_LOG", l.as_str()));
        }
        let run = crate::util::vfioctl_env(root, &["plan", "gpu", "--format", "json"], &env);
        let v: Option<serde_json::Value> = serde_json::from_str(&run.stdout).ok();
        let stable = v.map(|mut v| {
            if let Some(o) = v.as_object_mut() {
                o.remove("warnings");
                o.remove("reasons");
            }
            v
        });
        (run.code, stable, run.stderr)
    };
    let mut seed: u64 = 0x5eed_1605;
    let mut next = move |n: usize| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) as usize % n
    };
    let mut failures = Vec::new();
    let mut tried = 0;
    for host in crate::util::example_hosts() {
        let name = host.file_name().and_then(|n| n.to_str()).expect("name").to_string();
        if !host.with_extension("toml").is_file() {
            continue;
        }
        let log = tempfile::NamedTempFile::new().expect("log");
        let (code, intact, _) = plan(&host, Some(log.path()));
        if code != 0 {
            continue;
        }
        let text = std::fs::read_to_string(log.path()).expect("read log");
        let read: Vec<String> = text
            .lines()
            .filter_map(|l| l.strip_prefix("read /")?.rsplit_once(' ').map(|(p, _)| p.to_string()))
            .filter(|p| {
                host.join(p).is_file() && !std::fs::symlink_metadata(host.join(p)).is_ok_and(|m| m.is_symlink())
            })
            .collect();
        // One copy per host; each breakage is undone before the next.
        let (_t, root) = crate::util::copy_host(&name);
        for _ in 0..10 {
            let f = &read[next(read.len())];
            let fact = f.starts_with("sys/") || f.starts_with("proc/");
            let p = root.join(f);
            let Ok(original) = std::fs::read(&p) else { continue };
            for garbage in [true, false] {
                if garbage && !fact {
                    continue;
                }
                tried += 1;
                if garbage {
                    std::fs::write(&p, "zz\u{1}garbage\n").expect("write");
                } else {
                    std::fs::remove_file(&p).expect("rm");
                    std::fs::create_dir(&p).expect("mkdir");
                }
                let (code, got, stderr) = plan(&root, None);
                if p.is_dir() {
                    std::fs::remove_dir(&p).expect("rmdir");
                }
                std::fs::write(&p, &original).expect("restore");
                let base = f.rsplit('/').next().unwrap_or(f);
                let named = stderr.contains(f.as_str())
                    || (stderr.contains(base) && stderr.contains("cannot plan from a guess"))
                    || stderr.contains(&format!("/{f}"));
                if !(if code == 0 { got == intact } else { named }) {
                    failures.push(format!(
                        "{name}: /{f} ({}): exit {code}: {}",
                        if garbage { "garbage" } else { "unreadable" },
                        stderr.lines().find(|l| l.contains("error")).unwrap_or("a different plan")
                    ));
                }
            }
        }
    }
    assert!(tried > 100, "only {tried} breakages tried");
    assert!(failures.is_empty(), "{} of {tried}:\n{}", failures.len(), failures.join("\n"));
}
