//! `vfioctl topology` against hwloc (`lstopo-no-graphics`) on every example host and on
//! this machine, exact facts of the example hosts, and bad input.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::util::{tool, vfioctl, workspace};

/// What both tools must agree on. CPU sets are sorted lists of CPU numbers; sizes in KiB.
#[derive(Debug, Default, PartialEq)]
struct Facts {
    pus: BTreeSet<u32>,
    cores: BTreeSet<Vec<u32>>,
    /// L3 domain CPUs → size.
    l3: BTreeMap<Vec<u32>, Option<u64>>,
    /// Node id → (CPUs, memory).
    nodes: BTreeMap<u32, (Vec<u32>, Option<u64>)>,
}

/// Example host roots that have a CPU tree.
fn example_roots() -> Vec<PathBuf> {
    let dir = workspace().join("examples/hosts");
    let mut roots: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.join("sys/devices/system/cpu").is_dir()).collect()
        })
        .unwrap_or_default();
    roots.sort();
    roots
}

/// An hwloc bitmap (`0x000000ff,0xffffffff`: 32-bit words, most significant first) as
/// CPU numbers.
fn hwloc_bitmap(s: &str) -> Vec<u32> {
    let mut cpus = Vec::new();
    for (i, word) in s.split(',').rev().enumerate() {
        let v = u32::from_str_radix(word.trim().trim_start_matches("0x"), 16)
            .unwrap_or_else(|e| panic!("bad hwloc bitmap {s}: {e}"));
        cpus.extend((0..32).filter(|b| v & (1 << b) != 0).map(|b| i as u32 * 32 + b));
    }
    cpus.sort_unstable();
    cpus
}

fn hwloc_xml(root: &Path) -> String {
    let run = tool(
        "lstopo-no-graphics",
        &["--if", "fsroot", "--input", &root.display().to_string(), "--disallowed", "--of", "xml", "-"],
        "hwloc-nox",
    );
    assert_eq!(run.code, 0, "lstopo-no-graphics failed on {}: {}", root.display(), run.stderr);
    run.stdout
}

fn hwloc_facts(xml: &str) -> Facts {
    let options = roxmltree::ParsingOptions { allow_dtd: true, ..Default::default() };
    let doc = roxmltree::Document::parse_with_options(xml, options).expect("hwloc XML parses");
    let objects = || doc.descendants().filter(|n| n.has_tag_name("object"));
    let kind = |n: &roxmltree::Node| n.attribute("type").unwrap_or_default().to_string();
    let os_index =
        |n: &roxmltree::Node| -> u32 { n.attribute("os_index").expect("os_index").parse().expect("numeric os_index") };
    let pus_under = |n: roxmltree::Node| -> Vec<u32> {
        let mut v: Vec<u32> = n
            .descendants()
            .filter(|d| d.has_tag_name("object") && d.attribute("type") == Some("PU"))
            .map(|d| os_index(&d))
            .collect();
        v.sort_unstable();
        v
    };
    let mut f = Facts::default();
    let mut cores: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for n in objects() {
        match kind(&n).as_str() {
            "PU" => {
                let pu = os_index(&n);
                f.pus.insert(pu);
                // The nearest Core above; a PU without one is its own core.
                let core = n.ancestors().skip(1).find(|a| a.attribute("type") == Some("Core"));
                let key = core.map(|c| c.range().start as u32).unwrap_or(u32::MAX - pu);
                cores.entry(key).or_default().push(pu);
            }
            "L3Cache" => {
                let size =
                    n.attribute("cache_size").and_then(|s| s.parse::<u64>().ok()).filter(|&s| s > 0).map(|s| s / 1024);
                f.l3.insert(pus_under(n), size);
            }
            "NUMANode" => {
                let cpus = hwloc_bitmap(n.attribute("cpuset").unwrap_or("0x0"));
                let mem = n.attribute("local_memory").and_then(|s| s.parse::<u64>().ok()).map(|b| b / 1024);
                f.nodes.insert(os_index(&n), (cpus, mem));
            }
            _ => {}
        }
    }
    f.cores = cores
        .into_values()
        .map(|mut v| {
            v.sort_unstable();
            v
        })
        .collect();
    f
}

fn numbers(v: &Value) -> Vec<u32> {
    v.as_array().expect("array").iter().map(|x| x.as_u64().expect("number") as u32).collect()
}

fn topology_json(root: &Path) -> Value {
    let run = vfioctl(root, &["topology", "--format", "json"]);
    assert_eq!(run.code, 0, "vfioctl topology on {}: {}", root.display(), run.stderr);
    serde_json::from_str(&run.stdout).expect("topology JSON")
}

fn our_facts(v: &Value) -> Facts {
    let mut f = Facts::default();
    for c in v["cpus"].as_array().expect("cpus") {
        f.pus.insert(c["cpu"].as_u64().expect("cpu") as u32);
        f.cores.insert(numbers(&c["siblings"]));
    }
    for d in v["l3"].as_array().expect("l3") {
        f.l3.insert(numbers(&d["cpus"]), d["size_kib"].as_u64());
    }
    for n in v["nodes"].as_array().expect("nodes") {
        f.nodes.insert(n["id"].as_u64().expect("id") as u32, (numbers(&n["cpus"]), n["memory_kib"].as_u64()));
    }
    f
}

fn close(a: Option<u64>, b: Option<u64>) -> bool {
    match (a, b) {
        // The live machine's memory may change between the two reads (balloon, hotplug).
        (Some(a), Some(b)) => a.abs_diff(b) <= (a.max(b) / 50).max(4096),
        (a, b) => a == b,
    }
}

fn compare_with_hwloc(root: &Path) {
    let ours = our_facts(&topology_json(root));
    let theirs = hwloc_facts(&hwloc_xml(root));
    let name = root.display();
    assert_eq!(ours.pus, theirs.pus, "{name}: online CPUs (ours, hwloc's)");
    assert_eq!(ours.cores, theirs.cores, "{name}: cores (SMT sibling sets)");
    assert_eq!(ours.l3.keys().collect::<Vec<_>>(), theirs.l3.keys().collect::<Vec<_>>(), "{name}: L3 domains");
    for (cpus, size) in &ours.l3 {
        assert_eq!(*size, theirs.l3[cpus], "{name}: size of the L3 of CPUs {cpus:?}");
    }
    assert_eq!(ours.nodes.keys().collect::<Vec<_>>(), theirs.nodes.keys().collect::<Vec<_>>(), "{name}: NUMA nodes");
    for (id, (cpus, mem)) in &ours.nodes {
        let (h_cpus, h_mem) = &theirs.nodes[id];
        // hwloc gives a memory-only node the CPUs near it; it has none of its own.
        if !cpus.is_empty() {
            assert_eq!(cpus, h_cpus, "{name}: CPUs of node {id}");
        }
        assert!(close(*mem, *h_mem), "{name}: memory of node {id}: ours {mem:?} KiB, hwloc {h_mem:?} KiB");
    }
}

#[test]
fn agrees_with_hwloc_on_this_machine() {
    compare_with_hwloc(Path::new("/"));
}

#[test]
fn agrees_with_hwloc_on_every_example_host() {
    let roots = example_roots();
    if roots.is_empty() {
        eprintln!("note: no example hosts with a CPU tree under examples/hosts yet");
    }
    for root in roots {
        compare_with_hwloc(&root);
    }
}

#[test]
fn agrees_with_hwloc_on_a_generated_threadripper() {
    let dir = tempfile::tempdir().expect("tempdir");
    Fixture::threadripper(dir.path());
    compare_with_hwloc(dir.path());
    // Without L3 ids (old kernels), without NUMA (one node from /proc/meminfo).
    for cpu in 0..32 {
        fs::remove_file(dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/cache/index3/id"))).expect("rm id");
    }
    fs::remove_dir_all(dir.path().join("sys/devices/system/node")).expect("rm node");
    compare_with_hwloc(dir.path());
    let v = topology_json(dir.path());
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["nodes"][0]["memory_kib"], 32_000_000);
    assert_eq!(v["cpus"][20]["l3"], 1);
}

fn l3_sets(v: &Value) -> Vec<(String, Option<u64>)> {
    v["l3"]
        .as_array()
        .expect("l3")
        .iter()
        .map(|d| (format!("{:?}", numbers(&d["cpus"])), d["size_kib"].as_u64()))
        .collect()
}

fn range(r: std::ops::Range<u32>) -> Vec<u32> {
    r.collect()
}

fn join(a: Vec<u32>, b: Vec<u32>) -> Vec<u32> {
    a.into_iter().chain(b).collect()
}

/// Exact facts of an example host, or `None` (with a note) when it is not there yet.
fn example(name: &str) -> Option<Value> {
    let root = workspace().join("examples/hosts").join(name);
    if !root.join("sys/devices/system/cpu").is_dir() {
        eprintln!("note: example host {} is missing; its facts are not checked", root.display());
        return None;
    }
    Some(topology_json(&root))
}

#[test]
fn threadripper_1950x_example_facts() {
    let Some(v) = example("tr1950x") else { return };
    assert_eq!(v["packages"].as_array().map(Vec::len), Some(1));
    let nodes: Vec<Vec<u32>> = v["nodes"].as_array().expect("nodes").iter().map(|n| numbers(&n["cpus"])).collect();
    assert_eq!(nodes, [join(range(0..8), range(16..24)), join(range(8..16), range(24..32))]);
    let l3: Vec<(String, Option<u64>)> = [(0, 4), (4, 8), (8, 12), (12, 16)]
        .into_iter()
        .map(|(a, b)| (format!("{:?}", join(range(a..b), range(a + 16..b + 16))), Some(8192)))
        .collect();
    assert_eq!(l3_sets(&v), l3);
    assert_eq!(v["cores"].as_array().map(Vec::len), Some(16));
    for c in v["cpus"].as_array().expect("cpus") {
        let n = c["cpu"].as_u64().expect("cpu") as u32;
        assert_eq!(numbers(&c["siblings"]), [n % 16, n % 16 + 16], "siblings of CPU {n}");
        assert_eq!(c["core"], n % 16, "core of CPU {n}");
    }
    assert_eq!(v["cpus"][4]["l3"], 1);
    assert_eq!(v["cpus"][4]["node"], 0);
    assert_eq!(v["cpus"][28]["node"], 1);
}

#[test]
fn ryzen_2600x_example_facts() {
    let Some(v) = example("r2600x") else { return };
    assert_eq!(v["packages"].as_array().map(Vec::len), Some(1));
    assert_eq!(v["nodes"].as_array().map(Vec::len), Some(1));
    assert_eq!(numbers(&v["nodes"][0]["cpus"]), range(0..12));
    let l3: Vec<String> = l3_sets(&v).into_iter().map(|(s, _)| s).collect();
    assert_eq!(l3, [format!("{:?}", join(range(0..3), range(6..9))), format!("{:?}", join(range(3..6), range(9..12)))]);
    assert_eq!(v["cores"].as_array().map(Vec::len), Some(6));
    for c in v["cpus"].as_array().expect("cpus") {
        let n = c["cpu"].as_u64().expect("cpu") as u32;
        assert_eq!(numbers(&c["siblings"]), [n % 6, n % 6 + 6], "siblings of CPU {n}");
    }
}

#[test]
fn i7_12700k_example_facts() {
    let Some(v) = example("i7-12700k") else { return };
    assert_eq!(v["hybrid"], true);
    assert_eq!(v["cores"].as_array().map(Vec::len), Some(12));
    for c in v["cpus"].as_array().expect("cpus") {
        let n = c["cpu"].as_u64().expect("cpu") as u32;
        let (kind, siblings) = if n < 16 { ("performance", vec![n & !1, n | 1]) } else { ("efficiency", vec![n]) };
        assert_eq!(c["kind"], kind, "kind of CPU {n}");
        assert_eq!(numbers(&c["siblings"]), siblings, "siblings of CPU {n}");
    }
}

#[test]
fn text_output_on_every_host() {
    let mut roots = example_roots();
    roots.push(PathBuf::from("/"));
    for root in roots {
        let run = vfioctl(&root, &["topology"]);
        assert_eq!(run.code, 0, "{}: {}", root.display(), run.stderr);
        let first = run.stdout.lines().next().unwrap_or_default();
        assert!(first.contains(" cores, ") && first.contains(" threads"), "{}: {first}", root.display());
        assert!(run.stdout.contains("node "), "{}: {}", root.display(), run.stdout);
    }
}

/// A tree the way sysfs lays it out, both list and mask files (hwloc reads the masks).
struct Fixture<'a>(&'a Path);

impl Fixture<'_> {
    fn write(&self, path: &str, text: &str) {
        let p = self.0.join(path);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(p, text).expect("write");
    }

    fn set(&self, dir: &str, list_name: &str, mask_name: &str, cpus: &[u32]) {
        let list: Vec<String> = cpus.iter().map(u32::to_string).collect();
        let mut words = vec![0u32; cpus.iter().max().map_or(1, |&m| m as usize / 32 + 1)];
        for &c in cpus {
            words[c as usize / 32] |= 1 << (c % 32);
        }
        let mask: Vec<String> = words.iter().rev().map(|w| format!("{w:08x}")).collect();
        self.write(&format!("{dir}/{list_name}"), &format!("{}\n", list.join(",")));
        self.write(&format!("{dir}/{mask_name}"), &format!("{}\n", mask.join(",")));
    }

    /// A Threadripper 1950X: CPUs 0-31, siblings n and n+16, 4 CCXs, 2 nodes.
    fn threadripper(base: &Path) {
        let f = Fixture(base);
        f.write("sys/devices/system/cpu/online", "0-31\n");
        f.write("sys/devices/system/cpu/present", "0-31\n");
        f.write("sys/devices/system/cpu/possible", "0-31\n");
        for cpu in 0..32u32 {
            let core = cpu % 16;
            let t = format!("sys/devices/system/cpu/cpu{cpu}/topology");
            f.write(&format!("{t}/physical_package_id"), "0\n");
            f.write(&format!("{t}/die_id"), &format!("{}\n", core / 8));
            f.write(&format!("{t}/core_id"), &format!("{}\n", core % 8));
            f.set(&t, "thread_siblings_list", "thread_siblings", &[core, core + 16]);
            f.set(&t, "core_siblings_list", "core_siblings", &range(0..32));
            let c = format!("sys/devices/system/cpu/cpu{cpu}/cache/index3");
            f.write(&format!("{c}/level"), "3\n");
            f.write(&format!("{c}/type"), "Unified\n");
            f.write(&format!("{c}/size"), "8192K\n");
            f.write(&format!("{c}/id"), &format!("{}\n", core / 4));
            let lo = core / 4 * 4;
            f.set(&c, "shared_cpu_list", "shared_cpu_map", &join(range(lo..lo + 4), range(lo + 16..lo + 20)));
        }
        for (node, cpus) in [(0, join(range(0..8), range(16..24))), (1, join(range(8..16), range(24..32)))] {
            let d = format!("sys/devices/system/node/node{node}");
            f.set(&d, "cpulist", "cpumap", &cpus);
            f.write(&format!("{d}/meminfo"), &format!("Node {node} MemTotal:       16000000 kB\n"));
        }
        f.write("proc/meminfo", "MemTotal:       32000000 kB\n");
        f.write("proc/cpuinfo", "processor\t: 0\nvendor_id\t: AuthenticAMD\n\n");
    }
}

#[test]
fn garbage_core_id_is_a_warning_naming_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    Fixture::threadripper(dir.path());
    Fixture(dir.path()).write("sys/devices/system/cpu/cpu5/topology/core_id", "banana\n");
    let run = vfioctl(dir.path(), &["topology", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("/sys/devices/system/cpu/cpu5/topology/core_id") && run.stderr.contains("banana"),
        "{}",
        run.stderr
    );
    let v: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["cpus"][5]["core_id"], Value::Null);
    assert_eq!(numbers(&v["cpus"][5]["siblings"]), [5, 21]);
}

#[test]
fn missing_cache_dirs_and_empty_node_lists_are_not_fatal() {
    let dir = tempfile::tempdir().expect("tempdir");
    Fixture::threadripper(dir.path());
    for cpu in 0..32 {
        fs::remove_dir_all(dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/cache"))).expect("rm cache");
    }
    Fixture(dir.path()).write("sys/devices/system/node/node1/cpulist", "\n");
    let run = vfioctl(dir.path(), &["topology", "--format", "json"]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let v: Value = serde_json::from_str(&run.stdout).expect("json");
    assert_eq!(v["l3"].as_array().map(Vec::len), Some(0));
    assert_eq!(v["cpus"][0]["l3"], Value::Null);
    assert!(numbers(&v["nodes"][1]["cpus"]).is_empty());
    assert_eq!(v["cpus"][8]["node"], Value::Null);
    assert!(run.stderr.contains("no NUMA node"), "{}", run.stderr);
    let text = vfioctl(dir.path(), &["topology"]);
    assert_eq!(text.code, 0, "{}", text.stderr);
    assert!(text.stdout.contains("node unknown:"), "{}", text.stdout);
}

#[test]
fn offline_cpus_are_listed_apart() {
    let dir = tempfile::tempdir().expect("tempdir");
    Fixture::threadripper(dir.path());
    let f = Fixture(dir.path());
    f.write("sys/devices/system/cpu/online", "0-29\n");
    for cpu in [30, 31] {
        f.write(&format!("sys/devices/system/cpu/cpu{cpu}/online"), "0\n");
        fs::remove_dir_all(dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/topology"))).expect("rm");
        fs::remove_dir_all(dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/cache"))).expect("rm");
    }
    let v = topology_json(dir.path());
    assert_eq!(numbers(&v["offline"]), [30, 31]);
    assert_eq!(v["cpus"].as_array().map(Vec::len), Some(30));
    assert_eq!(numbers(&v["cpus"][14]["siblings"]), [14]);
}

#[test]
fn no_cpu_tree_is_an_environment_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let run = vfioctl(dir.path(), &["topology"]);
    assert_eq!(run.code, 2, "{}", run.stderr);
    assert!(run.stderr.contains("no CPUs") && run.stderr.contains("/sys/devices/system/cpu"), "{}", run.stderr);
    assert!(run.stdout.is_empty());
}
