//! The CPU: the model and guest topology, and where the vCPUs, the emulator thread and the
//! I/O threads run, held against the rules of [`crate::plan::pinning`]: guest cores are
//! whole host cores (vCPUs `t·k … t·k+t-1` on the SMT siblings of one core), all in one L3
//! domain and on the NUMA node of the passed device when they fit, CPU 0's core and
//! efficiency cores left to the host, QEMU's own threads on CPUs apart from the vCPUs.
//!
//! One cause, one finding: a vCPU reported for its pin (broken, missing, floating, shared,
//! on an efficiency core or on CPU 0's core) is left out of the later placement rules
//! (SMT siblings, L3 and NUMA spread, overlaps), whose fix would move it anyway. Fixes are
//! the pins vfioctl would write: [`place`] when the whole placement is redone, otherwise
//! new pins for just the vCPUs at fault, on free whole cores near the guest's others.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use super::{Area, Cx, Finding, Severity};
use crate::cpuset::CpuSet;
use crate::domain::{cpu_feature, cputune, emulatorpin, host_passthrough, iothreadpin, topology, vcpu, vcpupin};
use crate::plan::pinning::{place, PinError};
use crate::plan::{CpuPlan, CpuRequest};
use crate::topology::{Core, CoreKind, Topology};
use crate::vendor::CpuVendor;
use crate::xml::{Element, Node};

/// (id, severity, title) of every finding this area makes.
pub const IDS: &[(&str, Severity, &str)] = &[
    ("cpu-mode-not-passthrough", Severity::Warning, "the CPU mode is not host-passthrough"),
    ("cpu-no-topology", Severity::Warning, "several vCPUs without a <topology>: one socket each"),
    ("cpu-topology-mismatch", Severity::Error, "the <topology> does not multiply out to the <vcpu> count"),
    ("cpu-threads-exceed-host", Severity::Warning, "the topology has more threads per core than the host's cores"),
    ("cpu-amd-no-topoext", Severity::Warning, "SMT topology on an AMD host without the topoext feature"),
    ("cpu-pin-bad-cpuset", Severity::Error, "a pin names a CPU that does not exist or is offline (or none)"),
    ("cpu-vcpupin-no-such-vcpu", Severity::Error, "a vcpupin for a vCPU the domain does not have"),
    ("cpu-unpinned", Severity::Warning, "vCPUs without any pin"),
    ("cpu-vcpu-floating", Severity::Warning, "vCPUs allowed on several host CPUs instead of one"),
    ("cpu-vcpus-share-cpu", Severity::Warning, "two vCPUs pinned to the same host CPU"),
    ("cpu-efficiency-cores", Severity::Warning, "vCPUs on efficiency cores of a hybrid CPU"),
    ("cpu-vcpu-on-cpu0", Severity::Warning, "a vCPU on CPU 0 or its SMT sibling"),
    ("cpu-smt-siblings", Severity::Warning, "a guest core's vCPUs are not the SMT siblings of one host core"),
    ("cpu-numa-spread", Severity::Warning, "vCPUs over several NUMA nodes although one would hold them"),
    ("cpu-l3-spread", Severity::Warning, "vCPUs over several L3 domains although one would hold them"),
    ("cpu-numa-away-from-device", Severity::Warning, "vCPUs on another NUMA node than the passed device"),
    ("cpu-no-emulatorpin", Severity::Warning, "vCPUs pinned but the emulator thread is not"),
    ("cpu-emulatorpin-overlap", Severity::Warning, "the emulator thread shares CPUs with vCPUs"),
    ("cpu-no-iothreadpin", Severity::Warning, "an I/O thread without an <iothreadpin>"),
    ("cpu-iothreadpin-overlap", Severity::Warning, "an I/O thread shares CPUs with vCPUs"),
];

const AREA: Area = Area::Cpu;

/// Where one vCPU may run.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Place {
    /// No vcpupin and no `<vcpu cpuset>`.
    Unpinned,
    /// Its pin is broken (reported on the pin as `cpu-pin-bad-cpuset`).
    Broken,
    /// Allowed on several host CPUs.
    Floating(CpuSet),
    /// On exactly one online host CPU.
    On(u32),
}

impl Place {
    fn on(&self) -> Option<u32> {
        match self {
            Place::On(c) => Some(*c),
            _ => None,
        }
    }

    /// The CPUs it was given.
    fn cpus(&self) -> Vec<u32> {
        match self {
            Place::On(c) => vec![*c],
            Place::Floating(s) => s.iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// `vCPU 3`, `vCPUs 0-2,5`.
fn vcpus_text(v: impl IntoIterator<Item = u32>) -> String {
    let set: CpuSet = v.into_iter().collect();
    if set.len() == 1 {
        format!("vCPU {set}")
    } else {
        format!("vCPUs {set}")
    }
}

/// `CPU 3`, `CPUs 0-2,5`.
fn cpus_text(set: &CpuSet) -> String {
    if set.len() == 1 {
        format!("CPU {set}")
    } else {
        format!("CPUs {set}")
    }
}

/// `vCPU 3 runs`, `vCPUs 0-2 run`.
fn running(v: &[u32]) -> String {
    format!("{} {}", vcpus_text(v.iter().copied()), if v.len() == 1 { "runs" } else { "run" })
}

fn vcpupin_lines(pins: &[(u32, u32)]) -> String {
    pins.iter().map(|(v, c)| vcpupin(*v, &c.to_string()).to_xml()).collect::<Vec<_>>().join("\n")
}

fn vcpupin_path(v: u32) -> String {
    format!("cputune/vcpupin[@vcpu='{v}']")
}

/// What is wrong with a pin's `cpuset`, if anything.
fn bad_cpuset(topo: &Topology, cpuset: Option<&str>) -> Option<String> {
    let Some(s) = cpuset else { return Some("has no cpuset".into()) };
    let Ok(set) = CpuSet::from_str(s) else { return Some(format!("cpuset '{s}' is not a CPU list")) };
    if set.is_empty() {
        return Some("has an empty cpuset".into());
    }
    if topo.cpus.is_empty() {
        // Nothing known about the host's CPUs: nothing to hold the pin against.
        return None;
    }
    let offline: CpuSet = set.iter().filter(|&c| topo.cpu(c).is_none() && topo.offline.contains(c)).collect();
    let absent: CpuSet = set.iter().filter(|&c| topo.cpu(c).is_none() && !topo.offline.contains(c)).collect();
    let mut parts = Vec::new();
    if !absent.is_empty() {
        parts.push(format!(
            "{} {} not exist on this host",
            cpus_text(&absent),
            if absent.len() == 1 { "does" } else { "do" }
        ));
    }
    if !offline.is_empty() {
        parts.push(format!("{} {} offline", cpus_text(&offline), if offline.len() == 1 { "is" } else { "are" }));
    }
    if parts.is_empty() {
        None
    } else {
        Some(format!("names {}: {} (online: {})", cpus_text(&set), parts.join(", "), topo.online()))
    }
}

/// The declared guest topology.
struct Declared {
    /// Each factor, `None` when missing (required ones) or not a number.
    sockets: Option<u32>,
    dies: Option<u32>,
    clusters: Option<u32>,
    cores: Option<u32>,
    threads: Option<u32>,
}

impl Declared {
    fn read(t: &Element) -> Self {
        let n = |k: &str| t.attr(k).and_then(|v| v.parse::<u32>().ok());
        let opt = |k: &str| match t.attr(k) {
            None => Some(1),
            Some(v) => v.parse::<u32>().ok(),
        };
        Declared {
            sockets: n("sockets"),
            dies: opt("dies"),
            clusters: opt("clusters"),
            cores: n("cores"),
            threads: n("threads"),
        }
    }

    fn product(&self) -> Option<u64> {
        [self.sockets, self.dies, self.clusters, self.cores, self.threads]
            .iter()
            .try_fold(1u64, |acc, f| f.map(|f| acc * u64::from(f)))
    }
}

/// The domain's CPU side against the host.
struct Guest<'a, 'c> {
    cx: &'c Cx<'a>,
    topo: &'a Topology,
    vcpus: u32,
    places: Vec<Place>,
    /// vCPUs per guest core for the sibling rule and fixes: the declared threads when the
    /// topology adds up and the host has that many threads per core, else 1.
    group: u32,
    /// The planner's host core: the core of the lowest online CPU.
    host_core: Option<u32>,
    /// NUMA node of the passed devices.
    device_node: Option<u32>,
    /// The emulator's online CPUs.
    emulator: CpuSet,
    /// I/O thread ids the domain defines.
    iothreads: Vec<u32>,
}

impl Guest<'_, '_> {
    fn eligible(&self, core: &Core) -> bool {
        Some(core.id) != self.host_core && !(self.topo.hybrid && core.kind == Some(CoreKind::Efficiency))
    }

    fn eligible_cpu(&self, cpu: u32) -> bool {
        self.topo.core_of(cpu).is_some_and(|c| self.eligible(c))
    }

    /// What vfioctl would write for this many vCPUs. The planner rounds an odd count up
    /// to whole cores; the domain keeps its count, so the extra pins are dropped.
    fn place(&self) -> Result<CpuPlan, PinError> {
        let mut p = place(self.topo, &CpuRequest { vcpus: Some(self.vcpus), node: self.device_node })?;
        if p.vcpus > self.vcpus {
            p.vcpupin.truncate(self.vcpus as usize);
            p.guest_cpus = p.vcpupin.iter().filter_map(|v| v.cpuset.parse().ok()).collect();
            p.vcpus = self.vcpus;
        }
        Ok(p)
    }

    fn planned(&self) -> Option<CpuPlan> {
        self.place().ok()
    }

    /// `<cputune>` as vfioctl writes it for a plan.
    fn plan_block(&self, p: &CpuPlan) -> String {
        cputune(p, &self.iothreads).pretty()
    }

    /// The whole placement redone by the planner, or a sentence when it cannot.
    fn plan_fix(&self) -> String {
        match self.place() {
            Ok(p) => self.plan_block(&p),
            Err(e) => Node::comment(&format!("vfioctl cannot place them: {e}; lower <vcpu>")).to_xml(),
        }
    }

    /// New pins for the vCPUs in `fix`, with the rest of their guest cores: whole host
    /// cores no other vCPU uses, not CPU 0's core nor efficiency cores, preferring the
    /// CPUs they were meant to have, then the L3 domains and nodes of the guest's other
    /// vCPUs, then CPUs apart from the emulator's. When every vCPU moves, the planner's
    /// placement if it lies within the CPUs they were given. `None` when the host has no
    /// room.
    fn repair(&self, fix: &BTreeSet<u32>) -> Option<Vec<(u32, u32)>> {
        if fix.len() as u32 == self.vcpus {
            let given: CpuSet = self.places.iter().flat_map(Place::cpus).collect();
            if let Some(p) =
                self.planned().filter(|p| given.is_empty() || p.guest_cpus.iter().all(|c| given.contains(c)))
            {
                return p.vcpupin.iter().map(|v| Some((v.vcpu, v.cpuset.parse().ok()?))).collect();
            }
        }
        let t = self.group.max(1);
        let groups: BTreeSet<u32> = fix.iter().map(|v| v / t).collect();
        let moving = |v: u32| groups.contains(&(v / t));
        let mut used: CpuSet =
            (0..self.vcpus).filter(|&v| !moving(v)).filter_map(|v| self.places[v as usize].on()).collect();
        let l3s: BTreeSet<u32> = used.iter().filter_map(|c| self.topo.cpu(c)?.l3).collect();
        let mut nodes: BTreeSet<u32> = used.iter().filter_map(|c| self.topo.cpu(c)?.node).collect();
        if nodes.is_empty() {
            nodes.extend(self.device_node);
        }
        let far = |cpus: &[u32]| {
            let l3 = cpus.iter().any(|&c| self.topo.cpu(c).and_then(|x| x.l3).is_some_and(|l| l3s.contains(&l)));
            let node = cpus.iter().any(|&c| self.topo.cpu(c).and_then(|x| x.node).is_some_and(|n| nodes.contains(&n)));
            let emu = cpus.iter().any(|&c| self.emulator.contains(c));
            (!l3, !node, emu)
        };
        let mut out = Vec::new();
        for g in groups {
            let members: Vec<u32> = (g * t..(g * t + t).min(self.vcpus)).collect();
            let prefer: CpuSet = members.iter().flat_map(|&v| self.places[v as usize].cpus()).collect();
            let best = self
                .topo
                .cores
                .iter()
                .filter(|c| self.eligible(c))
                .map(|c| (c, c.cpus.iter().filter(|&x| !used.contains(x)).collect::<CpuSet>()))
                .filter(|(_, free)| free.len() >= members.len())
                .min_by_key(|(c, free)| {
                    // One vCPU per group: rank the free CPUs themselves.
                    let pool: Vec<u32> = if t == 1 { free.iter().collect() } else { c.cpus.iter().collect() };
                    (!pool.iter().any(|&x| prefer.contains(x)), far(&pool), c.cpus.first())
                })?;
            let (_, free) = best;
            let mut free: Vec<u32> = free.iter().collect();
            if t == 1 {
                free.sort_by_key(|&x| (!prefer.contains(x), self.emulator.contains(x), x));
            }
            let mut assigned: BTreeMap<u32, u32> = BTreeMap::new();
            for &v in &members {
                if let Some(c) = self.places[v as usize].on().filter(|c| free.contains(c)) {
                    assigned.insert(v, c);
                    free.retain(|&x| x != c);
                }
            }
            for &v in &members {
                if let std::collections::btree_map::Entry::Vacant(e) = assigned.entry(v) {
                    e.insert(*free.first()?);
                    free.remove(0);
                }
            }
            for (v, c) in assigned {
                used.insert(c);
                out.push((v, c));
            }
        }
        out.sort_unstable();
        Some(out)
    }

    /// The repaired pins as XML, else the planner's whole placement.
    fn repair_fix(&self, fix: &BTreeSet<u32>) -> String {
        match self.repair(fix) {
            Some(p) => vcpupin_lines(&p),
            None => self.plan_fix(),
        }
    }

    /// Where the vCPUs run once the findings' fixes are in: the pins of the vCPUs no
    /// finding moves, and the repaired pins of the others (the planner's placement when
    /// none is pinned).
    fn target(&self, flagged: &BTreeSet<u32>) -> CpuSet {
        let moving: BTreeSet<u32> =
            (0..self.vcpus).filter(|v| flagged.contains(v) || self.places[*v as usize].on().is_none()).collect();
        let kept = |moved: &BTreeSet<u32>| -> CpuSet {
            (0..self.vcpus).filter(|v| !moved.contains(v)).filter_map(|v| self.places[v as usize].on()).collect()
        };
        if moving.is_empty() {
            return kept(&moving);
        }
        let planned = || self.planned().map(|p| p.guest_cpus);
        let repaired = || {
            let t = self.group.max(1);
            let groups: BTreeSet<u32> = moving.iter().map(|v| v / t).collect();
            let moved: BTreeSet<u32> = (0..self.vcpus).filter(|v| groups.contains(&(v / t))).collect();
            let new = self.repair(&moving)?;
            Some(kept(&moved).iter().chain(new.iter().map(|p| p.1)).collect())
        };
        let all_unpinned = self.places.iter().all(|p| *p == Place::Unpinned);
        let target = if all_unpinned { planned().or_else(repaired) } else { repaired().or_else(planned) };
        target.unwrap_or_else(|| kept(&moving))
    }

    /// Where the emulator and I/O threads belong, apart from the vCPUs at `guest`: the
    /// other CPUs of their nodes (the planner's rule), else any other online CPU, at worst
    /// CPU 0's core, the host's.
    fn rest(&self, guest: &CpuSet) -> CpuSet {
        let mut nodes: BTreeSet<Option<u32>> = guest.iter().filter_map(|c| self.topo.cpu(c)).map(|c| c.node).collect();
        if nodes.is_empty() {
            nodes.insert(self.device_node);
        }
        let apart = |c: &&crate::topology::Cpu| !guest.contains(c.cpu);
        let rest: CpuSet =
            self.topo.cpus.iter().filter(|c| nodes.contains(&c.node)).filter(apart).map(|c| c.cpu).collect();
        if !rest.is_empty() {
            return rest;
        }
        let rest: CpuSet = self.topo.cpus.iter().filter(apart).map(|c| c.cpu).collect();
        if !rest.is_empty() {
            return rest;
        }
        self.host_core.and_then(|h| self.topo.cores.get(h as usize)).map(|c| c.cpus.clone()).unwrap_or_default()
    }

    /// Online CPUs eligible for vCPUs among `cpus`.
    fn room(&self, cpus: &CpuSet) -> usize {
        cpus.iter().filter(|&c| self.eligible_cpu(c)).count()
    }
}

pub(super) fn check(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let topo = cx.host.topology;
    let cpu_el = cx.root.find("cpu");
    let vcpu_el = cx.root.find("vcpu");
    // libvirt's default is one vCPU; an unreadable count is libvirt's to refuse.
    let vcpus = match (vcpu_el, cx.vcpus) {
        (None, _) => 1,
        (Some(_), Some(n)) => n,
        (Some(_), None) => return,
    };
    let smt = topo.smt_width() as u32;
    let dies = crate::domain::versions::at_least(cx.host.libvirt, crate::domain::versions::LIBVIRT_TOPOLOGY_DIES);
    let topology_el = cpu_el.and_then(|c| c.child("topology"));
    let declared = topology_el.map(Declared::read);
    let declared_threads = declared.as_ref().and_then(|d| d.threads).unwrap_or(1);
    // A topology to suggest: the declared threads (else the host's SMT width) when they
    // fit this count and host, else the host's SMT width when it divides the count, else
    // one thread per core.
    let suggest_threads = [declared.as_ref().and_then(|d| d.threads).unwrap_or(smt), smt]
        .into_iter()
        .find(|&t| t >= 1 && t <= smt.max(1) && vcpus % t == 0)
        .unwrap_or(1);
    let suggested = |threads: u32| topology(1, dies.then_some(1), vcpus / threads, threads);
    let topology_line = |threads: u32| suggested(threads).to_xml();
    let topology_ok = declared.as_ref().is_some_and(|d| d.product() == Some(u64::from(vcpus)));
    let exceeds = topology_ok && declared_threads > 1 && smt > 0 && declared_threads > smt;
    let amd_smt = cx.host.vendor == CpuVendor::Amd && declared_threads > 1 && !exceeds;

    // The model.
    let kvm = cx.root.attr("type") != Some("qemu");
    let mode = cpu_el.map(|c| c.attr("mode").unwrap_or("custom"));
    let mut mode_reported = false;
    if kvm && !matches!(mode, Some("host-passthrough") | Some("maximum")) {
        mode_reported = true;
        let threads = if cpu_el.is_some() && topology_ok { declared_threads } else { suggest_threads };
        let mut fix = host_passthrough(suggested(threads));
        if cx.host.vendor == CpuVendor::Amd && threads > 1 {
            fix.push(cpu_feature("topoext"));
        }
        let model = cpu_el.and_then(|c| c.child("model")).map(|m| m.text()).filter(|m| !m.is_empty());
        let what = match (mode, model) {
            (None, _) => "there is no <cpu> element: QEMU's generic default model".to_string(),
            (Some(m), Some(model)) => format!("the CPU mode is '{m}' (model {model})"),
            (Some(m), None) => format!("the CPU mode is '{m}'"),
        };
        out.push(
            Finding::at("cpu-mode-not-passthrough", Severity::Warning, AREA, "cpu", cpu_el.or_else(|| cx.closest("cpu")))
                .message(format!("{what}, not host-passthrough"))
                .why("host-model and named models give the guest a CPU without some of the host's features and without its real cache layout: games and drivers take slower code paths, some refuse to start, and the guest schedules blind to the caches (lost performance)")
                .fix(fix.pretty()),
        );
    }

    // The guest topology.
    match (&declared, topology_el) {
        (Some(d), Some(t)) if !topology_ok => {
            let f = |x: Option<u32>| x.map_or("?".to_string(), |x| x.to_string());
            let missing: Vec<&str> = [("sockets", d.sockets), ("cores", d.cores), ("threads", d.threads)]
                .iter()
                .filter(|(_, v)| v.is_none())
                .map(|(k, _)| *k)
                .collect();
            let message = if missing.is_empty() {
                format!(
                    "<topology> sockets {} × dies {} × clusters {} × cores {} × threads {} = {}, but <vcpu> is {vcpus}",
                    f(d.sockets),
                    f(d.dies),
                    f(d.clusters),
                    f(d.cores),
                    f(d.threads),
                    d.product().map_or("?".to_string(), |p| p.to_string())
                )
            } else {
                format!("<topology> lacks a number for {} (<vcpu> is {vcpus})", missing.join(", "))
            };
            let mut fix = topology_line(suggest_threads);
            if declared_threads > 1 && vcpus % declared_threads != 0 && declared_threads <= smt {
                let up = vcpus.div_ceil(declared_threads) * declared_threads;
                let or = format!(
                    "or keep whole cores: {} with cores='{}' threads='{declared_threads}'",
                    Element::new("vcpu").with_attr("placement", "static").with_text(&up.to_string()).to_xml(),
                    up / declared_threads
                );
                fix = format!("{fix}\n{}", Node::comment(&or).to_xml());
            }
            out.push(
                Finding::at("cpu-topology-mismatch", Severity::Error, AREA, "cpu/topology", Some(t))
                    .message(message)
                    .why("libvirt refuses a domain whose topology does not multiply out to its vCPU count: the guest cannot be defined or started")
                    .fix(fix),
            );
        }
        (None, _) if vcpus > 1 && cpu_el.is_some() && !mode_reported => {
            out.push(
                Finding::at("cpu-no-topology", Severity::Warning, AREA, "cpu/topology", cx.closest("cpu/topology"))
                    .message(format!("{vcpus} vCPUs without a <topology>: libvirt makes each vCPU its own socket"))
                    .why("Windows 10/11 client editions use at most one (Home) or two (Pro) sockets, so the other vCPUs sit idle; and no guest sees which vCPUs share a core or a cache: lost performance")
                    .fix(topology_line(suggest_threads)),
            );
        }
        _ => {}
    }
    if exceeds {
        out.push(
            Finding::at("cpu-threads-exceed-host", Severity::Warning, AREA, "cpu/topology", topology_el)
                .message(format!(
                    "the topology says threads='{declared_threads}', but this host's cores have {smt} thread{} (SMT is off or absent)",
                    if smt == 1 { "" } else { "s" }
                ))
                .why("the guest takes vCPU pairs for the two threads of one core and schedules around siblings that do not exist: work piles onto some vCPUs while others idle (lost performance)")
                .fix(topology_line(suggest_threads)),
        );
    }
    if amd_smt && !mode_reported {
        let topoext = cpu_el.and_then(|c| c.children_named("feature").find(|f| f.attr("name") == Some("topoext")));
        if topoext.is_none_or(|f| !matches!(f.attr("policy"), Some("require") | Some("force"))) {
            let what = match topoext.and_then(|f| f.attr("policy")) {
                Some(p) => format!("the topoext feature has policy '{p}'"),
                None => "there is no topoext feature".into(),
            };
            out.push(
                Finding::at(
                    "cpu-amd-no-topoext",
                    Severity::Warning,
                    AREA,
                    "cpu/feature[@name='topoext']",
                    topoext.or(cpu_el),
                )
                .message(format!("threads='{declared_threads}' on an AMD host, but {what}"))
                .why("without topoext an AMD guest sees no SMT siblings: it takes every vCPU for a full core, puts two busy threads on one host core and the pairing you pinned is lost (lost performance, stutter)")
                .fix(cpu_feature("topoext").to_xml()),
            );
        }
    }

    // The pins themselves.
    let tune = cx.root.find("cputune");
    let mut broken_vcpus: BTreeSet<u32> = BTreeSet::new();
    let mut vcpu_cpuset_broken = false;
    // Broken pins, reported once the fix can be computed.
    let mut bad: Vec<(Finding, Broken)> = Vec::new();
    if let Some(v) = vcpu_el.filter(|v| v.attr("cpuset").is_some()) {
        if let Some(problem) = bad_cpuset(topo, v.attr("cpuset")) {
            vcpu_cpuset_broken = true;
            bad.push((bad_pin("vcpu", v, "<vcpu cpuset>", &problem), Broken::VcpuCpuset));
        }
    }
    let mut has_emulatorpin = false;
    let mut iothreadpins: BTreeSet<u32> = BTreeSet::new();
    for e in tune.into_iter().flat_map(|t| t.elements()) {
        match e.name.as_str() {
            "vcpupin" => {
                let id = e.attr("vcpu").and_then(|v| v.parse::<u32>().ok()).filter(|&v| v < vcpus);
                let Some(id) = id else {
                    let v = e.attr("vcpu").unwrap_or("");
                    out.push(
                        Finding::at(
                            "cpu-vcpupin-no-such-vcpu",
                            Severity::Error,
                            AREA,
                            &format!("cputune/vcpupin[@vcpu='{v}']"),
                            Some(e),
                        )
                        .message(format!(
                            "<vcpupin vcpu='{v}'> for a vCPU the domain does not have (its vCPUs are 0-{})",
                            vcpus.saturating_sub(1)
                        ))
                        .why("libvirt refuses a vcpupin for a vCPU that does not exist: the domain cannot be defined")
                        .fix(Node::comment(&format!("remove the line, or raise <vcpu> above {v}")).to_xml()),
                    );
                    continue;
                };
                if let Some(problem) = bad_cpuset(topo, e.attr("cpuset")) {
                    broken_vcpus.insert(id);
                    bad.push((
                        bad_pin(&vcpupin_path(id), e, &format!("<vcpupin vcpu='{id}'>"), &problem),
                        Broken::Vcpu(id),
                    ));
                }
            }
            "emulatorpin" => {
                has_emulatorpin = true;
                if let Some(problem) = bad_cpuset(topo, e.attr("cpuset")) {
                    bad.push((bad_pin("cputune/emulatorpin", e, "<emulatorpin>", &problem), Broken::Emulator));
                }
            }
            "iothreadpin" => {
                let id = e.attr("iothread").unwrap_or("");
                if let Ok(n) = id.parse() {
                    iothreadpins.insert(n);
                }
                if let Some(problem) = bad_cpuset(topo, e.attr("cpuset")) {
                    let f = bad_pin(
                        &format!("cputune/iothreadpin[@iothread='{id}']"),
                        e,
                        &format!("<iothreadpin iothread='{id}'>"),
                        &problem,
                    );
                    bad.push((f, Broken::Iothread(id.to_string())));
                }
            }
            _ => {}
        }
    }

    let classify = |set: &CpuSet| match set.as_slice() {
        [c] => Place::On(*c),
        _ => Place::Floating(set.clone()),
    };
    let places: Vec<Place> = (0..vcpus)
        .map(|v| {
            if broken_vcpus.contains(&v) {
                Place::Broken
            } else if let Some((set, _)) = cx.pins.vcpu.get(&v) {
                classify(set)
            } else if vcpu_cpuset_broken {
                Place::Broken
            } else if let Some(set) = &cx.pins.vcpu_cpuset {
                classify(set)
            } else {
                Place::Unpinned
            }
        })
        .collect();
    let device_node =
        cx.hostdevs.iter().filter_map(|h| cx.host.devices.get(&h.source).and_then(|d| d.numa_node)).next();
    let iothreads: Vec<u32> = match cx.root.child("iothreadids") {
        Some(ids) => ids.children_named("iothread").filter_map(|t| t.attr("id")?.parse().ok()).collect(),
        None => (1..=cx.root.child("iothreads").and_then(|t| t.text().parse::<u32>().ok()).unwrap_or(0)).collect(),
    };
    let emulator: CpuSet = cx
        .pins
        .emulator
        .as_ref()
        .map(|(s, _)| s.iter().filter(|&c| topo.cpu(c).is_some()).collect())
        .unwrap_or_default();
    let g = Guest {
        cx,
        topo,
        vcpus,
        places,
        group: if topology_ok && !exceeds { declared_threads.max(1) } else { 1 },
        host_core: topo.cpus.first().map(|c| c.core),
        device_node,
        emulator,
        iothreads,
    };
    let flagged = pins(&g, tune, out);
    let rest = g.rest(&g.target(&flagged));
    for (f, what) in bad {
        let fix = match what {
            Broken::Vcpu(v) => g.repair_fix(&BTreeSet::from([v])),
            Broken::Emulator => emulatorpin(&rest).to_xml(),
            Broken::Iothread(id) => iothreadpin(&id, &rest).to_xml(),
            Broken::VcpuCpuset => {
                let online: CpuSet = vcpu_el
                    .and_then(|v| CpuSet::from_str(v.attr("cpuset")?).ok())
                    .map(|s| s.iter().filter(|&c| topo.cpu(c).is_some()).collect())
                    .unwrap_or_default();
                let all_pinned = (0..vcpus).all(|v| cx.pins.vcpu.contains_key(&v) || broken_vcpus.contains(&v));
                match g.planned() {
                    Some(p) if !all_pinned || online.is_empty() => {
                        format!("{}\n{}", vcpu(&p.guest_cpus, vcpus).to_xml(), g.plan_block(&p))
                    }
                    _ => vcpu(&online, vcpus).to_xml(),
                }
            }
        };
        out.push(f.fix(fix));
    }
    if g.places.iter().all(|p| *p == Place::Unpinned) {
        return;
    }
    qemu_threads(&g, tune, has_emulatorpin, &iothreadpins, &flagged, &rest, out);
}

/// A pin that names CPUs the host does not have online.
enum Broken {
    Vcpu(u32),
    VcpuCpuset,
    Emulator,
    Iothread(String),
}

/// A `cpu-pin-bad-cpuset` finding, still without its fix.
fn bad_pin(path: &str, e: &Element, what: &str, problem: &str) -> Finding {
    Finding::at("cpu-pin-bad-cpuset", Severity::Error, AREA, path, Some(e))
        .message(format!("{what} {problem}"))
        .why("libvirt cannot pin a thread to a CPU the host does not have online: the guest fails to start")
}

/// Rules on where the vCPUs run, in the order of their causes. Returns the vCPUs whose
/// pins a finding already moves.
fn pins(g: &Guest<'_, '_>, tune: Option<&Element>, out: &mut Vec<Finding>) -> BTreeSet<u32> {
    let cx = g.cx;
    let topo = g.topo;
    let tune_at = |v: u32| cx.pins.vcpu.get(&v).map(|(_, e)| *e).or(tune).or_else(|| cx.closest("cputune/vcpupin"));
    // Handled by an earlier rule: left out of the later ones.
    let mut flagged: BTreeSet<u32> =
        (0..g.vcpus).filter(|&v| matches!(g.places[v as usize], Place::Broken | Place::Unpinned)).collect();

    let unpinned: Vec<u32> = (0..g.vcpus).filter(|&v| g.places[v as usize] == Place::Unpinned).collect();
    if !unpinned.is_empty() {
        let all = unpinned.len() as u32 == g.vcpus;
        let (message, fix) = if all {
            let fix = match g.planned() {
                Some(p) => format!("{}\n{}", vcpu(&p.guest_cpus, g.vcpus).to_xml(), g.plan_block(&p)),
                None => g.plan_fix(),
            };
            (format!("none of the {} vCPUs is pinned (no <vcpupin>, no <vcpu cpuset>)", g.vcpus), fix)
        } else {
            let fix = g.repair_fix(&unpinned.iter().copied().collect());
            (
                format!(
                    "{} {} no <vcpupin> and there is no <vcpu cpuset>",
                    vcpus_text(unpinned.iter().copied()),
                    if unpinned.len() == 1 { "has" } else { "have" }
                ),
                fix,
            )
        };
        out.push(
            Finding::at("cpu-unpinned", Severity::Warning, AREA, "cputune/vcpupin", cx.closest("cputune/vcpupin"))
                .message(message)
                .why("the host scheduler moves unpinned vCPUs across all CPUs, onto CPU 0 and next to host work: their caches go cold at every move and frames stutter whenever the host is busy")
                .fix(fix),
        );
        if all {
            return flagged;
        }
    }

    let floating: BTreeMap<u32, CpuSet> = (0..g.vcpus)
        .filter_map(|v| match &g.places[v as usize] {
            Place::Floating(s) => Some((v, s.clone())),
            _ => None,
        })
        .collect();
    if !floating.is_empty() {
        let mut by_set: BTreeMap<&CpuSet, Vec<u32>> = BTreeMap::new();
        for (v, s) in &floating {
            by_set.entry(s).or_default().push(*v);
        }
        let parts: Vec<String> = by_set
            .iter()
            .map(|(s, vs)| format!("{} may run on any of {}", vcpus_text(vs.iter().copied()), cpus_text(s)))
            .collect();
        let first = floating.keys().next().copied().unwrap_or(0);
        let only_vcpu_cpuset = floating.keys().all(|v| !cx.pins.vcpu.contains_key(v));
        let (path, at) = if only_vcpu_cpuset {
            ("cputune/vcpupin".to_string(), cx.closest("cputune/vcpupin"))
        } else {
            (vcpupin_path(first), tune_at(first))
        };
        let fix = g.repair_fix(&floating.keys().copied().collect());
        out.push(
            Finding::at("cpu-vcpu-floating", Severity::Warning, AREA, &path, at)
                .message(format!("{}: one host CPU each is meant", parts.join("; ")))
                .why("a vCPU allowed on several CPUs wanders among them: its cache goes cold at each move, two vCPUs can meet on one core, and the guest's picture of cores and caches is false: stutter and lost performance")
                .fix(fix),
        );
        flagged.extend(floating.keys());
    }

    // Two vCPUs on one CPU: the later ones move.
    let mut on_cpu: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for v in (0..g.vcpus).filter(|v| !flagged.contains(v)) {
        if let Some(c) = g.places[v as usize].on() {
            on_cpu.entry(c).or_default().push(v);
        }
    }
    let shared: Vec<(u32, Vec<u32>)> = on_cpu.into_iter().filter(|(_, vs)| vs.len() > 1).collect();
    if !shared.is_empty() {
        let moved: BTreeSet<u32> = shared.iter().flat_map(|(_, vs)| vs[1..].iter().copied()).collect();
        let parts: Vec<String> =
            shared.iter().map(|(c, vs)| format!("{} all on CPU {c}", vcpus_text(vs.iter().copied()))).collect();
        let first = moved.iter().next().copied().unwrap_or(0);
        out.push(
            Finding::at("cpu-vcpus-share-cpu", Severity::Warning, AREA, &vcpupin_path(first), tune_at(first))
                .message(parts.join("; "))
                .why("vCPUs pinned to one host CPU take turns: each runs at most part of the time and the guest sees vCPUs stall while their twin runs: heavy stutter")
                .fix(g.repair_fix(&moved)),
        );
        flagged.extend(moved);
    }

    let on = |flagged: &BTreeSet<u32>| -> Vec<(u32, u32)> {
        (0..g.vcpus).filter(|v| !flagged.contains(v)).filter_map(|v| Some((v, g.places[v as usize].on()?))).collect()
    };

    if topo.hybrid {
        let small: Vec<(u32, u32)> = on(&flagged)
            .into_iter()
            .filter(|&(_, c)| topo.core_of(c).is_some_and(|k| k.kind == Some(CoreKind::Efficiency)))
            .collect();
        if !small.is_empty() {
            let vs: BTreeSet<u32> = small.iter().map(|p| p.0).collect();
            let cpus: CpuSet = small.iter().map(|p| p.1).collect();
            let perf: CpuSet = topo
                .cores
                .iter()
                .filter(|c| c.kind == Some(CoreKind::Performance))
                .flat_map(|c| c.cpus.iter())
                .collect();
            let first = small[0].0;
            out.push(
                Finding::at("cpu-efficiency-cores", Severity::Warning, AREA, &vcpupin_path(first), tune_at(first))
                    .message(format!(
                        "{} on {}, efficiency cores (the performance cores are {})",
                        vcpus_text(vs.iter().copied()),
                        cpus_text(&cpus),
                        cpus_text(&perf)
                    ))
                    .why("efficiency cores run at a fraction of a performance core's speed and have no SMT: whatever the guest schedules there runs slowly, frame times become uneven")
                    .fix(g.repair_fix(&vs)),
            );
            flagged.extend(vs);
        }
    }

    if let Some(host_core) = g.host_core.and_then(|h| topo.cores.get(h as usize)) {
        let cpu0 = topo.cpus.first().map_or(0, |c| c.cpu);
        let there: Vec<(u32, u32)> = on(&flagged).into_iter().filter(|&(_, c)| host_core.cpus.contains(c)).collect();
        if !there.is_empty() {
            let vs: BTreeSet<u32> = there.iter().map(|p| p.0).collect();
            let parts: Vec<String> = there
                .iter()
                .map(|&(v, c)| {
                    if c == cpu0 {
                        format!("vCPU {v} on CPU {c}")
                    } else {
                        format!("vCPU {v} on CPU {c} (CPU {cpu0}'s SMT sibling)")
                    }
                })
                .collect();
            let first = there[0].0;
            out.push(
                Finding::at("cpu-vcpu-on-cpu0", Severity::Warning, AREA, &vcpupin_path(first), tune_at(first))
                    .message(format!("{}: CPU {cpu0}'s core ({}) should stay with the host", parts.join(", "), host_core.cpus))
                    .why(format!("the host's housekeeping, timers and most interrupts run on CPU {cpu0}: a vCPU on its core is preempted again and again (latency spikes, stutter)"))
                    .fix(g.repair_fix(&vs)),
            );
            flagged.extend(vs);
        }
    }

    // Guest cores on whole host cores.
    if g.group > 1 {
        let t = g.group;
        let mut bad = Vec::new();
        for k in 0..g.vcpus / t {
            let members: Vec<u32> = (k * t..k * t + t).collect();
            if members.iter().any(|v| flagged.contains(v)) {
                continue;
            }
            let Some(cpus) = members.iter().map(|&v| g.places[v as usize].on()).collect::<Option<Vec<u32>>>() else {
                continue;
            };
            let cores: BTreeSet<u32> = cpus.iter().filter_map(|&c| topo.cpu(c).map(|x| x.core)).collect();
            if cores.len() > 1 {
                bad.push((members, cpus));
            }
        }
        if !bad.is_empty() {
            let fix_vcpus: BTreeSet<u32> = bad.iter().flat_map(|(m, _)| m.iter().copied()).collect();
            let repaired = g.repair(&fix_vcpus);
            let join = |xs: &[u32]| xs.iter().map(|x| x.to_string()).collect::<Vec<_>>().join(",");
            let parts: Vec<String> = bad
                .iter()
                .map(|(m, cpus)| {
                    let sib: Vec<String> = cpus
                        .iter()
                        .filter_map(|&c| topo.core_of(c))
                        .map(|k| k.cpus.to_string())
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .collect();
                    let fits = repaired.as_ref().map(|r| {
                        let cs: Vec<u32> = r.iter().filter(|(v, _)| m.contains(v)).map(|p| p.1).collect();
                        format!("; CPUs {} would fit", join(&cs))
                    });
                    format!(
                        "vCPUs {} on CPUs {} (host cores {}){}",
                        join(m),
                        join(cpus),
                        sib.join(" and "),
                        fits.unwrap_or_default()
                    )
                })
                .collect();
            let first = bad[0].0[0];
            let fix = match &repaired {
                Some(r) => vcpupin_lines(r),
                None => g.plan_fix(),
            };
            out.push(
                Finding::at("cpu-smt-siblings", Severity::Warning, AREA, &vcpupin_path(first), tune_at(first))
                    .message(format!(
                        "the topology has {t} threads per core, but these guest cores are not one host core each: {}",
                        parts.join("; ")
                    ))
                    .why("the guest believes each vCPU pair shares a core and schedules accordingly; when the pair sits on two host cores whose siblings run other vCPUs, two busy vCPUs fight for one core while the guest thinks they do not: lost performance and frame-time spikes")
                    .fix(fix),
            );
        }
    }

    // One L3 domain and one node, the device's, when they fit.
    let good = on(&flagged);
    if good.len() > 1 {
        let cpus: CpuSet = good.iter().map(|p| p.1).collect();
        let first = good[0].0;
        let nodes: BTreeSet<u32> = cpus.iter().filter_map(|c| topo.cpu(c)?.node).collect();
        let l3s: BTreeSet<u32> = cpus.iter().filter_map(|c| topo.cpu(c)?.l3).collect();
        let need = g.vcpus as usize;
        let node_room = |n: u32| topo.node(n).map_or(0, |nd| g.room(&nd.cpus));
        let fit_node = topo
            .nodes
            .iter()
            .filter(|n| node_room(n.id) >= need)
            .max_by_key(|n| (Some(n.id) == g.device_node, node_room(n.id)));
        let fit_l3 = topo.l3.iter().filter(|d| g.room(&d.cpus) >= need).max_by_key(|d| (d.size_kib, g.room(&d.cpus)));
        let planned = g.planned();
        // The planner's placement when it lands inside `cpus`, else a pointer to them.
        let within = |cpus: &CpuSet| match &planned {
            Some(p) if p.guest_cpus.iter().all(|c| cpus.contains(c)) => g.plan_block(p),
            _ => Node::comment(&format!("one <vcpupin> per vCPU, on whole cores among {}", cpus_text(cpus))).to_xml(),
        };
        let split = |of: &dyn Fn(u32) -> Option<u32>| {
            let mut by: BTreeMap<u32, CpuSet> = BTreeMap::new();
            for c in cpus.iter() {
                if let Some(k) = of(c) {
                    by.entry(k).or_default().insert(c);
                }
            }
            by.iter().map(|(k, s)| format!("{k} ({})", cpus_text(s))).collect::<Vec<_>>().join(", ")
        };
        if nodes.len() > 1 && fit_node.is_some() {
            let n = fit_node.map_or(0, |n| n.id);
            let ncpus = topo.node(n).map(|nd| nd.cpus.clone()).unwrap_or_default();
            out.push(
                Finding::at("cpu-numa-spread", Severity::Warning, AREA, &vcpupin_path(first), tune_at(first))
                    .message(format!(
                        "the vCPUs run on {} NUMA nodes: {}; node {n} alone has {} CPUs for a guest, enough for all {}",
                        nodes.len(),
                        split(&|c| topo.cpu(c)?.node),
                        node_room(n),
                        g.vcpus
                    ))
                    .why("vCPUs on the far node reach the guest's memory and the passed device across the interconnect between nodes, and share no cache with the others: higher latency, lost cache, stutter")
                    .fix(within(&ncpus)),
            );
        } else if l3s.len() > 1 && fit_l3.is_some() {
            let d = fit_l3.map(|d| (d.id, d.cpus.clone())).unwrap_or_default();
            out.push(
                Finding::at("cpu-l3-spread", Severity::Warning, AREA, &vcpupin_path(first), tune_at(first))
                    .message(format!(
                        "the vCPUs run in {} L3 domains: {}; L3 domain {} alone has {} CPUs for a guest, enough for all {}",
                        l3s.len(),
                        split(&|c| topo.cpu(c)?.l3),
                        d.0,
                        g.room(&d.1),
                        g.vcpus
                    ))
                    .why("cores in different L3 domains (CCX/CCD) share no cache: guest threads that share data go through the slower fabric between them: lost cache, lower and less even frame rates")
                    .fix(within(&d.1)),
            );
        } else if let (&[n], Some(dev)) = (nodes.iter().copied().collect::<Vec<_>>().as_slice(), g.device_node) {
            if n != dev && node_room(dev) >= need {
                let dcpus = topo.node(dev).map(|nd| nd.cpus.clone()).unwrap_or_default();
                out.push(
                    Finding::at("cpu-numa-away-from-device", Severity::Warning, AREA, &vcpupin_path(first), tune_at(first))
                        .message(format!(
                            "the vCPUs run on NUMA node {n}, the passed device is on node {dev}, which has {} CPUs for a guest, enough for all {}",
                            node_room(dev),
                            g.vcpus
                        ))
                        .why("every DMA transfer and interrupt of the device crosses the interconnect between nodes: added latency on every frame, stutter under load")
                        .fix(within(&dcpus)),
                );
            }
        }
    }
    flagged
}

/// The emulator and I/O threads.
fn qemu_threads(
    g: &Guest<'_, '_>,
    tune: Option<&Element>,
    has_emulatorpin: bool,
    iothreadpins: &BTreeSet<u32>,
    flagged: &BTreeSet<u32>,
    rest: &CpuSet,
    out: &mut Vec<Finding>,
) {
    let cx = g.cx;
    // The CPUs of vCPUs no other finding moves.
    let vcpu_cpus: CpuSet =
        (0..g.vcpus).filter(|v| !flagged.contains(v)).filter_map(|v| g.places[v as usize].on()).collect();
    let overlap_with = |set: &CpuSet| -> CpuSet { set.iter().filter(|&c| vcpu_cpus.contains(c)).collect() };
    let on_those = |o: &CpuSet| -> Vec<u32> {
        (0..g.vcpus).filter(|&v| g.places[v as usize].on().is_some_and(|c| o.contains(c))).collect()
    };
    if !has_emulatorpin {
        out.push(
            Finding::at("cpu-no-emulatorpin", Severity::Warning, AREA, "cputune/emulatorpin", tune.or_else(|| cx.closest("cputune")))
                .message("the vCPUs are pinned, the emulator thread is not")
                .why("QEMU's emulator thread (device emulation, I/O completion) then runs wherever the host puts it, also on the vCPUs' CPUs, and preempts them: micro-stutter, audio crackle")
                .fix(emulatorpin(rest).to_xml()),
        );
    } else if let Some((set, e)) = &cx.pins.emulator {
        let o = overlap_with(set);
        if !o.is_empty() {
            out.push(
                Finding::at("cpu-emulatorpin-overlap", Severity::Warning, AREA, "cputune/emulatorpin", Some(e))
                    .message(format!("the emulator thread may run on {}, where {}", cpus_text(&o), running(&on_those(&o))))
                    .why("the emulator thread preempts the vCPU it shares a CPU with whenever the guest does I/O: micro-stutter, audio crackle")
                    .fix(emulatorpin(rest).to_xml()),
            );
        }
    }
    let missing: Vec<u32> = g.iothreads.iter().copied().filter(|t| !iothreadpins.contains(t)).collect();
    if !missing.is_empty() {
        let ids = missing.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(", ");
        out.push(
            Finding::at("cpu-no-iothreadpin", Severity::Warning, AREA, "cputune/iothreadpin", tune.or_else(|| cx.closest("cputune")))
                .message(format!("I/O thread{} {ids} {} no <iothreadpin>", if missing.len() == 1 { "" } else { "s" }, if missing.len() == 1 { "has" } else { "have" }))
                .why("an unpinned I/O thread runs anywhere, also on the vCPUs' CPUs: disk I/O then steals time from the guest (stutter while loading)")
                .fix(missing.iter().map(|t| iothreadpin(&t.to_string(), rest).to_xml()).collect::<Vec<_>>().join("\n")),
        );
    }
    for (t, (set, e)) in &cx.pins.iothread {
        let o = overlap_with(set);
        if !o.is_empty() {
            out.push(
                Finding::at("cpu-iothreadpin-overlap", Severity::Warning, AREA, &format!("cputune/iothreadpin[@iothread='{t}']"), Some(e))
                    .message(format!("I/O thread {t} may run on {}, where {}", cpus_text(&o), running(&on_those(&o))))
                    .why("the I/O thread preempts the vCPU it shares a CPU with on every disk request: stutter while loading")
                    .fix(iothreadpin(&t.to_string(), rest).to_xml()),
            );
        }
    }
}

#[cfg(test)]
mod tests {
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
        let unit = d.indent_unit();
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
                XmlNode::Element(
                    Element::new("vcpupin").with_attr("vcpu", &i.to_string()).with_attr("cpuset", &c.to_string()),
                )
            })
            .collect();
        nodes.push(XmlNode::Element(Element::new("emulatorpin").with_attr("cpuset", emulator)));
        nodes.push(XmlNode::Element(
            Element::new("iothreadpin").with_attr("iothread", "1").with_attr("cpuset", emulator),
        ));
        t.insert(None, nodes, 2, &unit);
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
        assert!(
            m.fix.contains("mode='host-passthrough'") && m.fix.contains("threads='2'") && m.fix.contains("topoext")
        );
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
            let unit = d.indent_unit();
            let pin = Element::new("vcpupin").with_attr("vcpu", "6").with_attr("cpuset", "7");
            tune(d).insert(None, vec![XmlNode::Element(pin)], 2, &unit);
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
        assert!(
            m.fix.contains("<vcpupin vcpu='1' cpuset='12'/>") && m.fix.contains("<emulatorpin cpuset='0-3,7-11,15'/>")
        );
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

    #[test]
    fn every_id_has_a_case() {
        // Keep in step with the cases above.
        let covered = [
            "cpu-mode-not-passthrough",
            "cpu-no-topology",
            "cpu-topology-mismatch",
            "cpu-threads-exceed-host",
            "cpu-amd-no-topoext",
            "cpu-pin-bad-cpuset",
            "cpu-vcpupin-no-such-vcpu",
            "cpu-unpinned",
            "cpu-vcpu-floating",
            "cpu-vcpus-share-cpu",
            "cpu-efficiency-cores",
            "cpu-vcpu-on-cpu0",
            "cpu-smt-siblings",
            "cpu-numa-spread",
            "cpu-l3-spread",
            "cpu-numa-away-from-device",
            "cpu-no-emulatorpin",
            "cpu-emulatorpin-overlap",
            "cpu-no-iothreadpin",
            "cpu-iothreadpin-overlap",
        ];
        let ids: Vec<&str> = super::IDS.iter().map(|i| i.0).collect();
        assert_eq!(ids, covered);
    }
}
