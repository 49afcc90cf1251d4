//! Placement across the host: the vCPUs in one L3 domain and on one NUMA node, the passed
//! device's, when one would hold them all.

use std::collections::{BTreeMap, BTreeSet};

use super::guest::Guest;
use super::pins::{settled, tune_at};
use super::{cpus_text, vcpupin_path, Finding, L3_SPREAD, NUMA_AWAY_FROM_DEVICE, NUMA_SPREAD};
use crate::cpuset::CpuSet;
use crate::xml::{Element, Node};

/// [`NUMA_SPREAD`], [`L3_SPREAD`], [`NUMA_AWAY_FROM_DEVICE`]: the vCPUs in one L3
/// domain and on one node, the device's, when they fit.
///
/// Returns the finding and the CPUs of the planner's placement when its fix is that whole
/// placement: the other CPU findings' fixes are then made to agree with it.
pub(super) fn check<'a>(
    g: &Guest<'a, '_>,
    tune: Option<&'a Element>,
    flagged: &BTreeSet<u32>,
    out: &mut Vec<Finding>,
) -> Option<(&'static str, CpuSet)> {
    let topo = g.topo;
    let tune_at = |v: u32| tune_at(g, tune, v);
    // One L3 domain and one node, the device's, when they fit.
    let good = settled(g, flagged);
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
        let replaced = std::cell::Cell::new(false);
        let within = |cpus: &CpuSet| match &planned {
            Some(p) if p.guest_cpus.iter().all(|c| cpus.contains(c)) => {
                replaced.set(true);
                g.plan_block(p)
            }
            _ => Node::comment(&format!("one <vcpupin> per vCPU, on whole cores among {}", cpus_text(cpus))).to_xml(),
        };
        let placement = |id: &'static str| {
            if replaced.get() {
                planned.as_ref().map(|p| (id, p.guest_cpus.clone()))
            } else {
                None
            }
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
                Finding::at(&NUMA_SPREAD, &vcpupin_path(first), tune_at(first))
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
            return placement(NUMA_SPREAD.id);
        } else if l3s.len() > 1 && fit_l3.is_some() {
            let d = fit_l3.map(|d| (d.id, d.cpus.clone())).unwrap_or_default();
            out.push(
                Finding::at(&L3_SPREAD, &vcpupin_path(first), tune_at(first))
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
            return placement(L3_SPREAD.id);
        } else if let (&[n], Some(dev)) = (nodes.iter().copied().collect::<Vec<_>>().as_slice(), g.device_node) {
            if n != dev && node_room(dev) >= need {
                let dcpus = topo.node(dev).map(|nd| nd.cpus.clone()).unwrap_or_default();
                out.push(
                    Finding::at(&NUMA_AWAY_FROM_DEVICE, &vcpupin_path(first), tune_at(first))
                        .message(format!(
                            "the vCPUs run on NUMA node {n}, the passed device is on node {dev}, which has {} CPUs for a guest, enough for all {}",
                            node_room(dev),
                            g.vcpus
                        ))
                        .why("every DMA transfer and interrupt of the device crosses the interconnect between nodes: added latency on every frame, stutter under load")
                        .fix(within(&dcpus)),
                );
                return placement(NUMA_AWAY_FROM_DEVICE.id);
            }
        }
    }
    None
}
