//! `vfioctl domain`: every generated domain passes libvirt's own schema check.

use std::path::Path;

use crate::util::{example_host, tool, vfioctl};

fn validate(xml: &str, what: &str) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let f = tmp.path().join("domain.xml");
    std::fs::write(&f, xml).expect("write");
    let run = tool("virt-xml-validate", &[f.to_str().expect("utf8"), "domain"], "libvirt-clients and libxml2-utils");
    assert_eq!(run.code, 0, "{what}: virt-xml-validate: {}{}\n{xml}", run.stdout, run.stderr);
}

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
