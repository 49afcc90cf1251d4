//! The pins themselves: pins naming CPUs the host does not have, vcpupins for vCPUs the
//! domain does not have, and where the vCPUs run: unpinned, floating, sharing a CPU, on
//! efficiency cores or CPU 0's core, guest cores split over host cores.

use std::collections::{BTreeMap, BTreeSet};
use std::str::FromStr;

use super::guest::Guest;
use super::model::Shape;
use super::{
    cpus_text, vcpupin_lines, vcpupin_path, vcpus_text, Cx, Finding, Place, EFFICIENCY_CORES, PIN_BAD_CPUSET,
    SMT_SIBLINGS, UNPINNED, VCPUPIN_NO_SUCH_VCPU, VCPUS_SHARE_CPU, VCPU_FLOATING, VCPU_ON_CPU0,
};
use crate::cpuset::CpuSet;
use crate::domain::{emulatorpin, iothreadpin, vcpu};
use crate::topology::{CoreKind, Topology};
use crate::xml::{Element, Node};

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

/// A pin that names CPUs the host does not have online.
pub(super) enum Broken {
    Vcpu(u32),
    VcpuCpuset,
    Emulator,
    Iothread(String),
}

/// A [`PIN_BAD_CPUSET`] finding, still without its fix.
fn bad_pin(path: &str, e: &Element, what: &str, problem: &str) -> Finding {
    Finding::at(&PIN_BAD_CPUSET, path, Some(e))
        .message(format!("{what} {problem}"))
        .why("libvirt cannot pin a thread to a CPU the host does not have online: the guest fails to start")
}

/// What reading the pins found: the broken ones (reported once their fix is known), and
/// which threads have pins at all.
pub(super) struct Read<'a> {
    pub broken_vcpus: BTreeSet<u32>,
    pub vcpu_cpuset_broken: bool,
    pub bad: Vec<(Finding, Broken)>,
    pub has_emulatorpin: bool,
    pub iothreadpins: BTreeSet<u32>,
    pub tune: Option<&'a Element>,
}

/// Reads `<vcpu cpuset>` and `<cputune>`'s pins; reports [`VCPUPIN_NO_SUCH_VCPU`] on the way.
pub(super) fn read<'a>(cx: &Cx<'a>, s: &Shape<'a>, out: &mut Vec<Finding>) -> Read<'a> {
    let topo = cx.host.topology;
    let (vcpus, vcpu_el) = (s.vcpus, s.vcpu_el);
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
                        Finding::at(&VCPUPIN_NO_SUCH_VCPU, &format!("cputune/vcpupin[@vcpu='{v}']"),
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
    Read { broken_vcpus, vcpu_cpuset_broken, bad, has_emulatorpin, iothreadpins, tune }
}

/// The broken pins ([`PIN_BAD_CPUSET`]), with their fixes: repaired vCPU pins, the QEMU
/// threads on `rest`.
pub(super) fn report_broken(g: &Guest<'_, '_>, s: &Shape<'_>, read: Read<'_>, rest: &CpuSet, out: &mut Vec<Finding>) {
    let (cx, topo, vcpus, vcpu_el) = (g.cx, g.topo, s.vcpus, s.vcpu_el);
    let broken_vcpus = &read.broken_vcpus;
    for (f, what) in read.bad {
        let fix = match what {
            Broken::Vcpu(v) => g.repair_fix(&BTreeSet::from([v])),
            Broken::Emulator => emulatorpin(rest).to_xml(),
            Broken::Iothread(id) => iothreadpin(&id, rest).to_xml(),
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
}

/// The rules on where the vCPUs run, in the order of their causes. Returns the vCPUs whose
/// pins a finding already moves (left out of the later rules).
pub(super) fn check<'a>(g: &Guest<'a, '_>, tune: Option<&'a Element>, out: &mut Vec<Finding>) -> BTreeSet<u32> {
    // Handled by an earlier rule: left out of the later ones.
    let mut flagged: BTreeSet<u32> =
        (0..g.vcpus).filter(|&v| matches!(g.places[v as usize], Place::Broken | Place::Unpinned)).collect();
    if unpinned(g, out) {
        return flagged;
    }
    floating(g, tune, &mut flagged, out);
    shared(g, tune, &mut flagged, out);
    efficiency_cores(g, tune, &mut flagged, out);
    on_cpu0(g, tune, &mut flagged, out);
    smt_siblings(g, tune, &mut flagged, out);
    flagged
}

/// The line a finding about vCPU `v`'s pin points at: its vcpupin, else `<cputune>`.
pub(super) fn tune_at<'a>(g: &Guest<'a, '_>, tune: Option<&'a Element>, v: u32) -> Option<&'a Element> {
    g.cx.pins.vcpu.get(&v).map(|(_, e)| *e).or(tune).or_else(|| g.cx.closest("cputune/vcpupin"))
}

/// The vCPUs no finding moves, on their one CPU each.
pub(super) fn settled(g: &Guest<'_, '_>, flagged: &BTreeSet<u32>) -> Vec<(u32, u32)> {
    (0..g.vcpus).filter(|v| !flagged.contains(v)).filter_map(|v| Some((v, g.places[v as usize].on()?))).collect()
}

/// [`UNPINNED`]: vCPUs without a pin. True when none is pinned: then nothing else
/// about where they run can be said.
fn unpinned(g: &Guest<'_, '_>, out: &mut Vec<Finding>) -> bool {
    let cx = g.cx;
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
            Finding::at(&UNPINNED, "cputune/vcpupin", cx.closest("cputune/vcpupin"))
                .message(message)
                .why("the host scheduler moves unpinned vCPUs across all CPUs, onto CPU 0 and next to host work: their caches go cold at every move and frames stutter whenever the host is busy")
                .fix(fix),
        );
        if all {
            return true;
        }
    }
    false
}

/// [`VCPU_FLOATING`]: vCPUs allowed on several host CPUs.
fn floating<'a>(g: &Guest<'a, '_>, tune: Option<&'a Element>, flagged: &mut BTreeSet<u32>, out: &mut Vec<Finding>) {
    let cx = g.cx;
    let tune_at = |v: u32| tune_at(g, tune, v);
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
            Finding::at(&VCPU_FLOATING, &path, at)
                .message(format!("{}: one host CPU each is meant", parts.join("; ")))
                .why("a vCPU allowed on several CPUs wanders among them: its cache goes cold at each move, two vCPUs can meet on one core, and the guest's picture of cores and caches is false: stutter and lost performance")
                .fix(fix),
        );
        flagged.extend(floating.keys());
    }
}

/// [`VCPUS_SHARE_CPU`]: two vCPUs on one CPU; the later ones move.
fn shared<'a>(g: &Guest<'a, '_>, tune: Option<&'a Element>, flagged: &mut BTreeSet<u32>, out: &mut Vec<Finding>) {
    let tune_at = |v: u32| tune_at(g, tune, v);
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
            Finding::at(&VCPUS_SHARE_CPU, &vcpupin_path(first), tune_at(first))
                .message(parts.join("; "))
                .why("vCPUs pinned to one host CPU take turns: each runs at most part of the time and the guest sees vCPUs stall while their twin runs: heavy stutter")
                .fix(g.repair_fix(&moved)),
        );
        flagged.extend(moved);
    }
}

/// [`EFFICIENCY_CORES`]: vCPUs on the efficiency cores of a hybrid CPU.
fn efficiency_cores<'a>(
    g: &Guest<'a, '_>,
    tune: Option<&'a Element>,
    flagged: &mut BTreeSet<u32>,
    out: &mut Vec<Finding>,
) {
    let topo = g.topo;
    let tune_at = |v: u32| tune_at(g, tune, v);
    if topo.hybrid {
        let small: Vec<(u32, u32)> = settled(g, flagged)
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
                Finding::at(&EFFICIENCY_CORES, &vcpupin_path(first), tune_at(first))
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
}

/// [`VCPU_ON_CPU0`]: vCPUs on CPU 0's core, the host's.
fn on_cpu0<'a>(g: &Guest<'a, '_>, tune: Option<&'a Element>, flagged: &mut BTreeSet<u32>, out: &mut Vec<Finding>) {
    let topo = g.topo;
    let tune_at = |v: u32| tune_at(g, tune, v);
    if let Some(host_core) = g.host_core.and_then(|h| topo.cores.get(h as usize)) {
        let cpu0 = topo.cpus.first().map_or(0, |c| c.cpu);
        let there: Vec<(u32, u32)> =
            settled(g, flagged).into_iter().filter(|&(_, c)| host_core.cpus.contains(c)).collect();
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
                Finding::at(&VCPU_ON_CPU0, &vcpupin_path(first), tune_at(first))
                    .message(format!("{}: CPU {cpu0}'s core ({}) should stay with the host", parts.join(", "), host_core.cpus))
                    .why(format!("the host's housekeeping, timers and most interrupts run on CPU {cpu0}: a vCPU on its core is preempted again and again (latency spikes, stutter)"))
                    .fix(g.repair_fix(&vs)),
            );
            flagged.extend(vs);
        }
    }
}

/// [`SMT_SIBLINGS`]: guest cores not on whole host cores.
fn smt_siblings<'a>(g: &Guest<'a, '_>, tune: Option<&'a Element>, flagged: &mut BTreeSet<u32>, out: &mut Vec<Finding>) {
    let topo = g.topo;
    let tune_at = |v: u32| tune_at(g, tune, v);
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
            flagged.extend(fix_vcpus.iter().copied());
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
                Finding::at(&SMT_SIBLINGS, &vcpupin_path(first), tune_at(first))
                    .message(format!(
                        "the topology has {t} threads per core, but these guest cores are not one host core each: {}",
                        parts.join("; ")
                    ))
                    .why("the guest believes each vCPU pair shares a core and schedules accordingly; when the pair sits on two host cores whose siblings run other vCPUs, two busy vCPUs fight for one core while the guest thinks they do not: lost performance and frame-time spikes")
                    .fix(fix),
            );
        }
    }
}
