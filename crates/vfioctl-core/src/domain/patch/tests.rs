use super::*;
use crate::domain::tests::{host, plan, req};
use crate::domain::{document, render, Disk, GuestOs, Network};
use crate::pci::PciAddress;
use crate::plan::devices::PlannedDevice;
use crate::plan::memory::Hugepages;
use crate::xml::{parse, Element, Node};

use crate::domain::tests::{GUIDE_000, GUIDE_001};

fn gpu_plan() -> crate::plan::Plan {
    let mut p = plan();
    for f in 0..2 {
        p.devices.push(PlannedDevice {
            address: PciAddress { domain: 0, bus: 0x0d, device: 0, function: f },
            vendor_id: "1002".into(),
            device_id: if f == 0 { "66af" } else { "ab20" }.into(),
            class: if f == 0 { "0300" } else { "0403" }.into(),
            iommu_group: Some(16),
            driver: None,
            reason: String::new(),
        });
    }
    p.memory.hugepages = Some(Hugepages { size_kib: 1048576, count: 4, node: Some(0), reserve_at_boot: true });
    p
}

fn patched(existing: &str, desired: &str) -> (String, PatchReport) {
    let mut doc = parse(existing).unwrap();
    let want = parse(desired).unwrap();
    let report = patch(&mut doc, &want);
    (doc.write(), report)
}

/// Every element of `before` (by its path of names and identifying attributes) is in
/// `after`, with its attributes, except the attributes the plan owns; every comment too.
pub(crate) fn nothing_lost(before: &str, after: &str, owned: &[&str]) {
    fn key(e: &Element) -> String {
        let id = ["name", "type", "index", "vcpu", "iothread", "dev", "file", "value", "model"]
            .iter()
            .filter_map(|k| e.attr(k).map(|v| format!("[{k}={v}]")))
            .collect::<String>();
        let src = e.find("source/address").map(|a| a.to_xml()).or_else(|| e.find("source").map(|s| s.to_xml()));
        format!("{}{id}{}", e.name, src.unwrap_or_default())
    }
    fn walk(e: &Element, path: String, out: &mut Vec<(String, Vec<(String, String)>)>, comments: &mut Vec<String>) {
        let attrs = e.attrs().map(|a| (a.name.clone(), a.value.clone())).collect();
        out.push((path.clone(), attrs));
        for c in &e.children {
            match c {
                Node::Element(ch) => walk(ch, format!("{path}/{}", key(ch)), out, comments),
                Node::Comment(t) => comments.push(t.clone()),
                _ => {}
            }
        }
    }
    let (mut b, mut a, mut bc, mut ac) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let bd = parse(before).unwrap();
    let ad = parse(after).unwrap();
    walk(&bd.root, key(&bd.root), &mut b, &mut bc);
    walk(&ad.root, key(&ad.root), &mut a, &mut ac);
    for c in &bc {
        assert!(ac.contains(c), "comment lost: {c}");
    }
    for (path, attrs) in &b {
        let owned_path = owned.iter().any(|o| path.contains(o));
        let same: Vec<&Vec<(String, String)>> = a.iter().filter(|(p, _)| p == path).map(|(_, at)| at).collect();
        if same.is_empty() {
            assert!(owned_path, "element lost: {path}\n{after}");
            continue;
        }
        for (k, v) in attrs {
            let still = same.iter().any(|now| now.iter().any(|(k2, v2)| k2 == k && v2 == v));
            assert!(still || owned_path, "{path}: attribute {k}='{v}' lost or changed\n{after}");
        }
    }
}

#[test]
fn an_empty_change_changes_nothing() {
    for g in [GUIDE_000, GUIDE_001] {
        let (out, report) = patched(g, g);
        assert_eq!(out, g);
        assert_eq!(report, PatchReport::default());
    }
}

#[test]
fn a_domain_that_has_the_plan_comes_back_unchanged() {
    let mut reqs = vec![req()];
    let mut r = req();
    r.os = GuestOs::Windows11;
    r.disk = Some(Disk::Image("/var/lib/libvirt/images/w.qcow2".into()));
    r.isos = vec!["/isos/win.iso".into(), "/isos/virtio-win.iso".into()];
    r.network = Some(Network::Bridge("br0".into()));
    reqs.push(r);
    let mut r = req();
    r.os = GuestOs::Linux;
    r.disk = Some(Disk::Block("/dev/disk/by-id/nvme-x".into()));
    r.network = Some(Network::Libvirt("default".into()));
    reqs.push(r);
    for plan in [plan(), gpu_plan()] {
        for libvirt in [None, Some((6, 0)), Some((9, 0))] {
            for r in &reqs {
                let xml = render(&plan, &host(libvirt), r);
                let (out, report) = patched(&xml, &xml);
                assert_eq!(out, xml);
                assert!(report.changes.is_empty(), "{:?}", report.changes);
            }
        }
    }
}

/// The tree [`document`] builds patches exactly like its text read back, so callers can
/// hand it to the patch without writing and parsing it.
#[test]
fn the_built_tree_patches_like_its_text() {
    let mut r = req();
    r.os = GuestOs::Windows11;
    r.disk = Some(Disk::Image("/var/lib/libvirt/images/w.qcow2".into()));
    r.isos = vec!["/isos/win.iso".into()];
    r.network = Some(Network::Bridge("br0".into()));
    for plan in [plan(), gpu_plan()] {
        for libvirt in [None, Some((6, 0)), Some((9, 0))] {
            for r in [req(), r.clone()] {
                let built = document(&plan, &host(libvirt), &r);
                let text = built.write();
                assert_eq!(text, render(&plan, &host(libvirt), &r));
                let read = parse(&text).unwrap();
                for g in [GUIDE_000, GUIDE_001, text.as_str()] {
                    let (mut a, mut b) = (parse(g).unwrap(), parse(g).unwrap());
                    let (ra, rb) = (patch(&mut a, &built), patch(&mut b, &read));
                    assert_eq!(a.write(), b.write());
                    assert_eq!(ra, rb);
                }
            }
        }
    }
}

#[test]
fn guide_000_gets_the_plan_and_keeps_everything_else() {
    let mut r = req();
    r.name = "CompromisedBeast".into();
    r.evdev.clear();
    let want = render(&gpu_plan(), &host(Some((9, 0))), &r);
    let (out, report) = patched(GUIDE_000, &want);
    nothing_lost(
        GUIDE_000,
        &out,
        &[
            "cputune",
            "vcpu",
            "numatune",
            "memory[",
            "currentMemory",
            "timer[name=pit]",
            "memballoon",
            "cpu/topology",
            "function='0x1'/>/address",
        ],
    );
    // The plan's values are in.
    let d = parse(&out).unwrap().root;
    assert_eq!(d.find("vcpu").unwrap().text(), "4");
    assert_eq!(d.children_named("cputune").next().unwrap().children_named("vcpupin").count(), 4);
    assert_eq!(d.find("memory").unwrap().text(), "4194304");
    assert!(d.find("memoryBacking/hugepages/page").is_some());
    assert_eq!(d.find("numatune/memory").unwrap().attr("mode"), Some("preferred"), "the mode is the user's");
    assert_eq!(d.find("features/hyperv/vendor_id").unwrap().attr("value"), Some("banana"));
    let hyperv: Vec<&str> = d.find("features/hyperv").unwrap().elements().map(|e| e.name.as_str()).collect();
    for name in ["runtime", "ipi", "stimer", "vpindex"] {
        assert!(hyperv.contains(&name), "{name} missing: {hyperv:?}");
    }
    assert!(d.find("features/hyperv/stimer/direct").is_some());
    assert!(d.find("features/ioapic").is_some());
    let pit = d.find("clock").unwrap().children_named("timer").find(|t| t.attr("name") == Some("pit")).unwrap();
    assert_eq!(pit.attr("tickpolicy"), Some("delay"));
    assert_eq!(d.find("clock").unwrap().attr("offset"), Some("utc"), "the offset is the user's");
    // The guide already passes 0d:00.0 and .1: nothing new, no new port.
    assert!(!report.changes.iter().any(|c| c.contains("hostdev")), "{:?}", report.changes);
    assert_eq!(
        d.find("devices").unwrap().children_named("controller").count(),
        parse(GUIDE_000).unwrap().root.find("devices").unwrap().children_named("controller").count()
    );
    // And the patch is stable.
    let (again, report) = patched(&out, &want);
    assert_eq!(again, out);
    assert!(report.changes.is_empty(), "{:?}", report.changes);
}

#[test]
fn guide_001_gets_new_hostdevs_on_new_ports_and_native_evdev_is_not_doubled() {
    let mut r = req();
    r.name = "win10".into();
    r.evdev = vec![
        "/dev/input/by-id/usb-Logitech_USB_Receiver-event-kbd".into(),
        "/dev/input/by-id/usb-MOSART_Semi._2.4G_Keyboard_Mouse-if01-event-mouse".into(),
    ];
    let want = render(&gpu_plan(), &host(Some((9, 0))), &r);
    let (out, report) = patched(GUIDE_001, &want);
    nothing_lost(
        GUIDE_001,
        &out,
        &[
            "cputune",
            "vcpu",
            "numatune",
            "memory[",
            "currentMemory",
            "timer[",
            "memballoon",
            "cpu/topology",
            "cpu/cache",
        ],
    );
    let d = parse(&out).unwrap().root;
    let devices = d.find("devices").unwrap();
    let max_before = parse(GUIDE_001)
        .unwrap()
        .root
        .find("devices")
        .unwrap()
        .children_named("controller")
        .filter_map(|c| c.attr("index").and_then(|i| i.parse::<u32>().ok()))
        .max()
        .unwrap();
    let port = devices
        .children_named("controller")
        .find(|c| c.attr("index") == Some(&(max_before + 1).to_string()))
        .expect("a new root port");
    assert_eq!(port.attr("model"), Some("pcie-root-port"));
    let new: Vec<&Element> = devices
        .children_named("hostdev")
        .filter(|h| h.find("source/address").and_then(|a| a.attr("bus")) == Some("0x0d"))
        .collect();
    assert_eq!(new.len(), 2);
    for h in &new {
        assert_eq!(h.child("address").unwrap().attr("bus"), Some(format!("0x{:02x}", max_before + 1).as_str()));
    }
    // The guide hands over both devices with qemu:commandline input-linux already.
    assert!(!report.changes.iter().any(|c| c.contains("evdev")), "{:?}", report.changes);
    assert!(report.notes.iter().any(|n| n.contains("kept hostdev")), "{:?}", report.notes);
    let (again, _) = patched(&out, &want);
    assert_eq!(again, out);
}

#[test]
fn a_bare_domain_gets_everything_indented_like_its_own() {
    let bare = "<domain type='kvm'>\n    <name>x</name>\n    <!-- mine -->\n    <memory unit='GiB'>4</memory>\n    <os>\n        <type arch='x86_64' machine='q35'>hvm</type>\n    </os>\n    <devices>\n        <emulator>/usr/bin/qemu-system-x86_64</emulator>\n        <memballoon model='virtio'>\n            <address type='pci'/>\n        </memballoon>\n    </devices>\n</domain>\n";
    let mut r = req();
    r.name = "x".into();
    let want = render(&gpu_plan(), &host(Some((6, 0))), &r);
    let (out, report) = patched(bare, &want);
    assert!(out.contains("\n    <memory unit='GiB'>4</memory>\n"), "4 GiB is the plan's 4194304 KiB\n{out}");
    assert!(out.contains("\n    <cputune>\n        <vcpupin vcpu='0'"), "{out}");
    assert!(out.contains("\n        <memballoon model='none'/>\n    </devices>"), "{out}");
    assert!(out.starts_with("<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>"), "{out}");
    assert!(out.contains("<qemu:arg value='input-linux,id=evdev0,"), "{out}");
    assert!(out.contains("<!-- mine -->"));
    assert!(report.changes.iter().any(|c| c.contains("memballoon")), "{:?}", report.changes);
    let (again, report) = patched(&out, &want);
    assert_eq!(again, out, "{:?}", report.changes);
}

#[test]
fn fewer_vcpus_drop_the_extra_pins_and_sound_user_values_stay() {
    let mut r = req();
    r.name = "CompromisedBeast".into();
    let want = render(&plan(), &host(None), &r);
    let mut doc = parse(GUIDE_000).unwrap();
    if let Some(s) = doc.root.find_mut("features/hyperv/spinlocks") {
        s.set_attr("retries", "4096");
    }
    let (out, report) = patched(&doc.write(), &want);
    let d = parse(&out).unwrap().root;
    assert!(report.changes.iter().any(|c| c.contains("removed 4 <vcpupin>")), "{:?}", report.changes);
    assert_eq!(d.find("features/hyperv/spinlocks").unwrap().attr("retries"), Some("4096"));
    let mut doc = parse(GUIDE_000).unwrap();
    if let Some(s) = doc.root.find_mut("features/hyperv/vendor_id") {
        s.set_attr("value", "thirteen-char");
    }
    let (out, _) = patched(&doc.write(), &want);
    assert_eq!(parse(&out).unwrap().root.find("features/hyperv/vendor_id").unwrap().attr("value"), Some("vfioctl"));
}

/// A domain with function 0 of the GPU passed without a guest address, as a pasted
/// snippet has it, on `machine`.
fn snippet(machine: &str) -> String {
    format!(
        "<domain type='kvm'>\n  <name>x</name>\n  <memory unit='GiB'>4</memory>\n  <vcpu>4</vcpu>\n  <os>\n    <type arch='x86_64' machine='{machine}'>hvm</type>\n  </os>\n  <devices>\n    <hostdev mode='subsystem' type='pci' managed='yes'>\n      <source>\n        <address domain='0x0000' bus='0x0d' slot='0x00' function='0x0'/>\n      </source>\n    </hostdev>\n  </devices>\n</domain>\n"
    )
}

fn guest_slots(out: &str) -> Vec<(String, String, String, Option<String>)> {
    let d = parse(out).unwrap().root;
    d.find("devices")
        .unwrap()
        .children_named("hostdev")
        .map(|h| {
            let a = h.child("address").expect("a guest address");
            let v = |k: &str| a.attr(k).unwrap_or("").to_string();
            (v("bus"), v("slot"), v("function"), a.attr("multifunction").map(String::from))
        })
        .collect()
}

/// Regression: the HDMI audio function added beside a function 0 without a guest address
/// went onto a new root port of its own, so the card's functions sat on two guest slots
/// (q35), or libvirt placed each on its own slot (i440fx).
#[test]
fn a_function_added_beside_one_without_an_address_shares_its_slot() {
    let want = render(&gpu_plan(), &host(Some((6, 0))), &req());
    let (out, report) = patched(&snippet("pc-q35-6.2"), &want);
    let slots = guest_slots(&out);
    assert_eq!(slots.len(), 2, "{out}");
    assert_eq!((slots[0].0.as_str(), slots[0].2.as_str(), slots[0].3.as_deref()), ("0x01", "0x0", Some("on")), "{out}");
    assert_eq!((slots[1].0.as_str(), slots[1].2.as_str()), ("0x01", "0x1"), "{out}");
    assert!(report.changes.iter().any(|c| c.contains("put together")), "{:?}", report.changes);
    let (again, _) = patched(&out, &want);
    assert_eq!(again, out);

    let (out, report) = patched(&snippet("pc-i440fx-2.9"), &want);
    let slots = guest_slots(&out);
    assert_eq!(slots.len(), 2, "{out}");
    assert!(slots.iter().all(|s| s.0 == "0x00" && s.1 == "0x10"), "one free slot of bus 0: {out}");
    assert!(!report.notes.iter().any(|n| n.contains("libvirt places")), "{:?}", report.notes);
    assert!(!out.contains("pcie-root-port"), "{out}");
}

/// Regression: a second I/O thread the plan does not know kept its pin, on CPUs that
/// became vCPU CPUs.
#[test]
fn iothreads_the_plan_does_not_know_move_with_its_own() {
    let want = render(&gpu_plan(), &host(Some((6, 0))), &req());
    let wanted = parse(&want).unwrap().root;
    let home = wanted.find("cputune/iothreadpin").and_then(|p| p.attr("cpuset")).unwrap().to_string();
    let vcpu_cpu = wanted.find("cputune/vcpupin").and_then(|p| p.attr("cpuset")).unwrap().to_string();
    let existing = format!(
        "<domain type='kvm'>\n  <name>x</name>\n  <vcpu placement='static'>4</vcpu>\n  <iothreads>2</iothreads>\n  <cputune>\n    <iothreadpin iothread='1' cpuset='0'/>\n    <iothreadpin iothread='2' cpuset='{vcpu_cpu}'/>\n  </cputune>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n  <devices/>\n</domain>\n"
    );
    let (out, _) = patched(&existing, &want);
    let d = parse(&out).unwrap().root;
    let pins: Vec<(&str, &str)> = d
        .find("cputune")
        .unwrap()
        .children_named("iothreadpin")
        .map(|p| (p.attr("iothread").unwrap(), p.attr("cpuset").unwrap()))
        .collect();
    assert_eq!(pins, vec![("1", home.as_str()), ("2", home.as_str())], "{out}");
    assert_eq!(d.find("iothreads").unwrap().text(), "2", "the domain's own count stays");
}

/// Regression (issue 17): a plan with fewer vCPUs and less memory than the domain kept
/// what the old vCPUs indexed (`current=` above the count, a `<vcpus>` list of 8, a
/// `vcpusched` and NUMA cells for vCPUs 0-7) and cells adding up to the old memory, all of
/// which libvirt refuses.
#[test]
fn what_is_indexed_by_vcpu_follows_a_new_count() {
    let existing = "<domain type='kvm'>\n  <name>x</name>\n  <memory unit='GiB'>16</memory>\n  <vcpu placement='static' current='6'>8</vcpu>\n  <vcpus>\n    <vcpu id='0' enabled='yes' hotpluggable='no'/>\n    <vcpu id='1' enabled='yes' hotpluggable='yes'/>\n    <vcpu id='2' enabled='yes' hotpluggable='yes'/>\n    <vcpu id='3' enabled='yes' hotpluggable='yes'/>\n    <vcpu id='4' enabled='yes' hotpluggable='yes'/>\n    <vcpu id='5' enabled='yes' hotpluggable='yes'/>\n    <vcpu id='6' enabled='no' hotpluggable='yes'/>\n    <vcpu id='7' enabled='no' hotpluggable='yes'/>\n  </vcpus>\n  <cputune>\n    <vcpusched vcpus='0-3' scheduler='fifo' priority='1'/>\n    <vcpusched vcpus='6-7' scheduler='batch'/>\n  </cputune>\n  <os>\n    <type arch='x86_64' machine='q35'>hvm</type>\n  </os>\n  <cpu mode='host-passthrough'>\n    <numa>\n      <cell id='0' cpus='0-3' memory='12' unit='GiB'/>\n      <cell id='1' cpus='4-7' memory='4' unit='GiB'/>\n    </numa>\n  </cpu>\n  <devices/>\n</domain>\n";
    // plan(): 4 vCPUs, 4096 MiB.
    let want = render(&plan(), &host(Some((8, 0))), &req());
    let (out, report) = patched(existing, &want);
    let d = parse(&out).unwrap().root;
    assert_eq!(d.find("vcpu").unwrap().text(), "4");
    assert_eq!(d.find("vcpu").unwrap().attr("current"), None, "{out}");
    assert!(d.find("vcpus").is_none(), "{out}");
    let sched: Vec<&str> =
        d.find("cputune").unwrap().children_named("vcpusched").filter_map(|s| s.attr("vcpus")).collect();
    assert_eq!(sched, vec!["0-3"], "{out}");
    let cells: Vec<(&str, &str)> = d
        .find("cpu/numa")
        .unwrap()
        .children_named("cell")
        .map(|c| (c.attr("cpus").unwrap(), c.attr("memory").unwrap()))
        .collect();
    // 4 vCPUs over 2 cells; 4 GiB in the cells' 3:1 proportion.
    assert_eq!(cells, vec![("0-1", "3145728"), ("2-3", "1048576")], "{out}");
    assert!(report.changes.iter().any(|c| c.contains("removed <vcpus>")), "{:?}", report.changes);
    let (again, _) = patched(&out, &want);
    assert_eq!(again, out);
}
