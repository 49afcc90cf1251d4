//! QEMU's own threads: the emulator thread and the I/O threads pinned, apart from the
//! vCPUs.

use std::collections::BTreeSet;

use super::guest::Guest;
use super::{cpus_text, running, Finding, EMULATORPIN_OVERLAP, IOTHREADPIN_OVERLAP, NO_EMULATORPIN, NO_IOTHREADPIN};
use crate::cpuset::CpuSet;
use crate::domain::{emulatorpin, iothreadpin};
use crate::xml::Element;

/// The emulator and I/O threads.
pub(super) fn check(
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
            Finding::at(&NO_EMULATORPIN, "cputune/emulatorpin", tune.or_else(|| cx.closest("cputune")))
                .message("the vCPUs are pinned, the emulator thread is not")
                .why("QEMU's emulator thread (device emulation, I/O completion) then runs wherever the host puts it, also on the vCPUs' CPUs, and preempts them: micro-stutter, audio crackle")
                .fix(emulatorpin(rest).to_xml()),
        );
    } else if let Some((set, e)) = &cx.pins.emulator {
        let o = overlap_with(set);
        if !o.is_empty() {
            out.push(
                Finding::at(&EMULATORPIN_OVERLAP, "cputune/emulatorpin", Some(e))
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
            Finding::at(&NO_IOTHREADPIN, "cputune/iothreadpin", tune.or_else(|| cx.closest("cputune")))
                .message(format!("I/O thread{} {ids} {} no <iothreadpin>", if missing.len() == 1 { "" } else { "s" }, if missing.len() == 1 { "has" } else { "have" }))
                .why("an unpinned I/O thread runs anywhere, also on the vCPUs' CPUs: disk I/O then steals time from the guest (stutter while loading)")
                .fix(missing.iter().map(|t| iothreadpin(&t.to_string(), rest).to_xml()).collect::<Vec<_>>().join("\n")),
        );
    }
    for (t, (set, e)) in &cx.pins.iothread {
        let o = overlap_with(set);
        if !o.is_empty() {
            out.push(
                Finding::at(&IOTHREADPIN_OVERLAP, &format!("cputune/iothreadpin[@iothread='{t}']"), Some(e))
                    .message(format!("I/O thread {t} may run on {}, where {}", cpus_text(&o), running(&on_those(&o))))
                    .why("the I/O thread preempts the vCPU it shares a CPU with on every disk request: stutter while loading")
                    .fix(iothreadpin(&t.to_string(), rest).to_xml()),
            );
        }
    }
}
