//! `<iothreads>` and `<iothreadids>` that disagree. libvirt reconciles them when it reads
//! the domain (as its test driver shows): fewer threads than ids and the count rises to the
//! ids; more and it adds ids 1, 2, … that are not taken. Threads the user did not name are
//! threads nothing pins or uses on purpose.

use std::collections::BTreeSet;

use super::super::{Area, Cx, Finding, Rule, Severity};

pub const IOTHREADS_DISAGREE: Rule = Rule {
    id: "cpu-iothreads-disagree",
    severity: Severity::Warning,
    area: Area::Cpu,
    title: "<iothreads> and <iothreadids> that disagree",
};

pub(in crate::audit) fn check(cx: &Cx<'_>, out: &mut Vec<Finding>) {
    let Some(ids_el) = cx.root.child("iothreadids") else { return };
    let ids: BTreeSet<u32> =
        ids_el.children_named("iothread").filter_map(|t| t.attr("id").and_then(|i| i.parse().ok())).collect();
    let count_el = cx.root.child("iothreads");
    let count: Option<u32> = count_el.and_then(|c| c.text().parse().ok());
    let k = ids.len() as u32;
    let Some(n) = count else { return };
    if n == k || ids.is_empty() {
        return;
    }
    let (message, why) = if n < k {
        (
            format!("<iothreads> says {n}, but <iothreadids> lists {k} ({})", list(&ids)),
            format!("libvirt raises the count to {k} when it reads the domain: the number written is not the one that runs, and a tool or person reading it counts wrong"),
        )
    } else {
        let mut added = Vec::new();
        let mut next = 1;
        while (added.len() as u32) < n - k {
            if !ids.contains(&next) {
                added.push(next);
            }
            next += 1;
        }
        let added: BTreeSet<u32> = added.into_iter().collect();
        (
            format!("<iothreads> says {n}, but <iothreadids> lists only {k} ({}): libvirt adds {}", list(&ids), list(&added)),
            "threads libvirt adds are named by no disk and pinned by no <iothreadpin>: they float over every CPU, the vCPUs' too".to_string(),
        )
    };
    out.push(
        Finding::at(&IOTHREADS_DISAGREE, "iothreads", count_el.or(Some(ids_el)))
            .message(message)
            .why(why)
            .fix(format!("<iothreads>{k}</iothreads>   <!-- one per <iothread id> -->")),
    );
}

fn list(ids: &BTreeSet<u32>) -> String {
    ids.iter().map(|i| i.to_string()).collect::<Vec<_>>().join(", ")
}
