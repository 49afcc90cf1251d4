//! # CPU topology: packages, NUMA nodes, L3 cache domains, cores and SMT threads
//!
//! A **logical CPU** (a "thread", hwloc's PU) is what Linux numbers `cpu0`, `cpu1`, …
//! and what a vCPU gets pinned to. With SMT (Hyper-Threading), two or more logical CPUs
//! share one physical **core**: its *SMT siblings* (`thread_siblings_list`). Their
//! numbering is not contiguous: on many AMD and Intel machines the siblings of CPU `n`
//! is `n + threads/2`, on others `n ^ 1`. A guest should get whole cores (all siblings).
//!
//! Cores sharing a **last-level (L3) cache** form an *L3 domain*: an AMD CCX (Zen 1/2),
//! CCD (Zen 3 and later; a V-Cache die has a larger L3 than its neighbour), or a whole
//! Intel die. Keeping a guest inside one domain avoids cache traffic between domains.
//! A **NUMA node** is a set of CPUs with the memory closest to them (and the PCIe
//! devices attached there); a **package** is a socket. A **die** sits between package
//! and L3 on some parts. Hybrid Intel CPUs (Alder Lake and later) mix *performance*
//! cores (`/sys/devices/cpu_core/cpus`) and *efficiency* cores
//! (`/sys/devices/cpu_atom/cpus`).
//!
//! The kernel's own numbers are not host-unique: `core_id` repeats in every package and
//! may have gaps, cache `id` files are missing on old kernels. This module therefore
//! gives its own numbers:
//! - a **core number** is the index of the core in the list of cores ordered by their
//!   first (lowest numbered) logical CPU, so it is unique on the host and dense from 0;
//!   the kernel's `core_id` is kept beside it;
//! - an **L3 domain number** is the kernel's cache `id` when every CPU has one and they
//!   agree, otherwise the index of the domain ordered by its first CPU;
//! - NUMA node and package numbers are the kernel's.
//!
//! [`Topology::build`] turns per-CPU records as sysfs gives them ([`RawTopology`]) into
//! a consistent [`Topology`]. It never fails: missing facts become unknown (`None`), and
//! facts that contradict each other are reconciled with a note for the caller to show.
//! `vfioctl-host` reads the records; nothing here touches the file system.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::cpuset::CpuSet;

/// What sysfs says about one online logical CPU. Unknown facts are `None`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawCpu {
    pub cpu: u32,
    /// `topology/physical_package_id`.
    pub package: Option<u32>,
    /// `topology/die_id` (absent before Linux 5.2).
    pub die: Option<u32>,
    /// `topology/core_id`: unique only within a package (and die).
    pub core_id: Option<u32>,
    /// `topology/thread_siblings_list` (or `core_cpus_list`), including the CPU itself.
    pub thread_siblings: Option<CpuSet>,
    /// The level 3 unified cache, when the CPU has one listed under `cache/`.
    pub l3: Option<RawL3>,
    /// `cpufreq/cpuinfo_max_freq`, in kHz.
    pub max_freq_khz: Option<u64>,
}

/// A CPU's view of its L3 cache (`cache/indexN` with `level` 3 and `type` Unified).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawL3 {
    /// `id` (absent on old kernels).
    pub id: Option<u32>,
    /// `shared_cpu_list`.
    pub shared: CpuSet,
    /// `size`, in KiB.
    pub size_kib: Option<u64>,
}

/// A NUMA node as `/sys/devices/system/node/nodeN` gives it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawNode {
    pub id: u32,
    /// `cpulist`; empty for memory-only nodes.
    pub cpus: CpuSet,
    /// `MemTotal` of `meminfo`, in KiB.
    pub memory_kib: Option<u64>,
}

/// Everything [`Topology::build`] needs.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RawTopology {
    /// The online CPUs, in any order.
    pub cpus: Vec<RawCpu>,
    /// Present but offline CPUs: listed, never scheduled on.
    pub offline: CpuSet,
    /// NUMA nodes. Empty on kernels without NUMA support (no `node` directory): the
    /// topology then has one node 0 holding every CPU and [`RawTopology::memory_kib`].
    pub nodes: Vec<RawNode>,
    /// `MemTotal` of `/proc/meminfo`, in KiB.
    pub memory_kib: Option<u64>,
    /// `/sys/devices/cpu_core/cpus`, present only on hybrid CPUs.
    pub performance: Option<CpuSet>,
    /// `/sys/devices/cpu_atom/cpus`, present only on hybrid CPUs.
    pub efficiency: Option<CpuSet>,
}

/// The kind of a core on a hybrid CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum CoreKind {
    /// A big core (Intel "P-core", `cpu_core`).
    Performance,
    /// A small core (Intel "E-core", `cpu_atom`).
    Efficiency,
}

impl CoreKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CoreKind::Performance => "performance",
            CoreKind::Efficiency => "efficiency",
        }
    }
}

/// One online logical CPU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Cpu {
    pub cpu: u32,
    /// Host-unique core number (see the module documentation), an index into
    /// [`Topology::cores`].
    pub core: u32,
    /// The kernel's `core_id`, unique only within a package.
    pub core_id: Option<u32>,
    pub package: Option<u32>,
    pub die: Option<u32>,
    pub node: Option<u32>,
    /// The [`L3Domain::id`] of the CPU's L3, `None` when it has none listed (often in VMs).
    pub l3: Option<u32>,
    /// All CPUs of the core, this one included.
    pub siblings: CpuSet,
    /// Performance or efficiency core on a hybrid CPU; `None` otherwise.
    pub kind: Option<CoreKind>,
    pub max_freq_khz: Option<u64>,
}

/// A physical core: a set of SMT siblings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Core {
    /// Host-unique core number: the index in [`Topology::cores`], ordered by first CPU.
    pub id: u32,
    pub cpus: CpuSet,
    pub core_id: Option<u32>,
    pub package: Option<u32>,
    pub die: Option<u32>,
    pub node: Option<u32>,
    pub l3: Option<u32>,
    pub kind: Option<CoreKind>,
    /// The highest `max_freq_khz` of its CPUs.
    pub max_freq_khz: Option<u64>,
}

/// CPUs sharing one L3 cache.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct L3Domain {
    pub id: u32,
    pub cpus: CpuSet,
    pub size_kib: Option<u64>,
    /// Nodes holding its CPUs (one, except with sub-NUMA clustering).
    pub nodes: Vec<u32>,
}

/// A NUMA node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Node {
    pub id: u32,
    /// Its online CPUs; empty for memory-only nodes.
    pub cpus: CpuSet,
    pub memory_kib: Option<u64>,
    /// The L3 domains with CPUs in this node.
    pub l3: Vec<u32>,
}

/// A CPU package (socket).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Package {
    pub id: u32,
    pub cpus: CpuSet,
}

/// The CPU topology of a host. Lists are sorted by id (CPUs by number).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Topology {
    pub cpus: Vec<Cpu>,
    pub cores: Vec<Core>,
    pub l3: Vec<L3Domain>,
    pub nodes: Vec<Node>,
    pub packages: Vec<Package>,
    /// Present but offline CPUs; they are in no other list.
    pub offline: CpuSet,
    /// True on hybrid CPUs (performance and efficiency cores).
    pub hybrid: bool,
}

/// A disjoint-set forest over CPU indices, to turn possibly inconsistent "shared with"
/// lists into a partition.
struct Partition(Vec<usize>);

impl Partition {
    fn new(n: usize) -> Self {
        Partition((0..n).collect())
    }
    fn find(&mut self, mut i: usize) -> usize {
        while self.0[i] != i {
            self.0[i] = self.0[self.0[i]];
            i = self.0[i];
        }
        i
    }
    fn union(&mut self, a: usize, b: usize) {
        let (ra, rb) = (self.find(a), self.find(b));
        // The smaller index (lower CPU number) is the representative.
        if ra < rb {
            self.0[rb] = ra;
        } else {
            self.0[ra] = rb;
        }
    }
    /// Groups of indices, ordered by their smallest member.
    fn groups(&mut self) -> Vec<Vec<usize>> {
        let mut by_root: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
        for i in 0..self.0.len() {
            let r = self.find(i);
            by_root.entry(r).or_default().push(i);
        }
        by_root.into_values().collect()
    }
}

impl Topology {
    /// Builds a consistent topology from what sysfs says. Returns notes on facts that
    /// contradicted each other and how they were settled.
    pub fn build(raw: RawTopology) -> (Topology, Vec<String>) {
        let mut notes = Vec::new();
        let mut raw_cpus = raw.cpus;
        raw_cpus.sort_by_key(|c| c.cpu);
        let before = raw_cpus.len();
        raw_cpus.dedup_by_key(|c| c.cpu);
        if raw_cpus.len() != before {
            notes.push("some CPUs were listed twice; the first record of each was used".into());
        }
        let index: BTreeMap<u32, usize> = raw_cpus.iter().enumerate().map(|(i, c)| (c.cpu, i)).collect();
        let known: CpuSet = raw_cpus.iter().map(|c| c.cpu).collect();
        let n = raw_cpus.len();

        // Cores: SMT sibling lists, else (package, die, core_id).
        let mut cores_p = Partition::new(n);
        let mut by_key: BTreeMap<(Option<u32>, Option<u32>, u32), Vec<usize>> = BTreeMap::new();
        for (i, c) in raw_cpus.iter().enumerate() {
            if let Some(id) = c.core_id {
                by_key.entry((c.package, c.die, id)).or_default().push(i);
            }
        }
        for (i, c) in raw_cpus.iter().enumerate() {
            match &c.thread_siblings {
                Some(s) => {
                    for j in s.iter().filter_map(|x| index.get(&x)) {
                        cores_p.union(i, *j);
                    }
                }
                None => {
                    if let Some(id) = c.core_id {
                        for &j in by_key.get(&(c.package, c.die, id)).into_iter().flatten() {
                            cores_p.union(i, j);
                        }
                    }
                }
            }
        }
        let core_groups = cores_p.groups();
        let mut core_of = vec![0u32; n];
        let mut core_sets = Vec::with_capacity(core_groups.len());
        for (k, g) in core_groups.iter().enumerate() {
            let set: CpuSet = g.iter().map(|&i| raw_cpus[i].cpu).collect();
            for &i in g {
                core_of[i] = k as u32;
                let c = &raw_cpus[i];
                if let Some(s) = &c.thread_siblings {
                    let stated: CpuSet = s.iter().filter(|x| known.contains(*x)).collect();
                    if stated != set {
                        notes.push(format!(
                            "CPU {}: thread siblings are listed as {s}, but the other CPUs' lists make its core {set}",
                            c.cpu
                        ));
                    }
                }
            }
            core_sets.push(set);
        }

        // L3 domains: shared_cpu_list, numbered by cache id when consistent.
        let mut l3_p = Partition::new(n);
        for (i, c) in raw_cpus.iter().enumerate() {
            if let Some(l3) = &c.l3 {
                for j in l3.shared.iter().filter_map(|x| index.get(&x)) {
                    l3_p.union(i, *j);
                }
            }
        }
        let l3_groups: Vec<Vec<usize>> =
            l3_p.groups().into_iter().filter(|g| g.iter().any(|&i| raw_cpus[i].l3.is_some())).collect();
        for g in &l3_groups {
            let set: CpuSet = g.iter().map(|&i| raw_cpus[i].cpu).collect();
            for &i in g {
                if let Some(l3) = &raw_cpus[i].l3 {
                    let stated: CpuSet = l3.shared.iter().filter(|x| known.contains(*x)).collect();
                    if stated != set {
                        notes.push(format!(
                            "CPU {}: L3 cache is listed as shared with {}, but the other CPUs' lists make the domain {set}",
                            raw_cpus[i].cpu, l3.shared
                        ));
                    }
                }
            }
        }
        let l3_ids = l3_domain_ids(&raw_cpus, &l3_groups, &mut notes);
        let mut l3_of: Vec<Option<u32>> = vec![None; n];
        let mut l3: Vec<L3Domain> = Vec::with_capacity(l3_groups.len());
        for (g, &id) in l3_groups.iter().zip(&l3_ids) {
            let cpus: CpuSet = g.iter().map(|&i| raw_cpus[i].cpu).collect();
            let sizes: Vec<u64> = g.iter().filter_map(|&i| raw_cpus[i].l3.as_ref()?.size_kib).collect();
            let size_kib = sizes.iter().copied().max();
            if sizes.iter().any(|&s| Some(s) != size_kib) {
                notes
                    .push(format!("L3 domain {id} ({cpus}): its CPUs disagree on the cache size; the largest is used"));
            }
            for &i in g {
                l3_of[i] = Some(id);
            }
            l3.push(L3Domain { id, cpus, size_kib, nodes: Vec::new() });
        }
        l3.sort_by_key(|d| d.id);

        // NUMA nodes.
        let mut nodes: Vec<Node> = if raw.nodes.is_empty() {
            vec![Node { id: 0, cpus: known.clone(), memory_kib: raw.memory_kib, l3: Vec::new() }]
        } else {
            let mut rn = raw.nodes;
            rn.sort_by_key(|nd| nd.id);
            rn.dedup_by_key(|nd| nd.id);
            rn.into_iter()
                .map(|nd| Node {
                    id: nd.id,
                    cpus: nd.cpus.iter().filter(|x| known.contains(*x)).collect(),
                    memory_kib: nd.memory_kib,
                    l3: Vec::new(),
                })
                .collect()
        };
        let mut node_of: Vec<Option<u32>> = vec![None; n];
        for nd in &mut nodes {
            let mut kept = CpuSet::new();
            for cpu in nd.cpus.iter() {
                let Some(&i) = index.get(&cpu) else { continue };
                match node_of[i] {
                    Some(other) => {
                        notes.push(format!("CPU {cpu} is listed in nodes {other} and {}; kept in node {other}", nd.id))
                    }
                    None => {
                        node_of[i] = Some(nd.id);
                        kept.insert(cpu);
                    }
                }
            }
            nd.cpus = kept;
        }
        let homeless: CpuSet = (0..n).filter(|&i| node_of[i].is_none()).map(|i| raw_cpus[i].cpu).collect();
        if !homeless.is_empty() {
            notes.push(format!("CPUs {homeless} are in no NUMA node's cpulist; their node is unknown"));
        }
        for nd in &mut nodes {
            nd.l3 = l3.iter().filter(|d| d.cpus.iter().any(|c| nd.cpus.contains(c))).map(|d| d.id).collect();
        }
        for d in &mut l3 {
            d.nodes = nodes.iter().filter(|nd| nd.l3.contains(&d.id)).map(|nd| nd.id).collect();
        }

        // Hybrid core kinds.
        let hybrid = raw.performance.is_some() || raw.efficiency.is_some();
        let kind_of = |cpu: u32| -> Option<CoreKind> {
            if raw.performance.as_ref().is_some_and(|s| s.contains(cpu)) {
                Some(CoreKind::Performance)
            } else if raw.efficiency.as_ref().is_some_and(|s| s.contains(cpu)) {
                Some(CoreKind::Efficiency)
            } else {
                None
            }
        };
        if let (Some(p), Some(e)) = (&raw.performance, &raw.efficiency) {
            let both: CpuSet = p.iter().filter(|&c| e.contains(c)).collect();
            if !both.is_empty() {
                notes.push(format!("CPUs {both} are listed as both performance and efficiency; taken as performance"));
            }
        }

        let cpus: Vec<Cpu> = raw_cpus
            .iter()
            .enumerate()
            .map(|(i, c)| Cpu {
                cpu: c.cpu,
                core: core_of[i],
                core_id: c.core_id,
                package: c.package,
                die: c.die,
                node: node_of[i],
                l3: l3_of[i],
                siblings: core_sets[core_of[i] as usize].clone(),
                kind: if hybrid { kind_of(c.cpu) } else { None },
                max_freq_khz: c.max_freq_khz,
            })
            .collect();

        let cores: Vec<Core> = core_groups
            .iter()
            .zip(core_sets)
            .enumerate()
            .map(|(k, (g, set))| {
                let first = &cpus[g[0]];
                let agree = |f: &dyn Fn(&Cpu) -> Option<u32>| g.iter().all(|&i| f(&cpus[i]) == f(first));
                if !agree(&|c| c.package) || !agree(&|c| c.node) || !agree(&|c| c.l3) {
                    notes.push(format!(
                        "core {k} ({set}): its CPUs disagree on package, node or L3; CPU {}'s are used",
                        first.cpu
                    ));
                }
                Core {
                    id: k as u32,
                    cpus: set,
                    core_id: first.core_id,
                    package: first.package,
                    die: first.die,
                    node: first.node,
                    l3: first.l3,
                    kind: first.kind,
                    max_freq_khz: g.iter().filter_map(|&i| cpus[i].max_freq_khz).max(),
                }
            })
            .collect();

        let mut packages: BTreeMap<u32, CpuSet> = BTreeMap::new();
        for c in &cpus {
            if let Some(p) = c.package {
                packages.entry(p).or_default().insert(c.cpu);
            }
        }
        let packages = packages.into_iter().map(|(id, cpus)| Package { id, cpus }).collect();
        let offline = raw.offline.iter().filter(|c| !known.contains(*c)).collect();

        (Topology { cpus, cores, l3, nodes, packages, offline, hybrid }, notes)
    }

    /// The physical cores (groups of SMT siblings), ordered by first CPU.
    pub fn cores(&self) -> &[Core] {
        &self.cores
    }

    /// One online CPU.
    pub fn cpu(&self, cpu: u32) -> Option<&Cpu> {
        self.cpus.binary_search_by_key(&cpu, |c| c.cpu).ok().map(|i| &self.cpus[i])
    }

    /// The core holding a CPU.
    pub fn core_of(&self, cpu: u32) -> Option<&Core> {
        self.cores.get(self.cpu(cpu)?.core as usize)
    }

    /// The L3 domain of a CPU, if it has an L3.
    pub fn l3_of(&self, cpu: u32) -> Option<&L3Domain> {
        let id = self.cpu(cpu)?.l3?;
        self.l3.iter().find(|d| d.id == id)
    }

    /// The NUMA node of a CPU, if known.
    pub fn node_of(&self, cpu: u32) -> Option<&Node> {
        let id = self.cpu(cpu)?.node?;
        self.node(id)
    }

    pub fn node(&self, id: u32) -> Option<&Node> {
        self.nodes.iter().find(|nd| nd.id == id)
    }

    /// True on hybrid CPUs (performance and efficiency cores).
    pub fn is_hybrid(&self) -> bool {
        self.hybrid
    }

    /// All online CPUs.
    pub fn online(&self) -> CpuSet {
        self.cpus.iter().map(|c| c.cpu).collect()
    }

    /// The largest number of SMT siblings in a core (1 without SMT).
    pub fn smt_width(&self) -> usize {
        self.cores.iter().map(|c| c.cpus.len()).max().unwrap_or(0)
    }

    /// The highest `max_freq_khz` of any CPU.
    pub fn max_freq_khz(&self) -> Option<u64> {
        self.cpus.iter().filter_map(|c| c.max_freq_khz).max()
    }
}

/// The ids of the L3 groups: the kernel's cache ids when each group has exactly one and
/// no two groups share one, otherwise indices in order of first CPU.
fn l3_domain_ids(raw_cpus: &[RawCpu], groups: &[Vec<usize>], notes: &mut Vec<String>) -> Vec<u32> {
    let mut ids = Vec::with_capacity(groups.len());
    let mut usable = true;
    let mut any = false;
    for g in groups {
        let mut group_ids: Vec<Option<u32>> =
            g.iter().filter_map(|&i| raw_cpus[i].l3.as_ref()).map(|l3| l3.id).collect();
        group_ids.sort_unstable();
        group_ids.dedup();
        any |= group_ids.iter().any(Option::is_some);
        match group_ids.as_slice() {
            [Some(id)] => ids.push(*id),
            _ => usable = false,
        }
    }
    let mut sorted = ids.clone();
    sorted.sort_unstable();
    sorted.dedup();
    if usable && sorted.len() == groups.len() {
        return ids;
    }
    if any {
        notes.push(
            "L3 cache ids are missing or disagree with shared_cpu_list; L3 domains are numbered by first CPU".into(),
        );
    }
    (0..groups.len() as u32).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    fn set(s: &str) -> CpuSet {
        s.parse().unwrap()
    }

    /// A Threadripper 1950X: 16 cores, siblings n and n+16, 4 CCXs of 8 MiB, 2 nodes.
    fn tr1950x() -> RawTopology {
        let ccx = ["0-3,16-19", "4-7,20-23", "8-11,24-27", "12-15,28-31"];
        let cpus = (0..32)
            .map(|cpu| {
                let core = cpu % 16;
                RawCpu {
                    cpu,
                    package: Some(0),
                    die: Some(core / 8),
                    // core_id repeats per die on Zen 1.
                    core_id: Some((core % 8 / 4) * 4 + core % 4),
                    thread_siblings: Some([core, core + 16].into_iter().collect()),
                    l3: Some(RawL3 { id: Some(core / 4), shared: set(ccx[(core / 4) as usize]), size_kib: Some(8192) }),
                    max_freq_khz: Some(3_400_000),
                }
            })
            .collect();
        RawTopology {
            cpus,
            nodes: vec![
                RawNode { id: 0, cpus: set("0-7,16-23"), memory_kib: Some(16_000_000) },
                RawNode { id: 1, cpus: set("8-15,24-31"), memory_kib: Some(16_500_000) },
            ],
            memory_kib: Some(32_500_000),
            ..Default::default()
        }
    }

    #[test]
    fn threadripper() {
        let (t, notes) = Topology::build(tr1950x());
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(t.cpus.len(), 32);
        assert_eq!(t.cores.len(), 16);
        assert_eq!(t.smt_width(), 2);
        assert_eq!(t.packages.len(), 1);
        assert_eq!(
            t.l3.iter().map(|d| d.cpus.to_string()).collect::<Vec<_>>(),
            ["0-3,16-19", "4-7,20-23", "8-11,24-27", "12-15,28-31"]
        );
        assert!(t.l3.iter().all(|d| d.size_kib == Some(8192)));
        assert_eq!(t.nodes[1].l3, [2, 3]);
        assert_eq!(t.l3[3].nodes, [1]);
        let c4 = t.cpu(4).unwrap();
        assert_eq!((c4.core, c4.node, c4.l3, c4.kind), (4, Some(0), Some(1), None));
        assert_eq!(c4.siblings, set("4,20"));
        assert_eq!(t.core_of(20).unwrap().id, 4);
        assert_eq!(t.l3_of(28).unwrap().id, 3);
        assert_eq!(t.node_of(24).unwrap().id, 1);
        assert!(!t.is_hybrid());
        assert_eq!(t.max_freq_khz(), Some(3_400_000));
    }

    #[test]
    fn json_shape() {
        let (t, _) = Topology::build(tr1950x());
        let v = serde_json::to_value(&t).unwrap();
        let c4 = &v["cpus"][4];
        assert_eq!(c4["cpu"], 4);
        assert_eq!(c4["core"], 4);
        assert_eq!(c4["package"], 0);
        assert_eq!(c4["node"], 0);
        assert_eq!(c4["l3"], 1);
        assert_eq!(c4["siblings"], serde_json::json!([4, 20]));
        assert_eq!(c4["kind"], serde_json::Value::Null);
        assert_eq!(v["l3"][1]["id"], 1);
        assert_eq!(v["l3"][1]["size_kib"], 8192);
        assert_eq!(v["l3"][1]["cpus"][0], 4);
        assert_eq!(v["nodes"][0]["memory_kib"], 16_000_000);
        assert_eq!(v["nodes"][0]["cpus"].as_array().unwrap().len(), 16);
    }

    #[test]
    fn without_l3_ids_domains_are_numbered_by_first_cpu() {
        let mut raw = tr1950x();
        for c in &mut raw.cpus {
            if let Some(l3) = &mut c.l3 {
                l3.id = None;
            }
        }
        // Reverse the record order: numbering must not depend on it.
        raw.cpus.reverse();
        let (t, notes) = Topology::build(raw);
        assert!(notes.is_empty(), "{notes:?}");
        assert_eq!(
            t.l3.iter().map(|d| (d.id, d.cpus.first())).collect::<Vec<_>>(),
            [(0, Some(0)), (1, Some(4)), (2, Some(8)), (3, Some(12))]
        );
    }

    #[test]
    fn conflicting_l3_ids_fall_back_with_a_note() {
        let mut raw = tr1950x();
        for c in &mut raw.cpus {
            if let Some(l3) = &mut c.l3 {
                l3.id = Some(7);
            }
        }
        let (t, notes) = Topology::build(raw);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert_eq!(t.l3.iter().map(|d| d.id).collect::<Vec<_>>(), [0, 1, 2, 3]);
    }

    #[test]
    fn non_numa_kernel_gets_one_node_with_all_memory() {
        let mut raw = tr1950x();
        raw.nodes.clear();
        let (t, _) = Topology::build(raw);
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.nodes[0].id, 0);
        assert_eq!(t.nodes[0].cpus, set("0-31"));
        assert_eq!(t.nodes[0].memory_kib, Some(32_500_000));
        assert_eq!(t.nodes[0].l3, [0, 1, 2, 3]);
    }

    #[test]
    fn core_id_repeats_across_packages() {
        // Two packages, no SMT, core_id 0-1 in each, no sibling lists.
        let cpus = (0..4)
            .map(|cpu| RawCpu { cpu, package: Some(cpu / 2), core_id: Some(cpu % 2), ..Default::default() })
            .collect();
        let (t, notes) = Topology::build(RawTopology { cpus, ..Default::default() });
        assert!(notes.is_empty());
        assert_eq!(t.cores.len(), 4);
        assert_eq!(t.packages.len(), 2);
        assert_eq!(t.smt_width(), 1);
        assert!(t.l3.is_empty());
        assert_eq!(t.cpu(3).unwrap().l3, None);
    }

    #[test]
    fn cpus_without_anything_are_their_own_cores() {
        let cpus = [5, 2, 9].into_iter().map(|cpu| RawCpu { cpu, ..Default::default() }).collect();
        let (t, _) = Topology::build(RawTopology { cpus, offline: set("0-1,2"), ..Default::default() });
        assert_eq!(t.cores.iter().map(|c| c.cpus.to_string()).collect::<Vec<_>>(), ["2", "5", "9"]);
        assert_eq!(t.cpu(9).unwrap().core, 2);
        // CPU 2 is online, so not offline.
        assert_eq!(t.offline, set("0-1"));
        assert!(t.cpu(3).is_none());
        assert!(t.l3_of(3).is_none() && t.node_of(3).is_none() && t.core_of(3).is_none());
    }

    #[test]
    fn inconsistent_sibling_lists_become_a_partition_with_notes() {
        let cpus = vec![
            RawCpu { cpu: 0, thread_siblings: Some(set("0-1")), ..Default::default() },
            RawCpu { cpu: 1, thread_siblings: Some(set("1")), ..Default::default() },
            RawCpu { cpu: 2, thread_siblings: Some(set("2,3,99")), ..Default::default() },
            RawCpu { cpu: 3, thread_siblings: Some(set("2-3")), ..Default::default() },
        ];
        let (t, notes) = Topology::build(RawTopology { cpus, ..Default::default() });
        assert_eq!(t.cores.len(), 2);
        assert_eq!(t.cpu(1).unwrap().siblings, set("0-1"));
        // CPU 99 is not online: not a contradiction.
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(notes[0].starts_with("CPU 1:"), "{notes:?}");
    }

    #[test]
    fn node_problems() {
        let cpus = (0..4).map(|cpu| RawCpu { cpu, ..Default::default() }).collect();
        let nodes = vec![
            RawNode { id: 1, cpus: set("0-1"), memory_kib: None },
            RawNode { id: 0, cpus: set("1"), memory_kib: Some(1) },
            RawNode { id: 2, cpus: CpuSet::new(), memory_kib: Some(5) },
        ];
        let (t, notes) = Topology::build(RawTopology { cpus, nodes, ..Default::default() });
        assert_eq!(t.nodes.iter().map(|n| n.id).collect::<Vec<_>>(), [0, 1, 2]);
        assert_eq!(t.cpu(1).unwrap().node, Some(0));
        assert_eq!(t.node(1).unwrap().cpus, set("0"));
        assert_eq!(t.cpu(3).unwrap().node, None);
        assert!(t.node(2).unwrap().cpus.is_empty());
        assert_eq!(notes.len(), 2, "{notes:?}");
    }

    #[test]
    fn hybrid_kinds() {
        // i7-12700K-like: 8 P-cores with SMT (0-15), 4 E-cores (16-19).
        let cpus = (0..20)
            .map(|cpu| RawCpu {
                cpu,
                thread_siblings: Some(if cpu < 16 {
                    [cpu & !1, cpu | 1].into_iter().collect()
                } else {
                    set(&cpu.to_string())
                }),
                max_freq_khz: Some(if cpu < 16 { 5_000_000 } else { 3_800_000 }),
                ..Default::default()
            })
            .collect();
        let raw =
            RawTopology { cpus, performance: Some(set("0-15")), efficiency: Some(set("16-19")), ..Default::default() };
        let (t, notes) = Topology::build(raw);
        assert!(notes.is_empty());
        assert!(t.is_hybrid());
        assert_eq!(t.cores.len(), 12);
        assert_eq!(t.cpu(3).unwrap().kind, Some(CoreKind::Performance));
        assert_eq!(t.core_of(17).unwrap().kind, Some(CoreKind::Efficiency));
        assert_eq!(t.core_of(17).unwrap().max_freq_khz, Some(3_800_000));
        assert_eq!(t.smt_width(), 2);
        let v = serde_json::to_value(&t).unwrap();
        assert_eq!(v["cpus"][17]["kind"], "efficiency");
        assert_eq!(v["cpus"][0]["kind"], "performance");
    }

    #[test]
    fn l3_sizes_may_differ_between_domains() {
        // A 7950X3D: the V-Cache CCD has 96 MiB, the other 32 MiB.
        let cpus = (0..4)
            .map(|cpu| RawCpu {
                cpu,
                l3: Some(RawL3 {
                    id: Some(cpu / 2),
                    shared: if cpu < 2 { set("0-1") } else { set("2-3") },
                    size_kib: Some(if cpu < 2 { 98304 } else { 32768 }),
                }),
                ..Default::default()
            })
            .collect();
        let (t, notes) = Topology::build(RawTopology { cpus, ..Default::default() });
        assert!(notes.is_empty());
        assert_eq!(t.l3.iter().map(|d| d.size_kib).collect::<Vec<_>>(), [Some(98304), Some(32768)]);
    }
}
