//! Bringing an existing domain up to the plan without losing anything the user had.
//!
//! [`patch`] takes the user's domain as a lossless [`Document`] and the domain
//! [`render`](super::render) would write for the plan, and changes only what the plan
//! decides: memory size and hugepages, vCPUs and their pinning, the NUMA node, Hyper-V
//! enlightenments and the KVM features, the CPU mode and topology, the timers, the
//! passed devices, evdev inputs and the memory balloon (and the disks, CD-ROMs and
//! network when they were asked for). Everything else — the UUID, disks, MAC addresses,
//! comments, metadata, unknown elements, the qemu namespace — stays byte for byte, and a
//! domain that already has the plan comes back unchanged.
//!
//! Values that are the user's choice as long as they are sound stay too: the vendor id
//! string, a spinlock retry count of at least 4095, the numatune mode, the clock offset.

use std::collections::BTreeSet;
use std::str::FromStr;

use super::QEMU_NS;
use crate::cpuset::CpuSet;
use crate::units::{element_kib, number};
use crate::xml::{Document, Element, Node};

/// What a patch did, in words, one line per change, plus notes on what it kept that the
/// plan would not have written.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PatchReport {
    pub changes: Vec<String>,
    pub notes: Vec<String>,
}

/// libvirt's order of the domain's top-level elements and of devices; new elements go
/// after the last sibling that comes before them here.
const DOMAIN_ORDER: &[&str] = &[
    "name",
    "uuid",
    "genid",
    "title",
    "description",
    "metadata",
    "maxMemory",
    "memory",
    "currentMemory",
    "blkiotune",
    "memtune",
    "memoryBacking",
    "vcpu",
    "vcpus",
    "iothreads",
    "iothreadids",
    "cputune",
    "numatune",
    "resource",
    "sysinfo",
    "bootloader",
    "os",
    "idmap",
    "features",
    "cpu",
    "clock",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "pm",
    "perf",
    "devices",
    "seclabel",
    "qemu:commandline",
];

const DEVICE_ORDER: &[&str] = &[
    "emulator",
    "disk",
    "controller",
    "lease",
    "filesystem",
    "interface",
    "smartcard",
    "serial",
    "parallel",
    "console",
    "channel",
    "input",
    "tpm",
    "graphics",
    "sound",
    "audio",
    "video",
    "hostdev",
    "redirdev",
    "hub",
    "watchdog",
    "memballoon",
];

struct Patcher<'a> {
    style: vfioctl_xml::Style,
    report: &'a mut PatchReport,
}

/// Which parts of the domain a patch may change; [`Parts::ALL`] for `vfioctl domain`,
/// fewer for `vfioctl audit --fix`, which changes only what it found wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parts {
    /// `<memory>`, `<currentMemory>`, hugepages, the balloon.
    pub memory: bool,
    /// `<vcpu>`, `<iothreads>`, `<cputune>`, `<numatune>`.
    pub pinning: bool,
    /// `<features>`: enlightenments, KVM hidden, vmport, ioapic.
    pub features: bool,
    /// `<cpu>`: mode, topology, cache, CPU features.
    pub cpu: bool,
    /// `<clock>` timers.
    pub clock: bool,
    /// Passed devices, evdev inputs, and the disks, CD-ROMs, network and TPM asked for.
    pub devices: bool,
}

impl Parts {
    pub const ALL: Parts = Parts { memory: true, pinning: true, features: true, cpu: true, clock: true, devices: true };
    pub const NONE: Parts =
        Parts { memory: false, pinning: false, features: false, cpu: false, clock: false, devices: false };
}

/// Brings `doc` up to `desired` (the rendered domain of the plan).
pub fn patch(doc: &mut Document, desired: &Document) -> PatchReport {
    patch_parts(doc, desired, Parts::ALL)
}

/// Like [`patch`], for some parts only.
pub fn patch_parts(doc: &mut Document, desired: &Document, parts: Parts) -> PatchReport {
    let mut report = PatchReport::default();
    let mut p = Patcher { style: doc.style(), report: &mut report };
    let d = &desired.root;
    let e = &mut doc.root;
    if let (Some(want), Some(have)) = (d.find("name"), e.find("name").map(Element::text)) {
        if want.text() != have {
            p.leaf(e, d, want, 1);
        }
    }
    if parts.memory {
        for name in ["memory", "currentMemory"] {
            if let Some(want) = d.child(name) {
                p.memory(e, d, want);
            }
        }
        p.hugepages(e, d);
    }
    if parts.pinning {
        if let Some(want) = d.child("vcpu") {
            p.leaf(e, d, want, 1);
        }
        if let Some(want) = d.child("iothreads") {
            if e.child("iothreads").and_then(|t| t.text().parse::<u32>().ok()).is_none_or(|n| n < 1) {
                p.leaf(e, d, want, 1);
            }
        }
        p.cputune(e, d);
        p.numatune(e, d);
    }
    if parts.pinning {
        p.follow_vcpus(e);
    }
    if parts.memory {
        p.follow_memory(e);
    }
    if parts.features {
        p.features(e, d);
    }
    if parts.cpu {
        p.cpu(e, d);
    }
    if parts.clock {
        p.clock(e, d);
    }
    p.devices(e, d, parts);
    report
}

impl Patcher<'_> {
    fn changed(&mut self, what: String) {
        self.report.changes.push(what);
    }

    /// What is indexed by vCPU follows the `<vcpu>` count (after the plan's was set):
    /// `current=` above it goes, a `<vcpus>` hotplug list for another count goes (libvirt
    /// needs one entry per vCPU, and enables them all without it), `vcpusched`,
    /// `cachetune` and `memorytune` keep only the vCPUs that exist (or go), and the guest
    /// NUMA cells share the vCPUs out again in order.
    fn follow_vcpus(&mut self, e: &mut Element) {
        let Some(n) = e.child("vcpu").and_then(|v| v.text().parse::<u32>().ok()).filter(|n| *n > 0) else { return };
        if let Some(v) = e.child_mut("vcpu") {
            if v.attr("current").and_then(|c| c.parse::<u32>().ok()).is_some_and(|c| c > n) {
                v.remove_attr("current");
                self.changed(format!("removed current= from <vcpu>: above the {n} vCPUs"));
            }
        }
        let listed: Vec<Option<u32>> = e
            .child("vcpus")
            .map(|l| l.children_named("vcpu").map(|v| v.attr("id").and_then(|i| i.parse().ok())).collect())
            .unwrap_or_default();
        if e.child("vcpus").is_some() && (listed.len() as u32 != n || listed.iter().any(|i| i.is_none_or(|i| i >= n))) {
            e.remove_elements(|c| c.name == "vcpus");
            self.changed(format!(
                "removed <vcpus> (a hotplug list of {} vCPUs, not {n}): all {n} are enabled",
                listed.len()
            ));
        }
        let exists: CpuSet = (0..n).collect();
        if let Some(t) = e.child_mut("cputune") {
            let mut gone = Vec::new();
            for c in t.elements_mut().filter(|c| matches!(c.name.as_str(), "vcpusched" | "cachetune" | "memorytune")) {
                let Some(set) = c.attr("vcpus").and_then(|v| v.parse::<CpuSet>().ok()) else { continue };
                let kept: CpuSet = set.iter().filter(|v| exists.contains(*v)).collect();
                if kept == set {
                    continue;
                }
                if kept.is_empty() {
                    gone.push(c.name.clone());
                    c.set_attr("vcpus", "");
                } else {
                    let before = start_tag(c);
                    c.set_attr("vcpus", &kept.to_string());
                    self.report.changes.push(format!("{before} → {}", start_tag(c)));
                }
            }
            if !gone.is_empty() {
                t.remove_elements(|c| c.attr("vcpus") == Some(""));
                self.changed(format!("removed {} for vCPUs the domain no longer has", gone.join(", ")));
            }
        }
        if let Some(numa) = e.find_mut("cpu/numa") {
            let k = numa.children_named("cell").count() as u32;
            if k == 0 {
                return;
            }
            let total: u32 = numa
                .children_named("cell")
                .filter_map(|c| c.attr("cpus").and_then(|v| v.parse::<CpuSet>().ok()))
                .map(|s| s.len() as u32)
                .sum();
            if total == n {
                return;
            }
            if n < k {
                self.report.notes.push(format!(
                    "the guest has {k} NUMA cells and {n} vCPUs: each cell needs one; the cells are left as they are"
                ));
                return;
            }
            let mut next = 0;
            for (i, c) in numa.elements_mut().filter(|c| c.name == "cell").enumerate() {
                let size = n / k + u32::from((i as u32) < n % k);
                let cpus: CpuSet = (next..next + size).collect();
                next += size;
                c.set_attr("cpus", &cpus.to_string());
            }
            self.changed(format!("guest NUMA cells: the {n} vCPUs shared out over the {k} cells in order"));
        }
    }

    /// The guest NUMA cells' memory adds up to `<memory>` (libvirt takes the cells' sum):
    /// each keeps its share of the total.
    fn follow_memory(&mut self, e: &mut Element) {
        let Some(total) = e.child("memory").and_then(element_kib) else { return };
        let Some(numa) = e.find_mut("cpu/numa") else { return };
        let cells: Vec<Option<u64>> = numa
            .children_named("cell")
            .map(|c| c.attr("memory").and_then(|m| m.parse().ok()).and_then(|m| crate::units::kib(m, c.attr("unit"))))
            .collect();
        if cells.is_empty() || cells.iter().any(Option::is_none) {
            return;
        }
        let had: u64 = cells.iter().flatten().sum();
        if had == total || had == 0 {
            return;
        }
        let k = cells.len() as u64;
        let mut given = 0;
        for (i, (c, old)) in numa.elements_mut().filter(|c| c.name == "cell").zip(cells.iter().flatten()).enumerate() {
            // In proportion, rounded down to MiB; the last cell takes the rest.
            let share = if i as u64 + 1 == k {
                total - given
            } else {
                (total as u128 * *old as u128 / had as u128) as u64 / 1024 * 1024
            };
            given += share;
            c.set_attr("memory", &share.to_string());
            c.set_attr("unit", "KiB");
        }
        self.changed(format!("guest NUMA cells: memory shared out to the {} MiB in proportion", total / 1024));
    }

    /// Sets `want`'s attributes on `have` (except `keep`, see [`sync_attrs`]), and
    /// `tidy`'s clean-up, saying what changed.
    fn sync(&mut self, have: &mut Element, want: &Element, keep: &[&str], tidy: impl Fn(&mut Element) -> bool) {
        let before = have.to_xml();
        let mut any = sync_attrs(have, want, keep);
        any |= tidy(have);
        if any {
            self.changed(format!("{} → {}", one_line(&before), one_line(&have.to_xml())));
        }
    }

    /// The child of `have` that `same` picks is synced with `want`; without one, a copy of
    /// `want` (with its comment in `from`) goes after the last sibling of its name, or at
    /// the end with [`Place::End`].
    fn upsert(
        &mut self,
        have: &mut Element,
        from: &Element,
        want: &Element,
        same: impl Fn(&Element) -> bool,
        place: Place,
        tidy: impl Fn(&mut Element) -> bool,
    ) {
        let found = have.elements().position(|c| c.name == want.name && same(c));
        match found {
            Some(i) => {
                if let Some(c) = have.elements_mut().nth(i) {
                    self.sync(c, want, &[], tidy);
                }
            }
            None => {
                let after = match place {
                    Place::AfterSiblings => {
                        have.elements().enumerate().filter(|(_, c)| c.name == want.name).map(|(i, _)| i).last()
                    }
                    Place::End => None,
                };
                have.insert(after, with_comment(from, want), 2, &self.style);
                self.changed(format!("added {}", one_line(&want.to_xml())));
            }
        }
    }

    /// Inserts a copy of `want` (with the comment in front of it in `from`) into
    /// `parent` at `depth`, in libvirt's order.
    fn insert(&mut self, parent: &mut Element, from: &Element, want: &Element, depth: usize, order: &[&str]) {
        let nodes = with_comment(from, want);
        let rank = order.iter().position(|n| *n == want.name);
        let after = rank.and_then(|r| {
            parent
                .elements()
                .enumerate()
                .filter(|(_, c)| order.iter().position(|n| *n == c.name).is_some_and(|cr| cr <= r))
                .map(|(i, _)| i)
                .last()
        });
        parent.insert(after, nodes, depth, &self.style);
    }

    /// Sets a leaf element (attributes and text) at `depth` under `parent`, or adds it
    /// (with its comment in `from`).
    fn leaf(&mut self, parent: &mut Element, from: &Element, want: &Element, depth: usize) {
        match parent.child_mut(&want.name) {
            Some(have) => {
                let before = have.to_xml();
                let mut any = sync_attrs(have, want, &[]);
                if !want.text().is_empty() || have.elements().next().is_none() {
                    any |= have.set_text(&want.text());
                }
                if any {
                    let after = have.to_xml();
                    self.changed(format!("{} → {}", one_line(&before), one_line(&after)));
                }
            }
            None => {
                self.changed(format!("added {}", one_line(&want.to_xml())));
                self.insert(parent, from, want, depth, DOMAIN_ORDER);
            }
        }
    }

    fn memory(&mut self, e: &mut Element, from: &Element, want: &Element) {
        let want_kib = element_kib(want);
        match e.child(&want.name) {
            Some(have) if element_kib(have) == want_kib && want_kib.is_some() => {}
            _ => self.leaf(e, from, want, 1),
        }
    }

    fn hugepages(&mut self, e: &mut Element, d: &Element) {
        let want = d.find("memoryBacking/hugepages");
        let have = e.find("memoryBacking/hugepages");
        match (want, have) {
            (None, None) => {}
            (None, Some(_)) => {
                if let Some(mb) = e.child_mut("memoryBacking") {
                    mb.remove_elements(|c| c.name == "hugepages");
                    if mb.elements().next().is_none() {
                        e.remove_elements(|c| c.name == "memoryBacking");
                    }
                }
                self.changed("removed <hugepages>: the plan reserves none".into());
            }
            (Some(w), Some(h)) if pages(w) == pages(h) => {}
            (Some(w), _) => {
                let Some(wmb) = d.child("memoryBacking") else { return };
                match e.child_mut("memoryBacking") {
                    None => self.insert(e, d, wmb, 1, DOMAIN_ORDER),
                    Some(mb) => {
                        mb.remove_elements(|c| c.name == "hugepages");
                        mb.insert(None, with_comment(wmb, w), 2, &self.style);
                    }
                }
                self.changed(format!("hugepages: {}", one_line(&w.to_xml())));
            }
        }
    }

    fn cputune(&mut self, e: &mut Element, d: &Element) {
        let Some(want) = d.child("cputune") else { return };
        if e.child("cputune").is_none() {
            self.insert(e, d, want, 1, DOMAIN_ORDER);
            self.changed("added <cputune> with the plan's pinning".into());
            return;
        }
        let Some(have) = e.child_mut("cputune") else { return };
        let vcpus: BTreeSet<String> =
            want.children_named("vcpupin").filter_map(|p| p.attr("vcpu")).map(String::from).collect();
        let gone = have.remove_elements(|c| c.name == "vcpupin" && c.attr("vcpu").is_none_or(|v| !vcpus.contains(v)));
        if gone > 0 {
            self.changed(format!("removed {gone} <vcpupin> for vCPUs the plan does not have"));
        }
        for w in want.elements() {
            let key = match w.name.as_str() {
                "vcpupin" => Some("vcpu"),
                "iothreadpin" => Some("iothread"),
                _ => None,
            };
            let same = |c: &Element| key.is_none_or(|k| c.attr(k) == w.attr(k));
            self.upsert(have, want, w, same, Place::AfterSiblings, |_| false);
        }
        // The domain's other I/O threads go where the plan puts its own (or the emulator),
        // off the new vCPU CPUs.
        let planned: BTreeSet<&str> = want.children_named("iothreadpin").filter_map(|p| p.attr("iothread")).collect();
        let home = want
            .child("iothreadpin")
            .or_else(|| want.child("emulatorpin"))
            .and_then(|p| p.attr("cpuset"))
            .map(String::from);
        if let Some(home) = home {
            for pin in have.elements_mut().filter(|c| c.name == "iothreadpin") {
                let Some(id) = pin.attr("iothread").map(String::from) else { continue };
                if planned.contains(id.as_str()) || pin.attr("cpuset") == Some(home.as_str()) {
                    continue;
                }
                let before = one_line(&pin.to_xml());
                pin.set_attr("cpuset", &home);
                self.report
                    .changes
                    .push(format!("{before} → {} (with the plan's I/O thread)", one_line(&pin.to_xml())));
            }
        }
    }

    fn numatune(&mut self, e: &mut Element, d: &Element) {
        let Some(want) = d.child("numatune") else { return };
        let Some(wm) = want.child("memory") else { return };
        match e.child_mut("numatune").and_then(|n| n.child_mut("memory")) {
            // The mode is the user's; the node is the plan's.
            Some(m) => self.sync(m, wm, &["mode"], |_| false),
            None => {
                if e.child("numatune").is_some() {
                    if let Some(n) = e.child_mut("numatune") {
                        n.insert(None, vec![Node::Element(Box::new(wm.clone()))], 2, &self.style);
                    }
                } else {
                    self.insert(e, d, want, 1, DOMAIN_ORDER);
                }
                self.changed(format!("added {}", one_line(&wm.to_xml())));
            }
        }
    }

    fn features(&mut self, e: &mut Element, d: &Element) {
        let Some(want) = d.child("features") else { return };
        if e.child("features").is_none() {
            self.insert(e, d, want, 1, DOMAIN_ORDER);
            self.changed("added <features> (Hyper-V enlightenments, KVM hidden, vmport, ioapic)".into());
            return;
        }
        if let Some(have) = e.child_mut("features") {
            self.merge_by_name(have, want, 2, "features");
        }
    }

    /// Merges children keyed by element name, recursively, keeping values that are the
    /// user's choice when sound.
    fn merge_by_name(&mut self, have: &mut Element, want: &Element, depth: usize, path: &str) {
        for w in want.elements() {
            let here = format!("{path}/{}", w.name);
            if have.child(&w.name).is_none() {
                have.insert(None, with_comment(want, w), depth, &self.style);
                self.changed(format!("added <{here}>: {}", one_line(&w.to_xml())));
                continue;
            }
            let Some(h) = have.child_mut(&w.name) else { continue };
            if here == "features/hyperv" && h.attr("mode") == Some("passthrough") {
                continue;
            }
            let keep: &[&str] = match here.as_str() {
                "features/hyperv" => &["mode"],
                "features/hyperv/vendor_id"
                    if h.attr("value").is_some_and(|v| !v.is_empty() && v.chars().count() <= 12) =>
                {
                    &["value"]
                }
                "features/hyperv/spinlocks"
                    if h.attr("retries").and_then(|r| r.parse::<u32>().ok()).is_some_and(|r| r >= 4095) =>
                {
                    &["retries"]
                }
                _ => &[],
            };
            let before = h.to_xml();
            if sync_attrs(h, w, keep) {
                let line =
                    if h.elements().next().is_some() { format!("<{here}> attributes") } else { one_line(&before) };
                self.changed(format!("{line} → {}", one_line(&start_tag(h))));
            }
            self.merge_by_name(h, w, depth + 1, &here);
        }
    }

    fn cpu(&mut self, e: &mut Element, d: &Element) {
        let Some(want) = d.child("cpu") else { return };
        if e.child("cpu").is_none() {
            self.insert(e, d, want, 1, DOMAIN_ORDER);
            self.changed("added <cpu mode='host-passthrough'> with the plan's topology".into());
            return;
        }
        let Some(have) = e.child_mut("cpu") else { return };
        let before = start_tag(have);
        if sync_attrs(have, want, &[]) {
            self.report.changes.push(format!("{} → {}", before, start_tag(have)));
        }
        for w in want.elements() {
            let same = |c: &Element| w.name != "feature" || c.attr("name") == w.attr("name");
            // A passthrough cache has no level.
            let tidy =
                |c: &mut Element| c.name == "cache" && c.attr("mode") == Some("passthrough") && c.remove_attr("level");
            self.upsert(have, want, w, same, Place::End, tidy);
        }
    }

    fn clock(&mut self, e: &mut Element, d: &Element) {
        let Some(want) = d.child("clock") else { return };
        if e.child("clock").is_none() {
            self.insert(e, d, want, 1, DOMAIN_ORDER);
            self.changed("added <clock> with the plan's timers".into());
            return;
        }
        let Some(have) = e.child_mut("clock") else { return };
        for w in want.children_named("timer") {
            self.upsert(have, want, w, |c| c.attr("name") == w.attr("name"), Place::End, |_| false);
        }
    }

    fn devices(&mut self, e: &mut Element, d: &Element, parts: Parts) {
        let Some(want) = d.child("devices") else { return };
        if !parts.devices {
            if parts.memory {
                self.balloon(e, want);
            }
            return;
        }
        let machine = e.find("os/type").and_then(|t| t.attr("machine")).unwrap_or("q35").to_string();
        let q35 = machine.contains("q35");
        let legacy_args: Vec<String> = e
            .child("qemu:commandline")
            .map(|c| c.children_named("qemu:arg").filter_map(|a| a.attr("value")).map(String::from).collect())
            .unwrap_or_default();
        if e.child("devices").is_none() {
            e.insert(None, vec![Node::Element(Box::new(Element::new("devices")))], 1, &self.style);
        }
        let Some(have) = e.child_mut("devices") else { return };
        let mut next_index = have
            .children_named("controller")
            .filter(|c| c.attr("type") == Some("pci"))
            .filter_map(|c| c.attr("index").and_then(|i| i.parse::<u32>().ok()))
            .max()
            .unwrap_or(0)
            + 1;
        // Passed devices: new ones get a new root port per physical slot.
        let mut ports: Vec<((u32, u32, u32), u32)> = Vec::new();
        let mut unplaced = Vec::new();
        for w in want.children_named("hostdev").filter(|h| h.attr("type") == Some("pci")) {
            let Some(src) = w.find("source/address") else { continue };
            let key = pci_key(src);
            let present = have
                .children_named("hostdev")
                .any(|h| h.attr("type") == Some("pci") && h.find("source/address").is_some_and(|a| pci_key(a) == key));
            if present {
                // A ROM the plan gives the card (`--rom`) goes into the hostdev it has.
                if let Some(rom) = w.child("rom") {
                    let style = self.style.clone();
                    let of = |h: &Element| {
                        h.attr("type") == Some("pci") && h.find("source/address").is_some_and(|a| pci_key(a) == key)
                    };
                    if let Some(h) = have.elements_mut().find(|h| h.name == "hostdev" && of(h)) {
                        match h.child_mut("rom") {
                            Some(r) => {
                                if r.set_attr("file", rom.attr("file").unwrap_or("")) {
                                    self.report.changes.push(format!(
                                        "the ROM of hostdev {:02x}:{:02x}.{:x} → {}",
                                        key.1,
                                        key.2,
                                        key.3,
                                        rom.attr("file").unwrap_or("")
                                    ));
                                }
                            }
                            None => {
                                let after = h.elements().position(|c| c.name == "source");
                                h.insert(after, vec![Node::Element(Box::new(rom.clone()))], 3, &style);
                                self.report.changes.push(format!(
                                    "added {} to hostdev {:02x}:{:02x}.{:x}",
                                    one_line(&rom.to_xml()),
                                    key.1,
                                    key.2,
                                    key.3
                                ));
                            }
                        }
                    }
                }
                continue;
            }
            let mut new = w.clone();
            let slot = (key.0, key.1, key.2);
            if q35 {
                let bus = match ports.iter().find(|(s, _)| *s == slot) {
                    Some((_, b)) => *b,
                    None => {
                        let b = next_index;
                        next_index += 1;
                        ports.push((slot, b));
                        let port = Element::new("controller")
                            .with_attr("type", "pci")
                            .with_attr("index", &b.to_string())
                            .with_attr("model", "pcie-root-port");
                        self.insert(have, want, &port, 2, DEVICE_ORDER);
                        b
                    }
                };
                if let Some(addr) = new.child_mut("address") {
                    addr.set_attr("bus", &format!("0x{bus:02x}"));
                }
            } else {
                new.remove_elements(|c| c.name == "address");
                unplaced.push(key);
            }
            self.insert(have, want, &new, 2, DEVICE_ORDER);
            self.report.changes.push(format!("added hostdev {:04x}:{:02x}:{:02x}.{:x}", key.0, key.1, key.2, key.3));
        }
        self.join_functions(have, want, q35, &mut next_index);
        let unplaced: Vec<String> = unplaced
            .into_iter()
            .filter(|k| {
                have.children_named("hostdev")
                    .any(|h| h.find("source/address").map(pci_key) == Some(*k) && h.child("address").is_none())
            })
            .map(|k| format!("{:04x}:{:02x}:{:02x}.{:x}", k.0, k.1, k.2, k.3))
            .collect();
        if !unplaced.is_empty() {
            self.report.notes.push(format!(
                "machine {machine} is not q35: libvirt places the new hostdev {} itself",
                unplaced.join(", ")
            ));
        }
        let planned: BTreeSet<(u32, u32, u32, u32)> = want
            .children_named("hostdev")
            .filter(|h| h.attr("type") == Some("pci"))
            .filter_map(|w| w.find("source/address"))
            .map(pci_key)
            .collect();
        for h in have.children_named("hostdev").filter(|h| h.attr("type") == Some("pci")) {
            if let Some(k) = h.find("source/address").map(pci_key) {
                if !planned.contains(&k) {
                    self.report.notes.push(format!(
                        "kept hostdev {:04x}:{:02x}:{:02x}.{:x}, which the plan does not pass",
                        k.0, k.1, k.2, k.3
                    ));
                }
            }
        }
        // Keyboard and mouse by evdev, unless already there in either form.
        for w in want.children_named("input").filter(|i| i.attr("type") == Some("evdev")) {
            let Some(dev) = w.child("source").and_then(|s| s.attr("dev")) else { continue };
            let native = have
                .children_named("input")
                .any(|i| i.attr("type") == Some("evdev") && i.child("source").and_then(|s| s.attr("dev")) == Some(dev));
            let legacy = legacy_args.iter().any(|a| a.split(',').any(|o| o == format!("evdev={dev}")));
            if !native && !legacy {
                self.insert(have, want, w, 2, DEVICE_ORDER);
                self.report.changes.push(format!("added evdev input {dev}"));
            }
        }
        // Disks, CD-ROMs and the network, when asked for and not there yet.
        let mut taken: BTreeSet<String> = have
            .children_named("disk")
            .filter_map(|x| x.child("target").and_then(|t| t.attr("dev")).map(String::from))
            .collect();
        for w in want.children_named("disk") {
            let src = w.child("source").and_then(|s| s.attr("file").or_else(|| s.attr("dev")));
            let present = have.children_named("disk").any(|x| {
                x.child("source").and_then(|s| s.attr("file").or_else(|| s.attr("dev"))) == src && src.is_some()
            });
            if present {
                continue;
            }
            let mut new = w.clone();
            if let Some(t) = new.child_mut("target") {
                let bus = t.attr("bus").unwrap_or("sata").to_string();
                let prefix = if bus == "virtio" { "vd" } else { "sd" };
                let free = (b'a'..=b'z').map(|c| format!("{prefix}{}", c as char)).find(|n| !taken.contains(n));
                if let Some(name) = free {
                    t.set_attr("dev", &name);
                    taken.insert(name);
                }
                if bus == "scsi"
                    && !have
                        .children_named("controller")
                        .any(|c| c.attr("type") == Some("scsi") && c.attr("model") == Some("virtio-scsi"))
                {
                    if let Some(ctl) = want.children_named("controller").find(|c| c.attr("type") == Some("scsi")) {
                        let ctl = ctl.clone();
                        self.insert(have, want, &ctl, 2, DEVICE_ORDER);
                        self.report.changes.push("added a virtio-scsi controller".into());
                    }
                }
            }
            self.insert(have, want, &new, 2, DEVICE_ORDER);
            self.report.changes.push(format!("added disk {}", src.unwrap_or("?")));
        }
        for w in want.children_named("interface") {
            let src = w.child("source").map(|s| s.to_xml());
            let present = have.children_named("interface").any(|x| x.child("source").map(|s| s.to_xml()) == src);
            if !present {
                self.insert(have, want, w, 2, DEVICE_ORDER);
                self.report
                    .changes
                    .push(format!("added interface {}", src.as_deref().map(one_line).unwrap_or_default()));
            }
        }
        if let Some(w) = want.child("tpm") {
            if have.child("tpm").is_none() {
                self.insert(have, want, w, 2, DEVICE_ORDER);
                self.report.changes.push("added a TPM 2.0 (tpm-crb, emulated)".into());
            }
        }
        if parts.memory {
            self.balloon(e, want);
        }
        self.qemu_args(e, d, &legacy_args);
    }

    /// Functions of one host device that sit on different guest slots go onto the slot of
    /// function 0, each with its host function number, function 0 marked multifunction:
    /// drivers expect a card's functions together, as on the host.
    /// When no function has a guest address yet, they get one slot of their own: a new
    /// root port on q35, a free slot of bus 0 otherwise.
    fn join_functions(&mut self, have: &mut Element, want: &Element, q35: bool, next_index: &mut u32) {
        // Only slots the plan passes with their functions together.
        let planned_together = |slot: (u32, u32, u32)| {
            let guests: BTreeSet<(u32, u32)> = want
                .children_named("hostdev")
                .filter(|h| h.find("source/address").map(pci_key).is_some_and(|k| (k.0, k.1, k.2) == slot))
                .filter_map(|h| h.child("address"))
                .map(|a| (a.attr("bus").and_then(number).unwrap_or(0), a.attr("slot").and_then(number).unwrap_or(0)))
                .collect();
            guests.len() == 1
        };
        let mut slots: std::collections::BTreeMap<(u32, u32, u32), Vec<u32>> = Default::default();
        for h in have.children_named("hostdev").filter(|h| h.attr("type") == Some("pci")) {
            if let Some(k) = h.find("source/address").map(pci_key) {
                slots.entry((k.0, k.1, k.2)).or_default().push(k.3);
            }
        }
        for (slot, functions) in slots.into_iter().filter(|(s, f)| f.len() > 1 && planned_together(*s)) {
            let guest = |h: &Element| {
                h.child("address").filter(|a| a.attr("type") == Some("pci")).map(|a| {
                    let f = |n: &str| a.attr(n).and_then(number).unwrap_or(0);
                    (f("domain"), f("bus"), f("slot"), f("function"), a.attr("multifunction") == Some("on"))
                })
            };
            let of_slot = |h: &Element| {
                h.attr("type") == Some("pci")
                    && h.find("source/address").map(pci_key).is_some_and(|k| (k.0, k.1, k.2) == slot)
            };
            // The guest slot of the lowest function that has one (a function without an
            // address, which libvirt would put on a slot of its own, joins it).
            let Some((gd, gb, gs, _, _)) = have
                .children_named("hostdev")
                .filter(|h| of_slot(h))
                .filter_map(|h| guest(h).map(|g| (h.find("source/address").map_or(u32::MAX, |a| pci_key(a).3), g)))
                .min_by_key(|(f, _)| *f)
                .map(|(_, g)| g)
                .or_else(|| {
                    if q35 {
                        let b = *next_index;
                        *next_index += 1;
                        let port = Element::new("controller")
                            .with_attr("type", "pci")
                            .with_attr("index", &b.to_string())
                            .with_attr("model", "pcie-root-port");
                        self.insert(have, want, &port, 2, DEVICE_ORDER);
                        Some((0, b, 0, 0, false))
                    } else {
                        free_bus0_slot(have).map(|s| (0, 0, s, 0, false))
                    }
                })
            else {
                continue;
            };
            let together = have.children_named("hostdev").filter(|h| of_slot(h)).all(|h| {
                guest(h).is_some_and(|(d, b, s, f, multi)| {
                    let host_fn = h.find("source/address").map_or(0, |a| pci_key(a).3);
                    (d, b, s) == (gd, gb, gs) && f == host_fn && (host_fn != 0 || multi)
                })
            });
            if together {
                continue;
            }
            for h in have.elements_mut().filter(|h| h.name == "hostdev" && of_slot(h)) {
                let host_fn = h.find("source/address").map_or(0, |a| pci_key(a).3);
                if h.child("address").is_none() {
                    let a = Element::new("address").with_attr("type", "pci");
                    h.insert(None, vec![Node::Element(Box::new(a))], 3, &self.style);
                }
                if let Some(a) = h.child_mut("address") {
                    a.set_attr("domain", &format!("0x{gd:04x}"));
                    a.set_attr("bus", &format!("0x{gb:02x}"));
                    a.set_attr("slot", &format!("0x{gs:02x}"));
                    a.set_attr("function", &format!("0x{host_fn:x}"));
                    if host_fn == 0 {
                        a.set_attr("multifunction", "on");
                    } else {
                        a.remove_attr("multifunction");
                    }
                }
            }
            self.report.changes.push(format!(
                "functions {} of {:04x}:{:02x}:{:02x} put together on guest slot {:02x}:{:02x}",
                functions.iter().map(|f| format!(".{f:x}")).collect::<Vec<_>>().join(" "),
                slot.0,
                slot.1,
                slot.2,
                gb,
                gs
            ));
        }
    }

    /// The plan's memory balloon (none) instead of the domain's.
    fn balloon(&mut self, e: &mut Element, want: &Element) {
        let Some(have) = e.child_mut("devices") else { return };
        if let Some(w) = want.child("memballoon") {
            match have.child("memballoon") {
                Some(b) if b.attr("model") == w.attr("model") => {}
                Some(b) => {
                    let before = one_line(&start_tag(b));
                    have.remove_elements(|c| c.name == "memballoon");
                    self.insert(have, want, w, 2, DEVICE_ORDER);
                    self.report.changes.push(format!("{before} → {}", one_line(&w.to_xml())));
                }
                None => {
                    self.insert(have, want, w, 2, DEVICE_ORDER);
                    self.report.changes.push(format!("added {}", one_line(&w.to_xml())));
                }
            }
        }
    }

    /// QEMU input-linux objects (libvirt before 7.4) the plan has and the domain lacks.
    fn qemu_args(&mut self, e: &mut Element, d: &Element, existing: &[String]) {
        let Some(want) = d.child("qemu:commandline") else { return };
        let args: Vec<&Element> = want.children_named("qemu:arg").collect();
        let mut missing = Vec::new();
        for pair in args.chunks(2) {
            let [flag, value] = pair else { continue };
            let Some(v) = value.attr("value") else { continue };
            let dev = v.split(',').find_map(|o| o.strip_prefix("evdev="));
            let present = existing.iter().any(|a| a.split(',').any(|o| dev.is_some_and(|d| o == format!("evdev={d}"))));
            if !present {
                missing.push((*flag).clone());
                missing.push((*value).clone());
                self.report.changes.push(format!("added QEMU argument -object {v}"));
            }
        }
        if missing.is_empty() {
            return;
        }
        if e.attr("xmlns:qemu").is_none() {
            e.set_attr("xmlns:qemu", QEMU_NS);
        }
        match e.child_mut("qemu:commandline") {
            Some(c) => {
                for m in missing {
                    c.insert(None, vec![Node::Element(Box::new(m))], 2, &self.style);
                }
            }
            None => {
                let mut c = Element::new("qemu:commandline");
                for m in missing {
                    c.insert(None, vec![Node::Element(Box::new(m))], 1, &self.style);
                }
                self.insert(e, d, &c, 1, DOMAIN_ORDER);
            }
        }
    }
}

/// Where [`Patcher::upsert`] puts a new child.
#[derive(Debug, Clone, Copy)]
enum Place {
    AfterSiblings,
    End,
}

/// A copy of `child` for inserting, with the comment in front of it in `parent`.
fn with_comment(parent: &Element, child: &Element) -> Vec<Node> {
    let mut nodes: Vec<Node> = comment_before(parent, child).into_iter().collect();
    nodes.push(Node::Element(Box::new(child.clone())));
    nodes
}

/// The comment directly in front of `child` among `parent`'s children.
fn comment_before(parent: &Element, child: &Element) -> Option<Node> {
    let i = parent.children.iter().position(|n| matches!(n, Node::Element(e) if std::ptr::eq(&**e, child)))?;
    parent.children[..i].iter().rev().find(|n| !matches!(n, Node::Text(t) if t.trim().is_empty())).and_then(|n| match n
    {
        Node::Comment(_) => Some(n.clone()),
        _ => None,
    })
}

/// Sets `want`'s attributes on `have`, except `keep`; values equal in meaning (CPU sets,
/// numbers written differently) are left as written. Attributes `want` lacks stay.
fn sync_attrs(have: &mut Element, want: &Element, keep: &[&str]) -> bool {
    let mut any = false;
    for a in want.attrs() {
        if keep.contains(&a.name.as_str()) && have.attr(&a.name).is_some() {
            continue;
        }
        match have.attr(&a.name) {
            Some(v) if same_value(&a.name, v, &a.value) => {}
            None if is_default(&have.name, &a.name, &a.value) => {}
            _ => any |= have.set_attr(&a.name, &a.value),
        }
    }
    any
}

/// Attribute values libvirt treats as the same.
fn same_value(name: &str, a: &str, b: &str) -> bool {
    if a == b {
        return true;
    }
    match name {
        "cpuset" | "nodeset" => matches!((CpuSet::from_str(a), CpuSet::from_str(b)), (Ok(x), Ok(y)) if x == y),
        "domain" | "bus" | "slot" | "function" => number(a).is_some() && number(a) == number(b),
        "state" | "present" | "enabled" => yes(a).is_some() && yes(a) == yes(b),
        _ => false,
    }
}

/// Attributes whose absence means this value.
fn is_default(element: &str, name: &str, value: &str) -> bool {
    matches!(
        (element, name, value),
        ("topology", "dies" | "clusters", "1")
            | ("memory" | "currentMemory", "unit", "KiB")
            | ("hyperv", "mode", "custom")
    )
}

fn yes(v: &str) -> Option<bool> {
    match v {
        "on" | "yes" => Some(true),
        "off" | "no" => Some(false),
        _ => None,
    }
}

/// A slot of bus 0 (from 0x10 up, clear of the chipset's and the VGA's) that no device
/// of `devices` has as its guest address.
fn free_bus0_slot(devices: &Element) -> Option<u32> {
    let used: BTreeSet<u32> = devices
        .elements()
        .filter_map(|d| d.child("address"))
        .filter(|a| a.attr("type") == Some("pci") && a.attr("bus").and_then(number).unwrap_or(0) == 0)
        .filter_map(|a| a.attr("slot").and_then(number))
        .collect();
    (0x10..=0x1f).find(|s| !used.contains(s))
}

fn pci_key(a: &Element) -> (u32, u32, u32, u32) {
    let f = |n: &str| a.attr(n).and_then(number).unwrap_or(0);
    (f("domain"), f("bus"), f("slot"), f("function"))
}

/// The page sizes (KiB) and nodesets of a `<hugepages>`; a bare `<hugepages/>` means the
/// default size, 2 MiB on x86.
fn pages(h: &Element) -> Vec<(Option<u64>, Option<String>)> {
    if h.children_named("page").next().is_none() {
        return vec![(Some(2048), None)];
    }
    let mut v: Vec<_> = h
        .children_named("page")
        .map(|p| {
            let size =
                p.attr("size").and_then(|s| s.parse::<u64>().ok()).map(|s| match p.attr("unit").unwrap_or("KiB") {
                    "M" | "MiB" => s * 1024,
                    "G" | "GiB" => s * 1024 * 1024,
                    _ => s,
                });
            (size, p.attr("nodeset").map(String::from))
        })
        .collect();
    v.sort();
    v
}

fn start_tag(e: &Element) -> String {
    let mut s = format!("<{}", e.name);
    for a in e.attrs() {
        s.push_str(&format!(" {}='{}'", a.name, a.value));
    }
    s.push('>');
    s
}

fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests;
