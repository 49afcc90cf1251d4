//! Hugepages reserved for guests, per NUMA node.

use std::collections::BTreeMap;

use super::{Check, Facts, HugepagePool, Rule, Status};
use crate::units::size_text;

/// The whole host's pools (or none at all).
pub const HUGEPAGES: Rule =
    Rule { id: "hugepages", area: "MEMORY", title: "hugepages reserved for guests", level: Status::Warn };
/// The pools of one NUMA node.
pub const HUGEPAGES_NODE: Rule =
    Rule { id: "hugepages.node<N>", area: "MEMORY", title: "hugepages on NUMA node <N>", level: Status::Warn };

pub(super) fn run(f: &Facts, out: &mut Vec<Check>) {
    let reserved: Vec<&HugepagePool> = f.hugepages.iter().filter(|p| p.total > 0).collect();
    if reserved.is_empty() {
        out.push(
            HUGEPAGES.note("no hugepages reserved (vfioctl plan decides how many; optional but faster guest memory)"),
        );
        return;
    }
    let mut by_node: BTreeMap<Option<u32>, Vec<&HugepagePool>> = BTreeMap::new();
    for p in &reserved {
        by_node.entry(p.node).or_default().push(p);
    }
    out.extend(by_node.into_iter().map(|(node, pools)| pools_of(node, &pools)));
}

/// The pools of one node (`None`: the whole host).
fn pools_of(node: Option<u32>, pools: &[&HugepagePool]) -> Check {
    let rule = match node {
        None => HUGEPAGES.on(""),
        Some(n) => HUGEPAGES_NODE.on(&n.to_string()),
    };
    let text: Vec<String> = pools
        .iter()
        .map(|p| format!("{} × {}: {} reserved, {} free", p.total, size_text(p.size_kib), p.total, p.free))
        .collect();
    let all_used = pools.iter().all(|p| p.free == 0);
    let message = text.join("; ") + if all_used { " (all in use: a new guest gets none)" } else { "" };
    if all_used {
        rule.unmet(message, "stop the guest using them, or reserve more (vfioctl plan)")
    } else {
        rule.pass(message)
    }
}
