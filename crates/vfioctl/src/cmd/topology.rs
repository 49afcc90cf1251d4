//! `vfioctl topology`: packages, NUMA nodes, L3 cache domains, cores and SMT siblings.
//!
//! Text is a summary line and then a tree node → L3 domain → core, in the spirit of
//! `lstopo -p`; JSON is [`vfioctl_core::topology::Topology`] as is. Warnings about odd
//! sysfs files go to stderr.

use std::fmt::Write as _;

use vfioctl_core::topology::{Core, Topology};
use vfioctl_host::host::Host;

use crate::cli::{Format, TopologyArgs};
use crate::error::{CliError, Exit};
use crate::output;

pub fn run(host: &Host, args: &TopologyArgs) -> Result<Exit, CliError> {
    let (topology, warnings) = host.topology()?;
    for w in warnings {
        eprintln_safe!("vfioctl: warning: {w}");
    }
    match args.format {
        Format::Json => output::print_json(topology)?,
        Format::Text => output::print(&render(topology))?,
    }
    Ok(Exit::Ok)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `16314104` KiB → `15.6 GiB`.
fn memory(kib: u64) -> String {
    if kib >= 1 << 20 {
        format!("{:.1} GiB", kib as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.0} MiB", kib as f64 / 1024.0)
    }
}

/// Cache sizes: `8192` → `8 MiB`, `1536` → `1536 KiB`.
fn cache(kib: u64) -> String {
    if kib >= 1024 && kib % 1024 == 0 {
        format!("{} MiB", kib / 1024)
    } else {
        format!("{kib} KiB")
    }
}

fn ghz(khz: u64) -> String {
    format!("{:.2} GHz", khz as f64 / 1e6)
}

fn list(ids: &[u32]) -> String {
    ids.iter().map(u32::to_string).collect::<Vec<_>>().join(",")
}

/// The text report.
pub fn render(t: &Topology) -> String {
    let mut out = String::new();
    let threads = t.cpus.len();
    let packages = if t.packages.is_empty() {
        "package unknown".to_string()
    } else {
        plural(t.packages.len(), "package", "packages")
    };
    let _ = write!(
        out,
        "{packages}, {}, {}, {}, {}",
        plural(t.nodes.len(), "NUMA node", "NUMA nodes"),
        plural(t.l3.len(), "L3 domain", "L3 domains"),
        plural(t.cores.len(), "core", "cores"),
        plural(threads, "thread", "threads"),
    );
    let smt = t.smt_width();
    if smt > 1 {
        let _ = write!(out, " (SMT {smt})");
    }
    if t.is_hybrid() {
        let count = |k| t.cores.iter().filter(|c| c.kind == Some(k)).count();
        let _ = write!(
            out,
            ", hybrid: {} performance + {} efficiency cores",
            count(vfioctl_core::topology::CoreKind::Performance),
            count(vfioctl_core::topology::CoreKind::Efficiency)
        );
    }
    if let Some(f) = t.max_freq_khz() {
        let _ = write!(out, ", max {}", ghz(f));
    }
    out.push('\n');

    // Per-core frequency only when cores differ (hybrid, preferred cores).
    let mut freqs: Vec<u64> = t.cores.iter().filter_map(|c| c.max_freq_khz).collect();
    freqs.sort_unstable();
    freqs.dedup();
    let show_freq = freqs.len() > 1;
    let multi_package = t.packages.len() > 1;

    let mut node_ids: Vec<Option<u32>> = t.nodes.iter().map(|n| Some(n.id)).collect();
    if t.cores.iter().any(|c| c.node.is_none()) {
        node_ids.push(None);
    }
    for node_id in node_ids {
        let node = node_id.and_then(|id| t.node(id));
        match node {
            Some(n) => {
                let _ = write!(out, "node {}", n.id);
                if multi_package {
                    let mut pk: Vec<u32> =
                        t.cores.iter().filter(|c| c.node == Some(n.id)).filter_map(|c| c.package).collect();
                    pk.sort_unstable();
                    pk.dedup();
                    if !pk.is_empty() {
                        let _ = write!(out, " (package {})", list(&pk));
                    }
                }
                if n.cpus.is_empty() {
                    out.push_str(": no CPUs");
                } else {
                    let _ = write!(out, ": CPUs {}", n.cpus);
                }
                match n.memory_kib {
                    Some(m) => {
                        let _ = write!(out, ", {} memory", memory(m));
                    }
                    None => out.push_str(", memory unknown"),
                }
                out.push('\n');
            }
            None => out.push_str("node unknown:\n"),
        }
        let in_node: Vec<&Core> = t.cores.iter().filter(|c| c.node == node_id).collect();
        for d in &t.l3 {
            let cores: Vec<&Core> = in_node.iter().copied().filter(|c| c.l3 == Some(d.id)).collect();
            if cores.is_empty() {
                continue;
            }
            let _ = write!(out, "  L3 {}", d.id);
            if let Some(s) = d.size_kib {
                let _ = write!(out, ", {}", cache(s));
            }
            let _ = write!(out, ": CPUs {}", d.cpus);
            if d.nodes.len() > 1 {
                let _ = write!(out, " (spans nodes {})", list(&d.nodes));
            }
            out.push('\n');
            write_cores(&mut out, &cores, show_freq, "    ");
        }
        let no_l3: Vec<&Core> = in_node.iter().copied().filter(|c| c.l3.is_none()).collect();
        if !no_l3.is_empty() {
            let indent = if t.l3.is_empty() { "  " } else { "    " };
            if !t.l3.is_empty() {
                out.push_str("  no L3 listed:\n");
            }
            write_cores(&mut out, &no_l3, show_freq, indent);
        }
    }
    if !t.offline.is_empty() {
        let _ = writeln!(out, "offline: CPUs {}", t.offline);
    }
    out
}

fn write_cores(out: &mut String, cores: &[&Core], show_freq: bool, indent: &str) {
    for c in cores {
        let _ = write!(out, "{indent}core {}: {}", c.id, list(c.cpus.as_slice()));
        if let Some(k) = c.kind {
            let _ = write!(out, "  {}", k.as_str());
        }
        if show_freq {
            if let Some(f) = c.max_freq_khz {
                let _ = write!(out, "  {}", ghz(f));
            }
        }
        out.push('\n');
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use vfioctl_core::cpuset::CpuSet;
    use vfioctl_core::topology::{RawCpu, RawL3, RawNode, RawTopology};

    use super::*;

    fn set(s: &str) -> CpuSet {
        s.parse().unwrap()
    }

    #[test]
    fn renders_a_two_node_host() {
        let ccx = ["0-1,4-5", "2-3,6-7"];
        let cpus = (0..8)
            .map(|cpu| RawCpu {
                cpu,
                package: Some(0),
                core_id: Some(cpu % 4),
                thread_siblings: Some([cpu % 4, cpu % 4 + 4].into_iter().collect()),
                l3: Some(RawL3 {
                    id: Some(cpu % 4 / 2),
                    shared: set(ccx[(cpu % 4 / 2) as usize]),
                    size_kib: Some(8192),
                }),
                max_freq_khz: Some(3_400_000),
                ..Default::default()
            })
            .collect();
        let raw = RawTopology {
            cpus,
            nodes: vec![
                RawNode { id: 0, cpus: set("0-1,4-5"), memory_kib: Some(16 << 20) },
                RawNode { id: 1, cpus: set("2-3,6-7"), memory_kib: Some(512 << 10) },
            ],
            offline: set("8"),
            ..Default::default()
        };
        let (t, _) = Topology::build(raw);
        assert_eq!(
            render(&t),
            "1 package, 2 NUMA nodes, 2 L3 domains, 4 cores, 8 threads (SMT 2), max 3.40 GHz\n\
             node 0: CPUs 0-1,4-5, 16.0 GiB memory\n\
             \x20 L3 0, 8 MiB: CPUs 0-1,4-5\n\
             \x20   core 0: 0,4\n\
             \x20   core 1: 1,5\n\
             node 1: CPUs 2-3,6-7, 512 MiB memory\n\
             \x20 L3 1, 8 MiB: CPUs 2-3,6-7\n\
             \x20   core 2: 2,6\n\
             \x20   core 3: 3,7\n\
             offline: CPUs 8\n"
        );
    }

    #[test]
    fn renders_a_bare_vm() {
        let cpus = (0..2).map(|cpu| RawCpu { cpu, ..Default::default() }).collect();
        let (t, _) = Topology::build(RawTopology { cpus, ..Default::default() });
        assert_eq!(
            render(&t),
            "package unknown, 1 NUMA node, 0 L3 domains, 2 cores, 2 threads\n\
             node 0: CPUs 0-1, memory unknown\n\
             \x20 core 0: 0\n\
             \x20 core 1: 1\n"
        );
    }

    #[test]
    fn renders_hybrid_kinds_and_frequencies() {
        let cpus = (0..3)
            .map(|cpu| RawCpu {
                cpu,
                package: Some(0),
                thread_siblings: Some(if cpu < 2 { set("0-1") } else { set("2") }),
                max_freq_khz: Some(if cpu < 2 { 4_900_000 } else { 3_800_000 }),
                ..Default::default()
            })
            .collect();
        let raw = RawTopology {
            cpus,
            performance: Some(set("0-1")),
            efficiency: Some(set("2")),
            memory_kib: Some(1 << 20),
            ..Default::default()
        };
        let (t, _) = Topology::build(raw);
        let text = render(&t);
        assert!(text.starts_with("1 package, 1 NUMA node, 0 L3 domains, 2 cores, 3 threads (SMT 2), hybrid: 1 performance + 1 efficiency cores, max 4.90 GHz\n"), "{text}");
        assert!(text.contains("  core 0: 0,1  performance  4.90 GHz\n"), "{text}");
        assert!(text.contains("  core 1: 2  efficiency  3.80 GHz\n"), "{text}");
    }
}
