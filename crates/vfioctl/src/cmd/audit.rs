//! `vfioctl audit FILE | --libvirt NAME [--fix]`: lint a domain against this host.

use std::io::IsTerminal;

use serde::Serialize;
use similar::TextDiff;
use vfioctl_core::audit::{self, Area, Cx, Finding, Severity};
use vfioctl_core::domain::{self, DiskBus, DomainRequest, GuestOs, Parts};
use vfioctl_core::plan::memory::Hugepages;
use vfioctl_core::plan::{pinning, CpuRequest, HugepageChoice, MemoryPlan, Plan, Request};
use vfioctl_core::selector::Selector;
use vfioctl_core::xml::{self, Document};
use vfioctl_host::audit::{gather, AuditFacts};
use vfioctl_host::host::Host;
use vfioctl_host::libvirt::Libvirt;

use crate::cli::{AuditArgs, Format};
use crate::error::{CliError, Exit};
use crate::{ops, output};

#[derive(Serialize)]
struct Report<'a> {
    source: &'a str,
    findings: &'a [Finding],
    summary: Summary,
}

#[derive(Serialize, Default)]
struct Summary {
    errors: usize,
    warnings: usize,
    info: usize,
}

fn summary(findings: &[Finding]) -> Summary {
    let mut s = Summary::default();
    for f in findings {
        match f.severity {
            Severity::Error => s.errors += 1,
            Severity::Warning => s.warnings += 1,
            Severity::Info => s.info += 1,
        }
    }
    s
}

/// 1 when anything at warning or above is left.
fn exit_for(findings: &[Finding]) -> Exit {
    if findings.iter().any(|f| f.severity <= Severity::Warning) {
        Exit::Finding
    } else {
        Exit::Ok
    }
}

/// Findings for people, grouped by area; severities coloured on a terminal.
pub fn render_text(source: &str, findings: &[Finding], colour: bool) -> String {
    let paint = |s: Severity| -> String {
        let word = format!("{:<7}", s.to_string());
        if !colour {
            return word;
        }
        let code = match s {
            Severity::Error => "1;31",
            Severity::Warning => "1;33",
            Severity::Info => "36",
        };
        format!("\x1b[{code}m{word}\x1b[0m")
    };
    let mut out = String::new();
    let mut area: Option<Area> = None;
    for f in findings {
        if area != Some(f.area) {
            if area.is_some() {
                out.push('\n');
            }
            out.push_str(f.area.title());
            out.push('\n');
            area = Some(f.area);
        }
        let place = match (f.line, f.column) {
            (Some(l), Some(c)) => format!(" (line {l}:{c})"),
            (Some(l), None) => format!(" (line {l})"),
            _ => String::new(),
        };
        out.push_str(&format!("  {} {}  {}{place}\n", paint(f.severity), f.id, f.element));
        out.push_str(&format!("          {}\n", f.message));
        if !f.why.is_empty() {
            out.push_str(&format!("          why: {}\n", f.why));
        }
        for (i, line) in f.fix.lines().enumerate() {
            out.push_str(&format!("          {}{line}\n", if i == 0 { "fix: " } else { "     " }));
        }
    }
    let s = summary(findings);
    if findings.is_empty() {
        out.push_str(&format!("{source}: no findings\n"));
    } else {
        out.push_str(&format!("\n{source}: {} errors, {} warnings, {} notes\n", s.errors, s.warnings, s.info));
    }
    out
}

fn colour() -> bool {
    std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none()
}

fn connect(args: &AuditArgs) -> Result<Libvirt, CliError> {
    Libvirt::open(args.connect.as_deref().unwrap_or(ops::DEFAULT_URI)).map_err(CliError::Libvirt)
}

pub fn run(host: &Host, args: &AuditArgs) -> Result<Exit, CliError> {
    let mut conn: Option<Libvirt> = None;
    let (source, text) = match (&args.file, &args.libvirt) {
        (Some(path), _) => {
            let t = std::fs::read_to_string(path).map_err(|err| CliError::Input { path: path.clone(), err })?;
            (path.display().to_string(), t)
        }
        (None, Some(name)) => {
            let c = connect(args)?;
            let t = c.domain_xml(name).map_err(CliError::Libvirt)?;
            conn = Some(c);
            (format!("libvirt domain {name}"), t)
        }
        (None, None) => return Err(CliError::Usage("name a domain XML file, or --libvirt NAME".into())),
    };
    // Not dropped: the process's exit frees the tree at once, where dropping a big
    // domain's million nodes one by one costs a tenth of its audit.
    let doc = std::mem::ManuallyDrop::new(
        xml::parse(&text).map_err(|err| CliError::DomainXml { from: source.clone(), err })?,
    );
    if doc.root.name != "domain" {
        return Err(CliError::Usage(format!(
            "{source} is not a libvirt domain: its root element is <{}>",
            doc.root.name
        )));
    }
    let mut facts = gather(host)?;
    facts.read_files(host, &audit::named_files(&doc));
    for w in &facts.warnings {
        eprintln_safe!("vfioctl: warning: {w}");
    }
    let findings = audit::audit(&doc, &facts.host());
    if !args.fix {
        match args.format {
            Format::Json => {
                output::print_json(&Report { source: &source, findings: &findings, summary: summary(&findings) })?
            }
            Format::Text => output::print(&render_text(&source, &findings, colour()))?,
        }
        return Ok(exit_for(&findings));
    }
    let (fixed, changes) = fix(host, &facts, &doc, &findings)?;
    let fixed = std::mem::ManuallyDrop::new(fixed);
    let after = fixed.write();
    if changes.is_empty() {
        eprintln_safe!("vfioctl: nothing in the domain to fix automatically");
    } else {
        let diff = TextDiff::from_lines(&text, &after);
        eprint!(
            "{}",
            crate::output::terminal_safe(&diff.unified_diff().context_radius(2).header(&source, "fixed").to_string())
        );
        eprintln_safe!("vfioctl: {} changes:", changes.len());
        for c in &changes {
            eprintln_safe!("  - {c}");
        }
    }
    let left = audit::audit(&fixed, &facts.host());
    match args.format {
        Format::Json => {
            let report = Report { source: "fixed", findings: &left, summary: summary(&left) };
            let json = serde_json::to_string_pretty(&report).map_err(|e| CliError::Output(std::io::Error::other(e)))?;
            eprintln_safe!("{json}");
        }
        Format::Text => {
            if !left.is_empty() {
                eprintln_safe!("vfioctl: left after the fix (these need the host or you):");
                eprint!("{}", crate::output::terminal_safe(&render_text("fixed domain", &left, false)));
            }
        }
    }
    match &args.out {
        Some(path) => {
            output::write_file(path, after.as_bytes()).map_err(CliError::Out)?;
            eprintln_safe!("vfioctl: wrote {}", path.display());
        }
        None => output::print(&after)?,
    }
    if args.define {
        let c = match conn {
            Some(c) => c,
            None => connect(args)?,
        };
        let d = c.define(&after).map_err(CliError::Libvirt)?;
        eprintln_safe!("vfioctl: defined domain {} ({}) at {}", d.name, d.uuid, c.uri());
    }
    Ok(exit_for(&left))
}

/// The parts of the domain the findings are about; `--fix` changes only those.
fn parts_for(findings: &[Finding]) -> Parts {
    let mut p = Parts::NONE;
    for f in findings.iter().filter(|f| f.severity <= Severity::Warning) {
        match f.area {
            Area::Hyperv => {
                p.features = true;
                p.clock = true;
            }
            Area::Clock => p.clock = true,
            Area::Cpu => {
                p.cpu = true;
                p.pinning = true;
            }
            // numatune lives with the pinning.
            Area::Memory if f.id.contains("numa") => p.pinning = true,
            Area::Memory => p.memory = true,
            Area::Devices => p.devices = true,
            Area::Security => {}
        }
    }
    p
}

/// The domain with what the findings are about brought up to the plan vfioctl would make
/// for it: the same devices, vCPU count and memory, the hugepages the host really has.
fn fix(
    h: &Host,
    facts: &AuditFacts,
    doc: &Document,
    findings: &[Finding],
) -> Result<(Document, Vec<String>), CliError> {
    let mut parts = parts_for(findings);
    let mut fixed = doc.clone();
    if parts == Parts::NONE {
        return Ok((fixed, Vec::new()));
    }
    let host = facts.host();
    let cx = Cx::new(&doc.root, &host);
    let mib = memory_mib(&doc.root).unwrap_or(4096);
    // Keep hugepages only when the host has them for this guest now.
    let want_pages = doc.root.find("memoryBacking/hugepages").is_some();
    let page_kib = doc
        .root
        .find("memoryBacking/hugepages/page")
        .and_then(|p| p.attr("size"))
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(2048);
    let have =
        facts.facts.hugepages.iter().filter(|p| p.size_kib == page_kib).map(|p| p.free * p.size_kib).sum::<u64>()
            >= mib * 1024;
    // A domain's <hugepages/> stays even when the host reserves none now: the finding says
    // to reserve them, and taking them out of the domain would not be a fix.
    if want_pages && !have {
        eprintln_safe!(
            "vfioctl: note: keeping the domain's hugepages although the host has too few free now (see the memory findings)"
        );
    }
    let hugepages = match (want_pages, page_kib) {
        (false, _) => HugepageChoice::None,
        (true, 1048576) => HugepageChoice::Size1G,
        (true, _) => HugepageChoice::Size2M,
    };
    // Hostdevs that cannot be the guest's (gone from the host, or what the host needs) go;
    // the plan is made for the rest, and completes a slot whose function was wrong.
    let stale = audit::devices::stale_hostdevs(&cx);
    let mut removed = Vec::new();
    if parts.devices && !stale.is_empty() {
        if let Some(devs) = fixed.root.child_mut("devices") {
            devs.remove_elements(|e| {
                let src = (e.name == "hostdev" && e.attr("type") == Some("pci"))
                    .then(|| cx.hostdevs.iter().find(|h| h.el.same_as(e)))
                    .flatten()
                    .map(|h| h.source);
                src.is_some_and(|a| stale.iter().any(|(s, _)| *s == a))
            });
        }
        for (a, why) in &stale {
            removed.push(match why {
                audit::devices::Stale::NotOnHost(hint) => format!("removed hostdev {a}: not on this host ({hint})"),
                audit::devices::Stale::HostNeeds(what) => format!("removed hostdev {a}: it is {what}"),
            });
        }
    }
    let selectors: Vec<Selector> = cx
        .hostdevs
        .iter()
        .filter(|h| facts.devices.contains_key(&h.source))
        .filter(|h| !stale.iter().any(|(s, _)| *s == h.source))
        .filter_map(|h| h.source.to_string().parse().ok())
        .collect();
    let plan = if selectors.is_empty() {
        let cpu = match pinning::place(&facts.topology, &CpuRequest { vcpus: cx.vcpus, node: None }) {
            Ok(cpu) => cpu,
            Err(e) => {
                eprintln_safe!("vfioctl: note: leaving the domain's vCPUs and pinning as they are: {e}");
                parts.pinning = false;
                parts.cpu = false;
                if parts == Parts::NONE {
                    return Ok((fixed, removed));
                }
                pinning::place(&facts.topology, &CpuRequest { vcpus: None, node: None })
                    .map_err(|e| CliError::Plan(e.into()))?
            }
        };
        Plan::cpu_and_memory(cpu, MemoryPlan { mib, hugepages: None::<Hugepages>, reasons: Vec::new() })
    } else {
        // The domain passes these already: what plan refuses by default is reported, not refused.
        let req = Request {
            devices: selectors,
            vcpus: cx.vcpus,
            memory_mib: Some(mib),
            hugepages,
            bind: Default::default(),
            acs_override: false,
            force: true,
        };
        let p = match ops::plan(h, &req) {
            Ok(p) => p,
            // What cannot be planned for this domain is left as it is; the rest is fixed.
            Err(CliError::Plan(e)) => {
                eprintln_safe!(
                    "vfioctl: note: leaving the domain's devices, vCPUs, pinning and memory as they are: {e}"
                );
                parts.devices = false;
                parts.pinning = false;
                parts.cpu = false;
                parts.memory = false;
                if parts == Parts::NONE {
                    return Ok((fixed, removed));
                }
                let cpu = pinning::place(&facts.topology, &CpuRequest { vcpus: None, node: None })
                    .map_err(|e| CliError::Plan(e.into()))?;
                Plan::cpu_and_memory(cpu, MemoryPlan { mib, hugepages: None::<Hugepages>, reasons: Vec::new() })
            }
            Err(e) => return Err(e),
        };
        // Never a device plan would refuse: completing a group or slot that plan would not
        // pass whole (a chipset controller, the boot GPU, a disk the host uses) is not a
        // fix. The domain's own hostdevs stay as they are, and the findings stay.
        let refused: Vec<&vfioctl_core::plan::Refusal> = p.forced.iter().filter(|r| !r.devices.is_empty()).collect();
        if parts.devices && !refused.is_empty() {
            parts.devices = false;
            for r in &refused {
                eprintln_safe!(
                    "vfioctl: not completing the passed devices: vfioctl plan refuses {} ({}); move the card to a slot with its own IOMMU group, or pass fewer devices",
                    r.devices.iter().map(|a| a.short()).collect::<Vec<_>>().join(", "),
                    r.reason
                );
            }
            if parts == Parts::NONE {
                return Ok((fixed, removed));
            }
        }
        p
    };
    // By the planner's own measure the fix's placement is never worse than the domain's.
    if parts.pinning {
        if let Some(worse) = domain::worse_placement(&facts.topology, &doc.root, &plan.cpu) {
            eprintln_safe!("vfioctl: note: keeping the domain's pinning: the plan's would put its vCPUs on {worse}");
            parts.pinning = false;
            if parts == Parts::NONE {
                return Ok((fixed, removed));
            }
        }
    }
    let os = if !cx.windows {
        GuestOs::Linux
    } else if doc.root.find("devices/tpm").is_some() {
        GuestOs::Windows11
    } else {
        GuestOs::Windows10
    };
    let dhost = ops::domain_host(h, os);
    let req = DomainRequest {
        name: doc.root.find("name").map(|n| n.text()).unwrap_or_default(),
        os,
        evdev: Vec::new(),
        disk: None,
        disk_bus: DiskBus::Scsi,
        isos: Vec::new(),
        network: None,
        rom: None,
        looking_glass: None,
    };
    let want = domain::document(&plan, &dhost, &req);
    let report = domain::patch_parts(&mut fixed, &want, parts);
    removed.extend(report.changes);
    Ok((fixed, removed))
}

/// `<memory>` in MiB.
fn memory_mib(root: &vfioctl_core::xml::Element) -> Option<u64> {
    vfioctl_core::units::element_kib(root.find("memory")?).map(|k| k / 1024)
}
