# The steps of the iommu-lab guest, sourced by /init: `lab.steps=list,check-text` on the
# kernel command line runs step_list, then step_check_text. Each prints its result on stdout
# (diagnostics on stderr) and returns the exit code the harness checks. Add a step here, then
# name it in the harness' boot (tests/lab/iommu-lab.sh) and assert it in iommu-lab-check.py.
# shellcheck shell=sh

step_list() { vfioctl list --format json; }
step_list_text() { vfioctl list; }
step_topology() { vfioctl topology --format json; }
step_check() { vfioctl check --format json; }
step_check_text() { vfioctl check; }
step_plan() { vfioctl plan gpu --format json; }
step_plan_text() { vfioctl plan gpu; }
step_list_lspci() { vfioctl list --format lspci; }
# Refusals on a real kernel: the NVMe holds the mounted /persist (found through mountinfo and
# /sys/dev/block), 1234:1111 is the boot display.
step_plan_nvme() { vfioctl plan 1b36:0010 --format json; }
step_plan_boot_vga() { vfioctl plan 1234:1111 --format json; }
# The round trip (boots 1-3 of a sequence variant; the disk's /etc, /boot and /var/lib/vfioctl
# are the host's across boots, and the harness boots the next guest with the command line the
# regenerated /boot/grub/grub.cfg holds):
#   boot 1: apply, status;  boot 2: verify, verify-text, rollback, status;  boot 3: verify,
#   verify-text, status. The regeneration commands are tests/lab/guest/regen-stub.
step_apply() { vfioctl apply gpu --memory 1G --yes; }
step_status() { vfioctl status --format json; }
step_verify() { vfioctl verify --format json; }
step_verify_text() { vfioctl verify; }
step_rollback() { vfioctl rollback --yes; }
# The GPU's ROM read through sysfs while vfio-pci has the card (QEMU's ati-vga carries a
# VGA BIOS whose PCIR ids QEMU sets to the device's).
step_rom() { vfioctl rom gpu --out /tmp/gpu.rom --format json; }
# pciutils' lspci (shipped when the machine building the initramfs has it): an oracle for
# `list --format lspci`, which must print exactly what `lspci -nns ADDR` prints.
step_lspci() { lspci -nn; }

# The kernel's own view, read with busybox only: the oracle the harness compares vfioctl with.
#   pci ADDRESS VENDOR DEVICE CLASS BOOT_VGA DRIVER GROUP   (- when absent)
#   cpu N PACKAGE CORE_ID THREAD_SIBLINGS
#   l3 CPU ID SHARED_CPU_LIST SIZE
#   iommu NAME  (/sys/class/iommu), then vendor_id and MemTotal
#   vfio NAME   (/dev/vfio: the groups vfio-pci made, and the container node `vfio`)
#   hugepages SIZE_KIB TOTAL   (/sys/kernel/mm/hugepages)
#   cmdline …   (/proc/cmdline)
# Shell builtins in the loops where they work (a fork costs about 10 ms under TCG).
rd() { v=""; [ -r "$1" ] && read -r v <"$1"; [ -n "$v" ] || v=-; }
lk() { v=-; if cd -P "$1" 2>/dev/null; then v=${PWD##*/}; cd /; fi; }
step_sysfs() {
  for d in /sys/bus/pci/devices/*; do
    set -- "${d##*/}"
    for f in vendor device class boot_vga; do rd "$d/$f"; set -- "$@" "$v"; done
    lk "$d/driver"; set -- "$@" "$v"
    lk "$d/iommu_group"; set -- "$@" "$v"
    echo "pci $*"
  done
  for c in /sys/devices/system/cpu/cpu[0-9]*; do
    t=$c/topology
    [ -d "$t" ] || continue
    set -- "${c##*/cpu}"
    for f in physical_package_id core_id; do rd "$t/$f"; set -- "$@" "$v"; done
    # a binary attribute since 5.15: the shell's byte-by-byte read gets nothing from it
    set -- "$@" "$(cat "$t/thread_siblings_list")"
    echo "cpu $*"
    for i in "$c"/cache/index*; do
      rd "$i/level"; [ "$v" = 3 ] || continue
      set -- "${c##*/cpu}"
      for f in id shared_cpu_list size; do rd "$i/$f"; set -- "$@" "$v"; done
      echo "l3 $*"
    done
  done
  for i in /sys/class/iommu/*; do [ -e "$i" ] && echo "iommu ${i##*/}"; done
  while read -r k rest; do
    case "$k" in vendor_id) echo "vendor_id : ${rest#: }"; break ;; esac
  done </proc/cpuinfo
  while read -r k rest; do
    case "$k" in MemTotal:) echo "MemTotal: $rest"; break ;; esac
  done </proc/meminfo
  for f in /dev/vfio/*; do [ -e "$f" ] && echo "vfio ${f##*/}"; done
  for h in /sys/kernel/mm/hugepages/hugepages-*kB; do
    [ -d "$h" ] || continue
    s=${h##*/hugepages-}; rd "$h/nr_hugepages"; echo "hugepages ${s%kB} $v"
  done
  read -r v </proc/cmdline; echo "cmdline $v"
}
