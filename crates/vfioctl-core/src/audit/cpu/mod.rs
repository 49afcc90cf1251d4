//! The CPU: the model and guest topology, and where the vCPUs, the emulator thread and the
//! I/O threads run, held against the rules of [`crate::plan::pinning`]: guest cores are
//! whole host cores (vCPUs `t·k … t·k+t-1` on the SMT siblings of one core), all in one L3
//! domain and on the NUMA node of the passed device when they fit, CPU 0's core and
//! efficiency cores left to the host, QEMU's own threads on CPUs apart from the vCPUs.
//!
//! One cause, one finding: a vCPU reported for its pin (broken, missing, floating, shared,
//! on an efficiency core or on CPU 0's core) is left out of the later placement rules
//! (SMT siblings, L3 and NUMA spread, overlaps), whose fix would move it anyway. Fixes are
//! the pins vfioctl would write: [`crate::plan::pinning::place`] when the whole placement is
//! redone, otherwise new pins for just the vCPUs at fault, on free whole cores near the
//! guest's others.
//!
//! The rules are declared below; their logic is by family: `model` (model and guest
//! topology), `pins` (the pins and where each vCPU runs), `numa` (L3 domains and NUMA
//! nodes), `threads` (the emulator and I/O threads), over the `guest::Guest` they share.

pub(super) mod commandline;
mod guest;
pub(super) mod iothreads;
mod model;
mod numa;
mod pins;
mod threads;

use super::{Area, Cx, Finding, Rule, Severity};
use crate::cpuset::CpuSet;
use crate::domain::vcpupin;

const AREA: Area = Area::Cpu;

pub const MODE_NOT_PASSTHROUGH: Rule = Rule {
    id: "cpu-mode-not-passthrough",
    severity: Severity::Warning,
    area: AREA,
    title: "the CPU mode is not host-passthrough",
};
pub const NO_TOPOLOGY: Rule = Rule {
    id: "cpu-no-topology",
    severity: Severity::Warning,
    area: AREA,
    title: "several vCPUs without a <topology>: one socket each",
};
pub const TOPOLOGY_MISMATCH: Rule = Rule {
    id: "cpu-topology-mismatch",
    severity: Severity::Error,
    area: AREA,
    title: "the <topology> does not multiply out to the <vcpu> count",
};
pub const THREADS_EXCEED_HOST: Rule = Rule {
    id: "cpu-threads-exceed-host",
    severity: Severity::Warning,
    area: AREA,
    title: "the topology has more threads per core than the host's cores",
};
pub const AMD_NO_TOPOEXT: Rule = Rule {
    id: "cpu-amd-no-topoext",
    severity: Severity::Warning,
    area: AREA,
    title: "SMT topology on an AMD host without the topoext feature",
};
pub const PIN_BAD_CPUSET: Rule = Rule {
    id: "cpu-pin-bad-cpuset",
    severity: Severity::Error,
    area: AREA,
    title: "a pin names a CPU that does not exist or is offline (or none)",
};
pub const VCPUPIN_NO_SUCH_VCPU: Rule = Rule {
    id: "cpu-vcpupin-no-such-vcpu",
    severity: Severity::Error,
    area: AREA,
    title: "a vcpupin for a vCPU the domain does not have",
};
pub const UNPINNED: Rule =
    Rule { id: "cpu-unpinned", severity: Severity::Warning, area: AREA, title: "vCPUs without any pin" };
pub const VCPU_FLOATING: Rule = Rule {
    id: "cpu-vcpu-floating",
    severity: Severity::Warning,
    area: AREA,
    title: "vCPUs allowed on several host CPUs instead of one",
};
pub const VCPUS_SHARE_CPU: Rule = Rule {
    id: "cpu-vcpus-share-cpu",
    severity: Severity::Warning,
    area: AREA,
    title: "two vCPUs pinned to the same host CPU",
};
pub const EFFICIENCY_CORES: Rule = Rule {
    id: "cpu-efficiency-cores",
    severity: Severity::Warning,
    area: AREA,
    title: "vCPUs on efficiency cores of a hybrid CPU",
};
pub const VCPU_ON_CPU0: Rule = Rule {
    id: "cpu-vcpu-on-cpu0",
    severity: Severity::Warning,
    area: AREA,
    title: "a vCPU on CPU 0 or its SMT sibling",
};
pub const SMT_SIBLINGS: Rule = Rule {
    id: "cpu-smt-siblings",
    severity: Severity::Warning,
    area: AREA,
    title: "a guest core's vCPUs are not the SMT siblings of one host core",
};
pub const NUMA_SPREAD: Rule = Rule {
    id: "cpu-numa-spread",
    severity: Severity::Warning,
    area: AREA,
    title: "vCPUs over several NUMA nodes although one would hold them",
};
pub const L3_SPREAD: Rule = Rule {
    id: "cpu-l3-spread",
    severity: Severity::Warning,
    area: AREA,
    title: "vCPUs over several L3 domains although one would hold them",
};
pub const NUMA_AWAY_FROM_DEVICE: Rule = Rule {
    id: "cpu-numa-away-from-device",
    severity: Severity::Warning,
    area: AREA,
    title: "vCPUs on another NUMA node than the passed device",
};
pub const NO_EMULATORPIN: Rule = Rule {
    id: "cpu-no-emulatorpin",
    severity: Severity::Warning,
    area: AREA,
    title: "vCPUs pinned but the emulator thread is not",
};
pub const EMULATORPIN_OVERLAP: Rule = Rule {
    id: "cpu-emulatorpin-overlap",
    severity: Severity::Warning,
    area: AREA,
    title: "the emulator thread shares CPUs with vCPUs",
};
pub const NO_IOTHREADPIN: Rule = Rule {
    id: "cpu-no-iothreadpin",
    severity: Severity::Warning,
    area: AREA,
    title: "an I/O thread without an <iothreadpin>",
};
pub const IOTHREADPIN_OVERLAP: Rule = Rule {
    id: "cpu-iothreadpin-overlap",
    severity: Severity::Warning,
    area: AREA,
    title: "an I/O thread shares CPUs with vCPUs",
};

/// Where one vCPU may run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Place {
    /// No vcpupin and no `<vcpu cpuset>`.
    Unpinned,
    /// Its pin is broken (reported on the pin as [`PIN_BAD_CPUSET`]).
    Broken,
    /// Allowed on several host CPUs.
    Floating(CpuSet),
    /// On exactly one online host CPU.
    On(u32),
}

impl Place {
    pub(super) fn on(&self) -> Option<u32> {
        match self {
            Place::On(c) => Some(*c),
            _ => None,
        }
    }

    /// The CPUs it was given.
    pub(super) fn cpus(&self) -> Vec<u32> {
        match self {
            Place::On(c) => vec![*c],
            Place::Floating(s) => s.iter().collect(),
            _ => Vec::new(),
        }
    }
}

/// `vCPU 3`, `vCPUs 0-2,5`.
pub(super) fn vcpus_text(v: impl IntoIterator<Item = u32>) -> String {
    let set: CpuSet = v.into_iter().collect();
    if set.len() == 1 {
        format!("vCPU {set}")
    } else {
        format!("vCPUs {set}")
    }
}

/// `CPU 3`, `CPUs 0-2,5`.
pub(super) fn cpus_text(set: &CpuSet) -> String {
    if set.len() == 1 {
        format!("CPU {set}")
    } else {
        format!("CPUs {set}")
    }
}

/// `vCPU 3 runs`, `vCPUs 0-2 run`.
pub(super) fn running(v: &[u32]) -> String {
    format!("{} {}", vcpus_text(v.iter().copied()), if v.len() == 1 { "runs" } else { "run" })
}

pub(super) fn vcpupin_lines(pins: &[(u32, u32)]) -> String {
    pins.iter().map(|(v, c)| vcpupin(*v, &c.to_string()).to_xml()).collect::<Vec<_>>().join("\n")
}

pub(super) fn vcpupin_path(v: u32) -> String {
    format!("cputune/vcpupin[@vcpu='{v}']")
}

/// Every CPU rule, family by family: the model and topology, the pins, the placement
/// across L3 domains and nodes, QEMU's threads.
pub(super) fn check(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    commandline::check(cx, out);
    iothreads::check(cx, out);
    let Some(shape) = model::Shape::read(cx) else { return };
    model::check(cx, &shape, out);
    let read = pins::read(cx, &shape, out);
    let tune = read.tune;
    let mut g = guest::Guest::new(cx, &shape, &read);
    // The rules once to learn every vCPU they move, then for real: each fix is its part of
    // one repair of all of those.
    let mut scratch = Vec::new();
    let moving = g.moving(&pins::check(&g, tune, &mut scratch));
    g.all_moving = Some(moving);
    let first_pin_finding = out.len();
    let flagged = pins::check(&g, tune, out);
    let all_unpinned = g.places.iter().all(|p| *p == Place::Unpinned);
    let replaced = if all_unpinned { None } else { numa::check(&g, tune, &flagged, out) };
    // One placement for every fix: when a finding's fix is the planner's whole placement,
    // the repairs of single vCPUs point to it, and the emulator and I/O threads go beside it.
    let rest = match &replaced {
        Some((_, cpus)) => g.rest(cpus),
        None => g.rest(&g.target(&flagged)),
    };
    let (has_emulatorpin, iothreadpins) = (read.has_emulatorpin, read.iothreadpins.clone());
    pins::report_broken(&g, &shape, read, &rest, out);
    if let Some((id, _)) = &replaced {
        for f in out[first_pin_finding..].iter_mut().filter(|f| f.id != *id && f.fix.contains("<vcpupin")) {
            f.fix =
                crate::xml::Node::comment(&format!("the placement in {id}'s fix moves every vCPU and fixes this too"))
                    .to_xml();
        }
    }
    if all_unpinned {
        return;
    }
    threads::check(&g, tune, has_emulatorpin, &iothreadpins, &flagged, &rest, out);
}

#[cfg(test)]
mod tests;
