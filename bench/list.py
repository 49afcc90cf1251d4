#!/usr/bin/env python3
"""Benchmark `vfioctl list` on a generated large host.

Generates a host root with `hostgen --large` (default: 2,000+ PCI devices in 500 IOMMU
groups, 256 CPUs), then times, over the same tree:
  * vfioctl list --format lspci (the guide script's output), text and json too;
  * one `lspci -nn` over the whole tree;
  * the guide's io-mmu-groups script: one `lspci -nns ADDR` per device.
The contenders take turns run by run, so a machine that gets busier halfway slows them
alike. Reports the median wall and CPU (user + system) time of each, the ratio of
`list` (text and json) to lspci in both, and vfioctl's peak memory (max RSS, via GNU
time), and checks the targets:
  * `list` text and json each take at most half the wall time of one lspci (issue 13);
  * the lspci format is faster than one lspci, >= 50x faster than the script (issue 2);
  * peak memory < 16 MiB.

Usage: bench/list.py [--runs N] [--script-runs N] [--devices N] [--groups N] [--cpus N] [--keep DIR]
Exit status: 0 when every target is met, 1 otherwise.
"""

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GUIDE_SCRIPT = r"""
shopt -s nullglob
for d in "$ROOT"/sys/kernel/iommu_groups/*/devices/*; do
    n=${d#*/iommu_groups/*}; n=${n%%/*}
    printf 'IOMMU Group %s ' "$n"
    lspci -A linux-sysfs -O sysfs.path="$ROOT/sys/bus/pci" -O hwdb.disable=1 -nns "${d##*/}"
done
"""


def run_timed(argv, env=None):
    """Runs a command with stdout discarded; returns (wall seconds, CPU seconds, peak RSS in KiB).

    Peak memory comes from GNU time (`%M`): the rusage of a child forked from this Python
    process would include Python's own pages from before the exec. CPU time (user +
    system) is the rusage of GNU time's process, which includes the command it waited
    for; time's own share is a fraction of a millisecond, the same for every contender.
    """
    timed = ["/usr/bin/time", "-f", "%M", *argv]
    start = time.perf_counter()
    proc = subprocess.Popen(timed, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    err_bytes = proc.stderr.read()
    proc.stderr.close()
    _, status, usage = os.wait4(proc.pid, 0)
    elapsed = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = err_bytes.decode(errors="replace").strip().splitlines()
    if proc.returncode != 0:
        sys.exit(f"command failed: {' '.join(argv)}\n" + "\n".join(err))
    cpu = usage.ru_utime + usage.ru_stime
    return elapsed, cpu, int(err[-1]) if err and err[-1].isdigit() else 0


def medians(commands, runs, env=None):
    """Runs each command `runs` times, taking turns; returns name -> (wall, CPU, max RSS)."""
    samples = {name: [] for name in commands}
    for _ in range(runs):
        for name, argv in commands.items():
            samples[name].append(run_timed(argv, env))
    return {
        name: (statistics.median(s[0] for s in runs_), statistics.median(s[1] for s in runs_), max(s[2] for s in runs_))
        for name, runs_ in samples.items()
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=11)
    ap.add_argument("--script-runs", type=int, default=1, help="runs of the slow per-device script")
    ap.add_argument("--devices", type=int, default=2000)
    ap.add_argument("--groups", type=int, default=500)
    ap.add_argument("--cpus", type=int, default=256)
    ap.add_argument("--keep", help="generate the host here and keep it")
    args = ap.parse_args()

    for tool, how in (("lspci", "apt-get install pciutils"), ("cargo", "a Rust toolchain"), ("/usr/bin/time", "apt-get install time")):
        if not shutil.which(tool):
            sys.exit(f"{tool} is needed ({how})")
    print("building release binaries ...", file=sys.stderr)
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vfioctl", "-p", "vfioctl-hostgen"], cwd=REPO, check=True)
    vfioctl = os.path.join(REPO, "target/release/vfioctl")
    hostgen = os.path.join(REPO, "target/release/hostgen")

    tmp = None
    if args.keep:
        root = os.path.abspath(args.keep)
    else:
        tmp = tempfile.mkdtemp(prefix="vfioctl-bench-")
        root = os.path.join(tmp, "large")
    gen = [hostgen, "--large", root, "--devices", str(args.devices), "--groups", str(args.groups), "--cpus", str(args.cpus)]
    t0 = time.perf_counter()
    subprocess.run(gen, check=True, stdout=subprocess.DEVNULL)
    ndev = len(os.listdir(os.path.join(root, "sys/bus/pci/devices")))
    ngroups = len(os.listdir(os.path.join(root, "sys/kernel/iommu_groups")))
    print(f"host: {ndev} PCI devices, {ngroups} IOMMU groups, generated in {time.perf_counter() - t0:.2f} s")

    env = dict(os.environ, ROOT=root)
    # Warm the page cache so every contender reads the same cached tree.
    run_timed([vfioctl, "--root", root, "list", "--format", "lspci"])
    lspci_cmd = ["lspci", "-A", "linux-sysfs", "-O", f"sysfs.path={root}/sys/bus/pci", "-O", "hwdb.disable=1", "-nn"]
    commands = {f"vfioctl list --format {fmt}": [vfioctl, "--root", root, "list", "--format", fmt] for fmt in ("lspci", "text", "json")}
    commands["vfioctl topology --format json"] = [vfioctl, "--root", root, "topology", "--format", "json"]
    commands["lspci -nn (whole tree)"] = lspci_cmd
    results = medians(commands, args.runs)
    results.update(medians({"guide script (lspci per device)": ["bash", "-c", GUIDE_SCRIPT]}, args.script_runs, env))

    lspci_wall, lspci_cpu, _ = results["lspci -nn (whole tree)"]
    width = max(len(k) for k in results)
    print(f"\n{'command'.ljust(width)}  {'wall':>9}  {'CPU':>9}  {'wall/lspci':>10}  {'CPU/lspci':>9}  {'max RSS':>9}")
    for name, (wall, cpu, rss) in results.items():
        print(
            f"{name.ljust(width)}  {wall * 1000:7.1f}ms  {cpu * 1000:7.1f}ms  {wall / lspci_wall:10.2f}  {cpu / lspci_cpu:9.2f}  {rss / 1024:6.1f}MiB"
        )

    ours = results["vfioctl list --format lspci"][0]
    script_t = results["guide script (lspci per device)"][0]
    worst_rss = max(r for k, (_, _, r) in results.items() if k.startswith("vfioctl"))
    checks = []
    for fmt in ("text", "json"):
        wall, cpu, _ = results[f"vfioctl list --format {fmt}"]
        checks.append(
            (
                f"list --format {fmt} at most half of one lspci -nn: wall {wall / lspci_wall:.2f}x, CPU {cpu / lspci_cpu:.2f}x",
                wall / lspci_wall <= 0.5,
            )
        )
    checks += [
        (f"list --format lspci faster than one lspci -nn: {lspci_wall / ours:.1f}x", ours < lspci_wall),
        (f"at least 50x faster than the guide's script: {script_t / ours:.0f}x", script_t / ours >= 50),
        (f"peak memory under 16 MiB: {worst_rss / 1024:.1f} MiB", worst_rss < 16 * 1024),
    ]
    print()
    ok = True
    for text, passed in checks:
        print(f"{'PASS' if passed else 'FAIL'}  {text}")
        ok &= passed
    if tmp:
        shutil.rmtree(tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
