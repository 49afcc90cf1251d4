//! Reading the CPU topology from `/sys/devices/system/{cpu,node}` under a host root.
//!
//! Only `/sys/devices/system/cpu` itself is required. Everything else may be missing or
//! garbage on some host (VMs without cache directories, kernels without NUMA or without
//! cache `id` files, offline CPUs, CPUs unplugged while being read): such facts become
//! unknown, with a [`Warning`] naming the file when a file that should be there is
//! missing or unreadable, or holds something unexpected. The pure rules that turn the
//! records into a [`Topology`] live in [`vfioctl_core::topology`].

use std::io;
use std::path::PathBuf;

use vfioctl_core::cpuset::CpuSet;
use vfioctl_core::sysfs_value::{self, ValueError};
use vfioctl_core::topology::{RawCpu, RawL3, RawNode, RawTopology, Topology};

use crate::root::{HostRoot, RootError};
use crate::{HostError, Warning};

pub const CPU_DIR: &str = "/sys/devices/system/cpu";
pub const NODE_DIR: &str = "/sys/devices/system/node";
/// Present only on hybrid Intel CPUs: the performance and efficiency core PMUs.
pub const PERFORMANCE_CPUS: &str = "/sys/devices/cpu_core/cpus";
pub const EFFICIENCY_CPUS: &str = "/sys/devices/cpu_atom/cpus";
pub const PROC_MEMINFO: &str = "/proc/meminfo";

/// Reads the CPU topology of the host. Fails only when the root has no
/// `/sys/devices/system/cpu` with CPUs in it (or it cannot be listed).
pub fn read(root: &HostRoot) -> Result<(Topology, Vec<Warning>), HostError> {
    let mut r = Reader { root, warnings: Vec::new() };
    let no_cpus = |source: RootError| HostError::NoCpus { root: root.base().to_path_buf(), source };
    let names = root.list(CPU_DIR).map_err(|e| if e.is_not_found() { no_cpus(e) } else { HostError::Root(e) })?;
    let dirs: CpuSet = names.iter().filter_map(|n| numbered(n, "cpu")).collect();
    if dirs.is_empty() {
        return Err(no_cpus(not_found(CPU_DIR, "no cpuN directories")));
    }

    let online_path = format!("{CPU_DIR}/online");
    let listed = r.optional(&online_path, cpu_list).and_then(|set| {
        let gone: CpuSet = set.iter().filter(|c| !dirs.contains(*c)).collect();
        if !gone.is_empty() {
            r.warn(CPU_DIR, format!("CPUs {gone} are listed online but have no cpuN directory; left out"));
        }
        let usable: CpuSet = set.iter().filter(|c| dirs.contains(*c)).collect();
        if usable.is_empty() {
            r.warn(&online_path, "lists no CPU that has a directory; each CPU's own online file is used".into());
            return None;
        }
        Some(usable)
    });
    // Without the list, each CPU's own `online` file says (cpu0 often has none).
    let online = listed.unwrap_or_else(|| {
        dirs.iter()
            .filter(|c| r.optional(&format!("{CPU_DIR}/cpu{c}/online"), sysfs_value::flag).unwrap_or(true))
            .collect()
    });
    let present = r.optional(&format!("{CPU_DIR}/present"), cpu_list).unwrap_or_default();
    let offline: CpuSet = dirs.iter().chain(present.iter()).filter(|c| !online.contains(*c)).collect();

    let mut raw = RawTopology { offline, ..Default::default() };
    for cpu in online.iter() {
        if let Some(rc) = r.cpu(cpu) {
            raw.cpus.push(rc);
        }
    }
    if raw.cpus.is_empty() {
        return Err(no_cpus(not_found(CPU_DIR, "no online CPU could be read")));
    }

    raw.nodes = r.nodes();
    if raw.nodes.is_empty() {
        raw.memory_kib = r.optional(PROC_MEMINFO, meminfo_total);
    }
    raw.performance = r.optional(PERFORMANCE_CPUS, cpu_list);
    raw.efficiency = r.optional(EFFICIENCY_CPUS, cpu_list);

    let (topology, notes) = Topology::build(raw);
    r.warnings.extend(notes.into_iter().map(|message| Warning { path: CPU_DIR.into(), message }));
    Ok((topology, r.warnings))
}

struct Reader<'a> {
    root: &'a HostRoot,
    warnings: Vec<Warning>,
}

impl Reader<'_> {
    fn warn(&mut self, path: &str, message: String) {
        self.warnings.push(Warning { path: PathBuf::from(path), message });
    }

    /// A file that may be absent: `None` then, silently. Unreadable or garbage: `None`
    /// with a warning.
    fn optional<T>(&mut self, path: &str, parse: impl Fn(&str) -> Result<T, ValueError>) -> Option<T> {
        crate::parse_optional(self.root.read_optional(path), path, parse, &mut self.warnings)
    }

    /// A file that should be there: like [`Reader::optional`], but absence warns too.
    fn expected<T>(&mut self, path: &str, parse: impl Fn(&str) -> Result<T, ValueError>) -> Option<T> {
        if !self.root.exists(path) {
            self.warn(path, "missing; the value is unknown".into());
            return None;
        }
        self.optional(path, parse)
    }

    /// A CPU set from the first of `lists` (list format) or `masks` (mask format) in
    /// `dir` that exists; a warning naming the first when none does.
    fn cpu_set(&mut self, dir: &str, lists: &[&str], masks: &[&str]) -> Option<CpuSet> {
        for name in lists {
            let path = format!("{dir}/{name}");
            if self.root.exists(&path) {
                return self.optional(&path, cpu_list);
            }
        }
        for name in masks {
            let path = format!("{dir}/{name}");
            if self.root.exists(&path) {
                return self.optional(&path, cpu_mask);
            }
        }
        let first = lists.first().or(masks.first()).copied().unwrap_or_default();
        self.warn(&format!("{dir}/{first}"), "missing; the value is unknown".into());
        None
    }

    /// One online CPU; `None` when its directory vanished.
    fn cpu(&mut self, cpu: u32) -> Option<RawCpu> {
        let dir = format!("{CPU_DIR}/cpu{cpu}");
        let mut rc = RawCpu { cpu, ..Default::default() };
        let topo = format!("{dir}/topology");
        if self.root.exists(&topo) {
            rc.package = self.expected(&format!("{topo}/physical_package_id"), id_or_unknown).flatten();
            rc.die = self.optional(&format!("{topo}/die_id"), id_or_unknown).flatten();
            rc.core_id = self.expected(&format!("{topo}/core_id"), id_or_unknown).flatten();
            rc.thread_siblings =
                self.cpu_set(&topo, &["thread_siblings_list", "core_cpus_list"], &["thread_siblings", "core_cpus"]);
        } else if !self.root.exists(&dir) {
            self.warn(&dir, "vanished while being read (unplugged?); left out".into());
            return None;
        } else {
            self.warn(&topo, "missing; the CPU's core and package are unknown".into());
        }
        rc.l3 = self.l3(&dir);
        rc.max_freq_khz =
            self.optional(&format!("{dir}/cpufreq/cpuinfo_max_freq"), sysfs_value::dec_u32).map(u64::from);
        Some(rc)
    }

    /// The CPU's level 3 unified cache, if `cache/` lists one.
    fn l3(&mut self, cpu_dir: &str) -> Option<RawL3> {
        let cache = format!("{cpu_dir}/cache");
        let entries = match self.root.list(&cache) {
            Ok(e) => e,
            // VMs and some architectures list no caches.
            Err(e) if e.is_not_found() => return None,
            Err(e) => {
                self.warn(&cache, e.to_string());
                return None;
            }
        };
        for entry in entries.iter().filter(|e| numbered(e, "index").is_some()) {
            let dir = format!("{cache}/{entry}");
            let level = self.optional(&format!("{dir}/level"), sysfs_value::dec_u32);
            let kind = self.optional(&format!("{dir}/type"), |t| Ok(t.trim().to_string()));
            if level != Some(3) || kind.as_deref() != Some("Unified") {
                continue;
            }
            let shared = self.cpu_set(&dir, &["shared_cpu_list"], &["shared_cpu_map"])?;
            let size_kib = self.expected(&format!("{dir}/size"), sysfs_value::size_kib);
            let id = self.optional(&format!("{dir}/id"), sysfs_value::dec_u32);
            return Some(RawL3 { id, shared, size_kib });
        }
        None
    }

    /// NUMA nodes; empty when the kernel has none (no node directory).
    fn nodes(&mut self) -> Vec<RawNode> {
        let names = match self.root.list(NODE_DIR) {
            Ok(n) => n,
            Err(e) if e.is_not_found() => return Vec::new(),
            Err(e) => {
                self.warn(NODE_DIR, format!("{e}; taken as one node"));
                return Vec::new();
            }
        };
        let mut nodes = Vec::new();
        for id in names.iter().filter_map(|n| numbered(n, "node")) {
            let dir = format!("{NODE_DIR}/node{id}");
            let cpus = self.cpu_set(&dir, &["cpulist"], &["cpumap"]).unwrap_or_default();
            let meminfo = format!("{dir}/meminfo");
            let memory_kib = self.expected(&meminfo, meminfo_total);
            nodes.push(RawNode { id, cpus, memory_kib });
        }
        nodes
    }
}

/// `cpu12` → 12 for `prefix` `cpu`; `cpufreq`, `cpu+1` → `None`.
fn numbered(name: &str, prefix: &str) -> Option<u32> {
    let digits = name.strip_prefix(prefix)?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// A package or die id; `-1` means the platform does not say.
fn id_or_unknown(s: &str) -> Result<Option<u32>, ValueError> {
    match s.trim() {
        "-1" => Ok(None),
        _ => sysfs_value::dec_u32(s).map(Some),
    }
}

fn cpu_list(s: &str) -> Result<CpuSet, ValueError> {
    s.parse::<CpuSet>().map_err(|_| ValueError { value: short(s), expected: "a CPU list like 0-3,8-11" })
}

fn cpu_mask(s: &str) -> Result<CpuSet, ValueError> {
    CpuSet::from_mask(s).map_err(|_| ValueError { value: short(s), expected: "a CPU mask like 00000000,00ff00ff" })
}

fn meminfo_total(s: &str) -> Result<u64, ValueError> {
    sysfs_value::meminfo_kib(s, "MemTotal").ok_or(ValueError { value: short(s), expected: "a `MemTotal: N kB` line" })
}

fn short(s: &str) -> String {
    // Control characters from a garbage file must not reach the terminal as such.
    let mut v: String = s
        .trim()
        .chars()
        .take(40)
        .flat_map(|c| if c.is_control() { c.escape_default().collect::<Vec<_>>() } else { vec![c] })
        .collect();
    if s.trim().chars().count() > 40 {
        v.push('…');
    }
    v
}

fn not_found(path: &str, what: &str) -> RootError {
    RootError::List { path: path.into(), err: io::Error::new(io::ErrorKind::NotFound, what.to_string()) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::fs;
    use std::path::Path;

    use vfioctl_core::topology::CoreKind;

    use super::*;

    fn write(base: &Path, path: &str, text: &str) {
        let p = base.join(path.trim_start_matches('/'));
        fs::create_dir_all(p.parent().unwrap()).unwrap();
        fs::write(p, text).unwrap();
    }

    /// A small host: `n` CPUs, SMT pairs (c, c + n/2), one L3 per `per_l3` cores.
    fn host(n: u32, per_l3: u32) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let b = dir.path();
        let half = n / 2;
        write(b, "sys/devices/system/cpu/online", &format!("0-{}\n", n - 1));
        write(b, "sys/devices/system/cpu/present", &format!("0-{}\n", n - 1));
        for cpu in 0..n {
            let core = cpu % half;
            let t = format!("sys/devices/system/cpu/cpu{cpu}/topology");
            write(b, &format!("{t}/physical_package_id"), "0\n");
            write(b, &format!("{t}/die_id"), "0\n");
            write(b, &format!("{t}/core_id"), &format!("{core}\n"));
            write(b, &format!("{t}/thread_siblings_list"), &format!("{core},{}\n", core + half));
            let c = format!("sys/devices/system/cpu/cpu{cpu}/cache");
            write(b, &format!("{c}/index0/level"), "1\n");
            write(b, &format!("{c}/index0/type"), "Data\n");
            let l3 = core / per_l3;
            let (lo, hi) = (l3 * per_l3, l3 * per_l3 + per_l3 - 1);
            write(b, &format!("{c}/index3/level"), "3\n");
            write(b, &format!("{c}/index3/type"), "Unified\n");
            write(b, &format!("{c}/index3/size"), "8192K\n");
            write(b, &format!("{c}/index3/id"), &format!("{l3}\n"));
            write(b, &format!("{c}/index3/shared_cpu_list"), &format!("{lo}-{hi},{}-{}\n", lo + half, hi + half));
            write(b, &format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/cpuinfo_max_freq"), "3400000\n");
        }
        write(b, "sys/devices/system/node/node0/cpulist", &format!("0-{}\n", n - 1));
        write(b, "sys/devices/system/node/node0/meminfo", "Node 0 MemTotal:  1000 kB\n");
        write(b, "proc/meminfo", "MemTotal:  2000 kB\n");
        dir
    }

    fn read_dir(dir: &tempfile::TempDir) -> (Topology, Vec<Warning>) {
        read(&HostRoot::new(dir.path())).unwrap()
    }

    #[test]
    fn reads_a_small_host() {
        let dir = host(12, 3);
        let (t, w) = read_dir(&dir);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(t.cpus.len(), 12);
        assert_eq!(t.cores.len(), 6);
        assert_eq!(t.l3.iter().map(|d| d.cpus.to_string()).collect::<Vec<_>>(), ["0-2,6-8", "3-5,9-11"]);
        assert_eq!(t.l3[0].size_kib, Some(8192));
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.nodes[0].memory_kib, Some(1000));
        assert_eq!(t.cpu(7).unwrap().siblings.to_string(), "1,7");
        assert_eq!(t.cpu(7).unwrap().max_freq_khz, Some(3_400_000));
        assert!(!t.is_hybrid());
    }

    #[test]
    fn no_cpu_dir_is_no_cpus() {
        let dir = tempfile::tempdir().unwrap();
        let e = read(&HostRoot::new(dir.path())).unwrap_err();
        assert!(matches!(e, HostError::NoCpus { .. }), "{e}");
        fs::create_dir_all(dir.path().join("sys/devices/system/cpu/cpufreq")).unwrap();
        let e = read(&HostRoot::new(dir.path())).unwrap_err();
        assert!(matches!(e, HostError::NoCpus { .. }), "{e}");
    }

    #[test]
    fn garbage_core_id_warns_and_is_unknown() {
        let dir = host(4, 2);
        write(dir.path(), "sys/devices/system/cpu/cpu1/topology/core_id", "banana\n");
        let (t, w) = read_dir(&dir);
        assert_eq!(t.cpu(1).unwrap().core_id, None);
        // The sibling lists still say which core it is.
        assert_eq!(t.cores.len(), 2);
        assert_eq!(w.len(), 1, "{w:?}");
        assert_eq!(w[0].path, Path::new("/sys/devices/system/cpu/cpu1/topology/core_id"));
        assert!(w[0].message.contains("banana"), "{}", w[0]);
    }

    #[test]
    fn missing_cache_dir_means_no_l3() {
        let dir = host(4, 2);
        fs::remove_dir_all(dir.path().join("sys/devices/system/cpu/cpu2/cache")).unwrap();
        let (t, w) = read_dir(&dir);
        // CPU 0 still lists 2 as sharing its L3, so the domain keeps it.
        assert_eq!(t.cpu(2).unwrap().l3, Some(0));
        assert!(w.is_empty(), "{w:?}");
        for cpu in 0..4 {
            fs::remove_dir_all(dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/cache"))).unwrap_or(());
        }
        let (t, w) = read_dir(&dir);
        assert!(t.l3.is_empty() && t.cpus.iter().all(|c| c.l3.is_none()));
        assert!(w.is_empty(), "{w:?}");
    }

    #[test]
    fn empty_node_cpulist_and_memory_only_nodes() {
        let dir = host(4, 2);
        write(dir.path(), "sys/devices/system/node/node1/cpulist", "\n");
        write(dir.path(), "sys/devices/system/node/node1/meminfo", "Node 1 MemTotal:  500 kB\n");
        let (t, w) = read_dir(&dir);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(t.nodes.len(), 2);
        assert!(t.nodes[1].cpus.is_empty());
        assert_eq!(t.nodes[1].memory_kib, Some(500));
        // An empty cpulist for the only node with CPUs: their node is unknown, with a warning.
        write(dir.path(), "sys/devices/system/node/node0/cpulist", "\n");
        let (t, w) = read_dir(&dir);
        assert!(t.cpus.iter().all(|c| c.node.is_none()));
        assert_eq!(w.len(), 1, "{w:?}");
    }

    #[test]
    fn non_numa_kernel_uses_proc_meminfo() {
        let dir = host(4, 2);
        fs::remove_dir_all(dir.path().join("sys/devices/system/node")).unwrap();
        let (t, w) = read_dir(&dir);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(t.nodes.len(), 1);
        assert_eq!(t.nodes[0].cpus.len(), 4);
        assert_eq!(t.nodes[0].memory_kib, Some(2000));
    }

    #[test]
    fn old_kernel_without_cache_ids() {
        let dir = host(8, 2);
        for cpu in 0..8 {
            fs::remove_file(dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/cache/index3/id"))).unwrap();
            fs::remove_file(dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/topology/die_id"))).unwrap();
        }
        let (t, w) = read_dir(&dir);
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(
            t.l3.iter().map(|d| (d.id, d.cpus.to_string())).collect::<Vec<_>>(),
            [(0, "0-1,4-5".to_string()), (1, "2-3,6-7".to_string())]
        );
    }

    #[test]
    fn offline_and_vanished_cpus() {
        let dir = host(8, 2);
        write(dir.path(), "sys/devices/system/cpu/online", "0-5,9\n");
        // An offline CPU has no topology or cache directory.
        for cpu in [6, 7] {
            let d = dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}"));
            fs::remove_dir_all(d.join("topology")).unwrap();
            fs::remove_dir_all(d.join("cache")).unwrap();
        }
        let (t, w) = read_dir(&dir);
        assert_eq!(t.online().to_string(), "0-5");
        assert_eq!(t.offline.to_string(), "6-7");
        // CPU 9 is listed online without a directory.
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].message.contains("CPUs 9"), "{}", w[0]);
        // Siblings of online CPUs that are offline are not part of the core.
        assert_eq!(t.cpu(2).unwrap().siblings.to_string(), "2");
    }

    #[test]
    fn missing_topology_dir_and_garbage_lists() {
        let dir = host(4, 2);
        fs::remove_dir_all(dir.path().join("sys/devices/system/cpu/cpu3/topology")).unwrap();
        write(dir.path(), "sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list", "0-1,x\n");
        write(dir.path(), "sys/devices/system/cpu/cpu1/cache/index3/size", "lots\n");
        write(dir.path(), "sys/devices/system/cpu/cpu2/cpufreq/cpuinfo_max_freq", "\u{0}\u{1}\n");
        let (t, w) = read_dir(&dir);
        assert_eq!(t.cpus.len(), 4);
        let paths: Vec<String> = w.iter().map(|w| w.path.display().to_string()).collect();
        for p in [
            "/sys/devices/system/cpu/cpu3/topology",
            "/sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list",
            "/sys/devices/system/cpu/cpu1/cache/index3/size",
            "/sys/devices/system/cpu/cpu2/cpufreq/cpuinfo_max_freq",
        ] {
            assert!(paths.iter().any(|x| x == p), "{p} not in {paths:?}");
        }
        assert_eq!(t.cpu(3).unwrap().core_id, None);
        assert_eq!(t.cpu(2).unwrap().max_freq_khz, None);
    }

    #[test]
    fn empty_online_list_falls_back_to_per_cpu_files() {
        let dir = host(4, 2);
        write(dir.path(), "sys/devices/system/cpu/online", "\n");
        write(dir.path(), "sys/devices/system/cpu/cpu0/cache/index3/shared_cpu_list", "\u{1b}[31m\n");
        let (t, w) = read_dir(&dir);
        assert_eq!(t.online().to_string(), "0-3");
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[1].message.contains("\\u{1b}[31m"), "{}", w[1]);
    }

    #[test]
    fn no_online_list_uses_per_cpu_files() {
        let dir = host(4, 2);
        fs::remove_file(dir.path().join("sys/devices/system/cpu/online")).unwrap();
        write(dir.path(), "sys/devices/system/cpu/cpu3/online", "0\n");
        let (t, _) = read_dir(&dir);
        assert_eq!(t.online().to_string(), "0-2");
        assert_eq!(t.offline.to_string(), "3");
    }

    #[test]
    fn hybrid_and_fallbacks() {
        let dir = host(4, 2);
        write(dir.path(), PERFORMANCE_CPUS, "0,2\n");
        write(dir.path(), EFFICIENCY_CPUS, "1,3\n");
        for cpu in 0..4 {
            let t = dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/topology"));
            fs::rename(t.join("thread_siblings_list"), t.join("core_cpus_list")).unwrap();
            let c = dir.path().join(format!("sys/devices/system/cpu/cpu{cpu}/cache/index3"));
            let list = fs::read_to_string(c.join("shared_cpu_list")).unwrap();
            fs::remove_file(c.join("shared_cpu_list")).unwrap();
            fs::write(c.join("shared_cpu_map"), list.trim().parse::<CpuSet>().unwrap().to_mask()).unwrap();
        }
        let (t, w) = read_dir(&dir);
        assert!(w.is_empty(), "{w:?}");
        assert!(t.is_hybrid());
        assert_eq!(t.cpu(0).unwrap().kind, Some(CoreKind::Performance));
        assert_eq!(t.cpu(3).unwrap().kind, Some(CoreKind::Efficiency));
        assert_eq!(t.cores.len(), 2);
        assert_eq!(t.l3.len(), 1);
        assert_eq!(t.l3[0].cpus.to_string(), "0-3");
    }
}
