//! `vfioctl apply`, `rollback`, `status`: diffs per boot loader and initramfs builder, the
//! transaction under injected faults, idempotence.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use crate::util::{copy_host, vfioctl, vfioctl_env};

const PLAN: &[&str] = &["gpu", "--vcpus", "8", "--memory", "16G", "--hugepages", "2M"];

fn args<'a>(cmd: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![cmd];
    v.extend_from_slice(PLAN);
    v.extend_from_slice(extra);
    v
}

/// Every file and directory under the root's etc, boot and efi with its bytes and mode (a
/// directory with no bytes), so a directory the apply created and left counts too.
pub(crate) fn tree(root: &Path) -> BTreeMap<PathBuf, (Vec<u8>, u32)> {
    fn walk(base: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, (Vec<u8>, u32)>) {
        let Ok(rd) = fs::read_dir(dir) else { return };
        for e in rd.flatten() {
            let p = e.path();
            let m = fs::symlink_metadata(&p).expect("metadata");
            if m.is_dir() {
                out.insert(p.strip_prefix(base).expect("under").to_path_buf(), (Vec::new(), m.mode()));
                walk(base, &p, out);
            } else if m.is_file() {
                out.insert(p.strip_prefix(base).expect("under").to_path_buf(), (fs::read(&p).expect("read"), m.mode()));
            }
        }
    }
    let mut out = BTreeMap::new();
    for d in ["etc", "boot", "efi"] {
        walk(root, &root.join(d), &mut out);
    }
    out
}

#[test]
fn apply_then_rollback_is_byte_for_byte_and_twice_is_nothing() {
    let (_t, root) = copy_host("r2600x");
    let before = tree(&root);
    let run = vfioctl(&root, &args("apply", &["--yes"]));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("Applied: 4 files written"), "{}", run.stdout);
    assert!(run.stdout.contains("pending"), "commands are not run outside the root: {}", run.stdout);
    let grub = fs::read_to_string(root.join("etc/default/grub")).expect("grub");
    assert!(grub.contains("vfio-pci.ids=10de:1b06,10de:10ef\""), "{grub}");
    let status = vfioctl(&root, &["status", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&status.stdout).expect("json");
    assert_eq!(v["applied"], true);
    assert!(v["files"].as_array().expect("files").iter().all(|f| f["state"] == "unchanged"));
    let again = vfioctl(&root, &args("apply", &["--yes"]));
    assert_eq!(again.code, 0);
    assert!(again.stdout.starts_with("Nothing to do"), "{}", again.stdout);
    let run = vfioctl(&root, &["rollback", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(tree(&root), before);
}

#[test]
fn dry_run_changes_nothing_and_without_yes_it_refuses_to_ask_a_pipe() {
    let (_t, root) = copy_host("r2600x");
    let before = tree(&root);
    let run = vfioctl(&root, &args("apply", &["--dry-run"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("+++ b/etc/default/grub"), "{}", run.stdout);
    let run = vfioctl(&root, &args("apply", &[]));
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("pass --yes"), "{}", run.stderr);
    assert_eq!(tree(&root), before);
}

/// Each step of the transaction fails in turn, the process is killed between writes:
/// afterwards (with `rollback` where the apply could not finish by itself) every file is
/// as it was, byte for byte.
#[test]
fn every_fault_leaves_the_host_as_it_was() {
    for fault in ["write:0", "write:1", "command:0", "restore:0", "crash:0", "crash:1"] {
        let (_t, root) = copy_host("r2600x");
        let before = tree(&root);
        let run = vfioctl_env(&root, &args("apply", &["--yes", "--no-commands"]), &[("VFIOCTL_FAULT", fault)]);
        assert_ne!(run.code, 0, "{fault}: {}", run.stdout);
        if fault.starts_with("crash") || fault.starts_with("restore") {
            assert_ne!(tree(&root), before, "{fault}: the fault left a half-applied host to repair");
            let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
            assert_eq!(rb.code, 0, "{fault}: {}", rb.stderr);
        } else if fault != "command:0" {
            assert!(run.stderr.contains("every file was restored"), "{fault}: {}", run.stderr);
        }
        assert_eq!(tree(&root), before, "{fault}");
    }
}

/// A derived host: r2600x with its boot loader or initramfs configuration replaced.
fn derived(remove: &[&str], files: &[(&str, &str)]) -> (tempfile::TempDir, PathBuf) {
    let (t, root) = copy_host("r2600x");
    for r in remove {
        let p = root.join(r);
        if p.is_dir() {
            fs::remove_dir_all(&p).expect("rm dir");
        } else {
            fs::remove_file(&p).expect("rm");
        }
    }
    for (path, text) in files {
        let p = root.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }
    (t, root)
}

const MKINITCPIO: &str = "# vim:set ft=sh\n# MODULES\nMODULES=()\n\nBINARIES=()\nFILES=()\nHOOKS=(base udev autodetect microcode modconf kms keyboard keymap consolefont block filesystems fsck)\n";
const KERNELSTUB: &str = "{\n    \"default\": {\n        \"kernel_options\": [\n            \"quiet\",\n            \"splash\"\n        ],\n        \"esp_path\": \"/boot/efi\",\n        \"setup_loader\": false,\n        \"manage_mode\": false,\n        \"force_update\": false,\n        \"live_mode\": false,\n        \"config_rev\": 3\n    },\n    \"user\": {\n        \"kernel_options\": [\n            \"quiet\",\n            \"loglevel=0\",\n            \"systemd.show_status=false\",\n            \"splash\"\n        ],\n        \"esp_path\": \"/boot/efi\",\n        \"setup_loader\": true,\n        \"manage_mode\": true,\n        \"force_update\": false,\n        \"live_mode\": false,\n        \"config_rev\": 3\n    }\n}\n";

/// (name, paths removed from r2600x, files written, extra apply arguments).
type Case<'a> = (&'a str, Vec<&'a str>, Vec<(&'a str, &'a str)>, Vec<&'a str>);

#[test]
fn diffs_for_every_boot_loader_and_initramfs_builder() {
    let grub = "etc/default/grub";
    let itools = "etc/initramfs-tools";
    let cases: Vec<Case> = vec![
        ("grub-initramfs-tools", vec![], vec![], vec![]),
        ("grub-separate", vec![], vec![], vec!["--boot-entry", "separate"]),
        ("kernel-cmdline-dracut", vec![grub, itools], vec![("/etc/kernel/cmdline", "root=UUID=1234 rw quiet amd_iommu=on\n"), ("/etc/dracut.conf.d/10-local.conf", "hostonly=\"yes\"\n")], vec![]),
        ("kernelstub-initramfs-tools", vec![grub], vec![("/etc/kernelstub/configuration", KERNELSTUB)], vec![]),
        ("refind-mkinitcpio", vec![grub, itools], vec![("/boot/refind_linux.conf", "\"Boot with standard options\"  \"rw root=UUID=1234 quiet\"\n\"Boot to single-user mode\"    \"rw root=UUID=1234 single\"\n"), ("/etc/mkinitcpio.conf", MKINITCPIO)], vec![]),
        ("refind-separate", vec![grub, itools], vec![("/boot/refind_linux.conf", "\"Boot with standard options\"  \"rw root=UUID=1234 quiet\"\n")], vec!["--boot-entry", "separate"]),
        ("limine-booster", vec![grub, itools], vec![("/boot/limine.conf", "timeout: 5\n\n/Arch Linux\n    protocol: linux\n    kernel_path: boot():/vmlinuz-linux\n    cmdline: root=UUID=1234 rw quiet\n    module_path: boot():/initramfs-linux.img\n"), ("/etc/booster.yaml", "compression: zstd\n")], vec![]),
        ("systemd-boot-separate", vec![grub, itools], vec![("/boot/loader/loader.conf", "default arch.conf\ntimeout 3\n"), ("/boot/loader/entries/arch.conf", "title   Arch Linux\nlinux   /vmlinuz-linux\ninitrd  /initramfs-linux.img\noptions root=UUID=1234 rw\n"), ("/etc/mkinitcpio.conf", MKINITCPIO)], vec!["--boot-entry", "separate"]),
        ("fedora-bls-dracut", vec![itools], vec![("/boot/loader/entries/abc-6.8.5-301.fc40.x86_64.conf", "title Fedora Linux (6.8.5-301.fc40.x86_64) 40 (Workstation Edition)\nversion 6.8.5-301.fc40.x86_64\nlinux /vmlinuz-6.8.5-301.fc40.x86_64\ninitrd /initramfs-6.8.5-301.fc40.x86_64.img\noptions root=UUID=1234 ro rhgb quiet\ngrub_users $grub_users\ngrub_arg --unrestricted\ngrub_class fedora\n"), ("/etc/dracut.conf", "# dracut config\n")], vec![]),
    ];
    for (name, remove, files, extra) in cases {
        let (_t, root) = derived(&remove, &files);
        let mut a = args("apply", &["--dry-run"]);
        a.extend_from_slice(&extra);
        let run = vfioctl(&root, &a);
        assert_eq!(run.code, 0, "{name}: {}", run.stderr);
        insta::assert_snapshot!(format!("apply-{name}"), run.stdout);
        // And for real: applying twice is applying once; rollback restores all.
        let before = tree(&root);
        let mut a = args("apply", &["--yes", "--no-commands"]);
        a.extend_from_slice(&extra);
        assert_eq!(vfioctl(&root, &a).code, 0, "{name}");
        let again = vfioctl(&root, &a);
        assert!(again.stdout.starts_with("Nothing to do"), "{name}: {}", again.stdout);
        assert_eq!(vfioctl(&root, &["rollback", "--yes", "--no-commands"]).code, 0, "{name}");
        assert_eq!(tree(&root), before, "{name}");
        // After the other boot entry choice, this one leaves what it alone leaves (the
        // separate entry or stanza is taken out again, the default one put back), and
        // rollback --all restores everything.
        let other: &[&str] = if extra.is_empty() { &["--boot-entry", "separate"] } else { &[] };
        let mut first = args("apply", &["--yes", "--no-commands"]);
        first.extend_from_slice(other);
        assert_eq!(vfioctl(&root, &first).code, 0, "{name} {other:?}");
        assert_eq!(vfioctl(&root, &a).code, 0, "{name} {other:?} then {extra:?}");
        let (_t2, alone) = derived(&remove, &files);
        assert_eq!(vfioctl(&alone, &a).code, 0, "{name} {extra:?} alone");
        let files_of = |r: &Path| {
            let mut t = tree(r);
            let empty_dir = |p: &Path, bytes: &[u8]| bytes.is_empty() && r.join(p).is_dir();
            t.retain(|p, (bytes, _)| !p.starts_with("var") && !empty_dir(p, bytes));
            t
        };
        assert_eq!(files_of(&root), files_of(&alone), "{name}: {other:?} then {extra:?} differs from {extra:?} alone");
        assert_eq!(vfioctl(&root, &["rollback", "--all", "--yes", "--no-commands"]).code, 0, "{name}");
        let mut now = tree(&root);
        now.retain(|p, _| !p.starts_with("var/lib/vfioctl"));
        let mut was = before.clone();
        was.retain(|p, _| !p.starts_with("var/lib/vfioctl"));
        assert_eq!(now, was, "{name}: rollback --all after {other:?} then {extra:?}");
    }
}

/// The grub.d script of `--boot-entry separate` is valid shell and executable.
#[test]
fn grub_separate_entry_is_an_executable_script() {
    let (_t, root) = copy_host("r2600x");
    let run = vfioctl(&root, &args("apply", &["--yes", "--no-commands", "--boot-entry", "separate"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    let script = root.join("etc/grub.d/41_vfioctl");
    assert_eq!(fs::metadata(&script).expect("script").mode() & 0o777, 0o755);
    let sh = std::process::Command::new("sh").arg("-n").arg(&script).status().expect("sh");
    assert!(sh.success());
    let vfio = fs::read_to_string(root.join("etc/modprobe.d/vfio.conf")).expect("vfio.conf");
    assert!(!vfio.contains("options vfio-pci ids=10de:1b06,10de:10ef\n"), "{vfio}");
}

#[test]
fn evdev_devices_go_into_qemu_conf_only_for_libvirt_before_7_4() {
    let (_t, root) = copy_host("r2600x");
    let marker = |v: &str| format!("#vfioctl-snapshot: program marker\nlibvirtd (libvirt) {v}\n");
    // The guide's Ubuntu 18.04: libvirt 4.0, and its qemu.conf already lists both devices.
    fs::write(root.join("usr/sbin/libvirtd"), marker("4.0.0")).expect("marker");
    let run = vfioctl(&root, &args("apply", &["--dry-run", "--evdev", "auto"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(!run.stdout.contains("etc/libvirt/qemu.conf\n"), "{}", run.stdout);
    assert!(run.stdout.contains("already"), "{}", run.stdout);
    // Without the guide's list: the devices are added to a list of libvirt's defaults.
    let conf = root.join("etc/libvirt/qemu.conf");
    let text = fs::read_to_string(&conf).expect("qemu.conf");
    let start = text.find("cgroup_device_acl").expect("the guide's list");
    let end = start + text[start..].find(']').expect("end of list") + 1;
    let without = format!("{}{}", &text[..start], &text[end..]);
    fs::write(&conf, &without).expect("write");
    let run = vfioctl(&root, &args("apply", &["--yes", "--evdev", "auto"]));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let now = fs::read_to_string(&conf).expect("qemu.conf");
    assert!(now.starts_with(&without), "everything the file had stays, the list is appended:\n{now}");
    for dev in ["\"/dev/kvm\"", "usb-Logitech_USB_Receiver-event-kbd\"", "Keyboard_Mouse-if01-event-mouse\""] {
        assert!(now.contains(dev), "{dev} missing:\n{now}");
    }
    let run = vfioctl(&root, &["rollback", "--yes"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert_eq!(fs::read_to_string(&conf).expect("qemu.conf"), without);
    // libvirt 7.4 and later set native evdev up themselves: nothing to write.
    fs::write(root.join("usr/sbin/libvirtd"), marker("9.0.0")).expect("marker");
    let run = vfioctl(&root, &args("apply", &["--dry-run", "--evdev", "auto"]));
    assert!(!run.stdout.contains("qemu.conf:"), "{}", run.stdout);
    assert!(run.stdout.contains("devices itself"), "{}", run.stdout);
}

/// The plan is made, the confirmation prompt waits, meanwhile the user edits a file the
/// plan changes: answering yes writes nothing (exit 2) and the edit stays.
#[test]
fn a_file_edited_while_the_prompt_waits_is_not_overwritten() {
    let (_t, root) = copy_host("r2600x");
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vfioctl"));
    cmd.arg("--root")
        .arg(&root)
        .args(args("apply", &["--no-commands"]))
        .env("VFIOCTL_PCI_IDS", crate::util::ids_file());
    let mut p = rexpect::session::spawn_command(cmd, Some(30_000)).expect("spawn on a pty");
    p.exp_string("Apply these changes? [y/N]").expect("the prompt");
    let grub = root.join("etc/default/grub");
    let edited = format!("{}# edited while vfioctl asked\n", fs::read_to_string(&grub).expect("grub"));
    fs::write(&grub, &edited).expect("edit");
    let before = tree(&root);
    p.send_line("y").expect("answer");
    let out = p.exp_eof().expect("end");
    assert!(out.contains("/etc/default/grub changed after the plan was made"), "{out}");
    assert!(out.contains("nothing was written"), "{out}");
    let status = p.process().wait().expect("wait");
    assert!(matches!(status, rexpect::process::WaitStatus::Exited(_, 2)), "{status:?}: {out}");
    assert_eq!(tree(&root), before, "the user's edit stays, nothing else changed");
    assert!(!root.join("var/lib/vfioctl/journal").exists(), "no journal");
}

/// The first host path in a plan's `cmdline_source` (`kernelstub (/etc/kernelstub/configuration)`,
/// `boot loader entry /boot/…conf`, `/etc/default/grub + grub.d/x.cfg`).
fn source_path(source: &str) -> Option<String> {
    source
        .split_whitespace()
        .map(|w| w.trim_matches(|c| c == '(' || c == ')'))
        .find(|w| w.starts_with('/'))
        .map(str::to_string)
}

/// One detector: on every example host, and on a Pop!_OS layout (kernelstub beside the
/// systemd-boot entries it writes, where the two detectors of old disagreed), the file
/// `plan` and `check` name for the next boot's command line is the file `apply` edits.
#[test]
fn the_next_boot_plan_and_check_name_is_the_file_apply_edits() {
    let popos = derived(
        &["etc/default/grub"],
        &[
            ("/etc/kernelstub/configuration", KERNELSTUB),
            ("/boot/efi/loader/loader.conf", "default Pop_OS-current\n"),
            ("/boot/efi/loader/entries/Pop_OS-current.conf", "title Pop!_OS\nlinux /EFI/Pop_OS-1/vmlinuz.efi\ninitrd /EFI/Pop_OS-1/initrd.img\noptions root=UUID=1 ro quiet loglevel=0 systemd.show_status=false splash\n"),
        ],
    );
    let mut hosts: Vec<PathBuf> = crate::util::example_hosts();
    hosts.push(popos.1.clone());
    let mut checked = 0;
    for host in &hosts {
        let plan = vfioctl(host, &["plan", "gpu", "--format", "json"]);
        if plan.code != 0 {
            continue;
        }
        let v: serde_json::Value = serde_json::from_str(&plan.stdout).expect("json");
        let k = &v["kernel_cmdline"];
        if k["add"].as_array().is_some_and(|a| a.is_empty()) && k["remove"].as_array().is_some_and(|a| a.is_empty()) {
            continue;
        }
        let source = v["cmdline_source"].as_str().expect("source");
        let path = source_path(source).unwrap_or_else(|| panic!("{}: no path in {source:?}", host.display()));
        let apply = vfioctl(host, &["apply", "gpu", "--dry-run"]);
        assert_eq!(apply.code, 0, "{}: {}", host.display(), apply.stderr);
        assert!(
            apply.stdout.contains(&format!("+++ b{path}\n")),
            "{}: plan says {source}, apply edits:\n{}",
            host.display(),
            apply.stdout
        );
        let check = vfioctl(host, &["check"]);
        assert!(check.stdout.contains(source), "{}: check does not name {source}:\n{}", host.display(), check.stdout);
        checked += 1;
    }
    assert!(checked >= 3, "only {checked} hosts had a command line to change");
    let plan = vfioctl(&popos.1, &["plan", "gpu"]);
    assert!(
        plan.stdout.contains("Kernel command line (kernelstub (/etc/kernelstub/configuration))"),
        "{}",
        plan.stdout
    );
}

/// On every example host with the plan's defaults (1 GiB pages reserved at boot where the
/// CPU has them): a second identical apply changes nothing and writes no journal, and one
/// rollback restores every file and directory. Regression: the second apply used to remove
/// the hugepage parameters the first had added (the plan removed what it also added), and
/// rollback left the directories the apply had created.
#[test]
fn every_example_host_applies_once_and_rolls_back_whole() {
    let mut applied = 0;
    for host in crate::util::example_hosts() {
        let name = host.file_name().expect("name").to_string_lossy().into_owned();
        let (_t, root) = copy_host(&name);
        let before = tree(&root);
        let first = vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
        if first.code != 0 {
            assert_eq!(tree(&root), before, "{name}: a refused apply changed files");
            continue;
        }
        applied += 1;
        let journals = || fs::read_dir(root.join("var/lib/vfioctl/journal")).map_or(0, |d| d.count());
        let n = journals();
        let second = vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
        assert!(second.stdout.starts_with("Nothing to do"), "{name}: {}{}", second.stdout, second.stderr);
        assert_eq!(journals(), n, "{name}: the second apply wrote a journal");
        let rb = vfioctl(&root, &["rollback", "--yes", "--no-commands"]);
        assert_eq!(rb.code, 0, "{name}: {}", rb.stderr);
        assert_eq!(tree(&root), before, "{name}: rollback did not restore everything");
    }
    assert!(applied >= 8, "only {applied} example hosts applied");
}

/// The same apply again changes nothing, and rollback restores the tree `before` byte for
/// byte.
#[track_caller]
fn again_nothing_then_rollback(root: &Path, apply: &[&str], before: &BTreeMap<PathBuf, (Vec<u8>, u32)>) {
    let again = vfioctl(root, apply);
    assert!(again.stdout.starts_with("Nothing to do"), "{}{}", again.stdout, again.stderr);
    assert_eq!(vfioctl(root, &["rollback", "--yes", "--no-commands"]).code, 0);
    assert_eq!(&tree(root), before);
}

/// What bash prints running `script` with the host root as `$1` (the consumer's own
/// reading of shell-syntax configuration); the script must succeed.
pub(crate) fn bash_in(root: &Path, script: &str) -> String {
    let out = std::process::Command::new("bash").arg("-c").arg(script).arg("bash").arg(root).output().expect("bash");
    assert!(out.status.success(), "bash: {script}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Regression: a GVT-g host's `intel_iommu=igfx_off` became `intel_iommu=on`, and
/// `iommu=on,igfx_off` became `iommu=pt`: the user's options were lost.
#[test]
fn the_users_iommu_options_are_merged_not_replaced() {
    let (_t, root) = copy_host("i7-12700k");
    let grub = root.join("etc/default/grub");
    let text = fs::read_to_string(&grub).expect("grub").replace(
        "quiet splash intel_iommu=on iommu=pt vfio-pci.ids=10de:2484,10de:228b",
        "quiet splash intel_iommu=igfx_off iommu=on,igfx_off",
    );
    fs::write(&grub, text).expect("write");
    let before = tree(&root);
    let run = vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let line = grub_cmdline_by_bash(&root);
    let c: Vec<&str> = line.split_whitespace().collect();
    assert!(c.contains(&"intel_iommu=on,igfx_off"), "{line}");
    assert!(c.contains(&"iommu=pt,on,igfx_off"), "{line}");
    again_nothing_then_rollback(&root, &["apply", "gpu", "--yes", "--no-commands"], &before);
}

/// What vfio-pci is loaded with, as kmod reads the root's modprobe.d: every `options`
/// line of the module in kmod's order, joined (the module keeps a key's last value).
pub(crate) fn vfio_pci_options_by_kmod(root: &Path) -> Option<Vec<String>> {
    module_options_by_kmod(root, "vfio_pci")
}

/// What `module` is loaded with, as kmod merges every modprobe.d directory of the root
/// (one `-C` per directory, in kmod's priority order).
pub(crate) fn module_options_by_kmod(root: &Path, module: &str) -> Option<Vec<String>> {
    let mut cmd = std::process::Command::new("modprobe");
    for d in ["etc/modprobe.d", "run/modprobe.d", "usr/local/lib/modprobe.d", "usr/lib/modprobe.d", "lib/modprobe.d"] {
        if root.join(d).is_dir() {
            cmd.arg("-C").arg(root.join(d));
        }
    }
    let out = cmd.arg("--showconfig").output().ok()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let prefix = format!("options {module} ");
    Some(
        text.lines()
            .filter_map(|l| l.strip_prefix(prefix.as_str()))
            .flat_map(|l| l.split_whitespace().map(str::to_string).collect::<Vec<_>>())
            .collect(),
    )
}

/// Regression: the user's ids in `/etc/modprobe.d/gpu-passthrough.conf` (which sorts
/// before vfio.conf) were hidden by the plan's `ids=` in vfio.conf; kvm options a user's
/// other file sets were written again; a distribution's `kvm.conf` would be hidden by
/// vfioctl's. kmod, merging every directory, is the oracle.
#[test]
fn modprobe_d_is_edited_where_kmod_takes_the_value_from() {
    let (_t, root) = copy_host("r2600x");
    fs::remove_file(root.join("etc/modprobe.d/vfio.conf")).expect("rm");
    fs::remove_file(root.join("etc/modprobe.d/kvm.conf")).expect("rm");
    fs::write(
        root.join("etc/modprobe.d/gpu-passthrough.conf"),
        "# my 1070\noptions vfio_pci ids=10de:1b81,10de:10f0\n",
    )
    .expect("write");
    fs::write(root.join("etc/modprobe.d/kvm-local.conf"), "options kvm ignore_msrs=1\n").expect("write");
    fs::create_dir_all(root.join("usr/lib/modprobe.d")).expect("mkdir");
    fs::write(root.join("usr/lib/modprobe.d/kvm.conf"), "options kvm_amd nested=1\n").expect("write");
    let before = tree(&root);
    let run = vfioctl(&root, &args("apply", &["--yes", "--no-commands"]));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let Some(opts) = vfio_pci_options_by_kmod(&root) else {
        eprintln!("skipped the kmod oracle: no modprobe here");
        return;
    };
    let ids = opts.iter().rev().find_map(|o| o.strip_prefix("ids=")).expect("ids");
    for id in ["10de:1b81", "10de:10f0", "10de:1b06", "10de:10ef"] {
        assert!(ids.split(',').any(|x| x == id), "{id} not in the ids vfio-pci gets ({ids}): {opts:?}");
    }
    assert!(opts.contains(&"disable_vga=1".to_string()), "{opts:?}");
    let kvm = module_options_by_kmod(&root, "kvm").expect("kvm");
    assert_eq!(kvm, ["ignore_msrs=1", "report_ignored_msrs=0"], "ignore_msrs once, where the user has it");
    assert_eq!(module_options_by_kmod(&root, "kvm_amd").expect("kvm_amd"), ["nested=1"]);
    assert_eq!(
        fs::read_to_string(root.join("etc/modprobe.d/kvm-local.conf")).expect("read"),
        "options kvm ignore_msrs=1\n"
    );
    let own = fs::read_to_string(root.join("etc/modprobe.d/kvm.conf")).expect("vfioctl's kvm.conf");
    assert!(
        own.starts_with("options kvm_amd nested=1\n") && own.ends_with("options kvm report_ignored_msrs=0\n"),
        "{own}"
    );
    again_nothing_then_rollback(&root, &args("apply", &["--yes", "--no-commands"]), &before);
}

/// Regression: the user's ids on one `options vfio-pci` line and `disable_vga=1` on the
/// next; the plan's ids went onto the second line, whose `ids=` wins, so the user's own GPU
/// was no longer claimed. kmod is the oracle.
#[test]
fn split_options_lines_keep_the_users_ids_effective() {
    let (_t, root) = copy_host("r2600x");
    let conf = root.join("etc/modprobe.d/vfio.conf");
    fs::write(&conf, "# my GTX 1070\noptions vfio-pci ids=10de:1b81,10de:10f0\noptions vfio-pci disable_vga=1\n")
        .expect("write");
    let before = tree(&root);
    let run = vfioctl(&root, &args("apply", &["--yes", "--no-commands"]));
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let Some(opts) = vfio_pci_options_by_kmod(&root) else {
        eprintln!("skipped the kmod oracle: no modprobe here");
        return;
    };
    let ids = opts.iter().rev().find_map(|o| o.strip_prefix("ids=")).expect("ids");
    for id in ["10de:1b81", "10de:10f0", "10de:1b06", "10de:10ef"] {
        assert!(ids.split(',').any(|x| x == id), "{id} not in the ids vfio-pci gets ({ids}): {opts:?}");
    }
    again_nothing_then_rollback(&root, &args("apply", &["--yes", "--no-commands"]), &before);
}

/// Regression: mkinitcpio's HOOKS without `modconf` keeps /etc/modprobe.d out of the
/// initramfs, and nothing said so. A drop-in that adds it back counts.
#[test]
fn mkinitcpio_without_modconf_is_said() {
    let note = "HOOKS has no `modconf`";
    let (_t, root) = copy_host("arch-uki");
    let conf = root.join("etc/mkinitcpio.conf");
    let stock = fs::read_to_string(&conf).expect("mkinitcpio.conf");
    let run = vfioctl(&root, &["apply", "gpu", "--dry-run"]);
    assert!(!run.stdout.contains(note), "{}", run.stdout);
    fs::write(&conf, stock.replace(" modconf", "")).expect("write");
    let run = vfioctl(&root, &["apply", "gpu", "--dry-run"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(note), "{}", run.stdout);
    fs::create_dir_all(root.join("etc/mkinitcpio.conf.d")).expect("mkdir");
    fs::write(root.join("etc/mkinitcpio.conf.d/hooks.conf"), "HOOKS+=(modconf)\n").expect("write");
    let run = vfioctl(&root, &["apply", "gpu", "--dry-run"]);
    assert!(!run.stdout.contains(note), "{}", run.stdout);
}

/// GRUB's command line as grub-mkconfig builds it: bash sources the defaults, then each
/// grub.d drop-in in order.
fn grub_cmdline_by_bash(root: &Path) -> String {
    bash_in(
        root,
        concat!(
            r#"set -e; . "$1/etc/default/grub"; for f in "$1"/etc/default/grub.d/*.cfg; do [ -e "$f" ] && . "$f"; done; "#,
            r#"printf '%s %s' "$GRUB_CMDLINE_LINUX" "$GRUB_CMDLINE_LINUX_DEFAULT""#
        ),
    )
}

/// Regression: a cloud image's grub.d drop-in sets GRUB_CMDLINE_LINUX_DEFAULT after
/// /etc/default/grub is read; vfioctl edited /etc/default/grub only, so grub-mkconfig's
/// command line gained nothing. The edit goes where it wins; bash is the oracle.
#[test]
fn a_grub_d_drop_in_that_wins_gets_the_edit() {
    let (_t, root) = copy_host("i7-12700k");
    let grub = root.join("etc/default/grub");
    let text = fs::read_to_string(&grub)
        .expect("grub")
        .replace("quiet splash intel_iommu=on iommu=pt vfio-pci.ids=10de:2484,10de:228b", "quiet splash");
    fs::write(&grub, text).expect("write");
    let d = root.join("etc/default/grub.d");
    fs::create_dir_all(&d).expect("mkdir");
    // An unrelated drop-in, one that appends to GRUB_CMDLINE_LINUX, and the cloud image's.
    fs::write(d.join("40-distributor.cfg"), "GRUB_DISTRIBUTOR=\"Example VE\"\n").expect("write");
    fs::write(d.join("45-serial.cfg"), "GRUB_CMDLINE_LINUX=\"$GRUB_CMDLINE_LINUX nomodeset\"\n").expect("write");
    fs::write(
        d.join("50-cloudimg-settings.cfg"),
        "# Cloud image settings, sourced after /etc/default/grub\n\n# Show output on the serial console\nGRUB_CMDLINE_LINUX_DEFAULT=\"console=tty1 console=ttyS0\"\n\nGRUB_TERMINAL=console\nGRUB_TIMEOUT=0\n",
    )
    .expect("write");
    let before = tree(&root);
    let was = grub_cmdline_by_bash(&root);
    let run = vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let now = grub_cmdline_by_bash(&root);
    let words: Vec<&str> = now.split_whitespace().collect();
    for want in ["intel_iommu=on", "iommu=pt", "console=ttyS0", "nomodeset"] {
        assert!(words.contains(&want), "{want} not in what grub-mkconfig gets: {now} (was {was})");
    }
    assert!(words.iter().any(|w| w.starts_with("vfio-pci.ids=")), "{now}");
    assert!(run.stdout.contains("50-cloudimg-settings.cfg"), "{}", run.stdout);
    again_nothing_then_rollback(&root, &["apply", "gpu", "--yes", "--no-commands"], &before);
}

/// The check after editing: a value that comes through another variable cannot be edited
/// in place; the apply refuses (exit 2, nothing written) instead of reporting success.
#[test]
fn an_edit_the_boot_would_not_see_is_refused() {
    let (_t, root) = copy_host("i7-12700k");
    let grub = root.join("etc/default/grub");
    let text = fs::read_to_string(&grub).expect("grub").replace(
        "GRUB_CMDLINE_LINUX_DEFAULT=\"quiet splash intel_iommu=on iommu=pt vfio-pci.ids=10de:2484,10de:228b\"",
        "MY_OPTS=\"quiet intel_iommu=off\"\nGRUB_CMDLINE_LINUX_DEFAULT=\"$MY_OPTS\"",
    );
    fs::write(&grub, text).expect("write");
    assert!(grub_cmdline_by_bash(&root).contains("intel_iommu=off"));
    let before = tree(&root);
    let run = vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("would still have intel_iommu=off"), "{}", run.stderr);
    assert_eq!(tree(&root), before);
}

/// A stale `vfio_virqfd` in the initramfs modules on a 6.2+ kernel is pointed out (the
/// module is part of vfio there); on the older kernel it belongs.
#[test]
fn a_stale_vfio_virqfd_is_said() {
    let note = "still lists vfio_virqfd";
    let (_t, root) = copy_host("r2600x");
    let run = vfioctl(&root, &args("apply", &["--dry-run"]));
    assert!(!run.stdout.contains(note), "{}", run.stdout);
    fs::write(root.join("proc/sys/kernel/osrelease"), "6.8.0-45-generic\n").expect("write");
    let run = vfioctl(&root, &args("apply", &["--dry-run"]));
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(note), "{}", run.stdout);
}

/// Regression: dracut gathers force_drivers across dracut.conf.d, but vfioctl listed the
/// modules again in its own drop-in when another file already forced them. bash sources
/// the drop-ins as dracut does.
#[test]
fn dracut_modules_forced_elsewhere_are_not_listed_twice() {
    let (_t, root) = copy_host("fedora-bls");
    let d = root.join("etc/dracut.conf.d");
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join("10-vfio.conf"), "# mine\nforce_drivers+=\" vfio vfio_iommu_type1 vfio_pci_core vfio_pci \"\n")
        .expect("write");
    let run = vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!root.join("etc/dracut.conf.d/vfioctl.conf").exists(), "{}", run.stdout);
    let forced =
        bash_in(&root, r#"for f in "$1"/etc/dracut.conf.d/*.conf; do . "$f"; done; printf '%s' "$force_drivers""#);
    let words: Vec<&str> = forced.split_whitespace().collect();
    for m in ["vfio", "vfio_iommu_type1", "vfio_pci_core", "vfio_pci"] {
        assert_eq!(words.iter().filter(|w| **w == m).count(), 1, "{m} in {forced:?}");
    }
}

/// Regression: a file dracut sources after vfioctl's drop-in (`zz-local.conf`) sets
/// `force_drivers="…"` anew, so the drop-in's modules never reached the initramfs. They
/// go at that file's end; bash, sourcing the files in dracut's order, is the oracle.
#[test]
fn a_later_dracut_file_replacing_force_drivers_gets_the_modules() {
    let (_t, root) = copy_host("fedora-bls");
    let d = root.join("etc/dracut.conf.d");
    fs::create_dir_all(&d).expect("mkdir");
    fs::write(d.join("zz-local.conf"), "# storage first\nforce_drivers=\"nvme\"\nhostonly=\"yes\"\n").expect("write");
    let before = tree(&root);
    let run = vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(!root.join("etc/dracut.conf.d/vfioctl.conf").exists(), "{}", run.stdout);
    let forced = bash_in(
        &root,
        r#". "$1"/etc/dracut.conf; for f in "$1"/etc/dracut.conf.d/*.conf; do . "$f"; done; printf '%s' "$force_drivers""#,
    );
    let words: Vec<&str> = forced.split_whitespace().collect();
    for m in ["nvme", "vfio", "vfio_iommu_type1", "vfio_pci"] {
        assert!(words.contains(&m), "{m} not in {forced:?}");
    }
    again_nothing_then_rollback(&root, &["apply", "gpu", "--yes", "--no-commands"], &before);
}

/// The check after the edit: a later modprobe.d file sets vfio-pci's ids on a continued
/// line (`options vfio-pci \` then `ids=…`), which kmod joins but the editor does not
/// merge into; vfioctl's own vfio.conf would lose to it, so the apply stops (exit 2)
/// naming what modprobe would not pass, and writes nothing.
#[test]
fn an_edit_modprobe_would_not_take_is_refused_before_writing() {
    let (_t, root) = copy_host("r2600x");
    fs::write(root.join("etc/modprobe.d/zz-local.conf"), "options vfio-pci \\\n    ids=1002:67df\n").expect("write");
    if let Some(opts) = vfio_pci_options_by_kmod(&root) {
        assert!(opts.contains(&"ids=1002:67df".to_string()), "kmod joins the lines: {opts:?}");
    }
    let before = tree(&root);
    let run = vfioctl(&root, &args("apply", &["--yes", "--no-commands"]));
    assert_eq!(run.code, 2, "{}\n{}", run.stdout, run.stderr);
    assert!(run.stderr.contains("modprobe would still not pass options vfio-pci ids="), "{}", run.stderr);
    assert!(run.stderr.contains("nothing was written"), "{}", run.stderr);
    assert_eq!(tree(&root), before);
}

/// Regression: guide 001's `/etc/sysctl.conf` has `vm.nr_hugepages = 8600`; the plan made
/// 1 GiB the default hugepage size and left the line, so the boot would try to reserve
/// 8,600 pages of 1 GiB. The line is commented out (kept readable), and rollback restores it.
#[test]
fn a_conflicting_sysctl_hugepage_reservation_is_reconciled() {
    let (_t, root) = copy_host("r2600x");
    let before = tree(&root);
    let run = vfioctl(&root, &["apply", "gpu", "--yes", "--no-commands"]);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    assert!(grub_cmdline_by_bash(&root).contains("default_hugepagesz=1G"));
    let conf = fs::read_to_string(root.join("etc/sysctl.conf")).expect("sysctl.conf");
    assert!(conf.contains("\n# vfioctl (conflicts with the plan's hugepages): vm.nr_hugepages = 8600\n"), "{conf}");
    // What sysctl would set: no hugepage count anywhere.
    let set = bash_in(
        &root,
        r#"for f in "$1"/etc/sysctl.d/*.conf "$1"/etc/sysctl.conf; do [ -e "$f" ] && grep -hE '^[[:space:]]*-?vm[./]nr_(overcommit_)?hugepages' "$f"; done; true"#,
    );
    assert_eq!(set, "", "the reservation is still set");
    again_nothing_then_rollback(&root, &["apply", "gpu", "--yes", "--no-commands"], &before);
}

/// Issue 18: two identical RTX 3070s, one the host's. vfio-pci.ids cannot tell them
/// apart: the guest's card is bound by address, through modprobe.d install commands that
/// kmod itself reads back; applying again changes nothing, rollback gives every byte back;
/// once the card is on vfio-pci `verify` passes it, and while it is not, `check` names
/// what is missing. `--boot-entry separate` refuses (its ids live on one entry only).
#[test]
fn identical_gpus_the_guests_is_bound_by_address() {
    let (_t, root) = copy_host("z690-twin-3070");
    let before = tree(&root);
    let apply = ["apply", "02:00.0", "--memory", "8G", "--yes", "--no-commands"];
    let run = vfioctl(&root, &apply);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let vfio = fs::read_to_string(root.join("etc/modprobe.d/vfio.conf")).expect("vfio.conf");
    assert!(!vfio.contains("ids="), "the shared ids are not reserved: {vfio}");
    let grub = grub_cmdline_by_bash(&root);
    assert!(!grub.contains("vfio-pci.ids"), "{grub}");
    // kmod's own reading of the files.
    let conf = root.join("etc/modprobe.d");
    let shown = crate::util::tool("modprobe", &["--showconfig", &format!("--config={}", conf.display())], "kmod");
    let install: Vec<&str> = shown.stdout.lines().filter(|l| l.starts_with("install ")).collect();
    let override_of = |a: &str| format!("echo vfio-pci > /sys/bus/pci/devices/{a}/driver_override");
    for module in ["vfio_pci", "nvidia", "snd_hda_intel"] {
        let line = install.iter().find(|l| l.starts_with(&format!("install {module} "))).unwrap_or_else(|| {
            panic!("kmod reads no install command for {module}: {}", shown.stdout);
        });
        assert!(line.contains(&override_of("0000:02:00.0")) && line.contains(&override_of("0000:02:00.1")), "{line}");
        assert!(!line.contains("0000:01:00"), "the host's card stays: {line}");
        assert!(line.ends_with(&format!("modprobe -i {module} $CMDLINE_OPTS")), "{line}");
    }
    assert!(shown.stdout.contains("softdep nvidia pre: vfio-pci"), "{}", shown.stdout);
    // The running host has not rebooted: check says the configuration is there.
    let check = vfioctl(&root, &["check", "02:00.0"]);
    assert!(check.stdout.contains("vfio-pci's ids or addresses and the softdeps are configured"), "{}", check.stdout);
    // After the reboot the guest's card is on vfio-pci and the host's on nvidia.
    for a in ["0000:02:00.0", "0000:02:00.1"] {
        crate::util::bind(&root, a, "vfio-pci");
    }
    let verify = vfioctl(&root, &["verify", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&verify.stdout).expect("json");
    for c in v["checks"].as_array().expect("checks") {
        if c["id"].as_str().is_some_and(|i| i.starts_with("verify.device.")) {
            assert_eq!(c["status"], "pass", "{c}");
        }
    }
    for a in ["0000:02:00.0", "0000:02:00.1"] {
        crate::util::bind(&root, a, if a.ends_with(".0") { "nvidia" } else { "snd_hda_intel" });
    }
    again_nothing_then_rollback(&root, &apply, &before);
    // Without the install lines check says how to bind by address.
    let check = vfioctl(&root, &["check", "02:00.0"]);
    assert!(check.stdout.contains("so vfio-pci.ids cannot take only them: bind them by address"), "{}", check.stdout);
    let sep =
        vfioctl(&root, &["apply", "02:00.0", "--memory", "8G", "--yes", "--no-commands", "--boot-entry", "separate"]);
    assert_eq!(sep.code, 2, "{}{}", sep.stdout, sep.stderr);
    assert!(sep.stderr.contains("cannot bind 0000:02:00.0, 0000:02:00.1 by address"), "{}", sep.stderr);
    assert_eq!(tree(&root), before);
}

/// Issue 18: a Vega 64 (Vega 10, which does not come back from a guest reboot by the
/// kernel's resets) on a host with vendor-reset installed by DKMS: the apply loads
/// vendor-reset first in the initramfs and writes the udev rule that selects its reset;
/// verify holds the card to it after the reboot; planning again once the reset is selected
/// changes nothing (the plan is a fixed point); another apply keeps the rule, and rolling
/// both back leaves the host byte for byte as it was.
#[test]
fn a_card_that_does_not_reset_gets_vendor_reset_through_apply_and_rollback() {
    let (_t, root) = copy_host("b450-vega-reset");
    let before = tree(&root);
    // The module is installed (DKMS) but not yet the card's reset: check says so, and does
    // not ask to install it.
    let check = vfioctl(&root, &["check", "0b:00.0", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&check.stdout).expect("json");
    let c = v["checks"].as_array().expect("checks").iter().find(|c| c["id"] == "device.reset").cloned();
    let remedy = c.as_ref().and_then(|c| c["remedy"].as_str()).unwrap_or_default().to_string();
    assert!(remedy.starts_with("vendor-reset is installed but not this card's reset"), "{c:?}");
    let apply = ["apply", "0b:00.0", "--memory", "8G", "--yes", "--no-commands"];
    let run = vfioctl(&root, &apply);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let rules = fs::read_to_string(root.join("etc/udev/rules.d/70-vfioctl-reset.rules")).expect("udev rules");
    assert!(
        rules.contains("KERNEL==\"0000:0b:00.0\"")
            && rules.contains("echo device_specific > /sys/bus/pci/devices/0000:0b:00.0/reset_method"),
        "{rules}"
    );
    assert!(!rules.contains("0000:0b:00.1"), "the card's audio resets with it: {rules}");
    let modules = fs::read_to_string(root.join("etc/initramfs-tools/modules")).expect("modules");
    let listed: Vec<&str> = modules.lines().filter(|l| !l.starts_with('#') && !l.trim().is_empty()).collect();
    assert_eq!(listed.first(), Some(&"vendor-reset"), "vendor-reset loads before vfio-pci: {modules}");
    // Before the reboot, check says the reboot is what is missing (regression: it said
    // "plan and apply again" and "probably built into the kernel"); without a boot time it
    // says it cannot tell.
    let checks = |root: &Path| {
        let run = vfioctl(root, &["check", "0b:00.0", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        v["checks"].as_array().expect("checks").clone()
    };
    let by_id = |cs: &[serde_json::Value], id: &str| cs.iter().find(|c| c["id"] == id).cloned();
    let cs = checks(&root);
    assert_eq!(by_id(&cs, "boot.reboot").expect("boot.reboot")["status"], "note", "{cs:?}");
    fs::write(root.join("proc/stat"), "cpu  1 2 3 4\nbtime 1700000000\n").expect("btime");
    let cs = checks(&root);
    assert_eq!(by_id(&cs, "boot.reboot").expect("boot.reboot")["status"], "warn");
    for id in ["device.vfio", "device.reset"] {
        let c = by_id(&cs, id).expect(id);
        let (m, r) = (c["message"].to_string(), c["remedy"].to_string());
        assert!(m.contains("a reboot is pending") && r.starts_with("\"reboot: "), "{c}");
        assert!(!r.contains("built into") && !r.contains("plan and apply again"), "{c}");
    }
    let run = vfioctl(&root, &["verify"]);
    assert!(run.stdout.starts_with("reboot pending"), "{}", run.stdout);
    // "Reboot": the kernel booted after the apply.
    fs::remove_file(root.join("proc/stat")).expect("rm");
    // After the reboot: the card on vfio-pci, and the rule has not selected the reset (the
    // module did not build for a new kernel): verify fails, naming the rule.
    for a in ["0000:0b:00.0", "0000:0b:00.1"] {
        crate::util::bind(&root, a, "vfio-pci");
    }
    let reset_method = root.join("sys/bus/pci/devices/0000:0b:00.0/reset_method");
    let verify = |root: &Path| {
        let run = vfioctl(root, &["verify", "--format", "json"]);
        let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
        v["checks"].as_array().expect("checks").iter().find(|c| c["id"] == "verify.reset.0000:0b:00.0").cloned()
    };
    let c = verify(&root).expect("verify.reset");
    assert_eq!(c["status"], "fail", "{c}");
    assert!(c["remedy"].as_str().unwrap_or("").contains("70-vfioctl-reset.rules"), "{c}");
    fs::write(&reset_method, "device_specific bus\n").expect("reset_method");
    assert_eq!(verify(&root).expect("verify.reset")["status"], "pass");
    // The same plan again, with vendor-reset's reset in place: nothing to do (seen with
    // the card on its host drivers: this fixture has no modules.alias to name them otherwise).
    crate::util::bind(&root, "0000:0b:00.0", "amdgpu");
    crate::util::bind(&root, "0000:0b:00.1", "snd_hda_intel");
    let again = vfioctl(&root, &apply);
    assert!(again.stdout.starts_with("Nothing to do"), "{}{}", again.stdout, again.stderr);
    // Another plan for the same card keeps the rule.
    let other = vfioctl(&root, &["apply", "0b:00.0", "--memory", "6G", "--yes", "--no-commands"]);
    assert_eq!(other.code, 0, "{}\n{}", other.stdout, other.stderr);
    assert!(root.join("etc/udev/rules.d/70-vfioctl-reset.rules").exists());
    let rb = vfioctl(&root, &["rollback", "--all", "--yes", "--no-commands"]);
    assert_eq!(rb.code, 0, "{}{}", rb.stdout, rb.stderr);
    // Regression: status after rollback --all called the restored files "changed since
    // apply" or "missing" beside "Rolled back".
    let st = vfioctl(&root, &["status"]);
    assert!(
        st.stdout.contains("Rolled back") && !st.stdout.contains("changed since") && !st.stdout.contains("missing"),
        "{}",
        st.stdout
    );
    // Regression: with --no-commands rollback said it was running the regeneration.
    assert!(!rb.stderr.contains("vfioctl: running"), "{}", rb.stderr);
    assert!(rb.stderr.contains("not running update-initramfs"), "{}", rb.stderr);
    assert_eq!(tree(&root), before);
}

/// Issue 18: without vendor-reset installed, the plan writes no rule and says how to get it.
#[test]
fn without_vendor_reset_the_plan_says_how_to_install_it() {
    let (_t, root) = copy_host("b450-vega-reset");
    let dep = root.join("lib/modules/6.8.0-49-generic/modules.dep");
    let text = fs::read_to_string(&dep).expect("modules.dep");
    fs::write(&dep, text.lines().filter(|l| !l.contains("vendor-reset")).map(|l| format!("{l}\n")).collect::<String>())
        .expect("write");
    let run = vfioctl(&root, &["plan", "0b:00.0", "--memory", "8G", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    assert!(v.get("udev_rules").is_none(), "{}", v["udev_rules"]);
    assert!(!v["initramfs_modules"].to_string().contains("vendor"), "{}", v["initramfs_modules"]);
    let warnings = v["warnings"].to_string();
    assert!(warnings.contains("AMD Vega 10") && warnings.contains("install the vendor-reset module"), "{warnings}");
}

/// udev's own reading of the rule (`udevadm test`, which matches the rules against a real
/// device without running them): it parses, matches the card by address, and runs the
/// command vfioctl wrote. The rule is tried on a device of this machine, in a file of its
/// own under /etc/udev/rules.d (udev reads no other directory), removed afterwards.
#[test]
fn udev_parses_the_reset_rule_and_runs_it_for_the_card() {
    let udevadm = std::process::Command::new("udevadm").arg("--version").output().is_ok();
    if !udevadm {
        assert!(std::env::var_os("VFIOCTL_REQUIRE_LAB").is_none(), "udevadm (Debian package udev) is missing");
        eprintln!("skipped: no udevadm (Debian package udev; VFIOCTL_REQUIRE_LAB=1 makes it a failure)");
        return;
    }
    // Any PCI device of this machine will do; a machine without one (a container) skips.
    let devices = fs::read_dir("/sys/bus/pci/devices").into_iter().flatten().flatten();
    let Some(dev) = devices.map(|e| e.file_name().to_string_lossy().into_owned()).min() else {
        eprintln!("skipped: /sys/bus/pci/devices has no device to try the rule on");
        return;
    };
    let run = vfioctl(&crate::util::example_host("b450-vega-reset"), &["plan", "0b:00.0", "--format", "json"]);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).expect("json");
    let planned = v["udev_rules"][0]["content"].as_str().expect("udev rules").to_string();
    // A user's file of the same name whose last rule continues onto the next line (`\`):
    // the merged rule must stand on its own line (regression: it was glued onto the user's
    // rule, which then matched nothing and ran nothing of vfioctl's).
    let (_t, root) = copy_host("b450-vega-reset");
    let user = "# mine\nACTION==\"add\", SUBSYSTEM==\"pci\", \\\n  KERNEL==\"0000:ff:1f.7\", RUN+=\"/bin/true\" \\\n";
    let rules = root.join("etc/udev/rules.d/70-vfioctl-reset.rules");
    fs::create_dir_all(rules.parent().expect("dir")).expect("mkdir");
    fs::write(&rules, user).expect("write");
    let apply = vfioctl(&root, &["apply", "0b:00.0", "--memory", "8G", "--yes", "--no-commands"]);
    assert_eq!(apply.code, 0, "{}\n{}", apply.stdout, apply.stderr);
    let merged = fs::read_to_string(&rules).expect("merged rules");
    assert!(merged.starts_with(user) && merged.contains("# Added by vfioctl"), "{merged}");
    for (what, content) in [("vfioctl's file", planned), ("the merged file", merged)] {
        let content = content.replace("0000:0b:00.0", &dev);
        let name = format!("/etc/udev/rules.d/70-vfioctl-test-{}.rules", std::process::id());
        if let Err(e) = fs::create_dir_all("/etc/udev/rules.d").and_then(|()| fs::write(&name, &content)) {
            assert!(std::env::var_os("VFIOCTL_REQUIRE_LAB").is_none(), "cannot write {name}: {e}");
            eprintln!("skipped: cannot write {name} ({e}); udevadm test reads rules only from there");
            return;
        }
        let out = std::process::Command::new("udevadm")
            .args(["test", "--action=add", &format!("/sys/bus/pci/devices/{dev}")])
            .output();
        let _ = fs::remove_file(&name);
        let out = out.expect("udevadm (Debian package udev)");
        let all = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(
            !all.lines().any(|l| l.starts_with(&format!("{name}:"))),
            "udev complains about {what}:\n{content}\n{all}"
        );
        let want = format!(
            "run: '/bin/sh -c '/sbin/modprobe vendor-reset; echo device_specific > /sys/bus/pci/devices/{dev}/reset_method''"
        );
        assert!(
            all.lines().any(|l| l.trim() == want),
            "udev does not run the command of {what} for {dev}:\n{content}\n{all}"
        );
    }
}

/// Issue 18: `apply --looking-glass` writes the host's half of Looking Glass. With kvmfr:
/// its size where kmod reads it (a user's second device kept), modules-load.d, the udev
/// rule (a user's file of that name keeps its lines) and qemu.conf's cgroup_device_acl;
/// with /dev/shm the tmpfiles rule. Twice is nothing to do, another apply without it takes
/// the files back out, and rollback restores the tree.
#[test]
fn looking_glass_host_files_through_apply_and_rollback() {
    let (_t, root) = copy_host("r2600x");
    fs::write(root.join("etc/modprobe.d/kvmfr.conf"), "# mine\noptions kvmfr static_size_mb=32,16\n").expect("write");
    let rules = root.join("etc/udev/rules.d/99-kvmfr.rules");
    fs::create_dir_all(rules.parent().expect("dir")).expect("mkdir");
    fs::write(&rules, "# mine\nSUBSYSTEM==\"kvmfr\", GROUP=\"kvm\"\n").expect("write");
    let before = tree(&root);
    let lg = [
        "apply",
        "gpu",
        "--memory",
        "8G",
        "--looking-glass",
        "2560x1440",
        "--looking-glass-memory",
        "kvmfr",
        "--looking-glass-user",
        "alice",
        "--yes",
        "--no-commands",
    ];
    let run = vfioctl(&root, &lg);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let shown = module_options_by_kmod(&root, "kvmfr").expect("modprobe --showconfig");
    assert_eq!(shown, ["static_size_mb=64,16"], "kmod's reading");
    let load = fs::read_to_string(root.join("etc/modules-load.d/kvmfr.conf")).expect("modules-load.d");
    assert_eq!(load.lines().filter(|l| !l.starts_with('#')).collect::<Vec<_>>(), ["kvmfr"]);
    let udev = fs::read_to_string(&rules).expect("udev");
    assert!(udev.starts_with("# mine\nSUBSYSTEM==\"kvmfr\", GROUP=\"kvm\"\n"), "{udev}");
    assert!(udev.contains("SUBSYSTEM==\"kvmfr\", OWNER=\"alice\", GROUP=\"kvm\", MODE=\"0660\"\n"), "{udev}");
    let qemu = fs::read_to_string(root.join("etc/libvirt/qemu.conf")).expect("qemu.conf");
    assert!(qemu.contains("\"/dev/kvmfr0\""), "{qemu}");
    let again = vfioctl(&root, &lg);
    assert!(again.stdout.starts_with("Nothing to do"), "{}{}", again.stdout, again.stderr);
    // Without a user to give the region to, refused (exit 2), naming the flag.
    let mut no_user = lg.to_vec();
    no_user.retain(|a| *a != "--looking-glass-user" && *a != "alice");
    let run = vfioctl_env(&root, &no_user, &[("SUDO_USER", "")]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("--looking-glass-user"), "{}", run.stderr);
    // /dev/shm instead: the tmpfiles rule, and the kvmfr files go back as they were.
    let mut shm = lg.to_vec();
    shm[7] = "shm";
    let run = vfioctl(&root, &shm);
    assert_eq!(run.code, 0, "{}\n{}", run.stdout, run.stderr);
    let tmpfiles = fs::read_to_string(root.join("etc/tmpfiles.d/10-looking-glass.conf")).expect("tmpfiles");
    assert!(tmpfiles.ends_with("\nf /dev/shm/looking-glass 0660 alice kvm -\n"), "{tmpfiles}");
    assert!(!root.join("etc/modules-load.d/kvmfr.conf").exists());
    assert_eq!(fs::read_to_string(&rules).expect("udev"), "# mine\nSUBSYSTEM==\"kvmfr\", GROUP=\"kvm\"\n");
    let rb = vfioctl(&root, &["rollback", "--all", "--yes", "--no-commands"]);
    assert_eq!(rb.code, 0, "{}{}", rb.stdout, rb.stderr);
    assert_eq!(tree(&root), before);
}
