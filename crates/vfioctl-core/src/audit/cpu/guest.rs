//! The domain's CPU side against the host: where each vCPU may run, and the planner's
//! placement and repairs the fixes are made of.

use std::collections::{BTreeMap, BTreeSet};

use super::model::Shape;
use super::pins::Read;
use super::{vcpupin_lines, Cx, Place};
use crate::cpuset::CpuSet;
use crate::domain::cputune;
use crate::plan::pinning::{place, PinError};
use crate::plan::{CpuPlan, CpuRequest};
use crate::topology::{Core, CoreKind, Topology};
use crate::xml::Node;

/// The domain's CPU side against the host.
pub(super) struct Guest<'a, 'c> {
    pub cx: &'c Cx<'a>,
    pub topo: &'a Topology,
    pub vcpus: u32,
    pub places: Vec<Place>,
    /// vCPUs per guest core for the sibling rule and fixes: the declared threads when the
    /// topology adds up and the host has that many threads per core, else 1.
    pub group: u32,
    /// The planner's host core: the core of the lowest online CPU.
    pub host_core: Option<u32>,
    /// NUMA node of the passed devices.
    pub device_node: Option<u32>,
    /// The emulator's online CPUs.
    pub emulator: CpuSet,
    /// I/O thread ids the domain defines.
    pub iothreads: Vec<u32>,
    /// Every vCPU some finding moves, once the rules have run once: each finding's repair
    /// is then its part of one repair of all of them, so that no two fixes put vCPUs on
    /// the same CPU or beside the emulator's new CPUs.
    pub all_moving: Option<BTreeSet<u32>>,
}

impl Guest<'_, '_> {
    pub fn eligible(&self, core: &Core) -> bool {
        Some(core.id) != self.host_core && !(self.topo.hybrid && core.kind == Some(CoreKind::Efficiency))
    }

    pub fn eligible_cpu(&self, cpu: u32) -> bool {
        self.topo.core_of(cpu).is_some_and(|c| self.eligible(c))
    }

    /// What vfioctl would write for this many vCPUs. The planner rounds an odd count up
    /// to whole cores; the domain keeps its count, so the extra pins are dropped.
    pub fn place(&self) -> Result<CpuPlan, PinError> {
        let mut p = place(self.topo, &CpuRequest { vcpus: Some(self.vcpus), node: self.device_node })?;
        if p.vcpus > self.vcpus {
            p.vcpupin.truncate(self.vcpus as usize);
            p.guest_cpus = p.vcpupin.iter().filter_map(|v| v.cpuset.parse().ok()).collect();
            p.vcpus = self.vcpus;
        }
        Ok(p)
    }

    pub fn planned(&self) -> Option<CpuPlan> {
        self.place().ok()
    }

    /// `<cputune>` as vfioctl writes it for a plan.
    pub fn plan_block(&self, p: &CpuPlan) -> String {
        cputune(p, &self.iothreads).pretty()
    }

    /// The whole placement redone by the planner, or a sentence when it cannot.
    pub fn plan_fix(&self) -> String {
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
    pub fn repair(&self, fix: &BTreeSet<u32>) -> Option<Vec<(u32, u32)>> {
        if let Some(all) = self.all_moving.as_ref().filter(|all| all.is_superset(fix) && *all != fix) {
            let t = self.group.max(1);
            let groups: BTreeSet<u32> = fix.iter().map(|v| v / t).collect();
            let whole = self.repair_alone(all)?;
            return Some(whole.into_iter().filter(|(v, _)| groups.contains(&(v / t))).collect());
        }
        self.repair_alone(fix)
    }

    fn repair_alone(&self, fix: &BTreeSet<u32>) -> Option<Vec<(u32, u32)>> {
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
    pub fn repair_fix(&self, fix: &BTreeSet<u32>) -> String {
        match self.repair(fix) {
            Some(p) => vcpupin_lines(&p),
            None => self.plan_fix(),
        }
    }

    /// The vCPUs the fixes move: those `flagged`, and those without a pin of their own.
    pub fn moving(&self, flagged: &BTreeSet<u32>) -> BTreeSet<u32> {
        (0..self.vcpus).filter(|v| flagged.contains(v) || self.places[*v as usize].on().is_none()).collect()
    }

    /// Where the vCPUs run once the findings' fixes are in: the pins of the vCPUs no
    /// finding moves, and the repaired pins of the others (the planner's placement when
    /// none is pinned).
    pub fn target(&self, flagged: &BTreeSet<u32>) -> CpuSet {
        let moving = self.moving(flagged);
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
    pub fn rest(&self, guest: &CpuSet) -> CpuSet {
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
    pub fn room(&self, cpus: &CpuSet) -> usize {
        cpus.iter().filter(|&c| self.eligible_cpu(c)).count()
    }
}

impl<'a, 'c> Guest<'a, 'c> {
    /// Where each vCPU may run, with the pins the reading found broken.
    pub fn new(cx: &'c Cx<'a>, s: &Shape<'a>, read: &Read<'a>) -> Self {
        let topo = cx.host.topology;
        let vcpus = s.vcpus;
        let broken_vcpus = &read.broken_vcpus;
        let vcpu_cpuset_broken = read.vcpu_cpuset_broken;
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
        Guest {
            cx,
            topo,
            vcpus,
            places,
            group: s.group(),
            host_core: topo.cpus.first().map(|c| c.core),
            device_node,
            emulator,
            iothreads,
            all_moving: None,
        }
    }
}
