//! `vfioctl list` against real lspci, the guide's listing, and bad input.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use vfioctl_core::lspci;
use vfioctl_host::pci_ids;
use vfioctl_host::root::HostRoot;

use crate::util::{example_host, example_hosts, ids_file, tool, vfioctl, workspace};

/// `lspci -nn` over a host root, keyed by its `bus:dev.fn` column.
fn lspci_lines(sysfs_pci: &Path) -> BTreeMap<String, String> {
    let run = tool(
        "lspci",
        &[
            "-A",
            "linux-sysfs",
            "-O",
            &format!("sysfs.path={}", sysfs_pci.display()),
            "-O",
            "hwdb.disable=1",
            "-i",
            ids_file().to_str().expect("utf8"),
            "-nn",
        ],
        "pciutils",
    );
    assert_eq!(run.code, 0, "lspci failed: {}", run.stderr);
    run.stdout.lines().map(|l| (l.split(' ').next().unwrap_or_default().to_string(), l.to_string())).collect()
}

#[test]
fn lspci_format_matches_real_lspci_on_every_example_host() {
    for host in example_hosts() {
        let expected = lspci_lines(&host.join("sys/bus/pci"));
        let run = vfioctl(&host, &["list", "--format", "lspci"]);
        if run.code == 1 && run.stdout.is_empty() {
            assert!(run.stderr.contains("IOMMU is not enabled"), "{}", run.stderr);
            continue;
        }
        assert_eq!(run.code, 0, "{}: {}", host.display(), run.stderr);
        let mut last_group = 0;
        let mut seen = 0;
        for line in run.stdout.lines() {
            let rest = line.strip_prefix("IOMMU Group ").expect("IOMMU Group prefix");
            let (group, device_line) = rest.split_once(' ').expect("group number");
            let group: u32 = group.parse().expect("numeric group");
            assert!(group >= last_group, "groups out of numeric order at {line}");
            last_group = group;
            let addr = device_line.split(' ').next().unwrap_or_default();
            assert_eq!(Some(&device_line.to_string()), expected.get(addr), "{}: {addr}", host.display());
            seen += 1;
        }
        // Every device an IOMMU group holds is listed (on AMD the root complex and the IOMMU
        // itself are in no group).
        let grouped = fs::read_dir(host.join("sys/kernel/iommu_groups"))
            .expect("groups")
            .map(|g| fs::read_dir(g.expect("group").path().join("devices")).expect("devices").count())
            .sum::<usize>();
        assert!(seen > 0 && seen == grouped, "{}: {seen} lines for {grouped} grouped devices", host.display());
    }
}

/// On the machine running the test, every device's line is what the real lspci prints.
#[test]
fn device_lines_match_lspci_on_this_machine() {
    let root = HostRoot::live();
    if !root.exists("/sys/bus/pci/devices") {
        eprintln!("no PCI bus on this machine; nothing to compare");
        return;
    }
    let inv = vfioctl_host::pci::read(&root).expect("read live PCI");
    let (db, _) = pci_ids::load(None).expect("pci.ids");
    let run = tool("lspci", &["-nn"], "pciutils");
    let ours: Vec<String> = inv.devices.values().map(|d| lspci::line(&db, d, inv.multi_domain())).collect();
    let theirs: Vec<String> = run.stdout.lines().map(str::to_string).collect();
    assert_eq!(ours, theirs);
    // And through the binary, with the database lspci used: the lspci format (when this
    // machine has IOMMU groups).
    let run = match pci_ids::load(None).expect("pci.ids").1 {
        pci_ids::IdsSource::File(p) => {
            vfioctl(Path::new("/"), &["list", "--format", "lspci", "--pci-ids", p.to_str().expect("utf8")])
        }
        pci_ids::IdsSource::Embedded => vfioctl(Path::new("/"), &["list", "--format", "lspci"]),
    };
    for line in run.stdout.lines() {
        let device_line = line.splitn(4, ' ').nth(3).unwrap_or_default();
        assert!(theirs.iter().any(|t| t == device_line), "{line}");
    }
}

/// The guide's own `io-mmu-groups` listing of the Threadripper, line for line (the guide
/// prints groups in glob order). The guide's pci.ids (2020) named two devices differently
/// from the built-in copy (2023): with those two names as they were, every line is equal.
#[test]
fn threadripper_reproduces_the_guides_listing() {
    let host = example_host("tr1950x");
    let guide =
        fs::read_to_string(workspace().join("examples/hosts/tr1950x.guide-listing.txt")).expect("guide listing");
    let mut ids = String::new();
    let gz = fs::read(workspace().join("crates/vfioctl-host/data/pci.ids.gz")).expect("built-in pci.ids");
    std::io::Read::read_to_string(&mut flate2::read::GzDecoder::new(&gz[..]), &mut ids).expect("gunzip");
    let renamed = [
        ("\t2142  ASM2142/ASM3142 USB 3.1 Host Controller\n", "\t2142  ASM2142 USB 3.1 Host Controller\n"),
        (
            "\t1456  Family 17h (Models 00h-0fh) Platform Security Processor (PSP) 3.0 Device\n",
            "\t1456  Family 17h (Models 00h-0fh) Platform Security Processor\n",
        ),
    ];
    for (now, then) in renamed {
        assert!(ids.contains(now), "built-in pci.ids changed: {now:?}");
        ids = ids.replace(now, then);
    }
    let tmp = tempfile::tempdir().expect("tempdir");
    let ids_path = tmp.path().join("pci.ids");
    fs::write(&ids_path, ids).expect("write pci.ids");
    let run = vfioctl(&host, &["list", "--format", "lspci", "--pci-ids", ids_path.to_str().expect("utf8")]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut ours: Vec<&str> = run.stdout.lines().collect();
    let mut theirs: Vec<&str> = guide.lines().filter(|l| l.starts_with("IOMMU Group")).collect();
    assert_eq!(theirs.len(), 77);
    ours.sort_unstable();
    theirs.sort_unstable();
    assert_eq!(ours, theirs);
}

#[test]
fn json_describes_the_radeon_vii_and_its_group() {
    let run = vfioctl(&example_host("tr1950x"), &["list", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let groups = v["groups"].as_array().expect("groups");
    let g20 = groups.iter().find(|g| g["id"] == 20).expect("group 20");
    let d = &g20["devices"][0];
    assert_eq!(d["address"], "0000:0d:00.0");
    assert_eq!(d["vendor_id"], "1002");
    assert_eq!(d["device_id"], "66af");
    assert_eq!(d["class"], "0300");
    assert_eq!(d["class_name"], "VGA compatible controller");
    assert_eq!(d["vendor_name"], "Advanced Micro Devices, Inc. [AMD/ATI]");
    assert_eq!(d["device_name"], "Vega 20 [Radeon VII]");
    assert_eq!(d["revision"], "c1");
    assert_eq!(d["driver"], "amdgpu");
    assert_eq!(d["numa_node"], 0);
    assert_eq!(d["boot_vga"], false);
    assert_eq!(d["bridge"], false);
    assert!(d["reset_methods"].is_array());
    for key in ["subsystem_vendor_id", "subsystem_device_id"] {
        assert!(d[key].is_string(), "{key}");
    }
    assert_eq!(g20["passable"], true);
    assert_eq!(g20["mixed"], false);
    // The boot GPU's group says so; the chipset group 15 holds no GPU.
    let g42 = groups.iter().find(|g| g["id"] == 42).expect("group 42");
    assert_eq!(g42["boot_vga"], true);
    assert_eq!(g42["devices"][0]["boot_vga"], true);
    let g15 = groups.iter().find(|g| g["id"] == 15).expect("group 15");
    assert_eq!(g15["mixed"], false);
    assert!(g15["devices"].as_array().expect("devices").iter().any(|d| d["bridge"] == true));
    let ids: Vec<u64> = groups.iter().map(|g| g["id"].as_u64().expect("id")).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "groups in numeric order");
}

#[test]
fn ryzen_gpu_and_audio_share_one_group_on_vfio_pci() {
    let run = vfioctl(&example_host("r2600x"), &["list", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let g = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .find(|g| g["devices"][0]["address"] == "0000:09:00.0")
        .expect("GTX 1080 Ti group");
    let addrs: Vec<&str> =
        g["devices"].as_array().expect("devices").iter().filter_map(|d| d["address"].as_str()).collect();
    assert_eq!(addrs, ["0000:09:00.0", "0000:09:00.1"]);
    assert_eq!(g["devices"][0]["device_name"], "GP102 [GeForce GTX 1080 Ti]");
    assert_eq!(g["devices"][0]["driver"], "vfio-pci");
    assert_eq!(g["passable"], true);
}

#[test]
fn text_output_is_stable() {
    for host in example_hosts() {
        let run = vfioctl(&host, &["list"]);
        let name = host.file_name().expect("name").to_string_lossy().into_owned();
        insta::assert_snapshot!(format!("list-{name}"), format!("exit {}\n{}", run.code, run.stdout));
    }
}

#[test]
fn iommu_off_is_an_error_with_the_parameter_for_this_cpu() {
    let run = vfioctl(&example_host("no-iommu"), &["list"]);
    assert_eq!(run.code, 1);
    assert!(run.stderr.contains("IOMMU is not enabled"), "{}", run.stderr);
    assert!(run.stderr.contains("_iommu=on"), "{}", run.stderr);
    assert!(run.stderr.contains("fix:"), "{}", run.stderr);
    let run = vfioctl(&example_host("no-iommu"), &["list", "--format", "json"]);
    assert_eq!(run.code, 1);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["iommu_enabled"], false);
    assert!(!v["ungrouped"].as_array().expect("ungrouped").is_empty());
}

#[test]
fn not_a_host_root_is_an_environment_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = vfioctl(dir.path(), &["list"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("does not look like a Linux host root"), "{}", run.stderr);
    assert!(run.stderr.contains("/sys/bus/pci/devices"), "{}", run.stderr);
}

fn copy_tree(src: &Path, dst: &Path) {
    let out = std::process::Command::new("cp").arg("-a").arg(src).arg(dst).status().expect("cp");
    assert!(out.success());
}

/// Garbage values, dangling links, vanished devices: warnings naming the path, no panic.
#[test]
fn damaged_sysfs_gives_warnings_not_panics() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let root = tmp.path().join("host");
    copy_tree(&example_host("tr1950x"), &root);
    let dev = fs::canonicalize(root.join("sys/bus/pci/devices/0000:0d:00.0")).expect("device dir");
    fs::write(dev.join("numa_node"), "banana\n").expect("write");
    fs::write(dev.join("revision"), "\u{0}\u{ff}garbage").expect("write");
    fs::remove_file(dev.join("driver")).expect("rm driver");
    std::os::unix::fs::symlink("../../nowhere/at/all", dev.join("driver")).expect("dangling");
    let gone = fs::canonicalize(root.join("sys/bus/pci/devices/0000:0d:00.1")).expect("audio dir");
    fs::remove_file(gone.join("class")).expect("rm class");
    // The ids come from the config header; without one, from the files.
    fs::write(root.join("sys/bus/pci/devices/0000:0e:00.0/config"), "").expect("write");
    fs::write(root.join("sys/bus/pci/devices/0000:0e:00.0/vendor"), "0xZZZZ").expect("write");
    std::os::unix::fs::symlink("../../../devices/nowhere", root.join("sys/bus/pci/devices/0000:99:00.0"))
        .expect("dangling");
    fs::create_dir_all(root.join("sys/bus/pci/devices/not-an-address")).expect("mkdir");

    let run = vfioctl(&root, &["list", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
    for needle in
        ["0000:0d:00.0/numa_node", "0000:0d:00.1/class", "0000:0e:00.0/vendor", "0000:99:00.0", "not-an-address"]
    {
        assert!(run.stderr.contains(needle), "no warning for {needle}: {}", run.stderr);
    }
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let all: Vec<&serde_json::Value> = v["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["devices"].as_array().expect("devices"))
        .collect();
    let vii = all.iter().find(|d| d["address"] == "0000:0d:00.0").expect("Radeon VII still listed");
    assert_eq!(vii["numa_node"], serde_json::Value::Null);
    assert_eq!(vii["driver"], "all", "a dangling driver link still names its driver");
    assert!(all.iter().all(|d| d["address"] != "0000:0d:00.1"), "device without class is left out");
}

/// A GPU behind the chipset shares its group with USB, SATA and network controllers (a
/// common sight on consumer boards): the group is marked, and the text says so.
#[test]
fn gpu_sharing_a_group_with_controllers_is_marked() {
    let spec = r#"
[host]
name = "mixed"
description = "GPU in the chipset group"
cmdline = "root=/dev/sda1 amd_iommu=on"

[cpu]
vendor = "AuthenticAMD"
model_name = "AMD Ryzen 5 3600 6-Core Processor"
family = 23
model = 113
stepping = 0
microcode = "0x8701021"
l3_per_node = 1
cores_per_l3 = 2
threads_per_core = 2
base_freq_khz = 3600000
max_freq_khz = 4200000
cache = { l1d = "32K", l1i = "32K", l2 = "512K", l3 = "16M" }

[memory]
node_mib = [8192]

[pci]
roots = [{ bus = "00", node = -1 }]
devices = [
  { addr = "00:01.0", id = "1022:1482", class = "060000", group = 0 },
  { addr = "00:01.2", id = "1022:1483", class = "060400", driver = "pcieport", group = 1 },
  { addr = "01:00.0", id = "1022:43ee", class = "0c0330", parent = "00:01.2", driver = "xhci_hcd", group = 1 },
  { addr = "01:00.1", id = "1022:43eb", class = "010601", parent = "00:01.2", driver = "ahci", group = 1 },
  { addr = "01:00.2", id = "1022:43e9", class = "060400", parent = "00:01.2", driver = "pcieport", group = 1 },
  { addr = "02:00.0", id = "1022:43ea", class = "060400", parent = "01:00.2", driver = "pcieport", group = 1 },
  { addr = "02:01.0", id = "1022:43ea", class = "060400", parent = "01:00.2", driver = "pcieport", group = 1 },
  { addr = "03:00.0", id = "10ec:8168", class = "020000", rev = "15", parent = "02:00.0", driver = "r8169", group = 1 },
  { addr = "04:00.0", id = "10de:1c82", class = "030000", rev = "a1", parent = "02:01.0", driver = "nouveau", group = 1, boot_vga = false },
  { addr = "00:03.0", id = "1022:1482", class = "060000", group = 2 },
  { addr = "00:03.1", id = "1022:1483", class = "060400", driver = "pcieport", group = 3 },
  { addr = "05:00.0", id = "1002:67df", class = "030000", rev = "e7", parent = "00:03.1", driver = "amdgpu", group = 4, boot_vga = true },
]
"#;
    let tmp = tempfile::tempdir().expect("tempdir");
    let spec_path = tmp.path().join("mixed.toml");
    fs::write(&spec_path, spec).expect("write spec");
    let root = tmp.path().join("mixed");
    let spec = vfioctl_hostgen::load(&spec_path).expect("spec");
    vfioctl_hostgen::generate(&spec, &root).expect("generate");

    let run = vfioctl(&root, &["list", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let g1 = v["groups"].as_array().expect("groups").iter().find(|g| g["id"] == 1).expect("group 1");
    assert_eq!(g1["gpu"], true);
    assert_eq!(g1["mixed"], true);
    let note = g1["notes"][0].as_str().expect("note");
    assert!(note.contains("01:00.0, 01:00.1, 03:00.0"), "{note}");
    let run = vfioctl(&root, &["list"]);
    assert!(run.stdout.contains("group   1: GPU group is not clean"), "{}", run.stdout);
    assert!(run.stdout.contains("storage/network/USB controllers: 01:00.0, 01:00.1, 03:00.0"), "{}", run.stdout);
}

/// The ids, revision and subsystem ids `list --format json` gives are the sysfs files', on
/// every example host, although they are read from the config header; a virtual
/// function's header (vendor 0xffff) falls back to the files.
#[test]
fn revision_and_subsystem_are_the_sysfs_files() {
    let file = |dev: &Path, name: &str| {
        fs::read_to_string(dev.join(name)).ok().map(|s| s.trim().trim_start_matches("0x").to_string())
    };
    let check = |host: &Path| {
        let run = vfioctl(host, &["list", "--format", "json"]);
        if run.stderr.contains("IOMMU is not enabled") {
            return 0;
        }
        assert_eq!(run.code, 0, "{}: {}", host.display(), run.stderr);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        let mut seen = 0;
        for d in v["groups"].as_array().expect("groups").iter().flat_map(|g| g["devices"].as_array().expect("devices"))
        {
            let addr = d["address"].as_str().expect("address");
            let dev = host.join("sys/bus/pci/devices").join(addr);
            for (key, name) in [
                ("vendor_id", "vendor"),
                ("device_id", "device"),
                ("revision", "revision"),
                ("subsystem_vendor_id", "subsystem_vendor"),
                ("subsystem_device_id", "subsystem_device"),
            ] {
                if let Some(want) = file(&dev, name) {
                    assert_eq!(d[key].as_str(), Some(want.as_str()), "{} {addr} {key}", host.display());
                    seen += 1;
                }
            }
            // The class is the `class` file's (not the header's), the driver the link's.
            let class = file(&dev, "class").expect("class file");
            let json_class =
                format!("{}{}", d["class"].as_str().expect("class"), d["prog_if"].as_str().expect("prog_if"));
            assert_eq!(json_class, class, "{} {addr} class", host.display());
            let driver = fs::read_link(dev.join("driver")).ok();
            let driver = driver.as_ref().and_then(|l| l.file_name()).and_then(|n| n.to_str());
            assert_eq!(d["driver"].as_str(), driver, "{} {addr} driver", host.display());
        }
        seen
    };
    for host in example_hosts() {
        check(&host);
    }
    // A header that is not the device's: the files.
    let (_tmp, host) = crate::util::copy_host("r2600x");
    let dev = host.join("sys/bus/pci/devices/0000:0a:00.0");
    let mut config = fs::read(dev.join("config")).expect("config");
    config[0] = 0xff;
    config[1] = 0xff;
    fs::write(dev.join("config"), &config).expect("write");
    fs::write(dev.join("revision"), "0x5a\n").expect("write");
    fs::write(dev.join("subsystem_vendor"), "0x1234\n").expect("write");
    fs::write(dev.join("device"), "0x4321\n").expect("write");
    assert!(check(&host) > 0);
}
