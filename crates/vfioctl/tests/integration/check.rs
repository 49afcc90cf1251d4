//! `vfioctl check` against the real `virt-host-validate qemu`, on snapshots, and on the
//! example hosts.

use std::collections::BTreeMap;
use std::path::Path;

use crate::util::{example_host, example_hosts, tool, vfioctl};

fn json(run: &crate::util::Run) -> serde_json::Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// title → status of every check vfioctl printed.
fn statuses(v: &serde_json::Value) -> BTreeMap<String, String> {
    v["checks"]
        .as_array()
        .expect("checks")
        .iter()
        .map(|c| {
            (c["title"].as_str().expect("title").to_string(), c["status"].as_str().expect("status").to_uppercase())
        })
        .collect()
}

/// `  QEMU: Checking for hardware virtualization     : PASS (…)` → (title, status).
fn parse_vhv(out: &str) -> Vec<(String, String)> {
    out.lines()
        .filter_map(|l| {
            let rest = l.trim_start().strip_prefix("QEMU: Checking ")?;
            let (title, verdict) = rest.split_once(": ")?;
            let status = verdict.split_whitespace().next()?.to_string();
            Some((title.trim().to_string(), status))
        })
        .collect()
}

#[test]
fn same_verdicts_as_virt_host_validate_on_this_machine() {
    let vhv = tool("virt-host-validate", &["qemu"], "libvirt-clients");
    let theirs = parse_vhv(&vhv.stdout);
    assert!(theirs.len() >= 5, "virt-host-validate printed: {}", vhv.stdout);
    let run = vfioctl(Path::new("/"), &["check", "--format", "json"]);
    assert!(run.code == 0 || run.code == 1, "{}", run.stderr);
    let ours = statuses(&json(&run));
    let mut shared = 0;
    for (title, status) in &theirs {
        match ours.get(title) {
            Some(s) => {
                assert_eq!(s, status, "`{title}`: vfioctl {s}, virt-host-validate {status}");
                shared += 1;
            }
            // Secure guests (SEV, s390 PV) are not a passthrough concern.
            None => assert_eq!(title, "for secure guest support", "vfioctl lacks the check `{title}`"),
        }
    }
    assert!(shared >= 5, "only {shared} shared checks");
}

#[test]
fn a_snapshot_gives_the_same_verdicts_except_live_only_checks() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let snap = tmp.path().join("snap");
    assert_eq!(vfioctl(Path::new("/"), &["snapshot", snap.to_str().expect("utf8")]).code, 0);
    let live = json(&vfioctl(Path::new("/"), &["check", "--format", "json"]));
    let copy = json(&vfioctl(&snap, &["check", "--format", "json"]));
    assert_eq!(live["live"], true);
    assert_eq!(copy["live"], false);
    let (a, b) = (statuses(&live), statuses(&copy));
    for (title, status) in &a {
        let Some(s) = b.get(title) else { continue };
        if s == "NOTE" && status != "NOTE" {
            let msg = copy["checks"]
                .as_array()
                .expect("checks")
                .iter()
                .find(|c| c["title"] == title.as_str())
                .expect("check")["message"]
                .clone();
            assert_eq!(msg, "not checked on a snapshot", "{title}");
            continue;
        }
        // A module missing on the live machine is a failure there, a warning on a copy.
        if title.ends_with("module is loaded") {
            continue;
        }
        assert_eq!(s, status, "{title}");
    }
}

#[test]
fn check_text_on_every_example_host_is_stable() {
    for host in example_hosts() {
        let name = host.file_name().expect("name").to_string_lossy().into_owned();
        let run = vfioctl(&host, &["check"]);
        assert!(run.code == 0 || run.code == 1, "{name}: {}", run.stderr);
        insta::assert_snapshot!(format!("check-{name}"), format!("exit {}\n{}", run.code, run.stdout));
    }
}

fn by_id<'a>(v: &'a serde_json::Value, id: &str) -> &'a serde_json::Value {
    v["checks"].as_array().expect("checks").iter().find(|c| c["id"] == id).unwrap_or_else(|| panic!("no check {id}"))
}

#[test]
fn naming_a_device_checks_it() {
    // Guide 001: the GTX 1080 Ti and its audio are on vfio-pci, its group is clean.
    let v = json(&vfioctl(&example_host("r2600x"), &["check", "gpu", "--format", "json"]));
    assert_eq!(v["device"], "0000:09:00.0");
    assert_eq!(by_id(&v, "device.vfio")["status"], "pass");
    assert_eq!(by_id(&v, "device.group")["status"], "pass");
    assert_eq!(by_id(&v, "device.boot_vga")["status"], "pass");
    assert_eq!(by_id(&v, "device.framebuffer")["status"], "pass");
    // Its boot GPU still has efifb in its memory.
    let v = json(&vfioctl(&example_host("r2600x"), &["check", "0a:00.0", "--format", "json"]));
    assert_eq!(by_id(&v, "device.boot_vga")["status"], "warn");
    assert_eq!(by_id(&v, "device.framebuffer")["status"], "fail");
    assert!(by_id(&v, "device.framebuffer")["remedy"].as_str().expect("remedy").contains("video=efifb:off"));
    // Guide 000's Radeon VII is still on amdgpu in the example host.
    let run = vfioctl(&example_host("tr1950x"), &["check", "gpu", "--format", "json"]);
    assert_eq!(run.code, 1);
    let v = json(&run);
    let vfio = by_id(&v, "device.vfio");
    assert_eq!(vfio["status"], "fail");
    assert!(vfio["message"].as_str().expect("message").contains("0d:00.0 (amdgpu)"), "{vfio}");
    // Its ids are reserved on the command line already; what is missing is the order.
    let remedy = vfio["remedy"].as_str().expect("remedy");
    assert!(remedy.contains("softdep amdgpu pre: vfio-pci") && !remedy.contains("vfio-pci.ids="), "{vfio}");
    assert!(by_id(&v, "device.group")["message"].as_str().expect("message").contains("0d:00.1 (group 21)"));
    // The i7's vfio.conf has the nvidia softdep but not the audio function's.
    let v = json(&vfioctl(&example_host("i7-12700k"), &["check", "gpu", "--format", "json"]));
    let remedy = by_id(&v, "device.vfio")["remedy"].as_str().expect("remedy").to_string();
    assert!(remedy.contains("softdep snd_hda_intel pre: vfio-pci") && !remedy.contains("softdep nvidia"), "{remedy}");
}

#[test]
fn a_bad_selector_is_a_usage_error() {
    let run = vfioctl(&example_host("tr1950x"), &["check", "99:00.0"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("no PCI device 0000:99:00.0"), "{}", run.stderr);
    let run = vfioctl(&example_host("tr1950x"), &["check", "144d:a808"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("41:00.0") && run.stderr.contains("matches 3 devices"), "{}", run.stderr);
}

#[test]
fn an_empty_directory_is_not_a_host() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let run = vfioctl(tmp.path(), &["check"]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("does not look like a Linux host root"), "{}", run.stderr);
}

/// Regression: lines read from the host reached the terminal with their control
/// characters: a snapshot from someone else could retitle the window or clear the screen.
#[test]
fn host_text_reaches_the_terminal_escaped() {
    let (_t, root) = crate::util::copy_host("r2600x");
    let grub = root.join("etc/default/grub");
    let text = std::fs::read_to_string(&grub)
        .expect("grub")
        .replace("GRUB_CMDLINE_LINUX_DEFAULT=\"", "GRUB_CMDLINE_LINUX_DEFAULT=\"x=\u{1b}]0;owned\u{7}\u{1b}[2J ");
    std::fs::write(&grub, text).expect("write");
    for args in [&["check"][..], &["plan", "gpu"], &["apply", "gpu", "--dry-run"]] {
        let run = crate::util::vfioctl(&root, args);
        for out in [&run.stdout, &run.stderr] {
            assert!(!out.contains('\u{1b}') && !out.contains('\u{7}'), "{args:?}: {out}");
        }
        if args[0] == "apply" {
            // The diff shows the line, escaped.
            assert!(run.stdout.contains("\\u{1b}]0;owned\\u{7}"), "{}", run.stdout);
        }
    }
}

/// A ROM image built here: `55 AA`, a PCIR at 0x40 with the ids, `units` of 512 bytes, the
/// code type and last flag; a legacy image sums to zero.
fn rom_image(vendor: u16, device: u16, code_type: u8, units: u16, last: bool) -> Vec<u8> {
    let mut b = vec![0u8; usize::from(units) * 512];
    b[0] = 0x55;
    b[1] = 0xaa;
    b[2] = units as u8;
    b[0x18..0x1a].copy_from_slice(&0x40u16.to_le_bytes());
    b[0x40..0x44].copy_from_slice(b"PCIR");
    b[0x44..0x46].copy_from_slice(&vendor.to_le_bytes());
    b[0x46..0x48].copy_from_slice(&device.to_le_bytes());
    b[0x50..0x52].copy_from_slice(&units.to_le_bytes());
    b[0x54] = code_type;
    b[0x55] = if last { 0x80 } else { 0 };
    if code_type == 0 {
        let sum = b.iter().fold(0u8, |s, x| s.wrapping_add(*x));
        let n = b.len();
        b[n - 1] = 0u8.wrapping_sub(sum);
    }
    b
}

/// Issue 18: `vfioctl rom --check FILE [DEVICE]` reads a ROM a user got elsewhere: a
/// flash tool's header is named and cut with `--out`, another card's ROM is an error, a
/// file that is no ROM is exit 1.
#[test]
fn rom_check_names_the_header_and_the_card() {
    let host = example_host("r2600x-turing");
    let tmp = tempfile::tempdir().unwrap();
    let good = [rom_image(0x10de, 0x1f02, 0, 2, false), rom_image(0x10de, 0x1f02, 3, 2, true)].concat();
    let dump = [vec![0u8; 0x600], good.clone(), vec![0xff; 512]].concat();
    let file = tmp.path().join("tu106.rom");
    std::fs::write(&file, &dump).unwrap();
    let f = file.to_str().unwrap();
    let run = vfioctl(&host, &["rom", "09:00.0", "--check", f]);
    assert_eq!(run.code, 1, "{}{}", run.stdout, run.stderr);
    assert!(run.stdout.contains("header: 1536 bytes before the first image"), "{}", run.stdout);
    assert!(
        run.stdout.contains("image 1: offset 2560, 1024 bytes, 10de:1f02, UEFI (GOP driver), last"),
        "{}",
        run.stdout
    );
    let cut = tmp.path().join("cut.rom");
    let run = vfioctl(&host, &["rom", "09:00.0", "--check", f, "--out", cut.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}{}", run.stdout, run.stderr);
    assert_eq!(std::fs::read(&cut).unwrap(), good);
    let run = vfioctl(&host, &["rom", "09:00.0", "--check", cut.to_str().unwrap(), "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stdout);
    let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap();
    assert_eq!((v["header"].as_u64(), v["images"].as_array().unwrap().len()), (Some(0), 2));
    // The Vega's ROM is not the RTX 2070's.
    let run = vfioctl(&host, &["rom", "08:00.0", "--check", cut.to_str().unwrap()]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("the ROM is for 10de:1f02, the card is 1002:687f"), "{}", run.stdout);
    // Not a ROM.
    std::fs::write(&file, b"<html>404</html>").unwrap();
    let run = vfioctl(&host, &["rom", "--check", f]);
    assert_eq!(run.code, 1);
    assert!(run.stdout.contains("no PCI option ROM image"), "{}", run.stdout);
}

/// Issue 18: `domain --rom FILE` checks the ROM on the host (through the root) and adds
/// `<rom file>` to the GPU's hostdev, in a new domain and in a patched one; a ROM for
/// another card, or one that is not there, is refused.
#[test]
fn domain_rom_adds_a_checked_rom_to_the_gpu() {
    let (_tmp, root) = crate::util::copy_host("r2600x-turing");
    std::fs::create_dir_all(root.join("usr/share/vgabios")).unwrap();
    let good = [rom_image(0x10de, 0x1f02, 0, 2, false), rom_image(0x10de, 0x1f02, 3, 2, true)].concat();
    std::fs::write(root.join("usr/share/vgabios/tu106.rom"), &good).unwrap();
    std::fs::write(root.join("usr/share/vgabios/vega.rom"), rom_image(0x1002, 0x687f, 0, 2, true)).unwrap();
    let args = |rom: &str| ["domain", "09:00.0", "--name", "w", "--memory", "4G", "--rom", rom].map(String::from);
    let run = |a: &[String]| vfioctl(&root, &a.iter().map(String::as_str).collect::<Vec<_>>());
    let ok = run(&args("/usr/share/vgabios/tu106.rom"));
    assert_eq!(ok.code, 0, "{}", ok.stderr);
    let d = roxmltree::Document::parse(&ok.stdout).unwrap();
    let roms: Vec<(String, String)> = d
        .descendants()
        .filter(|n| n.has_tag_name("rom"))
        .map(|r| {
            let h = r.parent().unwrap();
            let f =
                h.descendants().find(|n| n.has_tag_name("address")).unwrap().attribute("function").unwrap().to_string();
            (r.attribute("file").unwrap().to_string(), f)
        })
        .collect();
    assert_eq!(roms, vec![("/usr/share/vgabios/tu106.rom".to_string(), "0x0".to_string())], "only the GPU function");
    crate::util::libvirt_accepts(&ok.stdout).unwrap();
    let wrong = run(&args("/usr/share/vgabios/vega.rom"));
    assert_eq!(wrong.code, 2, "{}", wrong.stderr);
    assert!(wrong.stderr.contains("the ROM is for 1002:687f"), "{}", wrong.stderr);
    let gone = run(&args("/usr/share/vgabios/none.rom"));
    assert_eq!(gone.code, 2);
    assert!(gone.stderr.contains("no such file on the host"), "{}", gone.stderr);
    // Patching a domain that passes the card already: the ROM goes into its hostdev.
    let plain = run(&["domain", "09:00.0", "--name", "w", "--memory", "4G"].map(String::from));
    let file = root.join("w.xml");
    std::fs::write(&file, &plain.stdout).unwrap();
    let mut a: Vec<String> = ["domain", "09:00.0", "--memory", "4G", "--rom", "/usr/share/vgabios/tu106.rom", "--from"]
        .map(String::from)
        .to_vec();
    a.push(file.to_str().unwrap().to_string());
    let patched = run(&a);
    assert_eq!(patched.code, 0, "{}", patched.stderr);
    assert!(
        patched.stderr.contains("added <rom file='/usr/share/vgabios/tu106.rom'/> to hostdev 09:00.0"),
        "{}",
        patched.stderr
    );
    crate::util::libvirt_accepts(&patched.stdout).unwrap();
}

/// Issue 18: `rom DEVICE --out FILE` is refused while a host driver drives the card, with
/// the reason, and names the `rom` file when the card has none. (A fixture's regular file
/// cannot stand in for sysfs's `rom` attribute, which a write enables instead of
/// overwriting: the IOMMU lab reads a real card's ROM, step `rom`.)
#[test]
fn rom_out_refuses_a_card_on_a_host_driver() {
    let (_t, root) = crate::util::copy_host("r2600x-turing");
    let tmp = tempfile::tempdir().unwrap();
    let out = tmp.path().join("tu106.rom");
    let o = out.to_str().unwrap();
    let run = vfioctl(&root, &["rom", "09:00.0", "--out", o]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("09:00.0 is driven by nouveau") && run.stderr.contains("can hang the card"),
        "{}",
        run.stderr
    );
    assert!(!out.exists());
    crate::util::bind(&root, "0000:09:00.0", "vfio-pci");
    let run = vfioctl(&root, &["rom", "09:00.0", "--out", o]);
    assert_eq!(run.code, 2, "{}{}", run.stdout, run.stderr);
    assert!(
        run.stderr.contains("cannot enable the ROM read (/sys/bus/pci/devices/0000:09:00.0/rom)"),
        "{}",
        run.stderr
    );
    assert!(!out.exists());
    let run = vfioctl(&root, &["rom", "09:00.0"]);
    assert_eq!(run.code, 2, "--out is needed without --check: {}", run.stderr);
}
