//! CPU, cache, NUMA and memory files: `sys/devices/system/{cpu,node}`, `proc/cpuinfo`,
//! `proc/meminfo`, hugepage pools.

use std::fmt::Write as _;

use vfioctl_core::cpuset::CpuSet;

use crate::spec::{size_kib, SmtSiblings, Spec};
use crate::tree::{list, mask, Tree};
use crate::Error;

/// One logical CPU.
#[derive(Debug, Clone)]
pub struct Cpu {
    pub id: u32,
    pub package: u32,
    /// Global NUMA node (= die) number.
    pub node: u32,
    /// Die number inside the package.
    pub die: u32,
    /// Global L3 domain number.
    pub l3: u32,
    /// Global core number (index into all cores).
    pub core: u32,
    /// `core_id` as the kernel prints it (unique inside a package).
    pub core_id: u32,
    /// Global L2 number (a core, or an E-core module).
    pub l2: u32,
    pub thread: u32,
    pub apicid: u32,
    pub efficiency: bool,
}

/// The expanded topology.
#[derive(Debug, Clone)]
pub struct Topology {
    pub cpus: Vec<Cpu>,
    pub nodes: u32,
    pub cores_per_package: u32,
}

impl Topology {
    pub fn nr_cpus(&self) -> u32 {
        self.cpus.len() as u32
    }

    fn set(&self, f: impl Fn(&Cpu) -> bool) -> CpuSet {
        self.cpus.iter().filter(|c| f(c)).map(|c| c.id).collect()
    }

    /// The CPUs of NUMA node `n` (all CPUs for `-1`).
    pub fn node_cpus(&self, n: i32) -> CpuSet {
        self.set(|c| n < 0 || c.node as i32 == n)
    }
}

fn check(cond: bool, msg: impl FnOnce() -> String) -> Result<(), Error> {
    if cond {
        Ok(())
    } else {
        Err(Error::Spec(msg()))
    }
}

/// Expands `[cpu]` into logical CPUs.
pub fn topology(spec: &Spec) -> Result<Topology, Error> {
    let c = &spec.cpu;
    check(c.packages >= 1 && c.nodes_per_package >= 1 && c.l3_per_node >= 1 && c.cores_per_l3 >= 1, || {
        "cpu: packages, nodes_per_package, l3_per_node and cores_per_l3 must be at least 1".into()
    })?;
    check((1..=2).contains(&c.threads_per_core), || "cpu: threads_per_core must be 1 or 2".into())?;
    let nodes = c.packages * c.nodes_per_package;
    let l3_total = nodes * c.l3_per_node;
    let p_cores = l3_total * c.cores_per_l3;
    let slots = c.core_id_slots_per_l3.unwrap_or(c.cores_per_l3);
    check(slots >= c.cores_per_l3, || "cpu: core_id_slots_per_l3 is smaller than cores_per_l3".into())?;
    let e = c.hybrid.as_ref();
    check(e.is_none() || (c.packages == 1 && c.nodes_per_package == 1 && c.l3_per_node == 1), || {
        "cpu.hybrid: only single-package, single-L3 hybrid parts are supported".into()
    })?;
    let e_cores = e.map_or(0, |h| h.e_cores);
    let e_per_l2 = e.map_or(1, |h| h.e_cores_per_l2.max(1));
    let threads = c.threads_per_core;
    let total = (p_cores * threads + e_cores) as usize;
    check(total <= 8192, || "cpu: more than 8192 CPUs".into())?;

    let mut cpus = Vec::with_capacity(total);
    let cores_per_package = c.nodes_per_package * c.l3_per_node * c.cores_per_l3;
    for core in 0..p_cores {
        let l3 = core / c.cores_per_l3;
        let node = l3 / c.l3_per_node;
        let package = node / c.nodes_per_package;
        let l3_in_package = l3 % (c.nodes_per_package * c.l3_per_node);
        let core_id = l3_in_package * slots + core % c.cores_per_l3;
        for thread in 0..threads {
            let id = match c.smt_siblings {
                SmtSiblings::Split => core + thread * p_cores,
                SmtSiblings::Adjacent => core * threads + thread,
            };
            let apic_core = package * 256 + core_id;
            cpus.push(Cpu {
                id,
                package,
                node,
                die: node % c.nodes_per_package,
                l3,
                core,
                core_id,
                l2: core,
                thread,
                apicid: apic_core * 2 + thread,
                efficiency: false,
            });
        }
    }
    let p_threads = p_cores * threads;
    for k in 0..e_cores {
        let core_id = p_cores * 4 + k;
        cpus.push(Cpu {
            id: p_threads + k,
            package: 0,
            node: 0,
            die: 0,
            l3: 0,
            core: p_cores + k,
            core_id,
            l2: p_cores + k / e_per_l2,
            thread: 0,
            apicid: 2 * p_cores * 4 + 2 * k,
            efficiency: true,
        });
    }
    cpus.sort_by_key(|c| c.id);
    Ok(Topology { cpus, nodes, cores_per_package: cores_per_package + e_cores })
}

struct CacheLevel {
    index: u32,
    level: u32,
    kind: &'static str,
    kib: u64,
    ways: u64,
}

fn kib(s: &str, what: &str) -> Result<u64, Error> {
    size_kib(s)
        .filter(|&k| k > 0)
        .ok_or_else(|| Error::Spec(format!("cpu.cache.{what}: `{s}` is not a size like 32K or 8M")))
}

/// Writes `sys/devices/system/cpu`, `sys/devices/system/node`, the hugepage pools,
/// `proc/cpuinfo` and `proc/meminfo`.
pub fn write(spec: &Spec, topo: &Topology, t: &mut Tree) -> Result<(), Error> {
    let c = &spec.cpu;
    let n = topo.nr_cpus();
    let all = topo.set(|_| true);
    let base = "sys/devices/system/cpu";
    let all_list = format!("{}\n", list(&all));
    for f in ["online", "possible", "present"] {
        t.file(format!("{base}/{f}"), all_list.clone());
    }
    t.file(format!("{base}/offline"), "\n");
    t.file(format!("{base}/kernel_max"), "8191\n");
    let smt = c.threads_per_core > 1;
    t.file(format!("{base}/smt/active"), if smt { "1\n" } else { "0\n" });
    t.file(format!("{base}/smt/control"), if smt { "on\n" } else { "notsupported\n" });

    let p = (kib(&c.cache.l1d, "l1d")?, kib(&c.cache.l1i, "l1i")?, kib(&c.cache.l2, "l2")?);
    let l3_default = kib(&c.cache.l3, "l3")?;
    let l3_per_package = (c.nodes_per_package * c.l3_per_node) as usize;
    let l3_sizes: Vec<u64> = match &c.l3_sizes {
        Some(v) => {
            check(v.len() == l3_per_package, || {
                format!("cpu.l3_sizes has {} entries but a package has {l3_per_package} L3 domains", v.len())
            })?;
            v.iter().map(|s| kib(s, "l3_sizes")).collect::<Result<_, _>>()?
        }
        None => vec![l3_default; l3_per_package],
    };
    let l3_freqs: Vec<u32> = match &c.l3_max_freq_khz {
        Some(v) => {
            check(v.len() == l3_per_package, || {
                format!("cpu.l3_max_freq_khz has {} entries but a package has {l3_per_package} L3 domains", v.len())
            })?;
            v.clone()
        }
        None => vec![c.max_freq_khz; l3_per_package],
    };
    let e = match &c.hybrid {
        Some(h) => Some((kib(&h.e_l1d, "e_l1d")?, kib(&h.e_l1i, "e_l1i")?, kib(&h.e_l2, "e_l2")?)),
        None => None,
    };
    let intel = c.vendor == "GenuineIntel";

    for cpu in &topo.cpus {
        let d = format!("{base}/cpu{}", cpu.id);
        if cpu.id > 0 {
            t.file(format!("{d}/online"), "1\n");
        }
        t.link(format!("{d}/node{}", cpu.node), &format!("sys/devices/system/node/node{}", cpu.node));
        let tp = format!("{d}/topology");
        t.file(format!("{tp}/physical_package_id"), format!("{}\n", cpu.package));
        t.file(format!("{tp}/die_id"), format!("{}\n", cpu.die));
        t.file(format!("{tp}/core_id"), format!("{}\n", cpu.core_id));
        t.file(format!("{tp}/cluster_id"), format!("{}\n", cpu.l2));
        let sets = [
            ("thread_siblings", topo.set(|o| o.core == cpu.core)),
            ("core_cpus", topo.set(|o| o.core == cpu.core)),
            ("cluster_cpus", topo.set(|o| o.l2 == cpu.l2)),
            ("core_siblings", topo.set(|o| o.package == cpu.package)),
            ("package_cpus", topo.set(|o| o.package == cpu.package)),
            ("die_cpus", topo.set(|o| o.package == cpu.package && o.die == cpu.die)),
        ];
        for (name, s) in &sets {
            t.file(format!("{tp}/{name}"), format!("{}\n", mask(s, n)));
            t.file(format!("{tp}/{name}_list"), format!("{}\n", list(s)));
        }

        let (l1d, l1i, l2) = if cpu.efficiency { e.unwrap_or(p) } else { p };
        let l3_index = cpu.l3 as usize % l3_per_package;
        let l3 = l3_sizes[l3_index];
        let levels = [
            CacheLevel { index: 0, level: 1, kind: "Data", kib: l1d, ways: if intel { 12 } else { 8 } },
            CacheLevel { index: 1, level: 1, kind: "Instruction", kib: l1i, ways: if intel { 8 } else { 4 } },
            CacheLevel { index: 2, level: 2, kind: "Unified", kib: l2, ways: if intel { 10 } else { 8 } },
            CacheLevel { index: 3, level: 3, kind: "Unified", kib: l3, ways: if intel { 10 } else { 16 } },
        ];
        for lv in &levels {
            let cd = format!("{d}/cache/index{}", lv.index);
            let (shared, id) = match lv.level {
                1 => (topo.set(|o| o.core == cpu.core), cpu.core),
                2 => (topo.set(|o| o.l2 == cpu.l2), cpu.l2),
                _ => (topo.set(|o| o.l3 == cpu.l3), cpu.l3),
            };
            let ways = if (lv.kib * 1024) % (lv.ways * 64) == 0 { lv.ways } else { 8 };
            let sets = (lv.kib * 1024 / (ways * 64)).max(1);
            t.file(format!("{cd}/level"), format!("{}\n", lv.level));
            t.file(format!("{cd}/type"), format!("{}\n", lv.kind));
            t.file(format!("{cd}/size"), format!("{}K\n", lv.kib));
            t.file(format!("{cd}/id"), format!("{id}\n"));
            t.file(format!("{cd}/shared_cpu_map"), format!("{}\n", mask(&shared, n)));
            t.file(format!("{cd}/shared_cpu_list"), format!("{}\n", list(&shared)));
            t.file(format!("{cd}/coherency_line_size"), "64\n");
            t.file(format!("{cd}/physical_line_partition"), "1\n");
            t.file(format!("{cd}/ways_of_associativity"), format!("{ways}\n"));
            t.file(format!("{cd}/number_of_sets"), format!("{sets}\n"));
        }

        let (max, base_f) = match (&c.hybrid, cpu.efficiency) {
            (Some(h), true) => (h.e_max_freq_khz, h.e_base_freq_khz.unwrap_or(c.base_freq_khz)),
            _ => (l3_freqs[l3_index], c.base_freq_khz),
        };
        let fd = format!("{d}/cpufreq");
        t.file(format!("{fd}/cpuinfo_max_freq"), format!("{max}\n"));
        t.file(format!("{fd}/cpuinfo_min_freq"), "800000\n");
        t.file(format!("{fd}/scaling_max_freq"), format!("{max}\n"));
        t.file(format!("{fd}/scaling_min_freq"), "800000\n");
        t.file(format!("{fd}/scaling_governor"), if intel { "powersave\n" } else { "schedutil\n" });
        t.file(format!("{fd}/scaling_driver"), if intel { "intel_pstate\n" } else { "acpi-cpufreq\n" });
        if intel {
            t.file(format!("{fd}/base_frequency"), format!("{base_f}\n"));
        }
    }

    if c.hybrid.is_some() {
        let p = topo.set(|o| !o.efficiency);
        let e = topo.set(|o| o.efficiency);
        t.file("sys/devices/cpu_core/cpus", format!("{}\n", list(&p)));
        t.file("sys/devices/cpu_core/type", "4\n");
        t.file("sys/devices/cpu_atom/cpus", format!("{}\n", list(&e)));
        t.file("sys/devices/cpu_atom/type", "10\n");
    } else {
        t.file("sys/devices/cpu/type", "4\n");
    }

    write_nodes(spec, topo, t)?;
    t.file("proc/cpuinfo", cpuinfo(spec, topo, p.2));
    Ok(())
}

fn per_node(v: &[u64], node: usize) -> u64 {
    v.get(node).copied().unwrap_or(0)
}

fn write_nodes(spec: &Spec, topo: &Topology, t: &mut Tree) -> Result<(), Error> {
    let m = &spec.memory;
    let nodes = topo.nodes as usize;
    check(m.node_mib.len() == nodes, || {
        format!("memory.node_mib has {} entries but the CPU has {nodes} NUMA nodes", m.node_mib.len())
    })?;
    for (name, v) in [("hugepages_2m", &m.hugepages_2m), ("hugepages_1g", &m.hugepages_1g)] {
        check(v.is_empty() || v.len() == nodes, || {
            format!("memory.{name} must have one entry per NUMA node ({nodes})")
        })?;
    }
    let n = topo.nr_cpus();
    let node_list = if nodes == 1 { "0\n".to_string() } else { format!("0-{}\n", nodes - 1) };
    let base = "sys/devices/system/node";
    for f in ["online", "possible", "has_cpu", "has_memory", "has_normal_memory"] {
        t.file(format!("{base}/{f}"), node_list.clone());
    }
    let mut totals = Meminfo::default();
    for node in 0..nodes {
        let d = format!("{base}/node{node}");
        let cpus = topo.node_cpus(node as i32);
        t.file(format!("{d}/cpulist"), format!("{}\n", list(&cpus)));
        t.file(format!("{d}/cpumap"), format!("{}\n", mask(&cpus, n)));
        for cpu in cpus.iter() {
            t.link(format!("{d}/cpu{cpu}"), &format!("sys/devices/system/cpu/cpu{cpu}"));
        }
        let dist: Vec<String> =
            (0..nodes).map(|o| if o == node { "10".to_string() } else { m.remote_distance.to_string() }).collect();
        t.file(format!("{d}/distance"), format!("{}\n", dist.join(" ")));
        let hp2 = per_node(&m.hugepages_2m, node);
        let hp1 = per_node(&m.hugepages_1g, node);
        for (dir, nr) in [("hugepages-2048kB", hp2), ("hugepages-1048576kB", hp1)] {
            let h = format!("{d}/hugepages/{dir}");
            t.file(format!("{h}/nr_hugepages"), format!("{nr}\n"));
            t.file(format!("{h}/free_hugepages"), format!("{nr}\n"));
            t.file(format!("{h}/surplus_hugepages"), "0\n");
        }
        let mi = Meminfo::new(m.node_mib[node], hp2, hp1);
        t.file(format!("{d}/meminfo"), mi.node_text(node));
        totals.add(&mi);
    }
    let hp2: u64 = m.hugepages_2m.iter().sum();
    let hp1: u64 = m.hugepages_1g.iter().sum();
    for (dir, nr) in [("hugepages-2048kB", hp2), ("hugepages-1048576kB", hp1)] {
        let h = format!("sys/kernel/mm/hugepages/{dir}");
        t.file(format!("{h}/nr_hugepages"), format!("{nr}\n"));
        t.file(format!("{h}/free_hugepages"), format!("{nr}\n"));
        t.file(format!("{h}/resv_hugepages"), "0\n");
        t.file(format!("{h}/surplus_hugepages"), "0\n");
        t.file(format!("{h}/nr_overcommit_hugepages"), "0\n");
    }
    t.file("proc/meminfo", totals.proc_text(hp2, hp1));
    Ok(())
}

/// Memory figures of a node (or the whole host) in KiB.
#[derive(Debug, Default, Clone)]
struct Meminfo {
    total: u64,
    free: u64,
    file_pages: u64,
    anon: u64,
    slab: u64,
    hugetlb: u64,
    hp2: u64,
    hp1: u64,
}

impl Meminfo {
    fn new(mib: u64, hp2: u64, hp1: u64) -> Self {
        let installed = mib * 1024;
        // The firmware and kernel keep about 1.5 % of installed memory.
        let total = installed - installed * 3 / 200;
        let hugetlb = hp2 * 2048 + hp1 * 1024 * 1024;
        let rest = total.saturating_sub(hugetlb);
        let anon = rest / 10;
        let file_pages = rest / 8;
        let slab = rest / 50;
        let free = rest.saturating_sub(anon + file_pages + slab);
        Meminfo { total, free, file_pages, anon, slab, hugetlb, hp2, hp1 }
    }

    fn add(&mut self, o: &Meminfo) {
        self.total += o.total;
        self.free += o.free;
        self.file_pages += o.file_pages;
        self.anon += o.anon;
        self.slab += o.slab;
        self.hugetlb += o.hugetlb;
        self.hp2 += o.hp2;
        self.hp1 += o.hp1;
    }

    fn node_text(&self, node: usize) -> String {
        let used = self.total - self.free;
        let rows: [(&str, u64); 12] = [
            ("MemTotal:", self.total),
            ("MemFree:", self.free),
            ("MemUsed:", used),
            ("Active:", self.anon / 2 + self.file_pages / 2),
            ("Inactive:", self.anon / 2 + self.file_pages / 2),
            ("Active(anon):", self.anon / 2),
            ("Inactive(anon):", self.anon / 2),
            ("Active(file):", self.file_pages / 2),
            ("Inactive(file):", self.file_pages / 2),
            ("FilePages:", self.file_pages),
            ("AnonPages:", self.anon),
            ("Slab:", self.slab),
        ];
        let mut s = String::new();
        for (k, v) in rows {
            let _ = writeln!(s, "Node {node} {k:<16}{v:>8} kB");
        }
        let _ = writeln!(s, "Node {node} {:<17}{:>5}", "HugePages_Total:", self.hp2);
        let _ = writeln!(s, "Node {node} {:<17}{:>5}", "HugePages_Free:", self.hp2);
        let _ = writeln!(s, "Node {node} {:<17}{:>5}", "HugePages_Surp:", 0);
        s
    }

    fn proc_text(&self, hp2: u64, _hp1: u64) -> String {
        let avail = self.free + self.file_pages / 2;
        let rows: [(&str, u64); 14] = [
            ("MemTotal:", self.total),
            ("MemFree:", self.free),
            ("MemAvailable:", avail),
            ("Buffers:", self.file_pages / 16),
            ("Cached:", self.file_pages),
            ("SwapCached:", 0),
            ("Active:", self.anon / 2 + self.file_pages / 2),
            ("Inactive:", self.anon / 2 + self.file_pages / 2),
            ("SwapTotal:", 0),
            ("SwapFree:", 0),
            ("AnonPages:", self.anon),
            ("Slab:", self.slab),
            ("CommitLimit:", self.total / 2),
            ("AnonHugePages:", 0),
        ];
        let mut s = String::new();
        for (k, v) in rows {
            let _ = writeln!(s, "{k:<16}{v:>8} kB");
        }
        let _ = writeln!(s, "{:<19}{:>5}", "HugePages_Total:", hp2);
        let _ = writeln!(s, "{:<19}{:>5}", "HugePages_Free:", hp2);
        let _ = writeln!(s, "{:<19}{:>5}", "HugePages_Rsvd:", 0);
        let _ = writeln!(s, "{:<19}{:>5}", "HugePages_Surp:", 0);
        let _ = writeln!(s, "{:<16}{:>8} kB", "Hugepagesize:", 2048);
        let _ = writeln!(s, "{:<16}{:>8} kB", "Hugetlb:", self.hugetlb);
        s
    }
}

const AMD_FLAGS: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx mmxext fxsr_opt pdpe1gb rdtscp lm constant_tsc rep_good nopl nonstop_tsc cpuid extd_apicid amd_dcm aperfmperf pni pclmulqdq monitor ssse3 fma cx16 sse4_1 sse4_2 movbe popcnt aes xsave avx f16c rdrand lahf_lm cmp_legacy svm extapic cr8_legacy abm sse4a misalignsse 3dnowprefetch osvw skinit wdt tce topoext perfctr_core perfctr_nb bpext perfctr_llc mwaitx cpb hw_pstate sme ssbd sev ibpb vmmcall fsgsbase bmi1 avx2 smep bmi2 rdseed adx smap clflushopt sha_ni xsaveopt xsavec xgetbv1 xsaves clzero irperf xsaveerptr arat npt lbrv svm_lock nrip_save tsc_scale vmcb_clean flushbyasid decodeassists pausefilter pfthreshold avic v_vmsave_vmload vgif overflow_recov succor smca";
const INTEL_FLAGS: &str = "fpu vme de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush dts acpi mmx fxsr sse sse2 ss ht tm pbe syscall nx pdpe1gb rdtscp lm constant_tsc art arch_perfmon pebs bts rep_good nopl xtopology nonstop_tsc cpuid aperfmperf tsc_known_freq pni pclmulqdq dtes64 monitor ds_cpl vmx smx est tm2 ssse3 sdbg fma cx16 xtpr pdcm pcid sse4_1 sse4_2 x2apic movbe popcnt tsc_deadline_timer aes xsave avx f16c rdrand lahf_lm abm 3dnowprefetch cpuid_fault epb ssbd ibrs ibpb stibp ibrs_enhanced tpr_shadow vnmi flexpriority ept vpid ept_ad fsgsbase tsc_adjust bmi1 avx2 smep bmi2 erms invpcid rdseed adx smap clflushopt clwb intel_pt sha_ni xsaveopt xsavec xgetbv1 xsaves split_lock_detect avx_vnni dtherm ida arat pln pts hwp hwp_notify hwp_act_window hwp_epp hwp_pkg_req hfi umip pku ospke waitpkg gfni vaes vpclmulqdq tme rdpid movdiri movdir64b fsrm md_clear serialize pconfig arch_lbr ibt flush_l1d arch_capabilities";

fn cpuinfo(spec: &Spec, topo: &Topology, l2_kib: u64) -> String {
    let c = &spec.cpu;
    let intel = c.vendor == "GenuineIntel";
    let flags = c.flags.clone().unwrap_or_else(|| (if intel { INTEL_FLAGS } else { AMD_FLAGS }).to_string());
    let mhz = c.base_freq_khz / 1000;
    let bogo = f64::from(c.base_freq_khz) * 2.0 / 1000.0;
    let siblings = topo.cpus.iter().filter(|o| o.package == 0).count();
    let mut s = String::new();
    for cpu in &topo.cpus {
        let _ = writeln!(s, "processor\t: {}", cpu.id);
        let _ = writeln!(s, "vendor_id\t: {}", c.vendor);
        let _ = writeln!(s, "cpu family\t: {}", c.family);
        let _ = writeln!(s, "model\t\t: {}", c.model);
        let _ = writeln!(s, "model name\t: {}", c.model_name);
        let _ = writeln!(s, "stepping\t: {}", c.stepping);
        let _ = writeln!(s, "microcode\t: {}", c.microcode.as_deref().unwrap_or("0x1"));
        let _ = writeln!(s, "cpu MHz\t\t: {mhz}.000");
        let cache = if intel { spec.cpu.cache.l3.clone() } else { format!("{l2_kib} KB") };
        let cache = match size_kib(&cache) {
            Some(k) if intel => format!("{k} KB"),
            _ => cache,
        };
        let _ = writeln!(s, "cache size\t: {cache}");
        let _ = writeln!(s, "physical id\t: {}", cpu.package);
        let _ = writeln!(s, "siblings\t: {siblings}");
        let _ = writeln!(s, "core id\t\t: {}", cpu.core_id);
        let _ = writeln!(s, "cpu cores\t: {}", topo.cores_per_package);
        let _ = writeln!(s, "apicid\t\t: {}", cpu.apicid);
        let _ = writeln!(s, "initial apicid\t: {}", cpu.apicid);
        let _ = writeln!(s, "fpu\t\t: yes");
        let _ = writeln!(s, "fpu_exception\t: yes");
        let _ = writeln!(s, "cpuid level\t: {}", if intel { 32 } else { 13 });
        let _ = writeln!(s, "wp\t\t: yes");
        let _ = writeln!(s, "flags\t\t: {flags}");
        let _ = writeln!(s, "bugs\t\t: spectre_v1 spectre_v2 spec_store_bypass");
        let _ = writeln!(s, "bogomips\t: {bogo:.2}");
        if !intel {
            let _ = writeln!(s, "TLB size\t: 2560 4K pages");
        }
        let _ = writeln!(s, "clflush size\t: 64");
        let _ = writeln!(s, "cache_alignment\t: 64");
        let _ = writeln!(
            s,
            "address sizes\t: {}",
            if intel { "46 bits physical, 48 bits virtual" } else { "43 bits physical, 48 bits virtual" }
        );
        let _ = writeln!(
            s,
            "power management:{}",
            if intel { "" } else { " ts ttp tm hwpstate cpb eff_freq_ro [13] [14]" }
        );
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::parse;

    fn spec(cpu: &str, mem: &str) -> Spec {
        parse(&format!(
            "[host]\nname='t'\ncmdline='ro'\n[cpu]\nvendor='AuthenticAMD'\nmodel_name='x'\nfamily=23\nmodel=1\n\
             base_freq_khz=3400000\nmax_freq_khz=4000000\ncache={{l1d='32K',l1i='64K',l2='512K',l3='8M'}}\n{cpu}\n[memory]\n{mem}\n"
        ))
        .unwrap()
    }

    #[test]
    fn threadripper_numbering() {
        let s =
            spec("nodes_per_package=2\nl3_per_node=2\ncores_per_l3=4\nthreads_per_core=2", "node_mib=[32768,32768]");
        let t = topology(&s).unwrap();
        assert_eq!(t.nr_cpus(), 32);
        assert_eq!(t.node_cpus(0).to_string(), "0-7,16-23");
        assert_eq!(t.node_cpus(1).to_string(), "8-15,24-31");
        let ccx1 = t.set(|c| c.l3 == 1);
        assert_eq!(ccx1.to_string(), "4-7,20-23");
        assert_eq!(t.set(|c| c.core == t.cpus[5].core).to_string(), "5,21");
    }

    #[test]
    fn ryzen_core_ids_skip_slots() {
        let s = spec("l3_per_node=2\ncores_per_l3=3\nthreads_per_core=2\ncore_id_slots_per_l3=4", "node_mib=[32768]");
        let t = topology(&s).unwrap();
        let ids: Vec<u32> = t.cpus[..6].iter().map(|c| c.core_id).collect();
        assert_eq!(ids, [0, 1, 2, 4, 5, 6]);
        assert_eq!(t.set(|c| c.l3 == 0).to_string(), "0-2,6-8");
    }

    #[test]
    fn node_count_must_match_memory() {
        let s = spec("nodes_per_package=2\ncores_per_l3=4", "node_mib=[1024]");
        let t = topology(&s).unwrap();
        let mut tree = Tree::new();
        assert!(write(&s, &t, &mut tree).is_err());
    }

    #[test]
    fn meminfo_format() {
        let m = Meminfo::new(16384, 0, 0);
        let text = m.node_text(0);
        assert!(text.starts_with("Node 0 MemTotal:       16525558 kB\n"), "{text}");
        assert!(text.contains("Node 0 HugePages_Total:     0\n"), "{text}");
        let p = m.proc_text(0, 0);
        assert!(p.contains("HugePages_Total:       0\n"), "{p}");
        assert!(p.contains("Hugepagesize:       2048 kB\n"), "{p}");
    }
}
