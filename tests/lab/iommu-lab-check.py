#!/usr/bin/env python3
"""Checks one boot of the IOMMU lab (tests/lab/iommu-lab.sh).

Reads DIR/lab.log (the guest's second serial port, where /init prints every step as
==== BEGIN name ==== / ==== STDERR name ==== / ==== END name rc=N ====), compares vfioctl's
outputs with the guest kernel's own sysfs (the `sysfs` step, read with busybox) and with the
machine QEMU was given (--smp), prints one PASS/FAIL line per check and exits 1 on a failure.
DIR/persist/ (the guest's /persist/lab, read back from the NVMe image) must hold the same
exit codes: the channel a later boot reads.

    iommu-lab-check.py --variant intel|amd|no-iommu --dir DIR --smp 4,sockets=1,cores=2,threads=2 --memory 4G
        [--stage host|applied|rolled-back [--first DIR_OF_BOOT_1]]

The round trip of a variant (--stage): `host` is its first boot, with `apply` (the files it
wrote on the disk, DIR/disk, against the disk before it, DIR/seed) and `status`; `applied` the
boot with the command line update-grub wrote (verify passes, the GPU on vfio-pci, every other
device on its first-boot driver, rollback restores the disk byte for byte); `rolled-back` the
boot after it (the first boot's command line and drivers, verify fails naming the devices).
"""
import argparse
import json
import os
import re
import sys

GPU = ("1002", "5046")  # ati-vga, function 0 of the passthrough "GPU"
AUDIO = ("8086", "293e")  # ich9-intel-hda, function 1 of the same slot
BOOT_VGA = ("1234", "1111")  # -device VGA at 00:02.0, the boot display
NIC = ("8086", "10d3")  # e1000e


def parse_blocks(text):
    """{name: {"out": str, "err": str, "rc": int}} from the lab channel."""
    blocks = {}
    cur = None
    part = None
    for raw in text.splitlines():
        line = raw.rstrip("\r")
        m = re.fullmatch(r"==== BEGIN (\S+) ====", line)
        if m:
            cur, part = {"out": [], "err": []}, "out"
            name = m.group(1)
            continue
        if cur is None:
            continue
        if line == f"==== STDERR {name} ====":
            part = "err"
            continue
        m = re.fullmatch(r"==== END (\S+) rc=(\d+) ====", line)
        if m and m.group(1) == name:
            blocks[name] = {"out": "\n".join(cur["out"]), "err": "\n".join(cur["err"]), "rc": int(m.group(2))}
            cur = None
            continue
        cur[part].append(line)
    return blocks


def parse_smp(s):
    parts = s.split(",")
    d = {"cpus": int(parts[0])}
    for p in parts[1:]:
        k, v = p.split("=")
        d[k] = int(v)
    return d


class Checker:
    def __init__(self):
        self.results = []

    def check(self, ok, what, detail=""):
        self.results.append((bool(ok), what, detail))
        print(f"  {'PASS' if ok else 'FAIL'}  {what}" + (f": {detail}" if detail and not ok else ""))
        return bool(ok)

    def note(self, what):
        print(f"  NOTE  {what}")

    @property
    def failed(self):
        return [r for r in self.results if not r[0]]


def load_json(c, blocks, name):
    b = blocks.get(name)
    if not c.check(b is not None, f"step {name} ran", "no block in lab.log"):
        return None, None
    try:
        return json.loads(b["out"]), b
    except ValueError as e:
        c.check(False, f"{name}: stdout is JSON", f"{e}; rc={b['rc']} stderr={b['err'][:300]!r}")
        return None, b


def sysfs_oracle(out):
    pci, cpus, iommus, vendor, mem_kib, l3 = {}, {}, [], None, None, {}
    for line in out.splitlines():
        f = line.split()
        if not f:
            continue
        if f[0] == "pci" and len(f) == 8:
            addr, ven, dev, cls, bv, drv, grp = f[1:]
            pci[addr] = {
                "vendor": ven.lower().removeprefix("0x"),
                "device": dev.lower().removeprefix("0x"),
                "class": cls.lower().removeprefix("0x"),
                "boot_vga": None if bv == "-" else bv == "1",
                "driver": None if drv == "-" else drv,
                "group": None if grp == "-" else int(grp),
            }
        elif f[0] == "cpu" and len(f) == 5:
            cpus[int(f[1])] = {"package": int(f[2]), "core_id": int(f[3]), "siblings": f[4]}
        elif f[0] == "l3" and len(f) == 5:
            size = f[4]
            kib = int(size[:-1]) * (1024 if size[-1] == "M" else 1) if size[-1] in "KM" else None
            l3[int(f[1])] = {"id": f[2], "cpus": tuple(cpulist(f[3])), "size_kib": kib}
        elif f[0] == "iommu":
            iommus.append(f[1])
        elif f[0] == "vendor_id":
            vendor = f[-1]
        elif f[0] == "MemTotal:":
            mem_kib = int(f[1])
    return pci, cpus, iommus, vendor, mem_kib, l3


def cpulist(s):
    out = []
    for part in s.split(","):
        if "-" in part:
            a, b = part.split("-")
            out.extend(range(int(a), int(b) + 1))
        elif part:
            out.append(int(part))
    return out


def find(pci, ids):
    return [a for a, d in pci.items() if (d["vendor"], d["device"]) == ids]


def slot(a):
    return a.rsplit(".", 1)[0]


def gpu_audio(pci):
    """The HDA function in the GPU's slot (its audio)."""
    g = find(pci, GPU)
    return [a for a in find(pci, AUDIO) if g and slot(a) == slot(g[0])]


def twin_audio(pci):
    """The other HDA controllers with the same id: the host's (root port 1c.3)."""
    g = find(pci, GPU)
    return [a for a in find(pci, AUDIO) if not g or slot(a) != slot(g[0])]


def check_list(c, lst, pci):
    devs = {}
    for g in lst.get("groups", []):
        for d in g["devices"]:
            devs[d["address"]] = (d, g)
    for d in lst.get("ungrouped", []):
        devs[d["address"]] = (d, None)
    c.check(lst.get("iommu_enabled") is True, "list: iommu_enabled")
    groups_sysfs = sorted({d["group"] for d in pci.values() if d["group"] is not None})
    groups_vfioctl = sorted(g["id"] for g in lst.get("groups", []))
    c.check(len(groups_sysfs) > 0, "guest kernel made IOMMU groups", f"{len(groups_sysfs)} groups")
    c.check(groups_vfioctl == groups_sysfs, "list: the same IOMMU groups as /sys/kernel/iommu_groups",
            f"vfioctl {groups_vfioctl}, sysfs {groups_sysfs}")
    c.check(sorted(devs) == sorted(pci), "list: every PCI device of sysfs, no other",
            f"missing {sorted(set(pci) - set(devs))}, extra {sorted(set(devs) - set(pci))}")
    wrong = []
    for a, s in pci.items():
        if a not in devs:
            continue
        d, g = devs[a]
        got = {"vendor": d["vendor_id"], "device": d["device_id"], "class": d["class"] + d["prog_if"],
               "driver": d["driver"], "group": d["iommu_group"], "boot_vga": d["boot_vga"]}
        want = dict(s, **{"class": s["class"][:6]})
        if s["boot_vga"] is None:
            want["boot_vga"] = got["boot_vga"] if got["boot_vga"] in (None, False) else "absent"
        for k in want:
            if got[k] != want[k]:
                wrong.append(f"{a} {k}: vfioctl {got[k]!r}, sysfs {want[k]!r}")
        if g is not None and g["id"] != s["group"]:
            wrong.append(f"{a} listed in group {g['id']}, sysfs says {s['group']}")
        if g is None and s["group"] is not None:
            wrong.append(f"{a} listed as ungrouped, sysfs says group {s['group']}")
    c.check(not wrong, "list: ids, class, driver, group and boot_vga of every device match sysfs", "; ".join(wrong[:8]))

    gpu, audio, vga, nvme, nic = find(pci, GPU), gpu_audio(pci), find(pci, BOOT_VGA), \
        [a for a, d in pci.items() if d["class"].startswith("0108")], find(pci, NIC)
    twin = twin_audio(pci)
    c.check(len(twin) == 1 and devs.get(twin[0], ({}, None))[0].get("driver") == "snd_hda_intel",
            "list: the host's second HDA controller (the id of the GPU's audio) is there, on snd_hda_intel",
            f"{twin}")
    c.check(len(gpu) == 1 and len(audio) == 1, "guest has the ati-vga GPU and its HDA function", f"{gpu} {audio}")
    if len(gpu) == 1 and len(audio) == 1:
        gg, ga = devs.get(gpu[0], (None, None))[1], devs.get(audio[0], (None, None))[1]
        same = gg is not None and ga is not None and gg["id"] == ga["id"]
        c.check(same, "list: 1002:5046 and 8086:293e in one IOMMU group",
                f"groups {gg and gg['id']} and {ga and ga['id']}")
        if same:
            c.check(gg["gpu"] and not gg["boot_vga"], "list: that group is a GPU group, not the boot GPU's",
                    f"gpu={gg['gpu']} boot_vga={gg['boot_vga']}")
            c.check(sorted(gg["endpoints"]) == sorted([gpu[0], audio[0]]), "list: its endpoints are the two functions",
                    f"{gg['endpoints']}")
            c.check(gg["passable"] and not gg["mixed"], "list: it can be passed as a whole, not mixed",
                    f"passable={gg['passable']} mixed={gg['mixed']} notes={gg['notes']}")
    c.check(len(vga) == 1, "guest has the boot VGA (1234:1111)", f"{vga}")
    if len(vga) == 1:
        d, g = devs.get(vga[0], (None, None))
        c.check(d is not None and d["boot_vga"] is True and d["gpu"], "list: 1234:1111 is marked boot_vga",
                f"{d and d['boot_vga']}")
        c.check(g is not None and g["boot_vga"] is True, "list: the boot VGA's group is marked boot_vga",
                f"{g and g['boot_vga']}")
    c.check(len(nvme) == 1, "list: the NVMe controller is there", f"{nvme}")
    if len(nvme) == 1:
        d, g = devs[nvme[0]]
        c.check(d["driver"] == "nvme" and g is not None, "list: NVMe driven by nvme, in a group",
                f"driver={d['driver']} group={g and g['id']}")
    c.check(len(nic) == 1 and devs.get(nic[0], ({}, None))[0].get("driver") == "e1000e",
            "list: the e1000e NIC is there, driven by e1000e", f"{nic}")
    return gpu, audio, vga, nvme, nic


def check_topology(c, topo, cpus, smp, mem_kib, want_mib, l3):
    n = smp["cpus"]
    sockets, cores, threads = smp.get("sockets", 1), smp.get("cores", 1), smp.get("threads", 1)
    c.check(len(cpus) == n, f"guest kernel sees the {n} CPUs of -smp", f"{len(cpus)}")
    c.check(len(topo["cpus"]) == n, f"topology: {n} CPUs as -smp {smp}", f"{len(topo['cpus'])}")
    c.check(len(topo["packages"]) == sockets, f"topology: {sockets} packages", f"{len(topo['packages'])}")
    c.check(len(topo["cores"]) == sockets * cores, f"topology: {sockets * cores} cores", f"{len(topo['cores'])}")
    c.check(all(len(x["siblings"]) == threads for x in topo["cpus"]), f"topology: {threads} threads per core",
            f"{[x['siblings'] for x in topo['cpus']]}")
    wrong = []
    for x in topo["cpus"]:
        s = cpus.get(x["cpu"])
        if s is None:
            wrong.append(f"cpu {x['cpu']} not in sysfs")
            continue
        if x["package"] != s["package"] or x["core_id"] != s["core_id"] or x["siblings"] != cpulist(s["siblings"]):
            wrong.append(f"cpu {x['cpu']}: vfioctl package {x['package']} core_id {x['core_id']} siblings "
                         f"{x['siblings']}, sysfs {s['package']} {s['core_id']} {s['siblings']}")
    c.check(not wrong, "topology: package, core_id, siblings of every CPU match sysfs", "; ".join(wrong[:6]))
    want_l3 = sorted({(x["cpus"], x["size_kib"]) for x in l3.values()})
    got_l3 = sorted((tuple(x["cpus"]), x.get("size_kib")) for x in topo.get("l3", []))
    c.check(got_l3 == want_l3, "topology: L3 domains (CPUs, size) as sysfs' shared_cpu_list", f"vfioctl {got_l3}, sysfs {want_l3}")
    c.check(len(topo.get("l3", [])) == smp.get("sockets", 1), "topology: one L3 domain per socket (QEMU's cache model)",
            f"{len(topo.get('l3', []))}")
    c.check(len({x["id"] for x in topo["cores"]}) == len(topo["cores"]), "topology: core ids unique on the host")
    mem = sum(nd.get("memory_kib") or 0 for nd in topo.get("nodes", []))
    c.check(mem_kib is not None and abs(mem - mem_kib) <= mem_kib * 0.1 and want_mib * 1024 * 0.8 < mem <= want_mib * 1024,
            f"topology: node memory about the {want_mib} MiB of -m", f"vfioctl {mem} KiB, MemTotal {mem_kib} KiB")


def checks_by_id(chk):
    return {x["id"]: x for x in chk.get("checks", [])}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--variant", required=True, choices=["intel", "amd", "no-iommu"])
    ap.add_argument("--dir", required=True)
    ap.add_argument("--smp", required=True)
    ap.add_argument("--memory", default="4G", help="QEMU's -m (M or G suffix)")
    ap.add_argument("--stage", choices=["host", "applied", "rolled-back"],
                    help="a boot of the round trip: host (boot 1, with apply), applied (boot 2), rolled-back (boot 3)")
    ap.add_argument("--first", help="the round trip's first boot (its logs, seed/ and disk/), for applied and rolled-back")
    a = ap.parse_args()
    want_mib = int(a.memory[:-1]) * (1024 if a.memory[-1] in "gG" else 1)
    smp = parse_smp(a.smp)
    c = Checker()
    print(f"iommu-lab: checking {a.variant}{' ' + a.stage if a.stage else ''} ({a.dir})")
    try:
        text = open(os.path.join(a.dir, "lab.log"), encoding="utf-8", errors="replace").read()
    except OSError as e:
        text = ""
        c.check(False, "lab.log exists", str(e))
    blocks = parse_blocks(text)
    c.check("==== DONE ====" in text, "guest ran every step and powered off", "no DONE marker: see console.log")
    boot = blocks.get("boot")
    if boot:
        for line in boot["out"].splitlines():
            if "failed" in line or line.startswith("kernel "):
                c.note(line)

    sys_b = blocks.get("sysfs")
    if not c.check(sys_b is not None and sys_b["rc"] == 0, "sysfs oracle step ran"):
        return finish(c)
    pci, cpus, iommus, vendor, mem_kib, l3 = sysfs_oracle(sys_b["out"])
    want_vendor = {"intel": "GenuineIntel", "amd": "AuthenticAMD", "no-iommu": "GenuineIntel"}[a.variant]
    c.check(vendor == want_vendor, f"guest CPU vendor is {want_vendor}", f"{vendor}")
    if a.stage in ("applied", "rolled-back"):
        check_round_trip(c, a, blocks, sys_b["out"])
        check_persist(c, a.dir, blocks)
        return finish(c)

    if a.variant == "no-iommu":
        c.check(not iommus and all(d["group"] is None for d in pci.values()), "guest has no IOMMU",
                f"{iommus}")
        b = blocks.get("list")
        c.check(b is not None and b["rc"] == 1, "list exits 1 without an IOMMU", f"rc={b and b['rc']}")
        c.check(b is not None and "IOMMU is not enabled" in b["err"], "list says the IOMMU is not enabled",
                f"{b and b['err'][:300]!r}")
        chk, b = load_json(c, blocks, "check")
        if chk is not None:
            c.check(b["rc"] == 1, "check exits 1 without an IOMMU", f"rc={b['rc']}")
            by = checks_by_id(chk)
            ci = by.get("cmdline.iommu", {})
            c.check(ci.get("status") == "fail" and "intel_iommu=on" in (ci.get("remedy") or ""),
                    "check: cmdline.iommu fails, its remedy names intel_iommu=on", f"{ci}")
            # No IOMMU device: the lab guest is a QEMU virtual machine, so the remedy is the
            # hypervisor's virtual IOMMU, not the firmware setup (issue 16).
            remedy = ci.get("remedy") or ""
            c.check("virtual machine" in remedy and "intel-iommu" in remedy and "no ACPI DMAR table" in remedy,
                    "check: the remedy names the hypervisor's virtual IOMMU (a VM without a DMAR table)", f"{ci}")
            ia = by.get("iommu.acpi", {})
            c.check(ia.get("status") in ("warn", "fail"), "check: iommu.acpi does not pass", f"{ia}")
        t = blocks.get("check-text")
        c.check(t is not None and t["rc"] == 1 and re.search(r"IOMMU.*: FAIL", t["out"])
                and "intel_iommu=on" in t["out"], "check (text): an IOMMU line FAILs with a fix naming intel_iommu=on",
                f"rc={t and t['rc']}")
        return finish(c)

    want_iommu = "dmar" if a.variant == "intel" else "ivhd"
    c.check(any(i.startswith(want_iommu) for i in iommus), f"guest kernel has /sys/class/iommu/{want_iommu}*",
            f"{iommus}")
    lst, b = load_json(c, blocks, "list")
    gpu = audio = vga = nvme = nic = []
    if lst is not None:
        c.check(b["rc"] == 0, "list exits 0", f"rc={b['rc']} {b['err'][:300]!r}")
        gpu, audio, vga, nvme, nic = check_list(c, lst, pci)
        if b["err"].strip():
            c.note(f"list stderr: {b['err'].strip()[:500]}")

    ls, vl = blocks.get("lspci"), blocks.get("list-lspci")
    if ls is not None and vl is not None:
        if ls["rc"] != 0:
            c.note(f"no lspci in the guest (rc={ls['rc']}): list --format lspci not compared")
        else:
            want = {}
            for line in ls["out"].splitlines():
                if line.strip():
                    want["0000:" + line.split()[0]] = line
            got, bad = {}, []
            for line in vl["out"].splitlines():
                m = re.fullmatch(r"IOMMU Group (\d+) ((\S+) .*)", line)
                if not m:
                    bad.append(f"not an io-mmu-groups line: {line!r}")
                    continue
                addr = m.group(3) if m.group(3).count(":") == 2 else "0000:" + m.group(3)
                got[addr] = m.group(2)
                if pci.get(addr, {}).get("group") != int(m.group(1)):
                    bad.append(f"{addr} in group {m.group(1)}, sysfs says {pci.get(addr, {}).get('group')}")
            for addr, text in got.items():
                if want.get(addr) != text:
                    bad.append(f"{addr}: vfioctl {text!r}, lspci {want.get(addr)!r}")
            missing = sorted(a2 for a2, d in pci.items() if d["group"] is not None and a2 not in got)
            if missing:
                bad.append(f"missing {missing}")
            c.check(vl["rc"] == 0 and not bad,
                    "list --format lspci: every grouped device, each line exactly as the guest's lspci -nn",
                    "; ".join(bad[:6]))

    topo, b = load_json(c, blocks, "topology")
    if topo is not None:
        c.check(b["rc"] == 0, "topology exits 0", f"rc={b['rc']}")
        check_topology(c, topo, cpus, smp, mem_kib, want_mib, l3)
        if b["err"].strip():
            c.note(f"topology stderr: {b['err'].strip()[:500]}")

    chk, b = load_json(c, blocks, "check")
    if chk is not None:
        c.check(b["rc"] in (0, 1), "check runs (exit 0 or 1)", f"rc={b['rc']} {b['err'][:300]!r}")
        c.check(chk.get("live") is True, "check: live host (not a snapshot)", f"live={chk.get('live')}")
        by = checks_by_id(chk)
        # cmdline.next_boot: the disk's /etc/default/grub carries the running IOMMU parameters.
        want_pass = ["cmdline.iommu", "cmdline.iommu_pt", "cmdline.next_boot", "vfio.modules"]
        # virt-host-validate's ACPI check picks the table by CPU flag: vmx -> DMAR, svm -> IVRS,
        # and looks at the kernel's groups only when that table is there. TCG has svm but no
        # vmx, so the GenuineIntel guest is asked for an IVRS table it cannot have.
        if a.variant == "amd":
            want_pass[:0] = ["iommu.acpi", "iommu.kernel"]
        for i in want_pass:
            x = by.get(i, {})
            c.check(x.get("status") == "pass", f"check: {i} passes", f"{x}")
        if a.variant == "amd":
            # TCG emulates SVM well enough for kvm_amd to load and make /dev/kvm.
            for i in ("kvm.device", "kvm.module"):
                x = by.get(i, {})
                c.check(x.get("status") == "pass", f"check: {i} passes (kvm_amd on TCG's SVM)", f"{x}")
        if a.variant == "intel":
            ia = by.get("iommu.acpi", {})
            c.check(ia.get("status") == "warn" and "IVRS" in ia.get("message", ""),
                    "check: iommu.acpi looks for IVRS (the TCG CPU has svm, not vmx), as virt-host-validate does",
                    f"{ia}")
        fails = [f"{x['id']} ({x['status']}: {x.get('message', '')})" for x in chk.get("checks", [])
                 if x["status"] in ("fail", "warn")]
        c.note(f"check summary {chk.get('summary')}; not passing: " + "; ".join(fails))
        unexpected = [x["id"] for x in chk.get("checks", []) if x["status"] == "fail"
                      and (x["id"].startswith("iommu.") or x["id"].startswith("cmdline.iommu")
                           or x["id"] in ("cmdline.intremap", "vfio.modules"))]
        c.check(not unexpected, "check: no IOMMU, interrupt remapping or VFIO check fails", f"{unexpected}")

    plan, b = load_json(c, blocks, "plan")
    if plan is not None:
        c.check(b["rc"] == 0, "plan gpu exits 0 (nothing refused)", f"rc={b['rc']} {b['err'][:500]!r}")
        got = sorted(d["address"] for d in plan.get("devices", []))
        c.check(gpu and audio and got == sorted(gpu + audio), "plan gpu: passes exactly the ati-vga and its audio",
                f"{got}")
        c.check(sorted(plan.get("vfio_ids", [])) == ["1002:5046"],
                "plan gpu: vfio-pci ids 1002:5046 only (8086:293e is the host's second HDA's too)",
                f"{plan.get('vfio_ids')}")
        c.check(plan.get("vfio_addresses") == audio,
                "plan gpu: the GPU's audio function is bound by address", f"{plan.get('vfio_addresses')} {audio}")
        c.check(not plan.get("forced"), "plan gpu: nothing forced", f"{plan.get('forced')}")
        bad = [a2 for a2 in got if a2 in vga + nvme + nic]
        c.check(not bad, "plan gpu: neither the boot VGA, the NVMe nor the NIC", f"{bad}")
        add = " ".join(plan.get("kernel_cmdline", {}).get("add", []))
        c.check("vfio-pci.ids=1002:5046" in add or "vfio_pci.ids=1002:5046" in add
                or any("ids=1002:5046" in m.get("content", "") for m in plan.get("modprobe", [])),
                "plan gpu: reserves the ids (command line or modprobe.d)", f"{add}")
        cpu = plan.get("cpu", {})
        c.check(isinstance(cpu.get("vcpus"), int) and 0 < cpu["vcpus"] < smp["cpus"],
                "plan gpu: gives the guest some CPUs and keeps some for the host", f"{cpu.get('vcpus')}")
        for w in plan.get("warnings", []):
            c.note(f"plan warning: {w}")
        if b["err"].strip():
            c.note(f"plan stderr: {b['err'].strip()[:500]}")

    b = blocks.get("plan-nvme")
    if b is not None:
        c.check(b["rc"] == 1 and re.search(r"holds disks the host uses: /persist \(/dev/nvme0n1\)", b["err"]),
                "plan NVMe: refused (exit 1), it holds the mounted /persist", f"rc={b['rc']} {b['err'][-400:]!r}")
    b = blocks.get("plan-boot-vga")
    if b is not None:
        c.check(b["rc"] == 1 and "drives the boot console" in b["err"],
                "plan 1234:1111: refused (exit 1), it drives the boot console", f"rc={b['rc']} {b['err'][-400:]!r}")

    if a.stage == "host":
        check_apply(c, a, blocks, pci, plan)
    check_persist(c, a.dir, blocks)
    return finish(c)


IDS = "1002:5046"  # the vfio-pci ids of the GPU (its audio's id is the host's second HDA's too)


def install_line(audio):
    """The modprobe.d line that hands the GPU's audio function to vfio-pci by address."""
    return (f"install vfio_pci echo vfio-pci > /sys/bus/pci/devices/{audio}/driver_override; "
            "/sbin/modprobe -i vfio_pci $CMDLINE_OPTS")


def sysfs_extra(out):
    """The sysfs step's other lines: /dev/vfio names, hugepage totals by size, /proc/cmdline."""
    vfio, huge, cmdline = [], {}, None
    for line in out.splitlines():
        f = line.split()
        if len(f) == 2 and f[0] == "vfio":
            vfio.append(f[1])
        elif len(f) == 3 and f[0] == "hugepages":
            huge[int(f[1])] = int(f[2])
        elif f and f[0] == "cmdline":
            cmdline = line.split(None, 1)[1] if len(f) > 1 else ""
    return vfio, huge, cmdline


def without_steps(cmdline):
    """A command line without what the harness adds (lab.steps=, no_timer_check): the
    instrumentation, not the host's."""
    return " ".join(w for w in (cmdline or "").split() if not w.startswith("lab.steps=") and w != "no_timer_check")


def read_text(*parts):
    try:
        return open(os.path.join(*parts), encoding="utf-8", errors="replace").read()
    except OSError:
        return None


def grub_default(text):
    m = re.search(r'^GRUB_CMDLINE_LINUX_DEFAULT="([^"]*)"', text or "", re.M)
    return m.group(1).split() if m else None


def grub_cfg_cmdline(text):
    """What GRUB boots: the `linux` line of grub.cfg after the kernel's path."""
    for line in (text or "").splitlines():
        w = line.split()
        if len(w) >= 2 and w[0] == "linux":
            return " ".join(w[2:])
    return None


def tree(root):
    """{relative path: mode and bytes} of every file under root (symlinks as their target)."""
    out = {}
    for d, _, files in os.walk(root):
        for n in files:
            p = os.path.join(d, n)
            rel = os.path.relpath(p, root)
            if os.path.islink(p):
                out[rel] = ("-> " + os.readlink(p)).encode()
            else:
                out[rel] = f"mode {os.stat(p).st_mode & 0o7777:o}\n".encode() + open(p, "rb").read()
    return out


def commands_log(d):
    text = read_text(d, "persist", "commands.log") or ""
    return [line.strip() for line in text.splitlines() if line.strip()]


def check_commands(c, d, b, what):
    """The regeneration commands ran (vfioctl's report) and the stubs saw them (commands.log)."""
    out = b["out"] if b else ""
    for cmd in ("update-grub", "update-initramfs -u -k all"):
        c.check(re.search(rf"^\s*{re.escape(cmd)}: ok$", out, re.M), f"{what}: ran `{cmd}` (ok)",
                f"{out[-600:]!r}")
    log = commands_log(d)
    c.check("update-grub" in log and "update-initramfs -u -k all" in log,
            f"{what}: the guest's update-grub and update-initramfs stubs ran (persist/commands.log)", f"{log}")


def kernel_version(blocks):
    for line in (blocks.get("boot") or {}).get("out", "").splitlines():
        if line.startswith("kernel "):
            return line.split()[1]
    return None


def check_apply(c, a, blocks, pci, plan):
    """Boot 1 of the round trip: `apply gpu --memory 1G --yes` wrote the disk's files and ran
    the regeneration commands; `status` reports it."""
    gpu, audio = find(pci, GPU), gpu_audio(pci)
    b = blocks.get("apply")
    if not c.check(b is not None and b["rc"] == 0, "apply gpu --memory 1G --yes exits 0",
                   f"rc={b and b['rc']} stdout={b and b['out'][-800:]!r} stderr={b and b['err'][-800:]!r}"):
        return
    c.check("Boot loader: GRUB; initramfs: initramfs-tools" in b["out"],
            "apply: finds GRUB and initramfs-tools in the disk's /etc", f"{b['out'][:200]!r}")
    c.check(re.search(r"^Applied: \d+ files written; journal /var/lib/vfioctl/journal/", b["out"], re.M),
            "apply: wrote its files with a journal under /var/lib/vfioctl", f"{b['out'][-600:]!r}")
    check_commands(c, a.dir, b, "apply")

    disk, seed = os.path.join(a.dir, "disk"), os.path.join(a.dir, "seed")
    grub, grub0 = read_text(disk, "etc/default/grub"), read_text(seed, "etc/default/grub")
    new, old = grub_default(grub), grub_default(grub0)
    c.check(new is not None and f"vfio-pci.ids={IDS}" in new,
            f"disk: /etc/default/grub's GRUB_CMDLINE_LINUX_DEFAULT gained vfio-pci.ids={IDS}", f"{new}")
    c.check(new is not None and old is not None and new[:len(old)] == old,
            "disk: it keeps the parameters it had, in their order", f"before {old}, after {new}")
    want_add = (plan or {}).get("kernel_cmdline", {}).get("add", [])
    c.check(new is not None and all(p in new for p in want_add),
            "disk: it carries every parameter plan gpu adds", f"plan {want_add}, grub {new}")
    changed = [(x, y) for x, y in zip((grub0 or "").splitlines(), (grub or "").splitlines()) if x != y]
    c.check(grub and grub0 and len(grub.splitlines()) == len(grub0.splitlines()) and len(changed) == 1
            and changed[0][0].startswith("GRUB_CMDLINE_LINUX_DEFAULT="),
            "disk: the edit is surgical (only the GRUB_CMDLINE_LINUX_DEFAULT line changed)", f"{changed}")
    cfg = grub_cfg_cmdline(read_text(disk, "boot/grub/grub.cfg"))
    c.check(cfg is not None and new is not None and cfg.split()[-len(new):] == new,
            "disk: update-grub regenerated /boot/grub/grub.cfg with the new command line", f"{cfg}")
    vfio_conf = read_text(disk, "etc/modprobe.d/vfio.conf") or ""
    c.check(re.search(rf"^options vfio-pci ids={re.escape(IDS)}\b", vfio_conf, re.M),
            f"disk: /etc/modprobe.d/vfio.conf reserves {IDS}", f"{vfio_conf!r}")
    c.check(len(audio) == 1 and install_line(audio[0]) in vfio_conf.splitlines(),
            "disk: vfio.conf hands the GPU's audio to vfio-pci by address (install vfio_pci ... driver_override)",
            f"{vfio_conf!r}")
    c.check(not any(t in vfio_conf for t in twin_audio(pci)), "disk: vfio.conf does not name the host's HDA",
            f"{vfio_conf!r}")
    drivers = sorted({pci[x]["driver"] for x in gpu + audio if pci[x]["driver"]})
    missing = [d for d in drivers if not re.search(rf"^softdep {re.escape(d)} pre: vfio-pci$", vfio_conf, re.M)]
    c.check(drivers and not missing, f"disk: vfio.conf loads vfio-pci before {', '.join(drivers)}",
            f"no softdep for {missing}")
    mods = (read_text(disk, "etc/initramfs-tools/modules") or "").split()
    c.check(all(m in mods for m in ("vfio", "vfio_iommu_type1", "vfio_pci")),
            "disk: /etc/initramfs-tools/modules lists vfio, vfio_iommu_type1, vfio_pci", f"{mods}")
    kver = kernel_version(blocks)
    initrd = read_text(disk, f"boot/initrd.img-{kver}") or ""
    c.check("vfio_pci" in initrd.split() and f"ids={IDS}" in initrd and "driver_override" in initrd,
            f"disk: update-initramfs rebuilt /boot/initrd.img-{kver} with the vfio modules and vfio.conf",
            f"{initrd[-400:]!r}")

    st, b = load_json(c, blocks, "status")
    if st is not None:
        bad = [f"{f.get('path')}: {f.get('state')}" for f in st.get("files", []) if f.get("state") != "unchanged"]
        c.check(b["rc"] == 0 and st.get("applied") is True and st.get("state") == "applied" and st.get("files")
                and not bad, "status: applied, every file unchanged",
                f"rc={b['rc']} applied={st.get('applied')} state={st.get('state')} {bad}")


def check_round_trip(c, a, blocks, sysfs_out):
    """Boots 2 (applied) and 3 (rolled-back) against the first boot of the same disk."""
    first = parse_blocks(read_text(a.first, "lab.log") or "") if a.first else {}
    fb = first.get("sysfs")
    if not c.check(fb is not None, "the first boot's sysfs step is there", f"--first {a.first}"):
        return
    pci0 = sysfs_oracle(fb["out"])[0]
    _, _, cmdline0 = sysfs_extra(fb["out"])
    pci = sysfs_oracle(sysfs_out)[0]
    vfio, huge, cmdline = sysfs_extra(sysfs_out)
    gpu, audio, vga = find(pci0, GPU), gpu_audio(pci0), find(pci0, BOOT_VGA)
    nvme = [x for x, d in pci0.items() if d["class"].startswith("0108")]
    if not c.check(len(gpu) == 1 and len(audio) == 1, "the first boot had the GPU and its audio", f"{gpu} {audio}"):
        return
    passed = gpu + audio
    group = pci0[gpu[0]]["group"]
    c.check(sorted(pci) == sorted(pci0), "the same PCI devices as the first boot",
            f"now {sorted(pci)}, first {sorted(pci0)}")
    others = [x for x in pci0 if x not in passed]
    moved = [f"{x}: {pci0[x]['driver']} -> {pci.get(x, {}).get('driver')}" for x in others
             if pci.get(x, {}).get("driver") != pci0[x]["driver"]]
    c.check(not moved, "every other device on its first-boot driver (boot VGA "
            + ", ".join(f"{pci0[x]['driver']}" for x in vga) + ", NVMe "
            + ", ".join(f"{pci0[x]['driver']}" for x in nvme) + ")", "; ".join(moved))
    c.check(vga and pci.get(vga[0], {}).get("driver") not in (None, "vfio-pci"),
            "the boot VGA 1234:1111 keeps a display driver", f"{vga and pci.get(vga[0])}")
    c.check(nvme and pci.get(nvme[0], {}).get("driver") == "nvme", "the NVMe stays on nvme",
            f"{nvme and pci.get(nvme[0])}")
    twin = twin_audio(pci0)
    c.check(len(twin) == 1 and pci.get(twin[0], {}).get("driver") == "snd_hda_intel",
            "the host's second HDA (the same id as the GPU's audio) stays on snd_hda_intel",
            f"{twin} {twin and pci.get(twin[0])}")

    if a.stage == "applied":
        want = grub_cfg_cmdline(read_text(a.first, "disk", "boot/grub/grub.cfg"))
        c.check(want is not None and without_steps(cmdline) == want,
                "booted with the command line the first boot's update-grub wrote (grub.cfg)",
                f"running {without_steps(cmdline)!r}, grub.cfg {want!r}")
        c.check(f"vfio-pci.ids={IDS}" in (cmdline or "").split(), f"the running kernel has vfio-pci.ids={IDS}",
                f"{cmdline}")
        on = {x: pci.get(x, {}).get("driver") for x in passed}
        c.check(all(v == "vfio-pci" for v in on.values()),
                "the GPU and its audio function are on vfio-pci", f"{on}")
        c.check(str(group) in vfio, f"/dev/vfio/{group} exists (the GPU's group)", f"/dev/vfio: {vfio}")
        plan = None
        pb = first.get("plan")
        if pb is not None:
            try:
                plan = json.loads(pb["out"])
            except ValueError:
                plan = None
        hp = ((plan or {}).get("memory") or {}).get("hugepages")
        if hp and hp.get("reserve_at_boot"):
            c.check(huge.get(hp["size_kib"], 0) >= hp["count"],
                    f"the kernel reserved {hp['count']} hugepage(s) of {hp['size_kib']} KiB at boot", f"{huge}")

        v, b = load_json(c, blocks, "verify")
        if v is not None:
            by = checks_by_id(v)
            c.check(b["rc"] == 0 and (v.get("summary") or {}).get("fail") == 0, "verify exits 0, nothing failed",
                    f"rc={b['rc']} summary={v.get('summary')} failed="
                    + "; ".join(f"{x['id']}: {x.get('message')}" for x in v.get("checks", []) if x["status"] == "fail"))
            c.check("journal" in v.get("source", ""), "verify: checks the plan the apply recorded in its journal",
                    f"{v.get('source')}")
            for x in passed:
                d = by.get(f"verify.device.{x}", {})
                c.check(d.get("status") == "pass", f"verify: {x} on vfio-pci PASS", f"{d}")
            devs = sorted(i.removeprefix("verify.device.") for i in by if i.startswith("verify.device."))
            c.check(devs == sorted(passed), "verify: checks exactly the GPU and its audio", f"{devs}")
            mods = {i: x for i, x in by.items() if i.startswith("verify.module.")}
            c.check(mods and "verify.module.vfio_pci" in mods and all(x["status"] == "pass" for x in mods.values()),
                    "verify: the vfio modules are loaded PASS (" + ", ".join(i.split(".")[-1] for i in mods) + ")",
                    f"{[x for x in mods.values() if x['status'] != 'pass']}")
            g = by.get(f"verify.vfio-group.{group}", {})
            c.check(g.get("status") == "pass", f"verify: /dev/vfio/{group} PASS", f"{g}")
            cl = {i: x for i, x in by.items() if i.startswith("verify.cmdline.")}
            c.check("verify.cmdline.vfio-pci.ids" in cl and all(x["status"] == "pass" for x in cl.values()),
                    "verify: the command line carries the planned parameters PASS ("
                    + ", ".join(i.removeprefix("verify.cmdline.") for i in cl) + ")",
                    f"{[x for x in cl.values() if x['status'] != 'pass']}")
            if hp:
                h = by.get("verify.hugepages", {})
                c.check(h.get("status") == "pass", "verify: the hugepages are reserved PASS", f"{h}")
        t = blocks.get("verify-text")
        c.check(t is not None and t["rc"] == 0 and re.search(r"\d+ checks: \d+ passed, \d+ warnings, 0 failed", t["out"]),
                "verify (text): exit 0, 0 failed", f"rc={t and t['rc']} {t and t['out'][-300:]!r}")

        lst, b = load_json(c, blocks, "list")
        if lst is not None:
            c.check(b["rc"] == 0, "list exits 0", f"rc={b['rc']} {b['err'][:300]!r}")
            check_list(c, lst, pci)

        rom, b = load_json(c, blocks, "rom")
        if rom is not None:
            images = rom.get("images") or []
            c.check(b["rc"] == 0 and images and all(i.get("vendor") == 0x1002 and i.get("device") == 0x5046 for i in images)
                    and not rom.get("errors"),
                    "rom gpu --out: the GPU's ROM read through sysfs is valid and the card's (1002:5046)",
                    f"rc={b['rc']} images={images} errors={rom.get('errors')} {b['err'][-300:]!r}")

        st, b = load_json(c, blocks, "status")
        if st is not None:
            bad = [f"{f.get('path')}: {f.get('state')}" for f in st.get("files", []) if f.get("state") != "unchanged"]
            c.check(b["rc"] == 0 and st.get("applied") is True and not bad,
                    "status (before the rollback): applied, every file unchanged", f"state={st.get('state')} {bad}")
        b = blocks.get("rollback")
        if c.check(b is not None and b["rc"] == 0 and re.search(r"^Rolled back: \d+ files restored", b["out"], re.M),
                   "rollback --yes exits 0, files restored",
                   f"rc={b and b['rc']} {b and b['out'][-500:]!r} {b and b['err'][-500:]!r}"):
            check_commands(c, a.dir, b, "rollback")
        # After the rollback the disk must be the first boot's, byte for byte (grub.cfg and the
        # initramfs regenerated from the restored files included).
        seed, disk = os.path.join(a.first, "seed"), os.path.join(a.dir, "disk")
        want_t = {f"{top}/{k}": v for top in ("etc", "boot") for k, v in tree(os.path.join(seed, top)).items()}
        got_t = {f"{top}/{k}": v for top in ("etc", "boot") for k, v in tree(os.path.join(disk, top)).items()}
        diff = sorted(set(want_t) ^ set(got_t)) + sorted(k for k in set(want_t) & set(got_t) if want_t[k] != got_t[k])
        c.check(want_t and not diff, f"rollback: the disk's etc/ and boot/ are the first boot's byte for byte, modes too "
                f"({len(want_t)} files)", f"differ: {diff}")
        return

    # rolled-back
    c.check(without_steps(cmdline) == without_steps(cmdline0),
            "booted with the first boot's command line again (grub.cfg regenerated by the rollback)",
            f"now {without_steps(cmdline)!r}, first {without_steps(cmdline0)!r}")
    back = {x: (pci.get(x, {}).get("driver"), pci0[x]["driver"]) for x in passed}
    c.check(all(now == was and was is not None for (now, was) in back.values()),
            "the GPU and its audio are back on their first-boot drivers ("
            + ", ".join(str(was) for _, was in back.values()) + ")", f"(now, first): {back}")
    c.check(str(group) not in vfio, f"no /dev/vfio/{group}", f"/dev/vfio: {vfio}")
    v, b = load_json(c, blocks, "verify")
    if v is not None:
        by = checks_by_id(v)
        c.check(b["rc"] == 1, "verify exits 1 (the host is no longer what the apply planned)", f"rc={b['rc']}")
        for x in passed:
            d = by.get(f"verify.device.{x}", {})
            was = pci0[x]["driver"]
            c.check(d.get("status") == "fail" and was in d.get("message", ""),
                    f"verify: {x} FAIL, on {was}", f"{d}")
        cl = by.get("verify.cmdline.vfio-pci.ids", {})
        c.check(cl.get("status") == "fail", "verify: vfio-pci.ids FAIL (not on the command line)", f"{cl}")
    t = blocks.get("verify-text")
    c.check(t is not None and t["rc"] == 1 and all(x in t["out"] for x in passed) and ": FAIL" in t["out"],
            "verify (text): exit 1, FAIL lines name both devices", f"rc={t and t['rc']} {t and t['out'][-400:]!r}")
    st, b = load_json(c, blocks, "status")
    if st is not None:
        c.check(b["rc"] == 0 and st.get("applied") is False and st.get("state") in ("rolledback", "rolled-back"),
                "status: rolled back", f"rc={b['rc']} applied={st.get('applied')} state={st.get('state')}")


def check_persist(c, d, blocks):
    persist = os.path.join(d, "persist")
    if os.path.isdir(persist):
        wrong = []
        for name, blk in blocks.items():
            if name == "boot":
                continue
            try:
                rc = int(open(os.path.join(persist, f"{name}.rc")).read().strip())
            except (OSError, ValueError):
                wrong.append(f"{name}: no rc")
                continue
            if rc != blk["rc"]:
                wrong.append(f"{name}: disk {rc}, console {blk['rc']}")
        c.check(not wrong, "NVMe /persist holds every step's result (the channel to a next boot)", "; ".join(wrong))
    else:
        c.check(False, "NVMe /persist read back", f"no {persist}")


def finish(c):
    n, f = len(c.results), len(c.failed)
    print(f"  {n - f}/{n} checks passed" + (f", {f} FAILED" if f else ""))
    return 1 if f else 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except Exception as e:  # a crash is a failure with its reason, not a traceback alone
        import traceback
        traceback.print_exc()
        print(f"  FAIL  the checker itself: {type(e).__name__}: {e}")
        sys.exit(1)
