//! `vfioctl verify`: after an apply and a (simulated) reboot, the host against the plan the
//! journal recorded; each failure names its probable cause.

use std::fs;
use std::path::Path;

use crate::util::{copy_host, example_host, vfioctl};

const PLAN: &[&str] = &["gpu", "--vcpus", "8", "--memory", "16G", "--hugepages", "2M"];

/// The reboot, as far as a fixture tree can have one: the running command line becomes
/// the one GRUB now configures, and the sysctl reserves the 2 MiB pages.
fn reboot(root: &Path, pages: u64) {
    let grub = fs::read_to_string(root.join("etc/default/grub")).expect("grub");
    let line = grub.lines().find_map(|l| l.strip_prefix("GRUB_CMDLINE_LINUX_DEFAULT=")).expect("cmdline");
    let params = line.trim_matches('"');
    fs::write(root.join("proc/cmdline"), format!("BOOT_IMAGE=/boot/vmlinuz root=/dev/sda1 ro {params}\n"))
        .expect("cmdline");
    let pool = root.join("sys/devices/system/node/node0/hugepages/hugepages-2048kB");
    fs::write(pool.join("nr_hugepages"), format!("{pages}\n")).expect("pool");
    fs::write(pool.join("free_hugepages"), format!("{pages}\n")).expect("pool");
}

#[test]
fn after_apply_and_reboot_the_journal_plan_passes() {
    let (_t, root) = copy_host("r2600x");
    let none = vfioctl(&root, &["verify"]);
    assert_eq!(none.code, 2, "{}", none.stderr);
    assert!(none.stderr.contains("nothing was applied"), "{}", none.stderr);
    let mut a = vec!["apply"];
    a.extend_from_slice(PLAN);
    a.push("--yes");
    let run = vfioctl(&root, &a);
    assert_eq!(run.code, 0, "{}", run.stderr);
    // Before the reboot: the running kernel lacks what was just configured.
    let before = vfioctl(&root, &["verify"]);
    assert_eq!(before.code, 1, "{}", before.stdout);
    assert!(
        before.stdout.contains("configured in /etc/default/grub but not in the running kernel"),
        "{}",
        before.stdout
    );
    reboot(&root, 8192);
    let after = vfioctl(&root, &["verify"]);
    assert_eq!(after.code, 0, "{}\n{}", after.stdout, after.stderr);
    assert!(after.stdout.contains("Verifying the apply of journal"), "{}", after.stdout);
    let json = vfioctl(&root, &["verify", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["summary"]["fail"], 0);
    assert!(v["checks"].as_array().expect("checks").len() >= 8);
    // The audio function came up on its host driver: the softdep or the initramfs.
    crate::util::bind(&root, "0000:09:00.1", "snd_hda_intel");
    let broken = vfioctl(&root, &["verify"]);
    assert_eq!(broken.code, 1);
    assert!(broken.stdout.contains("0000:09:00.1 is bound to vfio-pci"), "{}", broken.stdout);
    assert!(broken.stdout.contains("on snd_hda_intel: snd_hda_intel took it first"), "{}", broken.stdout);
    assert!(broken.stdout.contains("update-initramfs -u"), "{}", broken.stdout);
    // Too few pages.
    reboot(&root, 100);
    let pages = vfioctl(&root, &["verify", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&pages.stdout).expect("json");
    let hp = v["checks"].as_array().expect("checks").iter().find(|c| c["id"] == "verify.hugepages").cloned();
    assert_eq!(hp.expect("hugepages check")["status"], "warn");
}

#[test]
fn named_devices_check_what_the_next_boot_configures() {
    // r2600x has iommu=pt in /etc/default/grub but was not rebooted since.
    let run = vfioctl(&example_host("r2600x"), &["verify", "gpu"]);
    assert_eq!(run.code, 1, "{}", run.stdout);
    assert!(run.stdout.contains("iommu=pt"), "{}", run.stdout);
    assert!(run.stdout.contains("0000:09:00.0 is bound to vfio-pci"), "{}", run.stdout);
    let bad = vfioctl(&example_host("r2600x"), &["verify", "zz:99.9"]);
    assert_eq!(bad.code, 2, "{}", bad.stderr);
}

/// Regression: `verify` before the reboot printed ten FAILs with fixes that do not apply
/// (`update-grub` on a systemd-boot host) instead of "reboot first". The journal's apply
/// time against the kernel's boot time (`btime` in /proc/stat) tells.
#[test]
fn before_the_reboot_verify_says_reboot_first() {
    let (_t, root) = crate::util::copy_host("tr1950x");
    let run = crate::util::vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    std::fs::write(root.join("proc/stat"), "cpu  1 2 3 4\nbtime 1700000000\nprocesses 100\n").expect("write");
    let run = crate::util::vfioctl(&root, &["verify"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.starts_with("reboot pending: the apply of journal "), "{}", run.stdout);
    assert!(!run.stdout.contains("FAIL") && !run.stdout.contains("update-grub"), "{}", run.stdout);
    let json = crate::util::vfioctl(&root, &["verify", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&json.stdout).expect("json");
    assert_eq!(v["reboot_pending"], true);
    // Booted after the apply: the checks run.
    let later = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("time").as_secs() + 60;
    std::fs::write(root.join("proc/stat"), format!("btime {later}\n")).expect("write");
    let run = crate::util::vfioctl(&root, &["verify"]);
    assert!(run.stdout.starts_with("Verifying the apply of journal"), "{}", run.stdout);
}

/// Regression (issue 16): a fact `verify` depends on that cannot be read (a passed
/// function's `numa_node`, a GRUB file that is not text) was verified around in silence;
/// now each is a FAIL naming the file, and verify exits 1.
#[test]
fn what_cannot_be_read_fails_verification() {
    let (_t, root) = crate::util::copy_host("r2600x");
    let numa = std::fs::canonicalize(root.join("sys/bus/pci/devices/0000:09:00.1")).unwrap().join("numa_node");
    std::fs::remove_file(&numa).unwrap();
    std::fs::create_dir(&numa).unwrap();
    std::fs::write(root.join("etc/default/grub"), b"GRUB_CMDLINE_LINUX=\"\0\"\n").unwrap();
    let run = crate::util::vfioctl(&root, &["verify", "gpu"]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    let unknown: Vec<&str> = run.stdout.lines().filter(|l| l.starts_with("UNKNOWN:")).collect();
    assert_eq!(unknown.len(), 2, "{}", run.stdout);
    assert!(unknown.iter().all(|l| l.contains(": FAIL (")), "{unknown:?}");
    assert!(run.stdout.contains("/sys/bus/pci/devices/0000:09:00.1/numa_node: cannot read"), "{}", run.stdout);
    assert!(run.stdout.contains("the boot configuration: /etc/default/grub"), "{}", run.stdout);
}
