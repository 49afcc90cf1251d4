//! Memory: hugepages the host must have for the guest to start, guest memory on the NUMA
//! node of the passed devices, and the balloon a passthrough guest cannot use.

use std::collections::{BTreeMap, BTreeSet};

use super::{Area, Cx, Finding, Rule, Severity};
use crate::check::HugepagePool;
use crate::domain::no_balloon;
use crate::units::{element_kib, kib, size_text};
use crate::xml::{Element, Node};

const AREA: Area = Area::Memory;

pub const HUGEPAGES_MISSING: Rule = Rule {
    id: "memory-hugepages-missing",
    severity: Severity::Error,
    area: AREA,
    title: "hugepages requested, but the host reserves none of that size (on the guest's node)",
};
pub const HUGEPAGES_TOO_FEW: Rule = Rule {
    id: "memory-hugepages-too-few",
    severity: Severity::Error,
    area: AREA,
    title: "fewer free hugepages than the guest's memory needs",
};
pub const NUMA_FAR_FROM_DEVICES: Rule = Rule {
    id: "memory-numa-far-from-devices",
    severity: Severity::Warning,
    area: AREA,
    title: "guest memory on another NUMA node than the passed devices",
};
pub const BALLOON_WITH_HOSTDEV: Rule = Rule {
    id: "memory-balloon-with-hostdev",
    severity: Severity::Warning,
    area: AREA,
    title: "a memory balloon in a guest with passed devices",
};

/// The hugepage size the kernel uses when none is named (x86 without `default_hugepagesz`).
const DEFAULT_PAGE_KIB: u64 = 2048;

/// libvirt's node set syntax: `0-3,^2`.
pub(crate) fn nodeset(s: &str) -> Option<BTreeSet<u32>> {
    let mut set = BTreeSet::new();
    let mut not = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (target, part) = match part.strip_prefix('^') {
            Some(p) => (&mut not, p),
            None => (&mut set, part),
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (u32, u32) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
                if a > b || b - a > 4096 {
                    return None;
                }
                target.extend(a..=b);
            }
            None => {
                target.insert(part.parse().ok()?);
            }
        }
    }
    let out: BTreeSet<u32> = set.difference(&not).copied().collect();
    (!out.is_empty()).then_some(out)
}

fn nodes_text(nodes: &BTreeSet<u32>) -> String {
    let v: Vec<String> = nodes.iter().map(u32::to_string).collect();
    format!("{} {}", if nodes.len() == 1 { "node" } else { "nodes" }, v.join(", "))
}

/// Host nodes a strict (or restrictive) memory policy confines memory to; `None` when
/// any node will do (`preferred`, `interleave`, automatic placement, no `<numatune>`).
fn confined(e: &Element) -> Option<BTreeSet<u32>> {
    if !matches!(e.attr("mode"), None | Some("strict") | Some("restrictive")) || e.attr("placement") == Some("auto") {
        return None;
    }
    nodeset(e.attr("nodeset")?)
}

/// One hugepage pool the guest draws from: its page size and the host nodes it may use.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Draw {
    size_kib: u64,
    nodes: Option<BTreeSet<u32>>,
}

/// How much guest memory comes from which pool, and the element that says so.
fn draws<'a>(cx: &Cx<'a>, hugepages: &'a Element, memory_kib: u64) -> BTreeMap<Draw, (u64, &'a Element)> {
    // <page size unit nodeset>: the nodeset names guest NUMA cells.
    let pages: Vec<(u64, Option<BTreeSet<u32>>, &Element)> = hugepages
        .children_named("page")
        .filter_map(|p| {
            let size = kib(p.attr("size")?.trim().parse().ok()?, p.attr("unit"))?;
            Some((size, p.attr("nodeset").and_then(nodeset), p))
        })
        .filter(|(size, _, _)| *size > 0)
        .collect();
    let mut cells: Vec<(u32, u64)> = cx
        .root
        .find("cpu/numa")
        .map(|n| {
            n.children_named("cell")
                .filter_map(|c| {
                    Some((c.attr("id")?.parse().ok()?, kib(c.attr("memory")?.parse().ok()?, c.attr("unit"))?))
                })
                .collect()
        })
        .unwrap_or_default();
    if cells.is_empty() {
        cells.push((0, memory_kib));
    }
    let numatune = cx.root.child("numatune");
    let global = numatune.and_then(|n| n.child("memory")).and_then(confined);
    let mut out: BTreeMap<Draw, (u64, &Element)> = BTreeMap::new();
    for (cell, cell_kib) in cells {
        let page = pages
            .iter()
            .find(|(_, set, _)| set.as_ref().is_some_and(|s| s.contains(&cell)))
            .or_else(|| pages.iter().find(|(_, set, _)| set.is_none()));
        let (size_kib, at) = page.map_or((DEFAULT_PAGE_KIB, hugepages), |(s, _, e)| (*s, *e));
        let nodes = numatune
            .and_then(|n| {
                n.children_named("memnode").find(|m| m.attr("cellid").and_then(|c| c.parse().ok()) == Some(cell))
            })
            .map_or_else(|| global.clone(), confined);
        let entry = out.entry(Draw { size_kib, nodes }).or_insert((0, at));
        entry.0 += cell_kib;
    }
    out
}

/// What the audit tells the user to run: `vfioctl apply` for the passed devices when
/// vfioctl can plan that size, then the host command by hand.
fn reserve_fix(cx: &Cx<'_>, draw: &Draw, pools: &[&HugepagePool], deficit: u64, memory_kib: u64) -> String {
    let mut lines = Vec::new();
    let size_arg = match draw.size_kib {
        2048 => Some("2M"),
        1048576 => Some("1G"),
        _ => None,
    };
    let mut devs: Vec<String> = cx.hostdevs.iter().map(|h| h.source.short()).collect();
    devs.dedup();
    if let (Some(arg), false) = (size_arg, devs.is_empty()) {
        let mib = memory_kib.div_ceil(1024);
        let mem = if mib % 1024 == 0 { format!("{}G", mib / 1024) } else { format!("{mib}M") };
        lines.push(format!("vfioctl apply {} --memory {mem} --hugepages {arg}", devs.join(" ")));
        lines.push("# or by hand:".to_string());
    }
    let per_node = cx.host.hugepages.iter().any(|p| p.node.is_some());
    match (&draw.nodes, per_node) {
        (Some(nodes), true) => {
            // The whole deficit on the first allowed node.
            let n = *nodes.iter().next().unwrap_or(&0);
            let have: u64 = pools.iter().filter(|p| p.node == Some(n)).map(|p| p.total).sum();
            lines.push(format!(
                "echo {} > /sys/devices/system/node/node{n}/hugepages/hugepages-{}kB/nr_hugepages",
                have + deficit,
                draw.size_kib
            ));
            if draw.size_kib > DEFAULT_PAGE_KIB {
                lines.push(format!(
                    "# {} pages are best reserved right after boot, before memory fragments",
                    size_text(draw.size_kib)
                ));
            }
        }
        _ => {
            let have: u64 = pools.iter().map(|p| p.total).sum();
            let want = have + deficit;
            if draw.size_kib == DEFAULT_PAGE_KIB {
                lines.push(format!("sysctl -w vm.nr_hugepages={want}"));
                lines.push(format!(
                    "# at every boot: vm.nr_hugepages = {want} where the host sets it (/etc/sysctl.conf, read last, or /etc/sysctl.d/)"
                ));
            } else {
                let sz = match draw.size_kib {
                    1048576 => "1G".to_string(),
                    k => format!("{k}K"),
                };
                lines.push(format!(
                    "kernel parameters: hugepagesz={sz} hugepages={want}   # reserved at boot; reboot after adding them"
                ));
            }
        }
    }
    lines.join("\n")
}

fn hugepages(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(hp) = cx.root.find("memoryBacking/hugepages") else { return };
    let Some(memory_kib) = cx.root.child("memory").and_then(element_kib) else { return };
    // A running domain's live XML (it has an id) holds its pages already: count them as
    // its own, reserved but not free.
    let running = cx.root.attr("id").is_some();
    for (draw, (need_kib, at)) in draws(cx, hp, memory_kib) {
        let need = need_kib.div_ceil(draw.size_kib);
        let pools: Vec<&HugepagePool> = cx
            .host
            .hugepages
            .iter()
            .filter(|p| p.size_kib == draw.size_kib)
            .filter(|p| match (&draw.nodes, p.node) {
                (Some(set), Some(n)) => set.contains(&n),
                _ => true,
            })
            .collect();
        let total: u64 = pools.iter().map(|p| p.total).sum();
        let free: u64 = if running { total } else { pools.iter().map(|p| p.free).sum() };
        if free >= need {
            continue;
        }
        let size = size_text(draw.size_kib);
        let named = hp.child("page").is_some();
        let size_note = if named {
            String::new()
        } else {
            format!(" (no <page> names a size: the host's default, {size} unless the kernel sets default_hugepagesz)")
        };
        let on = draw.nodes.as_ref().map_or(String::new(), |n| format!(" on {} (numatune)", nodes_text(n)));
        let path = if std::ptr::eq(at, hp) { "memoryBacking/hugepages" } else { "memoryBacking/hugepages/page" };
        let fix = reserve_fix(cx, &draw, &pools, need - free, memory_kib);
        let finding = if total == 0 {
            Finding::at(&HUGEPAGES_MISSING, path, Some(at))
                .message(format!(
                    "the guest's {} come from {size} hugepages{size_note}, but the host reserves none{on}",
                    size_text(need_kib)
                ))
                .why(format!(
                    "libvirt cannot back the guest with {size} pages that do not exist: the guest does not start (\"unable to find any usable hugetlbfs mount\" or not enough memory); {need} are needed"
                ))
        } else {
            let used = total - free;
            let in_use = if used > 0 { format!(", {used} in use") } else { String::new() };
            let others = if used > 0 { ", or another guest holding the pages must stop first" } else { "" };
            Finding::at(&HUGEPAGES_TOO_FEW, path, Some(at))
                .message(format!(
                    "the guest needs {need} hugepages of {size}{size_note} for its {}; the host has {free} free{on} ({total} reserved{in_use})",
                    size_text(need_kib)
                ))
                .why(format!("QEMU cannot allocate the guest's memory from the pool: the guest does not start (\"cannot allocate memory\"){others}"))
        };
        out.push(finding.fix(fix));
    }
}

fn numatune(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(mem) = cx.root.find("numatune/memory") else { return };
    if mem.attr("placement") == Some("auto") {
        return;
    }
    let Some(set) = mem.attr("nodeset").and_then(nodeset) else { return };
    // The GPUs when there are any (their DMA is what matters), else every passed device.
    let passed: Vec<_> = cx.hostdevs.iter().filter_map(|h| cx.host.devices.get(&h.source)).collect();
    let gpus = passed.iter().any(|d| d.is_gpu());
    let mut by_node: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for d in passed
        .iter()
        .filter(|d| !gpus || d.is_gpu() || passed.iter().any(|g| g.is_gpu() && g.address.same_slot(&d.address)))
    {
        if let Some(n) = d.numa_node {
            by_node.entry(n).or_default().push(d.address.short());
        }
    }
    if by_node.is_empty() || by_node.keys().any(|n| set.contains(n)) {
        return;
    }
    let devices: Vec<String> = by_node.iter().map(|(n, devs)| format!("{} on node {n}", devs.join(", "))).collect();
    let target: Vec<String> = by_node.keys().map(u32::to_string).collect();
    let mode = mem.attr("mode").unwrap_or("strict");
    out.push(
        Finding::at(&NUMA_FAR_FROM_DEVICES, "numatune/memory", Some(mem))
            .message(format!(
                "guest memory is on {} (numatune), the passed devices are not: {}",
                nodes_text(&set),
                devices.join("; ")
            ))
            .why("every DMA transfer of the devices (GPU uploads, disk and network I/O) crosses the interconnect between the nodes: higher latency, less bandwidth, stutter under load")
            .fix(format!(
                "{}\n{}",
                Element::new("numatune")
                    .with_child(Element::new("memory").with_attr("mode", mode).with_attr("nodeset", &target.join(",")))
                    .pretty(),
                Node::comment("and the vCPUs pinned to that node's CPUs; hugepages reserved on it").to_xml()
            )),
    );
}

fn balloon(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    if cx.hostdevs.is_empty() {
        return;
    }
    let mb = cx.root.find("devices/memballoon");
    let model = mb.and_then(|m| m.attr("model"));
    if model == Some("none") {
        return;
    }
    let message = match model {
        Some(m) => format!("a {m} memory balloon in a guest with {} passed devices", cx.hostdevs.len()),
        None => format!(
            "no <memballoon model='none'/>: libvirt adds a virtio balloon to this guest with {} passed devices",
            cx.hostdevs.len()
        ),
    };
    out.push(
        Finding::at(&BALLOON_WITH_HOSTDEV, "devices/memballoon", mb.or_else(|| cx.closest("devices/memballoon")))
            .message(message)
            .why("the memory of a guest with passed devices is pinned for DMA, all of it, all the time: the balloon cannot give any back to the host; it only costs a device, a driver in the guest and its polling")
            .fix(no_balloon().to_xml()),
    );
}

pub(super) fn check(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    hugepages(cx, out);
    numatune(cx, out);
    balloon(cx, out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::tests::*;
    use crate::xml::Node;

    fn page(bench: &Bench, edit: impl FnOnce(&mut Element)) -> String {
        broken(bench, |d| {
            if let Some(h) = d.root.find_mut("memoryBacking/hugepages") {
                edit(h);
            }
        })
    }

    #[test]
    fn sizes_and_nodesets() {
        assert_eq!(kib(4194304, None), Some(4194304));
        assert_eq!(kib(1, Some("G")), Some(1048576));
        assert_eq!(kib(1, Some("GiB")), Some(1048576));
        assert_eq!(kib(2, Some("M")), Some(2048));
        assert_eq!(kib(2048, Some("k")), Some(2048));
        assert_eq!(kib(1_024_000, Some("KB")), Some(1_000_000));
        assert_eq!(kib(2_097_152, Some("bytes")), Some(2048));
        assert_eq!(kib(1, Some("x")), None);
        assert_eq!(kib(u64::MAX, Some("EiB")), None);
        assert_eq!(nodeset("0-3,^2"), Some([0, 1, 3].into()));
        assert_eq!(nodeset("1"), Some([1].into()));
        assert_eq!(nodeset("x"), None);
        assert_eq!(nodeset("^0"), None);
        assert_eq!(size_text(1048576), "1 GiB");
        assert_eq!(size_text(2048), "2 MiB");
    }

    #[test]
    fn too_few_free_pages() {
        let mut b = Bench::new();
        b.hugepages[0].free = 2;
        let f = b.audit(&b.clean());
        exactly(&f, &["memory-hugepages-too-few"]);
        let m = &f[0];
        assert!(m.message.contains("needs 4 hugepages of 1 GiB"), "{}", m.message);
        assert!(m.message.contains("2 free on node 0") && m.message.contains("6 in use"), "{}", m.message);
        assert!(m.fix.contains("vfioctl apply 0d:00.0 0d:00.1 --memory 4G --hugepages 1G"), "{}", m.fix);
        assert!(m.fix.contains("echo 10 > /sys/devices/system/node/node0/hugepages/hugepages-1048576kB/nr_hugepages"));
        assert_eq!(m.element, "memoryBacking/hugepages/page");
        let xml = b.clean();
        let line = xml.lines().position(|l| l.contains("<page size=")).unwrap() as u32 + 1;
        assert_eq!(m.line, Some(line));
        // The live XML of the running guest: its own pages are in use, by it.
        let running = broken(&b, |d| {
            d.root.set_attr("id", "3");
        });
        exactly(&b.audit(&running), &[]);
    }

    #[test]
    fn no_pool_of_that_size() {
        let mut b = Bench::new();
        b.hugepages = vec![HugepagePool { node: Some(0), size_kib: 2048, total: 4096, free: 4096 }];
        let f = b.audit(&b.clean());
        exactly(&f, &["memory-hugepages-missing"]);
        assert!(f[0].message.contains("1 GiB hugepages") && f[0].message.contains("on node 0"), "{}", f[0].message);
        // No pools at all (a kernel without hugetlbfs pools).
        b.hugepages.clear();
        exactly(&b.audit(&b.clean()), &["memory-hugepages-missing"]);
        // Pages on another node than the strict numatune allows.
        b.hugepages = vec![HugepagePool { node: Some(1), size_kib: 1048576, total: 8, free: 8 }];
        exactly(&b.audit(&b.clean()), &["memory-hugepages-missing"]);
        // With a preferred policy, any node's pages do.
        let preferred = broken(&b, |d| {
            if let Some(m) = d.root.find_mut("numatune/memory") {
                m.set_attr("mode", "preferred");
            }
        });
        exactly(&b.audit(&preferred), &[]);
    }

    #[test]
    fn default_page_size_is_2_mib() {
        let mut b = Bench::new();
        let bare = page(&b, |h| {
            h.remove_elements(|e| e.name == "page");
        });
        // 1 GiB pages do not count: the default size is 2 MiB.
        let f = b.audit(&bare);
        exactly(&f, &["memory-hugepages-missing"]);
        assert!(f[0].message.contains("2 MiB") && f[0].message.contains("default"), "{}", f[0].message);
        assert_eq!(f[0].element, "memoryBacking/hugepages");
        b.hugepages.push(HugepagePool { node: Some(0), size_kib: 2048, total: 2048, free: 2048 });
        exactly(&b.audit(&bare), &[]);
        b.hugepages[1].free = 2047;
        let f = b.audit(&bare);
        exactly(&f, &["memory-hugepages-too-few"]);
        assert!(f[0].message.contains("needs 2048 hugepages of 2 MiB"), "{}", f[0].message);
        assert!(f[0].fix.contains("--hugepages 2M"), "{}", f[0].fix);
        // Non-NUMA pools (no per-node counts): sysctl.
        b.hugepages = vec![HugepagePool { node: None, size_kib: 2048, total: 100, free: 100 }];
        let global = broken(&b, |d| {
            d.root.remove_elements(|e| e.name == "numatune");
            if let Some(h) = d.root.find_mut("memoryBacking/hugepages") {
                h.remove_elements(|e| e.name == "page");
            }
        });
        let f = b.audit(&global);
        exactly(&f, &["memory-hugepages-too-few"]);
        assert!(f[0].fix.contains("sysctl -w vm.nr_hugepages=2048"), "{}", f[0].fix);
    }

    #[test]
    fn page_units_and_guest_cells() {
        let b = Bench::new();
        let g = page(&b, |h| {
            if let Some(p) = h.child_mut("page") {
                p.set_attr("size", "1");
                p.set_attr("unit", "G");
            }
        });
        exactly(&b.audit(&g), &[]);
        // Two guest cells of 4 GiB each, on 1 GiB pages: 8 needed, 8 free.
        let cells = |mib: &str| {
            broken(&b, |d| {
                if let Some(m) = d.root.child_mut("memory") {
                    m.set_text("8388608");
                }
                if let Some(c) = d.root.child_mut("cpu") {
                    let mut numa = Element::new("numa");
                    for (id, cpus) in [("0", "0-2"), ("1", "3-5")] {
                        numa.children.push(Node::Element(Box::new(
                            Element::new("cell")
                                .with_attr("id", id)
                                .with_attr("cpus", cpus)
                                .with_attr("memory", mib)
                                .with_attr("unit", "MiB"),
                        )));
                    }
                    c.insert(None, vec![Node::Element(Box::new(numa))], 2, &crate::xml::Style::libvirt());
                }
            })
        };
        exactly(&b.audit(&cells("4096")), &[]);
        let f = b.audit(&cells("5120"));
        exactly(&f, &["memory-hugepages-too-few"]);
        assert!(f[0].message.contains("needs 10 hugepages"), "{}", f[0].message);
    }

    #[test]
    fn numatune_on_another_node_than_the_devices() {
        let mut b = Bench::new();
        for d in b.devices.values_mut() {
            d.numa_node = Some(1);
        }
        let f = b.audit(&b.clean());
        exactly(&f, &["memory-numa-far-from-devices"]);
        assert!(
            f[0].message.contains("node 0") && f[0].message.contains("0d:00.0, 0d:00.1 on node 1"),
            "{}",
            f[0].message
        );
        assert!(f[0].fix.contains("nodeset='1'"));
        // The GPU decides: a USB controller on the memory's node does not make up for it,
        // and one on another node does not matter while the GPU is near.
        let usb = broken(&b, |d| {
            if let Some(devs) = d.root.child_mut("devices") {
                let mut h = Element::new("hostdev").with_attr("mode", "subsystem").with_attr("type", "pci");
                let mut src = Element::new("source");
                src.children.push(Node::Element(Box::new(
                    Element::new("address")
                        .with_attr("bus", "0x0e")
                        .with_attr("slot", "0x00")
                        .with_attr("function", "0x0"),
                )));
                h.children.push(Node::Element(Box::new(src)));
                devs.insert(None, vec![Node::Element(Box::new(h))], 2, &crate::xml::Style::libvirt());
            }
        });
        let usb_dev = addr("0000:0e:00.0");
        b.devices.get_mut(&usb_dev).unwrap().numa_node = Some(0);
        b.devices.get_mut(&usb_dev).unwrap().driver = Some("vfio-pci".into());
        exactly(&b.audit(&usb), &["memory-numa-far-from-devices"]);
        for d in b.devices.values_mut() {
            d.numa_node = Some(if d.address == usb_dev { 1 } else { 0 });
        }
        exactly(&b.audit(&usb), &[]);
        // Unknown device nodes (numa_node -1): nothing to compare.
        for d in b.devices.values_mut() {
            d.numa_node = None;
        }
        exactly(&b.audit(&b.clean()), &[]);
    }

    #[test]
    fn balloon() {
        let b = Bench::new();
        let virtio = broken(&b, |d| {
            if let Some(m) = d.root.find_mut("devices/memballoon") {
                m.set_attr("model", "virtio");
            }
        });
        let f = b.audit(&virtio);
        exactly(&f, &["memory-balloon-with-hostdev"]);
        assert!(f[0].line.is_some() && f[0].fix == "<memballoon model='none'/>");
        // No element: libvirt adds a virtio balloon.
        let none = broken(&b, |d| {
            if let Some(devs) = d.root.child_mut("devices") {
                devs.remove_elements(|e| e.name == "memballoon");
            }
        });
        exactly(&b.audit(&none), &["memory-balloon-with-hostdev"]);
        // No passed devices: a balloon is fine.
        let plain = broken(&b, |d| {
            if let Some(devs) = d.root.child_mut("devices") {
                devs.remove_elements(|e| e.name == "memballoon" || e.name == "hostdev");
            }
        });
        exactly(&b.audit(&plain), &[]);
    }
}
