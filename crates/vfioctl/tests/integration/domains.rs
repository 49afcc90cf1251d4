//! The patcher's contract on domains in the shapes real users write (`tests/domains/`,
//! see its README): libvirt accepts every file; for each, on several example hosts,
//! `audit` and `audit --fix` and `domain --from` never crash; what `domain --from` and
//! `audit --fix` write, libvirt accepts too (its own parser and checks, through the test
//! driver); and the patched domain audits no worse than the original on any finding the
//! patch owns (`audit --fix`: every finding).

use std::collections::BTreeMap;
use std::path::PathBuf;

use crate::util::{example_host, libvirt_accepts, vfioctl, workspace};

fn corpus() -> Vec<PathBuf> {
    let dir = workspace().join("tests/domains");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "xml")).collect()
        })
        .unwrap_or_default();
    files.sort();
    files
}

/// Findings `domain --from` does not own, so may add: the hugepages the host reserves
/// (`domain` writes the guest for the host as `apply` leaves it, with its pages), and the
/// firmware and machine type when it adds a GPU (the patch never changes them: an installed
/// guest does not boot another firmware and sees a new board on another machine; it warns
/// instead).
const NOT_OWNED_BY_DOMAIN: &[&str] = &["memory-hugepages-missing", "device-gpu-legacy-boot", "device-gpu-i440fx"];

/// Finding id → how many, from `audit --format json`.
fn counts(json: &str) -> BTreeMap<String, usize> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    let mut out = BTreeMap::new();
    for f in v["findings"].as_array().into_iter().flatten() {
        if let Some(id) = f["id"].as_str() {
            *out.entry(id.to_string()).or_default() += 1;
        }
    }
    out
}

#[test]
fn the_corpus_is_what_libvirt_accepts() {
    let files = corpus();
    assert!(files.len() >= 30, "tests/domains holds {} domains", files.len());
    for f in &files {
        let xml = std::fs::read_to_string(f).expect("read");
        libvirt_accepts(&xml).unwrap_or_else(|e| panic!("{}: libvirt refuses the corpus file: {e}", f.display()));
    }
}

#[test]
fn patches_of_real_domains_are_domains_libvirt_accepts_and_no_worse() {
    let mut failures = Vec::new();
    for host in ["r2600x", "tr1950x", "x670-luks-zfs"] {
        let root = example_host(host);
        for f in corpus() {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
            let file = f.to_str().expect("utf8");
            let before = vfioctl(&root, &["audit", file, "--format", "json"]);
            if !matches!(before.code, 0 | 1) {
                failures.push(format!("{host} {name}: audit exit {}: {}", before.code, before.stderr.trim()));
                continue;
            }
            let fix = vfioctl(&root, &["audit", file, "--fix", "--format", "json"]);
            match fix.code {
                0 | 1 => {
                    if let Err(e) = libvirt_accepts(&fix.stdout) {
                        failures.push(format!("{host} {name}: libvirt refuses audit --fix's output: {}", e.trim()));
                    }
                    // The fixed domain's findings (stderr, after the diff) against the original's.
                    let json = fix.stderr.find("{\n").map(|i| &fix.stderr[i..]).unwrap_or("{}");
                    let (was, now) = (counts(&before.stdout), counts(json));
                    for (id, n) in &now {
                        if n > was.get(id).unwrap_or(&0) {
                            failures.push(format!(
                                "{host} {name}: --fix made {id} worse ({} → {n})",
                                was.get(id).unwrap_or(&0)
                            ));
                        }
                    }
                }
                c => failures
                    .push(format!("{host} {name}: audit --fix exit {c}: {}", fix.stderr.lines().last().unwrap_or(""))),
            }
            let patch = vfioctl(&root, &["domain", "gpu", "--from", file]);
            match patch.code {
                0 => {
                    if let Err(e) = libvirt_accepts(&patch.stdout) {
                        failures.push(format!("{host} {name}: libvirt refuses domain --from's output: {}", e.trim()));
                    }
                    let dir = tempfile::tempdir().expect("tempdir");
                    let out = dir.path().join(&name);
                    std::fs::write(&out, &patch.stdout).expect("write");
                    let after = vfioctl(&root, &["audit", out.to_str().expect("utf8"), "--format", "json"]);
                    let (was, now) = (counts(&before.stdout), counts(&after.stdout));
                    for (id, n) in now.iter().filter(|(id, _)| !NOT_OWNED_BY_DOMAIN.contains(&id.as_str())) {
                        if n > was.get(id).unwrap_or(&0) {
                            failures.push(format!(
                                "{host} {name}: domain --from made {id} worse ({} → {n})",
                                was.get(id).unwrap_or(&0)
                            ));
                        }
                    }
                }
                // A plan this host refuses for the domain is an answer, not a crash.
                1 | 2 if !patch.stderr.contains("panicked") => {}
                c => failures.push(format!("{host} {name}: domain --from exit {c}: {}", patch.stderr.trim())),
            }
            // Another vCPU count and memory: what is indexed by vCPU, and the NUMA cells'
            // memory, follow (libvirt refuses a domain where they do not).
            let other = vfioctl(&root, &["domain", "gpu", "--from", file, "--vcpus", "2", "--memory", "6G"]);
            match other.code {
                0 => {
                    if let Err(e) = libvirt_accepts(&other.stdout) {
                        failures.push(format!(
                            "{host} {name}: libvirt refuses domain --from --vcpus 2 --memory 6G: {}",
                            e.trim()
                        ));
                    }
                }
                1 | 2 if !other.stderr.contains("panicked") => {}
                c => failures.push(format!("{host} {name}: domain --from --vcpus 2 exit {c}: {}", other.stderr.trim())),
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}

/// `<vcpupin vcpu cpuset>` and emulator/I/O-thread cpusets in a fix snippet.
fn snippet_pins(fix: &str) -> (Vec<(u32, String)>, Vec<String>) {
    let mut vcpus = Vec::new();
    let mut threads = Vec::new();
    for tag in fix.split('<').skip(1) {
        let attr = |name: &str| {
            let at = tag.find(&format!("{name}='"))? + name.len() + 2;
            Some(tag[at..].split('\'').next()?.to_string())
        };
        if tag.starts_with("vcpupin ") {
            if let (Some(v), Some(c)) = (attr("vcpu").and_then(|v| v.parse().ok()), attr("cpuset")) {
                vcpus.push((v, c));
            }
        } else if tag.starts_with("emulatorpin ") || tag.starts_with("iothreadpin ") {
            threads.extend(attr("cpuset"));
        }
    }
    (vcpus, threads)
}

fn cpus(set: &str) -> std::collections::BTreeSet<u32> {
    set.split(',')
        .filter(|p| !p.is_empty() && !p.starts_with('^'))
        .flat_map(|p| match p.split_once('-') {
            Some((a, b)) => (a.parse().unwrap_or(0)..=b.parse().unwrap_or(0)).collect::<Vec<u32>>(),
            None => p.parse().into_iter().collect(),
        })
        .collect()
}

/// Issue 17: the fix snippets of different findings contradicted each other: two findings
/// put different vCPUs on one CPU, a vCPU's repair sat on the CPUs another finding gave the
/// emulator, single-vCPU repairs beside a whole new placement. Applied together, the fixes
/// of one audit agree: each vCPU on one CPU, each CPU for one vCPU, no emulator or I/O
/// thread on a vCPU's CPU.
#[test]
fn the_fix_snippets_of_one_audit_agree() {
    let mut failures = Vec::new();
    for host in ["r2600x", "tr1950x", "x670-luks-zfs"] {
        let root = example_host(host);
        for f in corpus() {
            let name = f.file_name().and_then(|n| n.to_str()).unwrap_or("?").to_string();
            let run = vfioctl(&root, &["audit", f.to_str().expect("utf8"), "--format", "json"]);
            let v: serde_json::Value = serde_json::from_str(&run.stdout).unwrap_or_default();
            let mut pin: BTreeMap<u32, String> = BTreeMap::new();
            let mut threads: Vec<(String, String)> = Vec::new();
            for finding in v["findings"].as_array().into_iter().flatten() {
                let (id, fix) = (finding["id"].as_str().unwrap_or(""), finding["fix"].as_str().unwrap_or(""));
                let (vcpus, t) = snippet_pins(fix);
                for (vcpu, set) in vcpus {
                    if let Some(other) = pin.insert(vcpu, set.clone()).filter(|o| *o != set) {
                        failures.push(format!("{host} {name}: vCPU {vcpu} on {other} and on {set} ({id})"));
                    }
                }
                threads.extend(t.into_iter().map(|s| (id.to_string(), s)));
            }
            let mut by_cpu: BTreeMap<String, u32> = BTreeMap::new();
            for (vcpu, set) in &pin {
                if let Some(other) = by_cpu.insert(set.clone(), *vcpu).filter(|o| o != vcpu) {
                    failures.push(format!("{host} {name}: CPU {set} for vCPUs {other} and {vcpu}"));
                }
            }
            let vcpu_cpus: std::collections::BTreeSet<u32> = pin.values().flat_map(|s| cpus(s)).collect();
            for (id, set) in threads {
                let both: Vec<u32> = cpus(&set).intersection(&vcpu_cpus).copied().collect();
                if !both.is_empty() {
                    failures.push(format!("{host} {name}: {id} puts a thread on vCPU CPUs {both:?}"));
                }
            }
        }
    }
    assert!(failures.is_empty(), "{} failures:\n{}", failures.len(), failures.join("\n"));
}
