//! The model and the guest topology: host-passthrough, a `<topology>` that multiplies out
//! to the vCPU count and fits the host's cores, topoext for SMT guests on AMD.

use super::{Cx, Finding, AMD_NO_TOPOEXT, MODE_NOT_PASSTHROUGH, NO_TOPOLOGY, THREADS_EXCEED_HOST, TOPOLOGY_MISMATCH};
use crate::domain::{self, cpu_feature, host_passthrough};
use crate::vendor::CpuVendor;
use crate::xml::{Element, Node};

/// The declared guest topology.
pub(super) struct Declared {
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

/// The domain's vCPU count and declared topology against the host's cores, read once for
/// the model and topology rules and the pinning rules after them.
pub(super) struct Shape<'a> {
    pub cpu_el: Option<&'a Element>,
    pub vcpu_el: Option<&'a Element>,
    pub topology_el: Option<&'a Element>,
    pub vcpus: u32,
    /// The host's threads per core.
    pub smt: u32,
    /// `<topology>` takes `dies` (libvirt 6.1 and later, or unknown).
    pub dies: bool,
    pub declared: Option<Declared>,
    pub declared_threads: u32,
    /// A topology to suggest: the declared threads (else the host's SMT width) when they
    /// fit this count and host, else the host's SMT width when it divides the count, else
    /// one thread per core.
    pub suggest_threads: u32,
    pub topology_ok: bool,
    /// The declared threads per core exceed the host's.
    pub exceeds: bool,
    pub amd_smt: bool,
}

impl<'a> Shape<'a> {
    /// `None` when the vCPU count cannot be read (libvirt's to refuse).
    pub fn read(cx: &Cx<'a>) -> Option<Self> {
        let topo = cx.host.topology;
        let cpu_el = cx.root.find("cpu");
        let vcpu_el = cx.root.find("vcpu");
        // libvirt's default is one vCPU.
        let vcpus = match (vcpu_el, cx.vcpus) {
            (None, _) => 1,
            (Some(_), Some(n)) => n,
            (Some(_), None) => return None,
        };
        let smt = topo.smt_width() as u32;
        let dies = domain::versions::at_least(cx.host.libvirt, domain::versions::LIBVIRT_TOPOLOGY_DIES);
        let topology_el = cpu_el.and_then(|c| c.child("topology"));
        let declared = topology_el.map(Declared::read);
        let declared_threads = declared.as_ref().and_then(|d| d.threads).unwrap_or(1);
        let suggest_threads = [declared.as_ref().and_then(|d| d.threads).unwrap_or(smt), smt]
            .into_iter()
            .find(|&t| t >= 1 && t <= smt.max(1) && vcpus % t == 0)
            .unwrap_or(1);
        let topology_ok = declared.as_ref().is_some_and(|d| d.product() == Some(u64::from(vcpus)));
        let exceeds = topology_ok && declared_threads > 1 && smt > 0 && declared_threads > smt;
        let amd_smt = cx.host.vendor == CpuVendor::Amd && declared_threads > 1 && !exceeds;
        Some(Shape {
            cpu_el,
            vcpu_el,
            topology_el,
            vcpus,
            smt,
            dies,
            declared,
            declared_threads,
            suggest_threads,
            topology_ok,
            exceeds,
            amd_smt,
        })
    }

    /// `<topology>` for this count with `threads` per core.
    pub fn suggested(&self, threads: u32) -> Element {
        domain::topology(1, self.dies.then_some(1), self.vcpus / threads, threads)
    }

    /// [`Shape::suggested`] as a snippet.
    pub fn topology_line(&self, threads: u32) -> String {
        self.suggested(threads).to_xml()
    }

    /// vCPUs per guest core for the sibling rule and fixes: the declared threads when the
    /// topology adds up and the host has that many threads per core, else 1.
    pub fn group(&self) -> u32 {
        if self.topology_ok && !self.exceeds {
            self.declared_threads.max(1)
        } else {
            1
        }
    }
}

/// The model and topology rules, in order.
pub(super) fn check(cx: &Cx<'_>, s: &Shape<'_>, out: &mut Vec<Finding>) {
    let mode_reported = mode(cx, s, out);
    topology(cx, s, mode_reported, out);
    threads_exceed(s, out);
    if !mode_reported {
        topoext(s, out);
    }
}

/// [`MODE_NOT_PASSTHROUGH`]; true when reported (its fix carries the topology too).
fn mode(cx: &Cx<'_>, s: &Shape<'_>, out: &mut Vec<Finding>) -> bool {
    let Shape { cpu_el, topology_ok, declared_threads, suggest_threads, .. } = *s;
    let kvm = cx.root.attr("type") != Some("qemu");
    let mode = cpu_el.map(|c| c.attr("mode").unwrap_or("custom"));
    if !kvm || matches!(mode, Some("host-passthrough") | Some("maximum")) {
        return false;
    }
    let threads = if cpu_el.is_some() && topology_ok { declared_threads } else { suggest_threads };
    let mut fix = host_passthrough(s.suggested(threads));
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
            Finding::at(&MODE_NOT_PASSTHROUGH, "cpu", cpu_el.or_else(|| cx.closest("cpu")))
                .message(format!("{what}, not host-passthrough"))
                .why("host-model and named models give the guest a CPU without some of the host's features and without its real cache layout: games and drivers take slower code paths, some refuse to start, and the guest schedules blind to the caches (lost performance)")
                .fix(fix.pretty()),
        );
    true
}

/// [`TOPOLOGY_MISMATCH`] and [`NO_TOPOLOGY`].
fn topology(cx: &Cx<'_>, s: &Shape<'_>, mode_reported: bool, out: &mut Vec<Finding>) {
    let Shape { cpu_el, topology_el, vcpus, smt, declared_threads, suggest_threads, topology_ok, .. } = *s;
    let declared = &s.declared;
    let topology_line = |t: u32| s.topology_line(t);
    match (declared, topology_el) {
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
                Finding::at(&TOPOLOGY_MISMATCH, "cpu/topology", Some(t))
                    .message(message)
                    .why("libvirt refuses a domain whose topology does not multiply out to its vCPU count: the guest cannot be defined or started")
                    .fix(fix),
            );
        }
        (None, _) if vcpus > 1 && cpu_el.is_some() && !mode_reported => {
            out.push(
                Finding::at(&NO_TOPOLOGY, "cpu/topology", cx.closest("cpu/topology"))
                    .message(format!("{vcpus} vCPUs without a <topology>: libvirt makes each vCPU its own socket"))
                    .why("Windows 10/11 client editions use at most one (Home) or two (Pro) sockets, so the other vCPUs sit idle; and no guest sees which vCPUs share a core or a cache: lost performance")
                    .fix(topology_line(suggest_threads)),
            );
        }
        _ => {}
    }
}

/// [`THREADS_EXCEED_HOST`].
fn threads_exceed(s: &Shape<'_>, out: &mut Vec<Finding>) {
    let Shape { topology_el, smt, declared_threads, suggest_threads, exceeds, .. } = *s;
    let topology_line = |t: u32| s.topology_line(t);
    if exceeds {
        out.push(
            Finding::at(&THREADS_EXCEED_HOST, "cpu/topology", topology_el)
                .message(format!(
                    "the topology says threads='{declared_threads}', but this host's cores have {smt} thread{} (SMT is off or absent)",
                    if smt == 1 { "" } else { "s" }
                ))
                .why("the guest takes vCPU pairs for the two threads of one core and schedules around siblings that do not exist: work piles onto some vCPUs while others idle (lost performance)")
                .fix(topology_line(suggest_threads)),
        );
    }
}

/// [`AMD_NO_TOPOEXT`].
fn topoext(s: &Shape<'_>, out: &mut Vec<Finding>) {
    let Shape { cpu_el, declared_threads, amd_smt, .. } = *s;
    if amd_smt {
        let topoext = cpu_el.and_then(|c| c.children_named("feature").find(|f| f.attr("name") == Some("topoext")));
        if topoext.is_none_or(|f| !matches!(f.attr("policy"), Some("require") | Some("force"))) {
            let what = match topoext.and_then(|f| f.attr("policy")) {
                Some(p) => format!("the topoext feature has policy '{p}'"),
                None => "there is no topoext feature".into(),
            };
            out.push(
                Finding::at(&AMD_NO_TOPOEXT, "cpu/feature[@name='topoext']",
                    topoext.or(cpu_el),
                )
                .message(format!("threads='{declared_threads}' on an AMD host, but {what}"))
                .why("without topoext an AMD guest sees no SMT siblings: it takes every vCPU for a full core, puts two busy threads on one host core and the pairing you pinned is lost (lost performance, stutter)")
                .fix(cpu_feature("topoext").to_xml()),
            );
        }
    }
}
