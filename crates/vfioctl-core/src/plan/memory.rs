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
    /// 1 GiB pages must be reserved when the kernel boots; 2 MiB pages can be allocated
    /// when the guest starts.
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
        "{mib} MiB do not fit NUMA node {node}: it has {node_mib} MiB and the host keeps at least {keep_mib} MiB of it"
    )]
    DoesNotFit { mib: u64, node: String, node_mib: u64, keep_mib: u64 },
    #[error("1 GiB hugepages need a CPU with the pdpe1gb flag; this one has none (use --hugepages 2M)")]
    No1G,
    #[error("guest memory must be at least 1 MiB")]
    Zero,
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
    let mut reasons = Vec::new();
    let mib = match mib {
        Some(0) => return Err(MemoryError::Zero),
        Some(m) => m,
        None => {
            let m = node_mib.map_or(8192, |n| ((n / 2) / 1024 * 1024).clamp(1024, 16384));
            reasons.push(format!(
                "{} GiB of memory by default: half of the node, at most 16 GiB (pass --memory to choose)",
                m / 1024
            ));
            m
        }
    };
    if let Some(total) = node_mib {
        let keep = (total / 10).max(2048);
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
            "{count} hugepages of 2 MiB on node {}: exactly {mib} MiB, no extra (a 10% margin would waste {} MiB); allocated when the guest starts{}",
            node.map_or("?".into(), |n| n.to_string()),
            mib / 10,
            if pdpe1gb { "" } else { " (this CPU has no 1 GiB pages)" }
        )
    });
    Ok(MemoryPlan { mib, hugepages: Some(Hugepages { size_kib, count, node, reserve_at_boot }), reasons })
}
