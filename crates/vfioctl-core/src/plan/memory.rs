//! Guest memory: how much, on which node, backed by which hugepages.

use serde::Serialize;

use crate::topology::Topology;

/// `--hugepages`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HugepageChoice {
    /// 1 GiB pages when the CPU has them and the size allows, else 2 MiB.
    #[default]
    Auto,
    Size2M,
    Size1G,
    None,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Hugepages {
    pub size_kib: u64,
    pub count: u64,
    pub node: Option<u32>,
    /// 1 GiB pages must be reserved when the kernel boots; 2 MiB pages are allocated after
    /// boot (vm.nr_hugepages early at boot on a one-node host, else before the guest starts).
    pub reserve_at_boot: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MemoryPlan {
    pub mib: u64,
    pub hugepages: Option<Hugepages>,
    #[serde(skip)]
    pub reasons: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MemoryError {
    #[error(
        "{mib} MiB do not fit NUMA node {node}: it has {node_mib} MiB and the host keeps at least {keep_mib} MiB of it, so at most {} MiB fit",
        node_mib.saturating_sub(*keep_mib)
    )]
    DoesNotFit { mib: u64, node: String, node_mib: u64, keep_mib: u64 },
    #[error("1 GiB hugepages need a CPU with the pdpe1gb flag; this one has none (use --hugepages 2M)")]
    No1G,
    #[error("guest memory must be at least 1 MiB")]
    Zero,
}

/// What the host keeps of `total_mib` of memory: a tenth, and at least 2 GiB (a quarter
/// on small hosts).
pub fn host_floor_mib(total_mib: u64) -> u64 {
    (total_mib / 10).max(2048.min(total_mib / 4))
}

/// Memory the next boot and the guest take from the host: each part and its size.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Held {
    pub kib: u64,
    pub parts: Vec<String>,
}

/// What is held of the host's memory once the plan is in effect: hugepages the kernel
/// command line still reserves besides the plan's (`others`: the next boot's parameters
/// the plan keeps, read with the default size the plan leaves, `default_kib`), a
/// `vm.nr_hugepages` the plan leaves (only when it uses no hugepages; otherwise apply
/// comments those out), and the guest's memory: its hugepages, or ordinary memory.
/// `plan_sysctl`: apply sets the plan's 2 MiB pages by `vm.nr_hugepages`, which replaces
/// any count of the default size.
pub fn held(
    others: &crate::cmdline::Cmdline,
    default_kib: u64,
    sysctl: Option<&(String, u64)>,
    memory: &MemoryPlan,
    plan_sysctl: bool,
) -> Held {
    let mut h = Held::default();
    let size = |kib: u64| crate::units::size_text(kib);
    let sysctl_left = sysctl.filter(|(_, n)| memory.hugepages.is_none() && *n > 0);
    for (page, count) in others.boot_hugepages() {
        // A default-size count set by sysctl at boot replaces the command line's.
        if page == default_kib && (plan_sysctl || sysctl_left.is_some()) || count == 0 {
            continue;
        }
        h.kib += page * count;
        h.parts.push(format!("{} in {count} hugepages of {} (kernel command line)", size(page * count), size(page)));
    }
    if let Some((file, n)) = sysctl_left {
        h.kib += default_kib * n;
        h.parts.push(format!("{} in vm.nr_hugepages = {n} ({file})", size(default_kib * n)));
    }
    match &memory.hugepages {
        Some(p) => {
            h.kib += p.size_kib * p.count;
            h.parts.push(format!(
                "{} in the guest's {} hugepages of {}",
                size(p.size_kib * p.count),
                p.count,
                size(p.size_kib)
            ));
        }
        None => {
            h.kib += memory.mib * 1024;
            h.parts.push(format!("{} of the guest's memory", size(memory.mib * 1024)));
        }
    }
    h
}

/// Plans the guest's memory on `node`.
pub fn plan(
    topo: &Topology,
    node: Option<u32>,
    mib: Option<u64>,
    choice: HugepageChoice,
    pdpe1gb: bool,
) -> Result<MemoryPlan, MemoryError> {
    let node_kib = match node {
        Some(n) => topo.node(n).and_then(|x| x.memory_kib),
        None => topo.nodes.iter().filter_map(|x| x.memory_kib).reduce(|a, b| a + b),
    };
    let node_mib = node_kib.map(|k| k / 1024);
    let keep_of = host_floor_mib;
    let mut reasons = Vec::new();
    let mib = match mib {
        Some(0) => return Err(MemoryError::Zero),
        Some(m) => m,
        None => {
            let m = node_mib.map_or(8192, |n| {
                let half = n / 2;
                let room = n.saturating_sub(keep_of(n));
                // Whole GiB when there is room for them, else 256 MiB steps.
                let m = if half >= 1024 { (half / 1024 * 1024).min(16384) } else { half / 256 * 256 };
                m.min(room / 256 * 256).max(256.min(room))
            });
            reasons.push(format!(
                "{} of memory by default: half of the node, at most 16 GiB, leaving the host its share (pass --memory to choose)",
                crate::units::size_text(m * 1024)
            ));
            m
        }
    };
    if let Some(total) = node_mib {
        let keep = keep_of(total);
        if mib + keep > total {
            return Err(MemoryError::DoesNotFit {
                mib,
                node: node.map_or("of the host".into(), |n| n.to_string()),
                node_mib: total,
                keep_mib: keep,
            });
        }
    }
    let size_kib = match choice {
        HugepageChoice::None => {
            reasons.push("no hugepages (--hugepages none): guest memory from ordinary pages".into());
            return Ok(MemoryPlan { mib, hugepages: None, reasons });
        }
        HugepageChoice::Size1G if !pdpe1gb => return Err(MemoryError::No1G),
        HugepageChoice::Size1G => 1 << 20,
        HugepageChoice::Size2M => 2048,
        HugepageChoice::Auto if pdpe1gb && mib % 1024 == 0 => 1 << 20,
        HugepageChoice::Auto => 2048,
    };
    let count = (mib * 1024).div_ceil(size_kib);
    let reserve_at_boot = size_kib == 1 << 20;
    reasons.push(if reserve_at_boot {
        format!(
            "{count} hugepages of 1 GiB on node {}: exactly the guest's memory; 1 GiB pages must be reserved when the kernel boots",
            node.map_or("?".into(), |n| n.to_string())
        )
    } else {
        format!(
            "{count} hugepages of 2 MiB on node {}: exactly {mib} MiB, no extra (a 10% margin would waste {} MiB); allocated after boot, not by the kernel command line (apply sets vm.nr_hugepages in sysctl.d on a one-node host; on others allocate them on the node before the guest starts){}",
            node.map_or("?".into(), |n| n.to_string()),
            mib / 10,
            if pdpe1gb { "" } else { " (this CPU has no 1 GiB pages)" }
        )
    });
    Ok(MemoryPlan { mib, hugepages: Some(Hugepages { size_kib, count, node, reserve_at_boot }), reasons })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::pinning::tests::shape;

    fn node_of(mib: u64) -> Topology {
        let mut t = shape(1, 1, 1, 2, 2, true, &[8192]);
        for n in &mut t.nodes {
            n.memory_kib = Some(mib * 1024);
        }
        t
    }

    /// The default always fits the node, down to small ones (a 1 GiB lab guest).
    #[test]
    fn the_default_fits_small_nodes() {
        for (node, want) in [(957, 256), (2950, 1024), (3900, 1024), (8000, 3072), (64_000, 16384)] {
            let p = plan(&node_of(node), Some(0), None, HugepageChoice::None, true).unwrap();
            assert_eq!(p.mib, want, "node of {node} MiB");
        }
        let e = plan(&node_of(957), Some(0), Some(1024), HugepageChoice::None, true).unwrap_err();
        assert!(e.to_string().contains("so at most 718 MiB fit"), "{e}");
    }
}
