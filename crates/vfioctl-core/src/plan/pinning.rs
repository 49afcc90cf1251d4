//! vCPU placement: which host CPUs the guest's vCPUs, emulator and I/O threads run on.
//!
//! What a careful human does, on any topology:
//! - guest cores are whole host cores: vCPUs 2k and 2k+1 are the two SMT siblings of one
//!   host core, so the guest's `<topology threads='2'>` is true;
//! - all on the NUMA node of the passed device, in as few L3 domains (CCX/CCD) as
//!   possible, one when one can hold them; the largest L3 (a V-Cache die) first;
//! - the host keeps the core of CPU 0 and its siblings; hybrid CPUs give the guest
//!   performance cores only;
//! - the emulator and I/O threads run on the node's other CPUs, never on a vCPU's.

use std::collections::BTreeSet;

use serde::Serialize;

use crate::cpuset::CpuSet;
use crate::topology::{Core, CoreKind, Topology};

/// What the guest asks of the CPU side.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CpuRequest {
    /// vCPUs wanted; `None` picks a share of the local node.
    pub vcpus: Option<u32>,
    /// NUMA node of the passed device; `None` when unknown.
    pub node: Option<u32>,
}

/// The guest CPU topology (`<topology sockets dies cores threads>`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct GuestTopology {
    pub sockets: u32,
    pub dies: u32,
    pub cores: u32,
    pub threads: u32,
}

/// `<vcpupin vcpu='N' cpuset='C'/>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VcpuPin {
    pub vcpu: u32,
    pub cpuset: String,
}

/// Where everything runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CpuPlan {
    pub vcpus: u32,
    pub topology: GuestTopology,
    pub vcpupin: Vec<VcpuPin>,
    #[serde(serialize_with = "as_list")]
    pub emulatorpin: CpuSet,
    #[serde(serialize_with = "as_list")]
    pub iothreadpin: CpuSet,
    /// All host CPUs given to vCPUs.
    #[serde(serialize_with = "as_list")]
    pub guest_cpus: CpuSet,
    pub node: Option<u32>,
    /// L3 domains the vCPUs use.
    pub l3: Vec<u32>,
    /// One line per decision, for people.
    pub reasons: Vec<String>,
    pub warnings: Vec<String>,
}

fn as_list<S: serde::Serializer>(set: &CpuSet, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(set)
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PinError {
    #[error("this host has no online CPUs")]
    NoCpus,
    #[error("{wanted} vCPUs need {cores} cores, but only {free} cores are free for a guest (the host keeps core {host_core})")]
    TooMany { wanted: u32, cores: u32, free: u32, host_core: u32 },
    #[error("--vcpus must be at least 1")]
    Zero,
}

fn size_text(kib: Option<u64>) -> String {
    match kib {
        Some(k) if k >= 1024 && k % 1024 == 0 => format!("{} MiB", k / 1024),
        Some(k) if k >= 1024 => format!("{:.1} MiB", k as f64 / 1024.0),
        Some(k) => format!("{k} KiB"),
        None => "size unknown".into(),
    }
}

/// A group of candidate cores sharing an L3 (or no L3 known).
struct Domain<'a> {
    l3: Option<u32>,
    size: Option<u64>,
    has_host: bool,
    cores: Vec<&'a Core>,
}

/// Places the vCPUs of one guest.
pub fn place(topo: &Topology, req: &CpuRequest) -> Result<CpuPlan, PinError> {
    if req.vcpus == Some(0) {
        return Err(PinError::Zero);
    }
    let host_core = topo.cpus.first().map(|c| c.core).ok_or(PinError::NoCpus)?;
    let host_cpus = topo.cores.get(host_core as usize).map(|c| c.cpus.clone()).unwrap_or_default();
    let mut reasons = Vec::new();
    let mut warnings = Vec::new();

    // The node: the device's, else the one with the most free cores.
    let free = |c: &&Core| c.id != host_core;
    let node_ids: Vec<Option<u32>> = {
        let mut v: Vec<Option<u32>> = topo.cores.iter().map(|c| c.node).collect();
        v.sort();
        v.dedup();
        v
    };
    let node = match req.node {
        Some(n) if topo.cores.iter().any(|c| c.node == Some(n)) => {
            reasons.push(format!("NUMA node {n}: the passed device is attached there"));
            Some(n)
        }
        other => {
            let best = node_ids
                .iter()
                .copied()
                .max_by_key(|n| {
                    (topo.cores.iter().filter(free).filter(|c| c.node == *n).count(), std::cmp::Reverse(*n))
                })
                .flatten();
            if node_ids.len() > 1 {
                match other {
                    Some(n) => warnings
                        .push(format!("the device reports NUMA node {n}, which has no CPUs; using node {}", opt(best))),
                    None => warnings.push(format!(
                        "the device does not say which NUMA node it is on; using node {} (most free cores)",
                        opt(best)
                    )),
                }
            }
            best
        }
    };

    // Performance cores only on hybrid CPUs.
    let eligible = |c: &Core| c.id != host_core && (!topo.hybrid || c.kind != Some(CoreKind::Efficiency));
    if topo.hybrid {
        let e: CpuSet =
            topo.cores.iter().filter(|c| c.kind == Some(CoreKind::Efficiency)).flat_map(|c| c.cpus.iter()).collect();
        reasons.push(format!("performance cores only: the efficiency cores (CPUs {e}) stay with the host"));
    }
    let local: Vec<&Core> = topo.cores.iter().filter(|c| c.node == node && eligible(c)).collect();
    // SMT width of the guest's cores: the node's, or the host's when the node has no free core.
    let threads = local
        .iter()
        .map(|c| c.cpus.len() as u32)
        .max()
        .or_else(|| topo.cores.iter().filter(|c| eligible(c)).map(|c| c.cpus.len() as u32).max())
        .unwrap_or(1)
        .max(1);

    // Group the node's candidate cores by L3.
    let mut domains: Vec<Domain> = Vec::new();
    for c in &local {
        match domains.iter_mut().find(|d| d.l3 == c.l3) {
            Some(d) => d.cores.push(c),
            None => {
                let l3 = c.l3.and_then(|id| topo.l3.iter().find(|d| d.id == id));
                domains.push(Domain {
                    l3: c.l3,
                    size: l3.and_then(|d| d.size_kib),
                    has_host: l3.is_some_and(|d| host_cpus.iter().any(|h| d.cpus.contains(h))),
                    cores: vec![c],
                });
            }
        }
    }

    // How many vCPUs.
    let wanted = match req.vcpus {
        Some(n) => n,
        None => {
            let n = if domains.len() > 1 {
                // The largest L3 (a V-Cache die), then the one with the most free cores.
                let best =
                    domains.iter().map(|d| (d.size.unwrap_or(0), d.cores.len())).max().map_or(1, |(_, n)| n) as u32;
                reasons.push(format!(
                    "{} vCPUs by default: the free cores of one L3 domain of node {} (pass --vcpus to choose)",
                    best * threads,
                    opt(node)
                ));
                best * threads
            } else {
                let half = ((local.len() as u32) / 2).max(1);
                reasons.push(format!(
                    "{} vCPUs by default: half of node {}'s free cores (pass --vcpus to choose)",
                    half * threads,
                    opt(node)
                ));
                half * threads
            };
            n.max(1)
        }
    };
    let mut vcpus = wanted;
    if vcpus % threads != 0 {
        vcpus = vcpus.div_ceil(threads) * threads;
        warnings.push(format!(
            "{wanted} vCPUs rounded up to {vcpus} so that every guest core is a whole host core ({threads} threads each)"
        ));
    }
    let k = (vcpus / threads) as usize;

    // Choose cores: one L3 domain when one can hold them, else as few as possible.
    let mut chosen: Vec<&Core> = Vec::new();
    fn pick<'a>(d: &Domain<'a>, n: usize) -> Vec<&'a Core> {
        let mut cores = d.cores.clone();
        cores.sort_by_key(|c| c.cpus.first());
        if d.has_host {
            // Stay away from the host's core: take the far end of the domain.
            cores.reverse();
        }
        cores.truncate(n);
        cores
    }
    let fitting: Vec<&Domain> = domains.iter().filter(|d| d.cores.len() >= k).collect();
    let larger_l3 = |d: &Domain| d.size.unwrap_or(0);
    if let Some(d) = fitting.iter().max_by_key(|d| (larger_l3(d), !d.has_host, std::cmp::Reverse(d.l3))) {
        chosen = pick(d, k);
        let sizes: BTreeSet<u64> = domains.iter().filter_map(|d| d.size).collect();
        let why = if sizes.len() > 1 && d.size == sizes.iter().next_back().copied() {
            " (the largest L3 on the node)"
        } else if fitting.len() > 1 && !d.has_host {
            " (the one without the host's core)"
        } else {
            ""
        };
        let l3_cpus: CpuSet = d.cores.iter().flat_map(|c| c.cpus.iter()).collect();
        reasons.push(match d.l3 {
            Some(id) => format!(
                "L3 domain {id} ({}, free CPUs {l3_cpus}) holds all {vcpus} vCPUs as {k} whole cores{why}",
                size_text(d.size)
            ),
            None => format!("{vcpus} vCPUs as {k} whole cores (this host lists no L3 caches)"),
        });
    } else {
        let mut order: Vec<&Domain> = domains.iter().collect();
        order.sort_by_key(|d| (std::cmp::Reverse(d.cores.len()), std::cmp::Reverse(larger_l3(d)), d.has_host, d.l3));
        let mut used = Vec::new();
        for d in order {
            if chosen.len() >= k {
                break;
            }
            let n = (k - chosen.len()).min(d.cores.len());
            chosen.extend(pick(d, n));
            used.push(d.l3.map_or("?".to_string(), |id| id.to_string()));
        }
        if domains.len() > 1 && chosen.len() == k {
            let biggest = domains.iter().map(|d| d.cores.len()).max().unwrap_or(0);
            reasons.push(format!(
                "{vcpus} vCPUs ({k} cores) do not fit one L3 domain (at most {biggest} free cores in one): spread over L3 domains {}",
                used.join(", ")
            ));
        }
    }

    // Not enough on the node: take cores from other nodes, then (hybrid) efficiency cores.
    if chosen.len() < k {
        let have: BTreeSet<u32> = chosen.iter().map(|c| c.id).collect();
        let mut more: Vec<&Core> = topo.cores.iter().filter(|c| eligible(c) && !have.contains(&c.id)).collect();
        if topo.hybrid && more.len() + chosen.len() < k {
            more.extend(topo.cores.iter().filter(|c| c.id != host_core && c.kind == Some(CoreKind::Efficiency)));
        }
        more.sort_by_key(|c| (c.node != node, c.kind == Some(CoreKind::Efficiency), c.cpus.first()));
        let need = k - chosen.len();
        let extra: Vec<&Core> = more.into_iter().take(need).collect();
        if extra.len() < need {
            let free_cores = topo.cores.iter().filter(|c| c.id != host_core).count() as u32;
            return Err(PinError::TooMany { wanted: vcpus, cores: k as u32, free: free_cores, host_core });
        }
        let other_nodes: BTreeSet<String> = extra.iter().filter(|c| c.node != node).map(|c| opt(c.node)).collect();
        if !other_nodes.is_empty() {
            warnings.push(format!(
                "node {} has only {} free cores: {} more come from node {} (slower memory access for those vCPUs)",
                opt(node),
                chosen.len(),
                extra.iter().filter(|c| c.node != node).count(),
                other_nodes.into_iter().collect::<Vec<_>>().join(", ")
            ));
        }
        if extra.iter().any(|c| c.kind == Some(CoreKind::Efficiency)) {
            warnings.push("not enough performance cores: some vCPUs run on efficiency cores".into());
        }
        chosen.extend(extra);
    }

    chosen.sort_by_key(|c| c.cpus.first());
    let mut vcpupin = Vec::new();
    let mut guest = CpuSet::new();
    for c in &chosen {
        for cpu in c.cpus.iter() {
            if vcpupin.len() as u32 >= vcpus {
                break;
            }
            vcpupin.push(VcpuPin { vcpu: vcpupin.len() as u32, cpuset: cpu.to_string() });
            guest.insert(cpu);
        }
    }
    let mut l3: Vec<u32> = chosen.iter().filter_map(|c| c.l3).collect();
    l3.sort_unstable();
    l3.dedup();
    reasons.push(format!("core {host_core} (CPUs {host_cpus}) stays with the host"));

    // Emulator and I/O threads: the rest of the node, else any CPU the guest does not use.
    let node_cpus: CpuSet = topo.cores.iter().filter(|c| c.node == node).flat_map(|c| c.cpus.iter()).collect();
    let mut rest: CpuSet = node_cpus.iter().filter(|c| !guest.contains(*c)).collect();
    if rest.is_empty() {
        rest = topo.cpus.iter().map(|c| c.cpu).filter(|c| !guest.contains(*c)).collect();
        warnings.push("the guest takes all of its node's CPUs: the emulator thread runs on another node".into());
    }
    reasons
        .push(format!("emulator and I/O thread on CPUs {rest}: the rest of node {}, apart from the vCPUs", opt(node)));

    Ok(CpuPlan {
        vcpus,
        topology: GuestTopology { sockets: 1, dies: 1, cores: k as u32, threads },
        vcpupin,
        emulatorpin: rest.clone(),
        iothreadpin: rest,
        guest_cpus: guest,
        node,
        l3,
        reasons,
        warnings,
    })
}

/// How good a placement of vCPUs is, by the planner's own measure; in each count, fewer
/// is better. `--fix` compares the domain's placement with the plan's by it and keeps the
/// domain's when the plan's would be worse in any.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Placement {
    /// NUMA nodes the vCPUs run on.
    pub nodes: usize,
    /// L3 domains (CCX, CCD) the vCPUs run on.
    pub l3: usize,
    /// vCPUs off the largest L3 (the V-Cache die); 0 where all L3s are the same size.
    pub off_largest_l3: usize,
    /// vCPUs whose CPUs the emulator or an I/O thread may also run on.
    pub shared: usize,
}

impl Placement {
    /// Measures vCPUs pinned to `vcpus` (one set per vCPU), with the emulator and I/O
    /// threads on `others`.
    pub fn of(topo: &Topology, vcpus: &[CpuSet], others: &CpuSet) -> Placement {
        let cpu = |n: u32| topo.cpus.iter().find(|c| c.cpu == n);
        let all: BTreeSet<u32> = vcpus.iter().flat_map(|s| s.iter()).collect();
        let nodes: BTreeSet<Option<u32>> = all.iter().filter_map(|n| cpu(*n)).map(|c| c.node).collect();
        let l3: BTreeSet<u32> = all.iter().filter_map(|n| cpu(*n)).filter_map(|c| c.l3).collect();
        let sizes: BTreeSet<u64> = topo.l3.iter().filter_map(|d| d.size_kib).collect();
        let off_largest_l3 = match sizes.last() {
            Some(max) if sizes.len() > 1 => {
                let largest: CpuSet =
                    topo.l3.iter().filter(|d| d.size_kib == Some(*max)).flat_map(|d| d.cpus.iter()).collect();
                vcpus.iter().filter(|s| s.iter().any(|c| !largest.contains(c))).count()
            }
            _ => 0,
        };
        let shared = vcpus.iter().filter(|s| s.iter().any(|c| others.contains(c))).count();
        Placement { nodes: nodes.len(), l3: l3.len(), off_largest_l3, shared }
    }

    /// The plan's own placement.
    pub fn of_plan(topo: &Topology, plan: &CpuPlan) -> Placement {
        let vcpus: Vec<CpuSet> = plan.vcpupin.iter().filter_map(|p| p.cpuset.parse().ok()).collect();
        let others: CpuSet = plan.emulatorpin.iter().chain(plan.iothreadpin.iter()).collect();
        Placement::of(topo, &vcpus, &others)
    }

    /// What is worse here than in `other`, for people ("2 NUMA nodes instead of 1").
    pub fn worse_than(&self, other: &Placement) -> Vec<String> {
        let mut out = Vec::new();
        let mut axis = |mine: usize, theirs: usize, what: &str| {
            if mine > theirs {
                out.push(format!("{mine} {what} instead of {theirs}"));
            }
        };
        axis(self.nodes, other.nodes, "NUMA nodes");
        axis(self.l3, other.l3, "L3 domains");
        axis(self.off_largest_l3, other.off_largest_l3, "vCPUs off the largest L3");
        axis(self.shared, other.shared, "vCPUs sharing CPUs with the emulator or I/O threads");
        out
    }
}

fn opt(n: Option<u32>) -> String {
    n.map_or("?".to_string(), |n| n.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::topology::{RawCpu, RawL3, RawNode, RawTopology};

    /// A synthetic host: `packages` × `nodes` × `l3s` × `cores` × `threads`, SMT siblings
    /// numbered `n` and `n + total_cores` ("split") or `2n`, `2n+1` ("adjacent").
    pub(crate) fn shape(
        packages: u32,
        nodes: u32,
        l3s: u32,
        cores: u32,
        threads: u32,
        split: bool,
        l3_kib: &[u64],
    ) -> Topology {
        let total = packages * nodes * l3s * cores;
        let cpu_of = |core: u32, t: u32| if split { core + t * total } else { core * threads + t };
        let mut raw = RawTopology::default();
        let mut node_cpus: Vec<CpuSet> = vec![CpuSet::new(); (packages * nodes) as usize];
        for core in 0..total {
            let l3_index = core / cores;
            let node = l3_index / l3s;
            let package = node / nodes;
            let siblings: CpuSet = (0..threads).map(|t| cpu_of(core, t)).collect();
            let shared: CpuSet = (l3_index * cores..(l3_index + 1) * cores)
                .flat_map(|c| (0..threads).map(move |t| (c, t)))
                .map(|(c, t)| cpu_of(c, t))
                .collect();
            for t in 0..threads {
                let cpu = cpu_of(core, t);
                node_cpus[node as usize].insert(cpu);
                raw.cpus.push(RawCpu {
                    cpu,
                    package: Some(package),
                    die: Some(node % nodes),
                    core_id: Some(core % (nodes * l3s * cores)),
                    thread_siblings: Some(siblings.clone()),
                    l3: Some(RawL3 {
                        id: Some(l3_index),
                        shared: shared.clone(),
                        size_kib: Some(l3_kib[(l3_index as usize) % l3_kib.len()]),
                    }),
                    max_freq_khz: Some(4_000_000),
                });
            }
        }
        raw.nodes = node_cpus
            .into_iter()
            .enumerate()
            .map(|(i, cpus)| RawNode { id: i as u32, cpus, memory_kib: Some(32 << 20) })
            .collect();
        Topology::build(raw).0
    }

    fn pins(p: &CpuPlan) -> Vec<u32> {
        p.vcpupin.iter().map(|v| v.cpuset.parse().unwrap()).collect()
    }

    #[test]
    fn threadripper_1950x_radeon_vii_gets_the_guides_cpus() {
        // 16 cores / 32 threads, 2 nodes, 2 CCX of 4 cores per node, siblings n and n+16.
        let t = shape(1, 2, 2, 4, 2, true, &[8192]);
        let p = place(&t, &CpuRequest { vcpus: Some(8), node: Some(0) }).unwrap();
        assert_eq!(pins(&p), [4, 20, 5, 21, 6, 22, 7, 23]);
        assert_eq!(p.guest_cpus.to_string(), "4-7,20-23");
        assert_eq!(p.emulatorpin.to_string(), "0-3,16-19");
        assert_eq!(p.topology, GuestTopology { sockets: 1, dies: 1, cores: 4, threads: 2 });
        assert_eq!(p.l3, [1]);
    }

    #[test]
    fn ryzen_2600x_keeps_core_0_and_its_sibling() {
        // 6 cores / 12 threads, 2 CCX of 3 cores, siblings n and n+6.
        let t = shape(1, 1, 2, 3, 2, true, &[8192]);
        let p = place(&t, &CpuRequest { vcpus: Some(8), node: None }).unwrap();
        assert_eq!(pins(&p), [2, 8, 3, 9, 4, 10, 5, 11], "the guide's own pinning");
        assert!(!p.guest_cpus.contains(0) && !p.guest_cpus.contains(6));
        assert_eq!(p.emulatorpin.to_string(), "0-1,6-7");
        assert!(p.reasons.iter().any(|r| r.contains("spread over L3 domains 1, 0")), "{:?}", p.reasons);
    }

    #[test]
    fn v_cache_die_is_preferred() {
        // Two CCDs of 8 cores, the first with 96 MiB L3.
        let t = shape(1, 1, 2, 8, 2, true, &[96 * 1024, 32 * 1024]);
        let p = place(&t, &CpuRequest { vcpus: Some(8), node: Some(0) }).unwrap();
        assert_eq!(p.l3, [0]);
        assert!(!p.guest_cpus.contains(0));
        assert_eq!(p.guest_cpus.to_string(), "4-7,20-23", "far end of the V-Cache CCD, away from core 0");
        assert!(p.reasons.iter().any(|r| r.contains("largest L3")), "{:?}", p.reasons);
    }

    #[test]
    fn default_count_fills_the_v_cache_die() {
        let t = shape(1, 1, 2, 8, 2, true, &[96 * 1024, 32 * 1024]);
        let p = place(&t, &CpuRequest { vcpus: None, node: Some(0) }).unwrap();
        assert_eq!(p.vcpus, 14, "the V-Cache die's 7 free cores");
        assert_eq!(p.l3, [0]);
    }

    #[test]
    fn dual_socket_uses_the_devices_node() {
        let t = shape(2, 1, 1, 20, 2, true, &[28160]);
        let p = place(&t, &CpuRequest { vcpus: Some(16), node: Some(1) }).unwrap();
        assert!(p.guest_cpus.iter().all(|c| (20..40).contains(&c) || (60..80).contains(&c)), "{}", p.guest_cpus);
        assert!(p.emulatorpin.iter().all(|c| (20..40).contains(&c) || (60..80).contains(&c)));
        assert_eq!(p.node, Some(1));
    }

    #[test]
    fn default_vcpus_and_odd_counts() {
        let t = shape(1, 2, 2, 4, 2, true, &[8192]);
        let p = place(&t, &CpuRequest { vcpus: None, node: Some(0) }).unwrap();
        assert_eq!(p.vcpus, 8);
        let p = place(&t, &CpuRequest { vcpus: Some(7), node: Some(0) }).unwrap();
        assert_eq!(p.vcpus, 8);
        assert!(p.warnings[0].contains("rounded up"));
        assert!(matches!(place(&t, &CpuRequest { vcpus: Some(64), node: Some(0) }), Err(PinError::TooMany { .. })));
        assert_eq!(place(&t, &CpuRequest { vcpus: Some(0), node: None }), Err(PinError::Zero));
    }

    #[test]
    fn spills_to_another_node_with_a_warning() {
        let t = shape(1, 2, 1, 4, 2, true, &[8192]);
        let p = place(&t, &CpuRequest { vcpus: Some(12), node: Some(1) }).unwrap();
        assert!(p.warnings.iter().any(|w| w.contains("from node 0")), "{:?}", p.warnings);
    }

    /// The measure `--fix` compares placements by: a spill onto a second node is worse
    /// than a whole guest on one node, and says so.
    #[test]
    fn a_placement_is_measured_by_nodes_l3s_v_cache_and_sharing() {
        let t = shape(1, 2, 1, 4, 2, true, &[8192]);
        let p = place(&t, &CpuRequest { vcpus: Some(8), node: Some(0) }).unwrap();
        let spilled = Placement::of_plan(&t, &p);
        assert_eq!((spilled.nodes, spilled.shared), (2, 0), "{p:?}");
        // All 8 vCPUs on node 1's four cores, the emulator on node 0.
        let node1: Vec<CpuSet> = t
            .cores
            .iter()
            .filter(|c| c.node == Some(1))
            .flat_map(|c| c.cpus.iter())
            .map(|c| [c].into_iter().collect())
            .collect();
        let whole = Placement::of(&t, &node1, &"0".parse().unwrap());
        assert_eq!((whole.nodes, whole.l3, whole.shared), (1, 1, 0));
        assert_eq!(spilled.worse_than(&whole), vec!["2 NUMA nodes instead of 1", "2 L3 domains instead of 1"]);
        assert!(whole.worse_than(&spilled).is_empty());
        // An emulator on a vCPU's CPU counts against it.
        let shared = Placement::of(&t, &node1, &node1[0]);
        assert_eq!(
            shared.worse_than(&whole),
            vec!["1 vCPUs sharing CPUs with the emulator or I/O threads instead of 0"]
        );
        // V-Cache: vCPUs off the larger L3.
        let v = shape(1, 1, 2, 4, 2, false, &[98304, 32768]);
        let p = place(&v, &CpuRequest { vcpus: Some(4), node: Some(0) }).unwrap();
        assert_eq!(Placement::of_plan(&v, &p).off_largest_l3, 0, "{p:?}");
        let off: Vec<CpuSet> = v.l3[1].cpus.iter().take(4).map(|c| [c].into_iter().collect()).collect();
        assert_eq!(Placement::of(&v, &off, &CpuSet::new()).off_largest_l3, 4);
    }

    /// Properties on many shapes: pins disjoint and distinct, siblings paired, the
    /// emulator apart from the vCPUs, CPU 0 never used while another core is free.
    #[test]
    fn placement_properties_on_many_topologies() {
        let mut cases = 0;
        for packages in 1..=2 {
            for nodes in 1..=2 {
                for l3s in 1..=3 {
                    for cores in [1, 2, 3, 4, 6, 8] {
                        for threads in 1..=2 {
                            for split in [true, false] {
                                let t = shape(packages, nodes, l3s, cores, threads, split, &[16384, 32768]);
                                let total_cores = packages * nodes * l3s * cores;
                                for node in 0..packages * nodes {
                                    for n in 1..=(total_cores - 1) * threads {
                                        let p = place(&t, &CpuRequest { vcpus: Some(n), node: Some(node) }).unwrap();
                                        check_properties(&t, &p);
                                        cases += 1;
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        assert!(cases > 1000, "{cases}");
    }

    fn check_properties(t: &Topology, p: &CpuPlan) {
        let cpus = pins(p);
        let distinct: BTreeSet<u32> = cpus.iter().copied().collect();
        assert_eq!(distinct.len(), cpus.len(), "pins distinct");
        assert_eq!(cpus.len() as u32, p.vcpus);
        assert!(p.emulatorpin.iter().all(|c| !distinct.contains(&c)), "emulator apart");
        assert!(!p.emulatorpin.is_empty());
        assert!(!distinct.contains(&0), "CPU 0 stays with the host");
        if p.topology.threads == 2 {
            for pair in cpus.chunks(2) {
                let core = t.core_of(pair[0]).unwrap();
                assert!(pair.len() == 2 && core.cpus.contains(pair[1]), "siblings paired: {pair:?}");
            }
        }
    }
}
