//! Kernel modules: the VFIO modules for the kernel, the KVM module and the KVM options
//! passthrough guests want.

use std::collections::BTreeSet;

use super::{param_bool, Check, Facts, Rule, Status};
use crate::kmod;
use crate::vendor::CpuVendor;

pub const VFIO_MODULES: Rule =
    Rule { id: "vfio.modules", area: "VFIO", title: "VFIO modules for <kernel>", level: Status::Fail };
/// Fails on the live machine; only warns on a snapshot, which may just not say.
pub const KVM_MODULE: Rule =
    Rule { id: "kvm.module", area: "KVM", title: "the <module> module is loaded", level: Status::Fail };
pub const KVM_IGNORE_MSRS: Rule =
    Rule { id: "kvm.ignore_msrs", area: "KVM", title: "kvm ignore_msrs=1", level: Status::Warn };
pub const KVM_REPORT_IGNORED_MSRS: Rule =
    Rule { id: "kvm.report_ignored_msrs", area: "KVM", title: "kvm report_ignored_msrs=0", level: Status::Note };
pub const KVM_NPT: Rule = Rule { id: "kvm.npt", area: "KVM", title: "kvm_amd npt=1", level: Status::Warn };
pub const KVM_AVIC: Rule = Rule { id: "kvm.avic", area: "KVM", title: "kvm_amd avic=1", level: Status::Note };
pub const KVM_EPT: Rule = Rule { id: "kvm.ept", area: "KVM", title: "kvm_intel ept=1", level: Status::Warn };
pub const KVM_NESTED: Rule = Rule { id: "kvm.nested", area: "KVM", title: "<module> nested", level: Status::Note };

/// A module parameter a rule wants set: the module, the parameter, its wanted value and
/// what goes wrong without it.
struct Wanted {
    rule: Rule,
    module: &'static str,
    param: &'static str,
    want: bool,
    why: &'static str,
}

const IGNORE_MSRS: Wanted = Wanted {
    rule: KVM_IGNORE_MSRS,
    module: "kvm",
    param: "ignore_msrs",
    want: true,
    why: "a guest touching an MSR KVM does not emulate gets an exception (Windows guests and GPU tools crash)",
};
const REPORT_IGNORED_MSRS: Wanted = Wanted {
    rule: KVM_REPORT_IGNORED_MSRS,
    module: "kvm",
    param: "report_ignored_msrs",
    want: false,
    why: "every ignored MSR access is logged, which can flood the kernel log",
};
const NPT: Wanted = Wanted {
    rule: KVM_NPT,
    module: "kvm_amd",
    param: "npt",
    want: true,
    why: "without nested page tables every guest page fault traps to the host",
};
const AVIC: Wanted = Wanted {
    rule: KVM_AVIC,
    module: "kvm_amd",
    param: "avic",
    want: true,
    why: "interrupts to the guest are virtualized in software (guide 000 enables AVIC)",
};
const EPT: Wanted = Wanted {
    rule: KVM_EPT,
    module: "kvm_intel",
    param: "ept",
    want: true,
    why: "without EPT every guest page fault traps to the host",
};

pub(super) fn run(f: &Facts, out: &mut Vec<Check>) {
    out.push(vfio_modules(f));
    let Some(module) = f.vendor.kvm_module() else { return };
    let loaded = f.module_params.contains_key(module)
        || f.modules_loaded.as_ref().is_some_and(|l| l.contains(module))
        || f.modules_builtin.as_ref().is_some_and(|b| b.contains(module));
    out.push(kvm_module(f, module, loaded));
    if !f.module_params.contains_key("kvm") && !loaded {
        return;
    }
    out.push(wanted(f, &IGNORE_MSRS));
    if f.param("kvm", "ignore_msrs").and_then(param_bool) == Some(true) {
        out.push(wanted(f, &REPORT_IGNORED_MSRS));
    }
    match f.vendor {
        CpuVendor::Amd => {
            out.push(wanted(f, &NPT));
            out.push(wanted(f, &AVIC));
        }
        CpuVendor::Intel => out.push(wanted(f, &EPT)),
        CpuVendor::Other => {}
    }
    out.extend(nested(f, module));
}

fn vfio_modules(f: &Facts) -> Check {
    let version = f.kernel_release.as_deref().and_then(kmod::kernel_version);
    let needed = kmod::vfio_modules(version);
    let rule = match &f.kernel_release {
        Some(r) => VFIO_MODULES.on(&format!("kernel {}", r.trim())),
        None => VFIO_MODULES.on("the running kernel"),
    };
    if f.modules_builtin.is_none() && f.modules_available.is_none() {
        // The lists are not there, but sysfs may prove the driver is.
        return match &f.vfio_evidence {
            Some(e) => rule.pass(e.clone()),
            None => rule.note("no modules.builtin or modules.dep for this kernel under /lib/modules"),
        };
    }
    let empty = BTreeSet::new();
    let builtin = f.modules_builtin.as_ref().unwrap_or(&empty);
    let available = f.modules_available.as_ref().unwrap_or(&empty);
    let missing: Vec<&str> =
        needed.iter().copied().filter(|m| !builtin.contains(*m) && !available.contains(*m)).collect();
    if missing.is_empty() {
        let (b, m): (Vec<&str>, Vec<&str>) = needed.iter().partition(|n| builtin.contains(**n));
        let mut how = Vec::new();
        if !m.is_empty() {
            how.push(format!("modules: {}", m.join(", ")));
        }
        if !b.is_empty() {
            how.push(format!("built in: {}", b.join(", ")));
        }
        rule.pass(how.join("; "))
    } else if let Some(e) = &f.vfio_evidence {
        // The lists are incomplete (a snapshot, a root without the module tree); what is
        // running proves more than what is listed.
        rule.pass(format!("{e} (not listed: {})", missing.join(", ")))
    } else {
        rule.unmet(
            format!("missing: {}", missing.join(", ")),
            "install the kernel's extra modules package (e.g. linux-modules-extra-$(uname -r) on Ubuntu) or build the kernel with CONFIG_VFIO_PCI",
        )
    }
}

fn kvm_module(f: &Facts, module: &str, loaded: bool) -> Check {
    let rule = KVM_MODULE.on(module);
    if loaded {
        rule.pass("")
    } else {
        rule.verdict(
            if f.live { Status::Fail } else { Status::Warn },
            format!("{module} is not loaded: no KVM acceleration"),
            Some(format!("modprobe {module}; if it fails, enable virtualization in the firmware setup")),
        )
    }
}

/// A module parameter against the value a rule wants.
fn wanted(f: &Facts, w: &Wanted) -> Check {
    let (m, p) = (w.module, w.param);
    let want = if w.want { "1" } else { "0" };
    match f.param(m, p) {
        None => w.rule.note(format!("/sys/module/{m}/parameters/{p} not found")),
        Some(v) => match param_bool(v) {
            Some(x) if x == w.want => w.rule.pass(format!("{p}={v}")),
            _ => {
                let fix = if f.modprobe.option(m, p).and_then(param_bool) == param_bool(want) {
                    format!("already set in /etc/modprobe.d (options {m} {p}={want}); takes effect when {m} is reloaded or at the next boot")
                } else {
                    format!("add `options {m} {p}={want}` to /etc/modprobe.d/kvm.conf, then reload {m} or reboot")
                };
                w.rule.unmet(format!("{p}={v}: {}", w.why), fix)
            }
        },
    }
}

fn nested(f: &Facts, module: &str) -> Option<Check> {
    let v = f.param(module, "nested")?;
    let on = param_bool(v) == Some(true);
    Some(KVM_NESTED.on(module).note(format!(
        "nested virtualization is {} (either works for passthrough; guide 000 turns it off)",
        if on { "on" } else { "off" }
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wanted_titles_say_the_module_parameter_and_value() {
        for w in [IGNORE_MSRS, REPORT_IGNORED_MSRS, NPT, AVIC, EPT] {
            assert_eq!(w.rule.title, format!("{} {}={}", w.module, w.param, if w.want { 1 } else { 0 }));
        }
    }
}
