//! `vfioctl domain`: every generated domain passes libvirt's own schema check.

use std::path::{Path, PathBuf};

use crate::util::{example_host, validate, vfioctl};

#[test]
fn every_example_hosts_domain_validates() {
    for host in ["tr1950x", "r2600x", "i7-12700k", "xeon-2s", "r7950x3d", "laptop-3d"] {
        for os in ["win10", "win11", "linux"] {
            let run = vfioctl(&example_host(host), &["domain", "gpu", "--memory", "8G", "--name", "vm", "--os", os]);
            assert_eq!(run.code, 0, "{host} {os}: {}", run.stderr);
            validate(&run.stdout, &format!("{host} {os}"));
        }
    }
}

#[test]
fn the_guides_domain_is_reproduced() {
    let run = vfioctl(
        &example_host("tr1950x"),
        &["domain", "gpu", "--vcpus", "8", "--memory", "16G", "--name", "CompromisedBeast"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    for want in [
        "<vcpu placement='static' cpuset='4-7,20-23'>8</vcpu>",
        "<vcpupin vcpu='0' cpuset='4'/>",
        "<vcpupin vcpu='7' cpuset='23'/>",
        "<topology sockets='1' dies='1' cores='4' threads='2'/>",
        "<feature policy='require' name='topoext'/>",
        "<spinlocks state='on' retries='8191'/>",
        "<timer name='hypervclock' present='yes'/>",
        "<timer name='hpet' present='no'/>",
        "<address domain='0x0000' bus='0x0d' slot='0x00' function='0x0'/>",
        "<address domain='0x0000' bus='0x0d' slot='0x00' function='0x1'/>",
        "<address type='pci' domain='0x0000' bus='0x01' slot='0x00' function='0x0' multifunction='on'/>",
        "<memballoon model='none'/>",
    ] {
        assert!(run.stdout.contains(want), "missing {want}\n{}", run.stdout);
    }
    insta::assert_snapshot!("domain-tr1950x", run.stdout);
}

#[test]
fn evdev_auto_takes_the_keyboard_and_mouse_links() {
    let run =
        vfioctl(&example_host("r2600x"), &["domain", "gpu", "--memory", "8G", "--name", "win10", "--evdev", "auto"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains(
        "<source dev='/dev/input/by-id/usb-Logitech_USB_Receiver-event-kbd' grab='all' grabToggle='ctrl-ctrl' repeat='on'/>"
    ));
    assert!(run
        .stdout
        .contains("<source dev='/dev/input/by-id/usb-MOSART_Semi._2.4G_Keyboard_Mouse-if01-event-mouse'/>"));
    validate(&run.stdout, "evdev");
    let out = tempfile::tempdir().expect("tempdir");
    let file = out.path().join("vm.xml");
    let run = vfioctl(
        Path::new(&example_host("r2600x")),
        &["domain", "gpu", "--memory", "8G", "--name", "w", "--out", file.to_str().expect("utf8")],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(std::fs::read_to_string(&file).expect("file").starts_with("<domain type='kvm'>"));
}

#[test]
fn disks_isos_and_networks_validate() {
    let host = example_host("r2600x");
    for extra in [
        &["--disk", "/dev/disk/by-id/ata-OCZ-TRION100_95UB60EOKMGX", "--network", "default"][..],
        &[
            "--disk",
            "/var/lib/libvirt/images/win10.qcow2",
            "--disk-bus",
            "sata",
            "--iso",
            "/isos/Win10.iso",
            "--iso",
            "/isos/virtio-win.iso",
            "--network",
            "bridge:br0",
        ],
        &["--disk", "/var/lib/libvirt/images/w.img", "--network", "direct:enp5s0"],
    ] {
        let mut a = vec!["domain", "gpu", "--memory", "8G", "--name", "vm"];
        a.extend_from_slice(extra);
        let run = vfioctl(&host, &a);
        assert_eq!(run.code, 0, "{extra:?}: {}", run.stderr);
        validate(&run.stdout, &format!("{extra:?}"));
    }
    let run = vfioctl(&host, &["domain", "gpu", "--name", "vm", "--network", "carrier-pigeon"]);
    assert_eq!(run.code, 2);
}

fn guide(name: &str) -> PathBuf {
    crate::util::workspace().join("examples/domains").join(name)
}

/// Lines of the user's file that no plan decides: they must all survive a patch.
fn users_lines(xml: &str) -> Vec<&str> {
    xml.lines()
        .map(str::trim)
        // The balloon is the plan's: virtio becomes none.
        .filter(|l| !l.contains("balloon"))
        .filter(|l| {
            [
                "<uuid>",
                "<mac ",
                "<source ",
                "<!--",
                "<qemu:arg",
                "<seclabel",
                "<alias",
                "<disk",
                "<interface",
                "<loader",
            ]
            .iter()
            .any(|p| l.starts_with(p))
        })
        .collect()
}

#[test]
fn patching_the_guides_domains_keeps_what_the_user_had() {
    for (host, file, args) in [
        ("tr1950x", "guide-000-CompromisedBeast.xml", &["--vcpus", "8", "--memory", "16G"][..]),
        ("r2600x", "guide-001-win10.xml", &["--memory", "8G"][..]),
    ] {
        let from = guide(file);
        let original = std::fs::read_to_string(&from).expect("guide");
        let mut a = vec!["domain", "gpu", "--from", from.to_str().expect("utf8")];
        a.extend_from_slice(args);
        let run = vfioctl(&example_host(host), &a);
        assert_eq!(run.code, 0, "{host}: {}", run.stderr);
        validate(&run.stdout, file);
        for line in users_lines(&original) {
            assert!(run.stdout.contains(line), "{file}: lost {line}\n{}", run.stdout);
        }
        assert!(run.stderr.contains("--- ") && run.stderr.contains("changes to"), "{}", run.stderr);
        // Patching the result with the same plan changes nothing.
        let tmp = tempfile::tempdir().expect("tempdir");
        let once = tmp.path().join("once.xml");
        std::fs::write(&once, &run.stdout).expect("write");
        let mut a = vec!["domain", "gpu", "--from", once.to_str().expect("utf8")];
        a.extend_from_slice(args);
        let again = vfioctl(&example_host(host), &a);
        assert_eq!(again.code, 0, "{}", again.stderr);
        assert_eq!(again.stdout, run.stdout);
        assert!(again.stderr.contains("already has the plan: nothing changed"), "{}", again.stderr);
    }
    let patched = vfioctl(
        &example_host("tr1950x"),
        &[
            "domain",
            "gpu",
            "--vcpus",
            "8",
            "--memory",
            "16G",
            "--from",
            guide("guide-000-CompromisedBeast.xml").to_str().expect("utf8"),
        ],
    );
    let workspace = crate::util::workspace().display().to_string();
    insta::assert_snapshot!("domain-patch-guide-000-stderr", patched.stderr.replace(&workspace, "WORKSPACE"));
}

#[test]
fn a_generated_domain_patched_with_its_own_plan_is_unchanged() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("vm.xml");
    let args = ["domain", "gpu", "--memory", "8G", "--evdev", "auto", "--os", "win11", "--network", "default"];
    let mut a = args.to_vec();
    a.extend(["--name", "vm", "--out", file.to_str().expect("utf8")]);
    let run = vfioctl(&example_host("r2600x"), &a);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let mut a = args.to_vec();
    a.extend(["--from", file.to_str().expect("utf8")]);
    let again = vfioctl(&example_host("r2600x"), &a);
    assert_eq!(again.code, 0, "{}", again.stderr);
    assert_eq!(again.stdout, std::fs::read_to_string(&file).expect("read"));
    assert!(again.stderr.contains("nothing changed"), "{}", again.stderr);
}

#[test]
fn malformed_domains_are_refused_with_line_and_column() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join("bad.xml");
    std::fs::write(&file, "<domain type='kvm'>\n  <name>x</name>\n  <vcpu>2</cpu>\n</domain>\n").expect("write");
    let run = vfioctl(&example_host("r2600x"), &["domain", "gpu", "--from", file.to_str().expect("utf8")]);
    assert_eq!(run.code, 2);
    assert!(run.stderr.contains("is not well-formed XML"), "{}", run.stderr);
    assert!(
        run.stderr.contains("line 3, column 10: </cpu> closes <vcpu> opened at line 3, column 3"),
        "{}",
        run.stderr
    );
    let run = vfioctl(&example_host("r2600x"), &["domain", "gpu"]);
    assert_eq!(run.code, 2, "--name or --from is needed");
}

#[test]
fn disk_size_creates_a_sparse_image_and_never_overwrites() {
    let (_tmp, root) = crate::util::copy_host("r2600x");
    let a = [
        "domain",
        "gpu",
        "--memory",
        "8G",
        "--name",
        "w",
        "--disk",
        "/var/lib/libvirt/images/w.img",
        "--disk-size",
        "64G",
    ];
    let run = vfioctl(&root, &a);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let image = root.join("var/lib/libvirt/images/w.img");
    assert_eq!(std::fs::metadata(&image).expect("image").len(), 64 << 30);
    assert!(run.stderr.contains("created"), "{}", run.stderr);
    std::fs::write(&image, b"data").expect("write");
    let run = vfioctl(&root, &a);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("left as it is"), "{}", run.stderr);
    assert_eq!(std::fs::read(&image).expect("image"), b"data");
}

/// libvirt's library is opened when a command talks to libvirt, not linked: the binary
/// starts without it, and a missing library is an error that says what to install.
#[test]
fn libvirts_library_is_opened_only_to_talk_to_libvirt() {
    let bin = env!("CARGO_BIN_EXE_vfioctl");
    let ldd = crate::util::tool("ldd", &[bin], "libc-bin");
    assert_eq!(ldd.code, 0, "{}", ldd.stderr);
    assert!(!ldd.stdout.contains("libvirt"), "vfioctl links libvirt:\n{}", ldd.stdout);

    let host = example_host("r2600x");
    let missing = [("VFIOCTL_LIBVIRT_LIBRARY", "/nonexistent/libvirt.so.0")];
    let run = crate::util::vfioctl_env(&host, &["domain", "gpu", "--memory", "8G", "--name", "vm"], &missing);
    assert_eq!(run.code, 0, "a domain without --define needs no libvirt: {}", run.stderr);
    let define = ["domain", "gpu", "--memory", "8G", "--name", "vm", "--define", "--connect", "test:///default"];
    let run = crate::util::vfioctl_env(&host, &define, &missing);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("cannot open its library /nonexistent/libvirt.so.0"), "{}", run.stderr);
    assert!(run.stderr.contains("libvirt0") && run.stderr.contains("VFIOCTL_LIBVIRT_LIBRARY"), "{}", run.stderr);
}

/// Regression: `domain --disk` took the partition holding the host's `/` (and its whole
/// disk) with only a warning; Windows setup would have formatted the host's root.
#[test]
fn the_hosts_own_disk_is_never_the_guests() {
    let root = crate::util::example_host("r2600x");
    let id = "/dev/disk/by-id/nvme-Samsung_SSD_970_EVO_500GB_S466NX0K701536W";
    for (disk, why) in [
        ("/dev/nvme0n1p2", "nvme0n1p2 is mounted at /"),
        ("/dev/nvme0n1", "nvme0n1 is the disk of nvme0n1p1, which is mounted at /boot/efi"),
        (&format!("{id}-part2") as &str, "nvme0n1p2 is mounted at /"),
        (id, "nvme0n1 is the disk of nvme0n1p1"),
    ] {
        let run = crate::util::vfioctl(&root, &["domain", "gpu", "--name", "w", "--disk", disk]);
        assert_eq!(run.code, 1, "{disk}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(why), "{disk}: {}", run.stderr);
        assert!(run.stderr.contains("fix: give the guest a disk the host does not use"), "{}", run.stderr);
    }
    // The SATA disk the host does not use is fine.
    let run = crate::util::vfioctl(
        &root,
        &["domain", "gpu", "--name", "w", "--disk", "/dev/disk/by-id/ata-OCZ-TRION100_95UB60EOKMGX"],
    );
    assert_eq!(run.code, 0, "{}", run.stderr);
}

/// Regression (issue 16): a guest's `--disk` is never one the host uses, through LUKS and
/// LVM, as swap, or as a ZFS pool member (imported or not; sysfs shows none of ZFS's);
/// `--force` gives it anyway with a warning; an image on a ZFS dataset is fine.
#[test]
fn no_disk_the_host_keeps_data_on_is_the_guests() {
    let root = crate::util::example_host("x670-luks-zfs");
    for (disk, why) in [
        ("/dev/nvme0n1p3", "nvme0n1p3 is under dm-0, under dm-1, mounted at /"),
        ("/dev/mapper/dm_crypt-0", "dm-0 is under dm-1, mounted at /"),
        ("/dev/nvme1n1", "nvme1n1 is the disk of nvme1n1p1, which is swap"),
        ("/dev/sdb1", "sdb1 is a member of the ZFS pool tank, mounted at /tank"),
        (
            "/dev/disk/by-id/ata-WDC_WD40EFRX-68N32N0_WD-WCC7K4JX1234",
            "sda is the disk of sda1, which is a member of the ZFS pool tank",
        ),
        ("/dev/sdc", "sdc is the disk of sdc1, which is a member of the ZFS pool backup, not imported now"),
    ] {
        let run = crate::util::vfioctl(&root, &["domain", "gpu", "--name", "w", "--disk", disk]);
        assert_eq!(run.code, 1, "{disk}: {}{}", run.stdout, run.stderr);
        assert!(run.stderr.contains(why), "{disk}: {}", run.stderr);
    }
    let run = crate::util::vfioctl(&root, &["domain", "gpu", "--name", "w", "--disk", "/dev/sdc", "--force"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("warning: --force: --disk /dev/sdc: sdc is the disk of sdc1"), "{}", run.stderr);
    assert!(run.stdout.contains("<source dev='/dev/sdc'/>"), "{}", run.stdout);
    for disk in ["/dev/disk/by-id/nvme-Sabrent_Rocket_4.0_1TB_03F10797054463330127", "/var/lib/libvirt/images/w.qcow2"]
    {
        let run = crate::util::vfioctl(&root, &["domain", "gpu", "--name", "w", "--disk", disk]);
        assert_eq!(run.code, 0, "{disk}: {}", run.stderr);
    }
}

/// Regression (issue 17): `domain --from` planned its own vCPU count and memory, keeping
/// what the domain indexes by its old vCPUs (`current=`, the `<vcpus>` list, NUMA cells,
/// `vcpusched`), so libvirt refused the result it accepted before; and it changed the
/// memory in silence. Now the domain's own count and memory stay unless asked, with a note.
#[test]
fn a_patched_domain_keeps_its_vcpus_and_memory() {
    let xml = "<domain type='kvm'>\n  <name>cells</name>\n  <memory unit='KiB'>8388608</memory>\n  <vcpu placement='static' current='2'>4</vcpu>\n  <vcpus>\n    <vcpu id='0' enabled='yes' hotpluggable='no'/>\n    <vcpu id='1' enabled='yes' hotpluggable='yes'/>\n    <vcpu id='2' enabled='no' hotpluggable='yes'/>\n    <vcpu id='3' enabled='no' hotpluggable='yes'/>\n  </vcpus>\n  <cputune>\n    <vcpusched vcpus='0-3' scheduler='fifo' priority='1'/>\n  </cputune>\n  <os>\n    <type arch='x86_64' machine='pc-q35-6.2'>hvm</type>\n  </os>\n  <cpu mode='host-passthrough'>\n    <topology sockets='1' dies='1' cores='2' threads='2'/>\n    <numa>\n      <cell id='0' cpus='0-3' memory='8388608' unit='KiB'/>\n    </numa>\n  </cpu>\n  <devices>\n    <emulator>/usr/bin/qemu-system-x86_64</emulator>\n  </devices>\n</domain>\n";
    crate::util::libvirt_accepts(xml).expect("libvirt accepts the input");
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("cells.xml");
    std::fs::write(&file, xml).unwrap();
    let root = crate::util::example_host("r2600x");
    let run = crate::util::vfioctl(&root, &["domain", "gpu", "--from", file.to_str().unwrap()]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stderr.contains("keeping the domain's 4 vCPUs and 8192 MiB of memory"), "{}", run.stderr);
    assert!(run.stdout.contains(">4</vcpu>") && run.stdout.contains("<memory unit='KiB'>8388608</memory>"));
    crate::util::libvirt_accepts(&run.stdout)
        .unwrap_or_else(|e| panic!("libvirt refuses the patch: {e}\n{}", run.stdout));
}

/// Issue 18: `--looking-glass WxH` sizes the IVSHMEM region for the resolution (two frames
/// of 4 bytes per pixel and 10 MiB, to a power of two) in /dev/shm (libvirt's <shmem>), or
/// on the kvmfr device (QEMU arguments) when the host's kernel has the module; libvirt takes
/// both, vfioctl's own audit finds the region big enough, and the host steps are printed.
#[test]
fn looking_glass_sizes_its_region_and_libvirt_takes_it() {
    let (_t, root) = crate::util::copy_host("r2600x");
    let args = ["domain", "gpu", "--name", "lg", "--looking-glass", "2560x1440"];
    let run = vfioctl(&root, &args);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(run.stdout.contains("<shmem name='looking-glass'>\n      <model type='ivshmem-plain'/>\n      <size unit='M'>64</size>\n    </shmem>"), "{}", run.stdout);
    assert!(run.stderr.contains("`f /dev/shm/looking-glass 0660 "), "{}", run.stderr);
    validate(&run.stdout, "looking glass shm");
    crate::util::libvirt_accepts(&run.stdout).expect("libvirt takes the shmem domain");
    let f = root.join("lg.xml");
    std::fs::write(&f, &run.stdout).expect("write");
    let audit = vfioctl(&root, &["audit", f.to_str().expect("utf-8"), "--format", "json"]);
    assert!(!audit.stdout.contains("device-ivshmem-too-small"), "{}", audit.stdout);

    // The kernel has kvmfr (a DKMS build in modules.dep): the device, by QEMU's arguments.
    let dep = std::fs::read_dir(root.join("lib/modules")).expect("modules").next().expect("a kernel").expect("entry");
    let dep = dep.path().join("modules.dep");
    let mut text = std::fs::read_to_string(&dep).expect("modules.dep");
    text.push_str("updates/dkms/kvmfr.ko:\n");
    std::fs::write(&dep, text).expect("write");
    let run = vfioctl(&root, &["domain", "gpu", "--name", "lg", "--looking-glass", "3840x2160"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stdout.starts_with("<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"),
        "{}",
        run.stdout
    );
    assert!(
        run.stdout.contains(
            "<qemu:arg value='memory-backend-file,id=looking-glass,mem-path=/dev/kvmfr0,size=128M,share=yes'/>"
        ),
        "{}",
        run.stdout
    );
    assert!(!run.stdout.contains("<shmem"), "{}", run.stdout);
    assert!(
        run.stderr.contains("options kvmfr static_size_mb=128") && run.stderr.contains("cgroup_device_acl"),
        "{}",
        run.stderr
    );
    validate(&run.stdout, "looking glass kvmfr");
    crate::util::libvirt_accepts(&run.stdout).expect("libvirt takes the kvmfr domain");
    // --looking-glass-memory shm chooses /dev/shm anyway.
    let run = vfioctl(
        &root,
        &["domain", "gpu", "--name", "lg", "--looking-glass", "1920x1080", "--looking-glass-memory", "shm"],
    );
    assert!(run.stdout.contains("<size unit='M'>32</size>"), "{}", run.stdout);
    // Patching an existing domain with it is refused, not dropped in silence.
    let run = vfioctl(&root, &["domain", "gpu", "--from", f.to_str().expect("utf-8"), "--looking-glass", "1920x1080"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("not supported yet"), "{}", run.stderr);
    let bad = vfioctl(&root, &["domain", "gpu", "--name", "lg", "--looking-glass", "big"]);
    assert!(bad.code != 0 && bad.stderr.contains("give WIDTHxHEIGHT"), "{}", bad.stderr);
}
