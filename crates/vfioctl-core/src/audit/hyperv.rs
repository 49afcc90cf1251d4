//! Hyper-V enlightenments: what a Windows guest misses, and combinations libvirt or
//! Windows cannot use (the dependencies of [`crate::domain::hyperv::REQUIRES`]).

use super::{Area, Cx, Finding, Rule, Severity};
use crate::domain::hyperv::{self, enlightenments, REQUIRES};
use crate::domain::Timer;
use crate::xml::Element;

const AREA: Area = Area::Hyperv;

pub const MISSING: Rule = Rule {
    id: "hyperv-missing",
    severity: Severity::Warning,
    area: AREA,
    title: "a Windows guest without (some) Hyper-V enlightenments",
};
pub const DEPENDENCY: Rule = Rule {
    id: "hyperv-dependency",
    severity: Severity::Error,
    area: AREA,
    title: "an enlightenment without the one it needs",
};
pub const STIMER_WITHOUT_HYPERVCLOCK: Rule = Rule {
    id: "hyperv-stimer-without-hypervclock",
    severity: Severity::Error,
    area: AREA,
    title: "stimer without the hypervclock timer",
};
pub const VENDOR_ID_TOO_LONG: Rule = Rule {
    id: "hyperv-vendor-id-too-long",
    severity: Severity::Error,
    area: AREA,
    title: "vendor_id longer than 12 characters",
};
pub const SPINLOCKS_LOW: Rule =
    Rule { id: "hyperv-spinlocks-low", severity: Severity::Error, area: AREA, title: "spinlock retries below 4095" };

pub const MISPLACED: Rule = Rule {
    id: "hyperv-misplaced",
    severity: Severity::Warning,
    area: AREA,
    title: "a <hyperv> or <kvm> element outside <features>, which libvirt ignores",
};

/// `<hyperv>` and `<kvm>` belong in `<features>`; elsewhere libvirt drops them when it
/// reads the domain, so KVM is not hidden and no enlightenment is on.
fn misplaced(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    for parent in [Some(cx.root), cx.root.child("cpu"), cx.root.child("os")].into_iter().flatten() {
        for e in parent.elements().filter(|e| e.name == "hyperv" || e.name == "kvm") {
            let at = if std::ptr::eq(parent, cx.root) { e.name.clone() } else { format!("{}/{}", parent.name, e.name) };
            out.push(
                Finding::at(&MISPLACED, &at, Some(e))
                    .message(format!("<{}> is in <{}>, not in <features>", e.name, parent.name))
                    .why("libvirt reads these only inside <features> and drops them elsewhere when the domain is defined: what they say (KVM hidden from the GPU driver, the enlightenments) never reaches QEMU")
                    .fix(format!("move it into <features>:\n<features>\n  {}\n</features>", e.to_xml().trim())),
            );
        }
    }
}

/// Whether an enlightenment is on.
fn on(hyperv: &Element, name: &str) -> bool {
    hyperv.attr("mode") == Some("passthrough")
        || hyperv.child(name).is_some_and(|e| matches!(e.attr("state"), Some("on") | Some("yes")))
}

pub(super) fn check(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    misplaced(cx, out);
    let hyperv = cx.root.find("features/hyperv");
    let all = enlightenments(cx.host.libvirt, None);
    match hyperv {
        None if cx.windows => {
            let features = Element::new("features").with_child(hyperv::element(cx.host.libvirt, &all));
            out.push(
                Finding::at(&MISSING, "features/hyperv", cx.closest("features/hyperv"))
                    .message("a Windows guest without Hyper-V enlightenments")
                    .why("Windows then runs its timers and spinlocks as on bare metal: the first guide measured 60% of a core burnt at idle until enlightenments and the Hyper-V clock were on")
                    .fix(features.pretty()),
            );
        }
        None => {}
        Some(h) => {
            if cx.windows && h.attr("mode") != Some("passthrough") {
                let missing: Vec<_> = all.iter().filter(|e| !on(h, e.name)).collect();
                if !missing.is_empty() {
                    let names: Vec<&str> = missing.iter().map(|e| e.name).collect();
                    out.push(
                        Finding::at(&MISSING, "features/hyperv", Some(h))
                            .message(format!("missing enlightenments: {}", names.join(", ")))
                            .why("each one lets Windows use a paravirtual interface instead of emulated hardware: fewer VM exits, less idle CPU, steadier frame times")
                            .fix(missing.iter().map(|e| e.xml()).collect::<Vec<_>>().join("\n")),
                    );
                }
            }
            for &(name, dep) in REQUIRES {
                if on(h, name) && !on(h, dep) {
                    out.push(
                        Finding::at(&DEPENDENCY, &format!("features/hyperv/{name}"), h.child(name))
                            .message(format!("{name} is on without {dep}"))
                            .why(format!(
                                "{name} needs {dep}: QEMU refuses to start the guest (or Windows ignores {name})"
                            ))
                            .fix(hyperv::feature(dep).to_xml()),
                    );
                }
            }
            if on(h, "stimer") {
                let clock = cx.root.find("clock");
                let hv_clock = clock.is_some_and(|c| {
                    c.children_named("timer")
                        .any(|t| t.attr("name") == Some("hypervclock") && t.attr("present") != Some("no"))
                });
                if !hv_clock {
                    out.push(
                        Finding::at(&STIMER_WITHOUT_HYPERVCLOCK, "features/hyperv/stimer",
                            h.child("stimer"),
                        )
                        .message("stimer is on without the hypervclock timer")
                        .why("synthetic timers count on the Hyper-V reference clock; without it QEMU refuses hv-stimer")
                        .fix(
                            Element::new("clock")
                                .with_attr("offset", "localtime")
                                .with_child(Timer::Hypervclock.element())
                                .pretty(),
                        ),
                    );
                }
            }
            if let Some(v) = h.child("vendor_id").filter(|v| v.attr("state") == Some("on")) {
                let value = v.attr("value").unwrap_or("");
                if value.chars().count() > 12 {
                    out.push(
                        Finding::at(&VENDOR_ID_TOO_LONG, "features/hyperv/vendor_id", Some(v))
                            .message(format!("vendor_id '{value}' has {} characters", value.chars().count()))
                            .why("the Hyper-V vendor id is at most 12 characters: libvirt refuses the domain")
                            .fix(hyperv::feature("vendor_id").to_xml()),
                    );
                }
            }
            if let Some(s) = h.child("spinlocks").filter(|s| s.attr("state") == Some("on")) {
                let retries = s.attr("retries").and_then(|r| r.parse::<u64>().ok());
                if retries.is_some_and(|r| r < 4095) {
                    out.push(
                        Finding::at(&SPINLOCKS_LOW, "features/hyperv/spinlocks", Some(s))
                            .message(format!("spinlock retries {} is below 4095", retries.unwrap_or(0)))
                            .why("libvirt refuses fewer than 4095 retries; 8191 is the usual value")
                            .fix(hyperv::feature("spinlocks").to_xml()),
                    );
                }
            }
        }
    }
}
