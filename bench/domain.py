#!/usr/bin/env python3
"""Benchmark `vfioctl audit`, `audit --fix` and `domain --from` on a 50 MB domain.

Builds release binaries, then makes a large domain from a corpus file
(tests/domains/24-q35-4.0-virt-manager-full-dump.xml) by repeating one virtio network
interface inside <devices> until the file reaches --mib MiB (about 1.4 million elements
at 50 MiB), in two layouts: indented one element per line, and the same on one single
line (a minified file, where a column count from the line start would be quadratic).
On the example host r2600x it times, with a warm page cache:
  * vfioctl audit FILE --format json;
  * vfioctl audit FILE --fix --format json (the patch, the diff and the re-audit);
  * vfioctl domain gpu --from FILE (the plan and the patch).
Reports the median wall and CPU time and the peak resident memory (GNU time) of each,
and checks the target of issue 17: each well under a second (at most 1 s) for 50 MiB,
and linear: 50 MiB takes at most 12x the time of 5 MiB.

Usage: bench/domain.py [--runs N] [--mib N] [--keep DIR]
Exit status: 0 when every target is met, 1 otherwise.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SEED = os.path.join(REPO, "tests/domains/24-q35-4.0-virt-manager-full-dump.xml")
HOST = os.path.join(REPO, "examples/hosts/r2600x")
UNIT = (
    "    <interface type='network'>\n"
    "      <mac address='52:54:00:6b:3c:01'/>\n"
    "      <source network='default'/>\n"
    "      <model type='virtio'/>\n"
    "    </interface>\n"
)


def make(path, mib, one_line):
    src = open(SEED).read()
    cut = src.index("</devices>")
    n = max(1, mib * 1024 * 1024 // len(UNIT))
    body = UNIT * n
    text = src[:cut] + body + src[cut:]
    if one_line:
        text = "".join(line.strip() for line in text.splitlines())
    with open(path, "w") as f:
        f.write(text)
    return n


def timed(cmd):
    """(wall s, cpu s, max RSS KiB) of one run, via GNU time."""
    out = subprocess.run(
        ["/usr/bin/time", "-f", "%e %U %S %M"] + cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    last = out.stderr.strip().splitlines()[-1].split()
    wall, user, system, rss = float(last[0]), float(last[1]), float(last[2]), int(last[3])
    return wall, user + system, rss


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--mib", type=int, default=50)
    ap.add_argument("--keep", help="write the generated domains here and keep them")
    args = ap.parse_args()
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "vfioctl"], cwd=REPO, check=True)
    exe = os.path.join(REPO, "target/release/vfioctl")
    work = args.keep or tempfile.mkdtemp(prefix="vfioctl-bench-domain-")
    os.makedirs(work, exist_ok=True)
    files = {}
    for label, mib, one in [("small", max(1, args.mib // 10), False), ("large", args.mib, False), ("one line", args.mib, True)]:
        p = os.path.join(work, f"{label.replace(' ', '-')}.xml")
        n = make(p, mib, one)
        files[label] = p
        print(f"{label}: {os.path.getsize(p) / 1048576:.1f} MiB, {n} interfaces ({4 * n} elements)")
    commands = {
        "audit --format json": lambda f: ["--root", HOST, "audit", f, "--format", "json"],
        "audit --fix --format json": lambda f: ["--root", HOST, "audit", f, "--fix", "--format", "json"],
        "domain gpu --from": lambda f: ["--root", HOST, "domain", "gpu", "--from", f],
    }
    results = {}
    for label, f in files.items():
        timed([exe] + commands["audit --format json"](f))  # warm the page cache
    for _ in range(args.runs):
        for label, f in files.items():
            for name, cmd in commands.items():
                results.setdefault((name, label), []).append(timed([exe] + cmd(f)))
    ok = True
    print(f"\n{'command':<28} {'file':<9} {'wall':>8} {'CPU':>8} {'max RSS':>10}")
    for (name, label), runs in results.items():
        wall = statistics.median(r[0] for r in runs)
        cpu = statistics.median(r[1] for r in runs)
        rss = max(r[2] for r in runs)
        print(f"{name:<28} {label:<9} {wall:>7.2f}s {cpu:>7.2f}s {rss / 1024:>7.0f} MiB")
    for name in commands:
        small = statistics.median(r[0] for r in results[(name, "small")])
        for label in ["large", "one line"]:
            wall = statistics.median(r[0] for r in results[(name, label)])
            if wall > 1.0:
                ok = False
                print(f"MISSED: {name} on the {label} domain takes {wall:.2f} s (target: at most 1 s)")
            if wall > 12 * max(small, 0.01):
                ok = False
                print(f"MISSED: {name} is not linear: {label} {wall:.2f} s against {small:.2f} s for a tenth")
    print("all targets met" if ok else "some targets missed")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
