//! Broken-domain cases for every CPU rule, on the audit's bench and a few other hosts.

use crate::audit::tests::*;
use crate::audit::Finding;
use crate::cpuset::CpuSet;
use crate::plan::pinning::tests::shape;
use crate::topology::{RawCpu, RawL3, RawNode, RawTopology, Topology};
use crate::vendor::CpuVendor;
use crate::xml::{Document, Element, Node as XmlNode};

fn set(s: &str) -> CpuSet {
    s.parse().unwrap()
}

fn tune(d: &mut Document) -> &mut Element {
    d.root.find_mut("cputune").unwrap()
}

/// Sets the cpuset of `<vcpupin vcpu='v'>`.
fn vcpupin(d: &mut Document, v: u32, cpuset: &str) {
    let v = v.to_string();
    let p = tune(d).elements_mut().find(|e| e.name == "vcpupin" && e.attr("vcpu") == Some(&v)).unwrap();
    p.set_attr("cpuset", cpuset);
}

/// Sets the cpuset of the emulator and the I/O thread.
fn qemu_pins(d: &mut Document, cpuset: &str) {
    for e in tune(d).elements_mut().filter(|e| e.name == "emulatorpin" || e.name == "iothreadpin") {
        e.set_attr("cpuset", cpuset);
    }
}

fn drop_in(d: &mut Document, parent: &str, name: &str) {
    assert!(d.root.find_mut(parent).unwrap().remove_elements(|e| e.name == name) > 0, "{name}");
}

fn topology(d: &mut Document, cores: u32, threads: u32) {
    let t = d.root.find_mut("cpu/topology").unwrap();
    t.set_attr("cores", &cores.to_string());
    t.set_attr("threads", &threads.to_string());
}

/// Rewrites the pinning: `<vcpu>` (count and cpuset), one vcpupin per CPU of `pins` in
/// order, the emulator and I/O thread on `emulator`, `threads` per guest core.
fn repin(d: &mut Document, pins: &[u32], emulator: &str, threads: u32) {
    let style = d.style();
    let n = pins.len() as u32;
    let v = d.root.find_mut("vcpu").unwrap();
    v.set_text(&n.to_string());
    v.set_attr("cpuset", &pins.iter().copied().collect::<CpuSet>().to_string());
    let t = tune(d);
    t.remove_elements(|e| matches!(e.name.as_str(), "vcpupin" | "emulatorpin" | "iothreadpin"));
    let mut nodes: Vec<XmlNode> = pins
        .iter()
        .enumerate()
        .map(|(i, c)| {
            XmlNode::Element(Box::new(
                Element::new("vcpupin").with_attr("vcpu", &i.to_string()).with_attr("cpuset", &c.to_string()),
            ))
        })
        .collect();
    nodes.push(XmlNode::Element(Box::new(Element::new("emulatorpin").with_attr("cpuset", emulator))));
    nodes.push(XmlNode::Element(Box::new(
        Element::new("iothreadpin").with_attr("iothread", "1").with_attr("cpuset", emulator),
    )));
    t.insert(None, nodes, 2, &style);
    topology(d, n / threads, threads);
}

fn the<'a>(f: &'a [Finding], id: &str) -> &'a Finding {
    f.iter().find(|f| f.id == id).unwrap()
}

/// An i7-12700K-like host: 8 P-cores with SMT (siblings 2k, 2k+1: CPUs 0-15), 4
/// E-cores (16-19), one L3, one node.
fn hybrid() -> Topology {
    let cpus = (0..20)
        .map(|cpu| RawCpu {
            cpu,
            package: Some(0),
            thread_siblings: Some(if cpu < 16 {
                [cpu & !1, cpu | 1].into_iter().collect()
            } else {
                set(&cpu.to_string())
            }),
            l3: Some(RawL3 { id: Some(0), shared: set("0-19"), size_kib: Some(25600) }),
            max_freq_khz: Some(if cpu < 16 { 5_000_000 } else { 3_800_000 }),
            ..Default::default()
        })
        .collect();
    let raw = RawTopology {
        cpus,
        nodes: vec![RawNode { id: 0, cpus: set("0-19"), memory_kib: Some(32 << 20) }],
        performance: Some(set("0-15")),
        efficiency: Some(set("16-19")),
        ..Default::default()
    };
    Topology::build(raw).0
}

#[test]
fn the_bench_pins_as_expected() {
    // The rest of these tests lean on this layout.
    let b = Bench::new();
    let x = b.clean();
    assert!(x.contains("<vcpu placement='static' cpuset='4-6,12-14'>6</vcpu>"), "{x}");
    for (v, c) in [(0, 4), (1, 12), (2, 5), (3, 13), (4, 6), (5, 14)] {
        assert!(x.contains(&format!("<vcpupin vcpu='{v}' cpuset='{c}'/>")), "{x}");
    }
    assert!(x.contains("<emulatorpin cpuset='0-3,7-11,15'/>"), "{x}");
    assert!(x.contains("<iothreadpin iothread='1' cpuset='0-3,7-11,15'/>"), "{x}");
    exactly(&b.audit(&x), &[]);
}

#[test]
fn mode_not_passthrough() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| {
        d.root.find_mut("cpu").unwrap().set_attr("mode", "host-model");
    }));
    exactly(&f, &["cpu-mode-not-passthrough"]);
    let m = the(&f, "cpu-mode-not-passthrough");
    assert!(m.message.contains("'host-model'"), "{m:?}");
    assert!(m.fix.contains("mode='host-passthrough'") && m.fix.contains("threads='2'") && m.fix.contains("topoext"));
    assert!(m.line.is_some());
    // No <cpu> at all: one finding, whose fix carries the topology too.
    let f = b.audit(&broken(&b, |d| {
        d.root.remove_elements(|e| e.name == "cpu");
    }));
    exactly(&f, &["cpu-mode-not-passthrough"]);
    assert!(the(&f, "cpu-mode-not-passthrough").fix.contains("cores='3' threads='2'"));
    // `maximum` is host-passthrough under KVM.
    exactly(
        &b.audit(&broken(&b, |d| {
            d.root.find_mut("cpu").unwrap().set_attr("mode", "maximum");
        })),
        &[],
    );
}

#[test]
fn no_topology() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| drop_in(d, "cpu", "topology")));
    exactly(&f, &["cpu-no-topology"]);
    assert!(the(&f, "cpu-no-topology").fix.contains("cores='3' threads='2'"));
    // A named model without topology: the mode's fix carries the topology, one finding.
    let f = b.audit(&broken(&b, |d| {
        drop_in(d, "cpu", "topology");
        d.root.find_mut("cpu").unwrap().set_attr("mode", "custom");
    }));
    exactly(&f, &["cpu-mode-not-passthrough"]);
    assert!(the(&f, "cpu-mode-not-passthrough").fix.contains("cores='3' threads='2'"));
}

#[test]
fn topology_mismatch() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| topology(d, 4, 2)));
    exactly(&f, &["cpu-topology-mismatch"]);
    let m = the(&f, "cpu-topology-mismatch");
    assert!(m.message.contains("= 8, but <vcpu> is 6"), "{m:?}");
    assert!(m.fix.contains("cores='3' threads='2'"), "{m:?}");
    // A missing factor.
    let f = b.audit(&broken(&b, |d| {
        d.root.find_mut("cpu/topology").unwrap().remove_attr("cores");
    }));
    exactly(&f, &["cpu-topology-mismatch"]);
    assert!(the(&f, "cpu-topology-mismatch").message.contains("cores"));
}

#[test]
fn odd_vcpu_counts() {
    let b = Bench::new();
    let five = |threads: u32| {
        broken(&b, move |d| {
            d.root.find_mut("vcpu").unwrap().set_text("5");
            tune(d).remove_elements(|e| e.attr("vcpu") == Some("5"));
            topology(d, if threads == 1 { 5 } else { 3 }, threads);
        })
    };
    // Five vCPUs as five single-thread cores: fine, no sibling rule.
    exactly(&b.audit(&five(1)), &[]);
    // Five vCPUs cannot be cores of two threads.
    let f = b.audit(&five(2));
    exactly(&f, &["cpu-topology-mismatch"]);
    let m = the(&f, "cpu-topology-mismatch");
    assert!(m.fix.contains("cores='5' threads='1'") && m.fix.contains(">6</vcpu>"), "{m:?}");
}

#[test]
fn threads_exceed_host() {
    let mut b = Bench::new();
    b.topology = shape(1, 1, 2, 4, 1, true, &[16384]);
    exactly(&b.audit(&b.clean()), &[]);
    let f = b.audit(&broken(&b, |d| topology(d, 3, 2)));
    exactly(&f, &["cpu-threads-exceed-host"]);
    assert!(the(&f, "cpu-threads-exceed-host").fix.contains("cores='6' threads='1'"));
}

#[test]
fn amd_without_topoext() {
    let b = Bench::new();
    let no_topoext = broken(&b, |d| {
        d.root.find_mut("cpu").unwrap().remove_elements(|e| e.attr("name") == Some("topoext"));
    });
    let f = b.audit(&no_topoext);
    exactly(&f, &["cpu-amd-no-topoext"]);
    assert_eq!(the(&f, "cpu-amd-no-topoext").fix, "<feature policy='require' name='topoext'/>");
    let disabled = broken(&b, |d| {
        let c = d.root.find_mut("cpu").unwrap();
        c.elements_mut().find(|e| e.attr("name") == Some("topoext")).unwrap().set_attr("policy", "disable");
    });
    exactly(&b.audit(&disabled), &["cpu-amd-no-topoext"]);
    // Intel needs none; nor does an AMD guest with one thread per core.
    let mut intel = Bench::new();
    intel.vendor = CpuVendor::Intel;
    exactly(&intel.audit(&no_topoext), &[]);
    exactly(
        &b.audit(&broken(&b, |d| {
            d.root.find_mut("cpu").unwrap().remove_elements(|e| e.attr("name") == Some("topoext"));
            topology(d, 6, 1);
        })),
        &[],
    );
}

#[test]
fn pin_bad_cpuset() {
    let mut b = Bench::new();
    // A CPU the host does not have: on the pin only, no sibling or floating finding.
    let f = b.audit(&broken(&b, |d| vcpupin(d, 5, "40")));
    exactly(&f, &["cpu-pin-bad-cpuset"]);
    let m = the(&f, "cpu-pin-bad-cpuset");
    assert_eq!(m.element, "cputune/vcpupin[@vcpu='5']");
    assert!(m.message.contains("CPU 40 does not exist"), "{m:?}");
    // The fix: the other sibling of its guest core.
    assert_eq!(m.fix, "<vcpupin vcpu='4' cpuset='6'/>\n<vcpupin vcpu='5' cpuset='14'/>");
    // Not a list: the vCPU is not reported as unpinned.
    exactly(&b.audit(&broken(&b, |d| vcpupin(d, 5, "x"))), &["cpu-pin-bad-cpuset"]);
    let f = b.audit(&broken(&b, |d| {
        d.root.find_mut("vcpu").unwrap().set_attr("cpuset", "4-6,12-14,99");
    }));
    exactly(&f, &["cpu-pin-bad-cpuset"]);
    assert_eq!(the(&f, "cpu-pin-bad-cpuset").fix, "<vcpu placement='static' cpuset='4-6,12-14'>6</vcpu>");
    // Without vcpupins the fix is the whole placement.
    let f = b.audit(&broken(&b, |d| {
        tune(d).remove_elements(|e| e.name == "vcpupin");
        d.root.find_mut("vcpu").unwrap().set_attr("cpuset", "4-6,12-14,99");
    }));
    exactly(&f, &["cpu-pin-bad-cpuset"]);
    assert!(the(&f, "cpu-pin-bad-cpuset").fix.contains("<vcpupin vcpu='5' cpuset='14'/>"));
    exactly(&b.audit(&broken(&b, |d| qemu_pins(d, "0-3,7-11,15,64"))), &["cpu-pin-bad-cpuset"; 2]);
    // An offline CPU.
    b.topology.offline = set("16-17");
    let f = b.audit(&broken(&b, |d| {
        tune(d).elements_mut().find(|e| e.name == "emulatorpin").unwrap().set_attr("cpuset", "0-3,7-11,15-16");
    }));
    exactly(&f, &["cpu-pin-bad-cpuset"]);
    assert!(the(&f, "cpu-pin-bad-cpuset").message.contains("CPU 16 is offline"), "{f:?}");
    assert_eq!(the(&f, "cpu-pin-bad-cpuset").fix, "<emulatorpin cpuset='0-3,7-11,15'/>");
}

#[test]
fn vcpupin_for_a_missing_vcpu() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| {
        let style = d.style();
        let pin = Element::new("vcpupin").with_attr("vcpu", "6").with_attr("cpuset", "7");
        tune(d).insert(None, vec![XmlNode::Element(Box::new(pin))], 2, &style);
    }));
    exactly(&f, &["cpu-vcpupin-no-such-vcpu"]);
    assert!(the(&f, "cpu-vcpupin-no-such-vcpu").message.contains("0-5"));
}

#[test]
fn unpinned() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| {
        tune(d).remove_elements(|e| e.name == "vcpupin");
        d.root.find_mut("vcpu").unwrap().remove_attr("cpuset");
    }));
    exactly(&f, &["cpu-unpinned"]);
    let m = the(&f, "cpu-unpinned");
    assert!(m.message.contains("none of the 6 vCPUs"), "{m:?}");
    // The planner's placement: the same as the rendered domain's.
    assert!(m.fix.contains("<vcpu placement='static' cpuset='4-6,12-14'>6</vcpu>"), "{}", m.fix);
    assert!(m.fix.contains("<vcpupin vcpu='1' cpuset='12'/>") && m.fix.contains("<emulatorpin cpuset='0-3,7-11,15'/>"));
    assert!(m.fix.contains("<iothreadpin iothread='1'"));
    // One vCPU without a pin: it gets its guest core's other sibling.
    let f = b.audit(&broken(&b, |d| {
        tune(d).remove_elements(|e| e.attr("vcpu") == Some("5"));
        d.root.find_mut("vcpu").unwrap().remove_attr("cpuset");
    }));
    exactly(&f, &["cpu-unpinned"]);
    let m = the(&f, "cpu-unpinned");
    assert!(m.message.starts_with("vCPU 5 has no <vcpupin>"), "{m:?}");
    assert_eq!(m.fix, "<vcpupin vcpu='4' cpuset='6'/>\n<vcpupin vcpu='5' cpuset='14'/>");
}

#[test]
fn floating() {
    let b = Bench::new();
    // Only <vcpu cpuset>: every vCPU wanders over all six CPUs.
    let f = b.audit(&broken(&b, |d| {
        tune(d).remove_elements(|e| e.name == "vcpupin");
    }));
    exactly(&f, &["cpu-vcpu-floating"]);
    let m = the(&f, "cpu-vcpu-floating");
    assert!(m.message.contains("vCPUs 0-5 may run on any of CPUs 4-6,12-14"), "{m:?}");
    let want = [(0, 4), (1, 12), (2, 5), (3, 13), (4, 6), (5, 14)];
    assert_eq!(
        m.fix,
        want.iter().map(|(v, c)| format!("<vcpupin vcpu='{v}' cpuset='{c}'/>")).collect::<Vec<_>>().join("\n")
    );
    // Everywhere: the planner's placement, and the emulator apart from it.
    let f = b.audit(&broken(&b, |d| {
        tune(d).remove_elements(|e| e.name == "vcpupin" || e.name == "emulatorpin");
        d.root.find_mut("vcpu").unwrap().set_attr("cpuset", "0-15");
    }));
    exactly(&f, &["cpu-vcpu-floating", "cpu-no-emulatorpin"]);
    assert!(the(&f, "cpu-vcpu-floating").fix.contains("<vcpupin vcpu='5' cpuset='14'/>"));
    assert_eq!(the(&f, "cpu-no-emulatorpin").fix, "<emulatorpin cpuset='0-3,7-11,15'/>");
    // A range in one vcpupin.
    let f = b.audit(&broken(&b, |d| {
        vcpupin(d, 0, "4,12");
        vcpupin(d, 1, "4,12");
    }));
    exactly(&f, &["cpu-vcpu-floating"]);
    assert_eq!(the(&f, "cpu-vcpu-floating").element, "cputune/vcpupin[@vcpu='0']");
}

#[test]
fn vcpus_share_a_cpu() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| vcpupin(d, 5, "13")));
    exactly(&f, &["cpu-vcpus-share-cpu"]);
    let m = the(&f, "cpu-vcpus-share-cpu");
    assert!(m.message.contains("vCPUs 3,5 all on CPU 13"), "{m:?}");
    assert_eq!(m.fix, "<vcpupin vcpu='4' cpuset='6'/>\n<vcpupin vcpu='5' cpuset='14'/>");
}

#[test]
fn smt_siblings() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| {
        vcpupin(d, 1, "5");
        vcpupin(d, 2, "12");
    }));
    exactly(&f, &["cpu-smt-siblings"]);
    let m = the(&f, "cpu-smt-siblings");
    assert!(m.message.contains("vCPUs 0,1 on CPUs 4,5 (host cores 4,12 and 5,13); CPUs 4,12 would fit"), "{m:?}");
    assert!(m.message.contains("vCPUs 2,3 on CPUs 12,13 (host cores 4,12 and 5,13); CPUs 5,13 would fit"), "{m:?}");
    assert_eq!(
        m.fix,
        "<vcpupin vcpu='0' cpuset='4'/>\n<vcpupin vcpu='1' cpuset='12'/>\n<vcpupin vcpu='2' cpuset='5'/>\n<vcpupin vcpu='3' cpuset='13'/>"
    );
    // Siblings taken as 2k, 2k+1 on a host that numbers them n, n+8: every pair is
    // wrong; the fix re-pairs the same six CPUs.
    let f = b.audit(&broken(&b, |d| repin(d, &[4, 5, 6, 12, 13, 14], "0-3,7-11,15", 2)));
    exactly(&f, &["cpu-smt-siblings"]);
    let fix = &the(&f, "cpu-smt-siblings").fix;
    let cpus: CpuSet = fix
        .lines()
        .map(|l| l.split("cpuset='").nth(1).unwrap().trim_end_matches("'/>").parse::<u32>().unwrap())
        .collect();
    assert_eq!(cpus, set("4-6,12-14"), "{fix}");
}

#[test]
fn threads_1_has_no_sibling_rule() {
    let b = Bench::new();
    exactly(&b.audit(&broken(&b, |d| topology(d, 6, 1))), &[]);
    exactly(&b.audit(&broken(&b, |d| repin(d, &[4, 5, 6, 12, 13, 14], "0-3,7-11,15", 1))), &[]);
}

#[test]
fn threadripper_guide_pinning_is_clean() {
    // 1950X: 16 cores, siblings n and n+16, two nodes of two CCXs.
    let mut b = Bench::new();
    b.topology = shape(1, 2, 2, 4, 2, true, &[8192]);
    exactly(&b.audit(&b.clean()), &[]);
    let guide = broken(&b, |d| repin(d, &[4, 20, 5, 21, 6, 22, 7, 23], "0-3,16-19", 2));
    exactly(&b.audit(&guide), &[]);
    // The same CPUs paired as if siblings were adjacent.
    let f = b.audit(&broken(&b, |d| repin(d, &[4, 5, 6, 7, 20, 21, 22, 23], "0-3,16-19", 2)));
    exactly(&f, &["cpu-smt-siblings"]);
}

#[test]
fn l3_spread() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| {
        vcpupin(d, 4, "3");
        vcpupin(d, 5, "11");
        qemu_pins(d, "0-2,6-10,14-15");
    }));
    exactly(&f, &["cpu-l3-spread"]);
    let m = the(&f, "cpu-l3-spread");
    assert!(m.message.contains("0 (CPUs 3,11), 1 (CPUs 4-5,12-13)"), "{m:?}");
    assert!(m.message.contains("L3 domain 1 alone has 8 CPUs"), "{m:?}");
    assert!(m.fix.contains("<vcpupin vcpu='5' cpuset='14'/>"), "{}", m.fix);
    // Ten vCPUs fit in no L3 domain of this host (8 and 6 CPUs for a guest): no finding.
    let ten = broken(&b, |d| repin(d, &[4, 12, 5, 13, 6, 14, 7, 15, 3, 11], "0-2,8-10", 2));
    exactly(&b.audit(&ten), &[]);
}

fn two_nodes() -> Bench {
    // Two nodes of four cores, one L3 each; siblings n and n+8; the GPU on node 0.
    let mut b = Bench::new();
    b.topology = shape(1, 2, 1, 4, 2, true, &[16384]);
    b
}

#[test]
fn numa_spread() {
    let b = two_nodes();
    let x = b.clean();
    assert!(x.contains("<emulatorpin cpuset='0,8'/>"), "{x}");
    exactly(&b.audit(&x), &[]);
    let f = b.audit(&broken(&b, |d| {
        vcpupin(d, 4, "4");
        vcpupin(d, 5, "12");
    }));
    exactly(&f, &["cpu-numa-spread"]);
    let m = the(&f, "cpu-numa-spread");
    assert!(m.message.contains("node 0 alone has 6 CPUs"), "{m:?}");
    assert!(m.fix.contains("<vcpupin vcpu='4' cpuset='3'/>"), "{}", m.fix);
}

#[test]
fn numa_away_from_device() {
    let b = two_nodes();
    let f = b.audit(&broken(&b, |d| repin(d, &[4, 12, 5, 13, 6, 14], "7,15", 2)));
    exactly(&f, &["cpu-numa-away-from-device"]);
    let m = the(&f, "cpu-numa-away-from-device");
    assert!(m.message.contains("node 1, the passed device is on node 0"), "{m:?}");
    assert!(m.fix.contains("<emulatorpin cpuset='0,8'/>"), "{}", m.fix);
}

#[test]
fn vcpu_on_cpu0() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| repin(d, &[0, 8, 1, 9, 2, 10], "3-7,11-15", 2)));
    exactly(&f, &["cpu-vcpu-on-cpu0"]);
    let m = the(&f, "cpu-vcpu-on-cpu0");
    assert!(m.message.contains("vCPU 0 on CPU 0, vCPU 1 on CPU 8 (CPU 0's SMT sibling)"), "{m:?}");
    assert!(m.message.contains("core (0,8) should stay with the host"), "{m:?}");
    assert_eq!(m.fix, "<vcpupin vcpu='0' cpuset='3'/>\n<vcpupin vcpu='1' cpuset='11'/>");
    // The emulator's fix leaves room for where the vCPUs go, and takes CPU 0 back.
    let f = b.audit(&broken(&b, |d| {
        repin(d, &[0, 8, 1, 9, 2, 10], "3-7,11-15", 2);
        drop_in(d, "cputune", "emulatorpin");
    }));
    exactly(&f, &["cpu-vcpu-on-cpu0", "cpu-no-emulatorpin"]);
    assert_eq!(the(&f, "cpu-no-emulatorpin").fix, "<emulatorpin cpuset='0,4-8,12-15'/>");
}

#[test]
fn hybrid_host() {
    let mut b = Bench::new();
    b.vendor = CpuVendor::Intel;
    b.topology = hybrid();
    let x = b.clean();
    assert!(x.contains("<vcpu placement='static' cpuset='10-15'>6</vcpu>"), "{x}");
    exactly(&b.audit(&x), &[]);
    let f = b.audit(&broken(&b, |d| {
        vcpupin(d, 4, "16");
        vcpupin(d, 5, "17");
        qemu_pins(d, "0-9,18-19");
    }));
    exactly(&f, &["cpu-efficiency-cores"]);
    let m = the(&f, "cpu-efficiency-cores");
    assert!(
        m.message.contains("vCPUs 4-5 on CPUs 16-17, efficiency cores (the performance cores are CPUs 0-15)"),
        "{m:?}"
    );
    // Back onto the performance core they left, apart from the emulator's CPUs.
    assert_eq!(m.fix, "<vcpupin vcpu='4' cpuset='14'/>\n<vcpupin vcpu='5' cpuset='15'/>");
    // Adjacent siblings are right on this host.
    exactly(&b.audit(&broken(&b, |d| repin(d, &[2, 3, 4, 5, 6, 7], "0-1,8-19", 2))), &[]);
}

#[test]
fn no_emulatorpin() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| drop_in(d, "cputune", "emulatorpin")));
    exactly(&f, &["cpu-no-emulatorpin"]);
    assert_eq!(the(&f, "cpu-no-emulatorpin").fix, "<emulatorpin cpuset='0-3,7-11,15'/>");
}

#[test]
fn no_iothreadpin() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| drop_in(d, "cputune", "iothreadpin")));
    exactly(&f, &["cpu-no-iothreadpin"]);
    assert_eq!(the(&f, "cpu-no-iothreadpin").fix, "<iothreadpin iothread='1' cpuset='0-3,7-11,15'/>");
    // Without I/O threads nothing needs pinning.
    exactly(
        &b.audit(&broken(&b, |d| {
            drop_in(d, "cputune", "iothreadpin");
            drop_in(d, "", "iothreads");
            for disk in d.root.find_mut("devices").unwrap().elements_mut() {
                disk.remove_elements(|e| e.name == "driver" && e.attr("iothread").is_some());
            }
        })),
        &[],
    );
}

#[test]
fn emulatorpin_overlap() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| {
        tune(d).elements_mut().find(|e| e.name == "emulatorpin").unwrap().set_attr("cpuset", "0-4");
    }));
    exactly(&f, &["cpu-emulatorpin-overlap"]);
    let m = the(&f, "cpu-emulatorpin-overlap");
    assert!(m.message.contains("on CPU 4, where vCPU 0 runs"), "{m:?}");
}

#[test]
fn iothreadpin_overlap() {
    let b = Bench::new();
    let f = b.audit(&broken(&b, |d| {
        tune(d).elements_mut().find(|e| e.name == "iothreadpin").unwrap().set_attr("cpuset", "3,12");
    }));
    exactly(&f, &["cpu-iothreadpin-overlap"]);
    assert!(the(&f, "cpu-iothreadpin-overlap").message.contains("CPU 12, where vCPU 1 runs"));
}

#[test]
fn bare_domains_do_not_trip_the_checks() {
    let b = Bench::new();
    let f = b.audit("<domain type='kvm'><name>x</name></domain>");
    let cpu: Vec<&str> = f.iter().filter(|f| f.area == crate::audit::Area::Cpu).map(|f| f.id).collect();
    assert_eq!(cpu, ["cpu-mode-not-passthrough", "cpu-unpinned"], "{f:#?}");
    // One vCPU: the planner's pair, cut to one pin.
    assert!(the(&f, "cpu-unpinned").fix.contains("<vcpu placement='static' cpuset='4'>1</vcpu>"), "{f:#?}");
    for xml in [
        "<domain type='kvm'><vcpu>0</vcpu><cpu mode='host-passthrough'><topology sockets='0' cores='0' threads='0'/></cpu></domain>",
        "<domain type='kvm'><vcpu>x</vcpu><cputune><vcpupin/><emulatorpin/><iothreadpin/></cputune></domain>",
        "<domain type='kvm'><vcpu>64</vcpu><cputune><vcpupin vcpu='0' cpuset='0-15'/></cputune></domain>",
    ] {
        b.audit(xml);
    }
    // Odd and unpinned: pins for exactly five vCPUs.
    let f = b.audit(&broken(&b, |d| {
        d.root.find_mut("vcpu").unwrap().set_text("5");
        d.root.find_mut("vcpu").unwrap().remove_attr("cpuset");
        tune(d).remove_elements(|e| e.name == "vcpupin");
        topology(d, 5, 1);
    }));
    exactly(&f, &["cpu-unpinned"]);
    let fix = &the(&f, "cpu-unpinned").fix;
    assert!(fix.contains("cpuset='4-6,12-13'>5</vcpu>") && !fix.contains("vcpu='5'"), "{fix}");
}

/// A `-cpu` (or `-smp`, `-machine`) in qemu:commandline overrides the domain's own, so its
/// CPU and Hyper-V settings (and their fixes) do nothing.
#[test]
fn commandline_overrides_the_domain() {
    let b = Bench::new();
    let with = |args: &[&str]| {
        let cl: String = args.iter().map(|v| format!("    <qemu:arg value='{v}'/>\n")).collect();
        b.clean()
            .replacen(
                "<domain type='kvm'",
                "<domain type='kvm' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'",
                1,
            )
            .replace("</domain>", &format!("  <qemu:commandline>\n{cl}  </qemu:commandline>\n</domain>"))
    };
    let f = b.audit(&with(&["-cpu", "host,kvm=off,hv_vendor_id=null", "-smp", "8,sockets=1,cores=4,threads=2"]));
    let got: Vec<&Finding> = f.iter().filter(|x| x.id == "cpu-qemu-commandline-override").collect();
    assert_eq!(got.len(), 2, "{f:?}");
    assert!(
        got[0].message.contains("-cpu host,kvm=off,hv_vendor_id=null") && got[0].message.contains("Hyper-V"),
        "{:?}",
        got[0]
    );
    assert!(got[1].message.contains("-smp 8,sockets=1"), "{:?}", got[1]);
    // An evdev input-linux object is not an override.
    let f = b.audit(&with(&["-object", "input-linux,id=kbd,evdev=/dev/input/by-id/x-event-kbd"]));
    assert!(f.iter().all(|x| x.id != "cpu-qemu-commandline-override"), "{f:?}");
}

/// `<iothreads>` against `<iothreadids>`: fewer (libvirt raises the count), more (libvirt
/// adds ids nobody pins), equal or without ids (nothing to say).
#[test]
fn iothreads_and_iothreadids_that_disagree() {
    let b = Bench::new();
    let with = |n: u32, ids: &'static [u32]| {
        broken(&b, move |d| {
            d.root.find_mut("iothreads").unwrap().set_text(&n.to_string());
            let mut el = Element::new("iothreadids");
            for i in ids {
                el.push(Element::new("iothread").with_attr("id", &i.to_string()));
            }
            let at = d.root.elements().position(|e| e.name == "iothreads");
            d.root.insert(at, vec![XmlNode::Element(Box::new(el))], 1, &d.style());
        })
    };
    let only =
        |f: Vec<Finding>| -> Vec<Finding> { f.into_iter().filter(|x| x.id == "cpu-iothreads-disagree").collect() };
    let f = only(b.audit(&with(1, &[1, 5])));
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("<iothreads> says 1, but <iothreadids> lists 2 (1, 5)"), "{}", f[0].message);
    let f = only(b.audit(&with(3, &[1, 3])));
    assert_eq!(f.len(), 1);
    assert!(f[0].message.contains("libvirt adds 2"), "{}", f[0].message);
    exactly(&b.audit(&with(1, &[1])), &[]);
    exactly(&b.audit(&with(1, &[])), &[]);
}
