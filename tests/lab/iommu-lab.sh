#!/usr/bin/env bash
# The IOMMU lab: vfioctl on a real Linux kernel with an emulated IOMMU (QEMU, TCG).
#
#   builds vfioctl and a small initramfs (busybox, kmod, the Debian kernel's vfio,
#   nvme, e1000e, bochs, aty128fb, snd_hda_intel and ext4 modules, vfioctl with its shared
#   libraries, /init = tests/lab/guest/init, the steps of tests/lab/guest/steps.sh), then boots
#   the kernel of tests/lab/kernel.sh on a passthrough-like q35 machine:
#     00:02.0 VGA (1234:1111, the boot display)
#     root port 1c.0 -> ati-vga (1002:5046, fn 0) + ich9-intel-hda (8086:293e, fn 1): the "GPU"
#     root port 1c.1 -> NVMe (a small ext4 image: the guest's /persist)
#     root port 1c.2 -> e1000e (8086:10d3)
#     root port 1c.3 -> a second ich9-intel-hda (8086:293e): the host's, with the id of the
#                       GPU's audio function, so that function is bound by address (issue 18)
#   once per variant, each with its own NVMe disk:
#     intel     -device intel-iommu,intremap=on,caching-mode=on, intel_iommu=on, GenuineIntel,
#               -smp 4,sockets=1,cores=2,threads=2
#     amd       -device amd-iommu,intremap=on, amd_iommu=on, AuthenticAMD,
#               -smp 4,sockets=2,cores=2,threads=1 (TCG has no topoext: an AMD guest sees no SMT)
#     no-iommu  no IOMMU device, no IOMMU parameter (GenuineIntel): check and list must fail,
#               check's remedy naming intel_iommu=on
#   with -m 4G (vfioctl plan keeps at least 2 GiB for the host and gives the guest at least 1 GiB),
#   and checks the outputs with tests/lab/iommu-lab-check.py (vfioctl against the guest's own
#   sysfs and lspci, the -smp topology QEMU was given, the expected plan and refusals). Prints
#   PASS/FAIL per check and a summary; exit 0 when everything passed, 1 on a failure.
#
# The disk is a Debian-like host configuration: etc/default/grub (GRUB_CMDLINE_LINUX="console=ttyS0
# panic=1", GRUB_CMDLINE_LINUX_DEFAULT with the variant's IOMMU parameters), etc/initramfs-tools/,
# etc/modprobe.d/, boot/grub/grub.cfg and boot/initrd.img-VERSION made by the regeneration stubs
# (tests/lab/guest/regen-stub, in the guest as update-grub, grub-mkconfig, update-initramfs), and
# var/lib/vfioctl/; /init bind-mounts them over the guest's /etc, /boot, /var/lib/vfioctl. Every
# guest boots with the `linux` line of the disk's boot/grub/grub.cfg (plus lab.steps=), as GRUB
# would. For the variants of VFIOCTL_LAB_SEQUENCE the same disk then goes through the round trip:
#   boot 1 (VARIANT)              the checks above, then `vfioctl apply gpu --memory 1G --yes`
#                                 (which edits /etc/default/grub, writes modprobe.d and the
#                                 initramfs modules, runs update-grub and update-initramfs) and
#                                 `status`
#   boot 2 (VARIANT-applied)      with the command line the regenerated grub.cfg holds:
#                                 `verify` passes (the GPU and its audio on vfio-pci, /dev/vfio/N,
#                                 the modules, the parameters, the hugepage), every other device
#                                 on its boot-1 driver, `list` matches sysfs; then
#                                 `rollback --yes`, after which the disk's etc/ and boot/ must
#                                 be the first boot's byte for byte
#   boot 3 (VARIANT-rolled-back)  the original command line again: every device on its boot-1
#                                 driver, `verify` fails naming the two devices, `status` says
#                                 rolled back
#   A boot is skipped (a failure) when the step it depends on (apply, rollback) failed.
#
# How a boot is driven: the kernel command line names the steps (`lab.steps=sysfs,list,plan`);
# /init runs each (a function step_NAME of guest/steps.sh, or a file /lab/steps/NAME) and prints
# its stdout, stderr and exit code between ==== BEGIN NAME ==== / ==== STDERR NAME ==== /
# ==== END NAME rc=N ==== on the second serial port (lab.log), and also writes them to
# /persist/lab/ on the NVMe disk, which is read back here with debugfs (persist/).
#
# Environment:
#   VFIOCTL_LAB_CACHE     kernel, modules and initramfs cache (default /var/cache/vfioctl-lab;
#                         the initramfs is an uncompressed cpio: the fastest to unpack under TCG)
#   VFIOCTL_LAB_LOGS      where each boot's logs are kept (default /tmp/vfioctl-lab-logs), in
#                         BOOT/ (VARIANT, VARIANT-applied, VARIANT-rolled-back; replaced on each
#                         run): console.log (ttyS0: kernel and /init), lab.log (ttyS1: the step
#                         blocks), persist/ (what the guest wrote in /persist/lab, with
#                         commands.log: the regeneration commands that ran), disk/ (etc/, boot/,
#                         vfioctl/ = var/lib/vfioctl of the disk after the boot), seed/ (boot 1:
#                         the disk's files before it), cmdline (what the guest was booted with),
#                         qemu.cmd, qemu.out, smp, seconds, check.txt. On a failure the tail of
#                         the boot's console and of the failing steps is printed too (CI keeps
#                         its output).
#   VFIOCTL_LAB_TAIL      lines of a failed boot's console and of each failing step printed (40)
#   VFIOCTL_LAB_VARIANTS  which variants (default "intel amd no-iommu")
#   VFIOCTL_LAB_SEQUENCE  which of them (intel, amd) also apply, reboot, verify, roll back and
#                         reboot (default "intel amd"; "" for none). On 2 cores: intel's 3 boots
#                         about 25 + 18 + 15 s, amd's 19 + 17 + 14 s, no-iommu 15 s: the whole
#                         lab about 2 min 10 s with the kernel cached.
#   VFIOCTL_LAB_TIMEOUT   seconds per boot before QEMU is killed (default 120)
#   VFIOCTL_LAB_STALL     seconds without console output before /init after which a boot counts
#                         as a hung kernel: killed and booted once more (default 30)
#   VFIOCTL_LAB_ACCEL     QEMU's -accel, tcg[,OPTIONS] (default tcg,thread=single: one host
#                         thread for the guest's 4 CPUs was as fast as multi-threaded TCG on 2
#                         cores, and leaves a core to the host)
#   VFIOCTL_LAB_PROFILE   cargo profile of the vfioctl built: dev (default: `cargo build -p vfioctl`,
#                         about 1 min cold on 2 cores and the same build `cargo test` reuses;
#                         debug info is stripped in the initramfs) or release (about 4.5 min
#                         cold with thin LTO; each vfioctl run in the guest is ~0.3 s faster)
#   VFIOCTL_LAB_BIN       a vfioctl binary to use instead of building one
#   VFIOCTL_REQUIRE_LAB=1 a missing prerequisite (QEMU, the kernel download) fails instead of
#                         skipping
# Needs root only to install kmod when it is missing (and to write the default cache); QEMU runs
# with -accel tcg (never kvm).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VFIOCTL_LAB_CACHE:-/var/cache/vfioctl-lab}
logs=${VFIOCTL_LAB_LOGS:-/tmp/vfioctl-lab-logs}
variants=${VFIOCTL_LAB_VARIANTS:-intel amd no-iommu}
sequence=${VFIOCTL_LAB_SEQUENCE-intel amd}
for v in $variants; do
  case "$v" in intel|amd|no-iommu) ;; *) echo "iommu-lab: unknown variant $v (intel, amd, no-iommu)" >&2; exit 2 ;; esac
done
for v in $sequence; do
  case "$v" in intel|amd) ;; *) echo "iommu-lab: VFIOCTL_LAB_SEQUENCE: $v cannot apply (intel, amd)" >&2; exit 2 ;; esac
done
boot_timeout=${VFIOCTL_LAB_TIMEOUT:-120}
stall_after=${VFIOCTL_LAB_STALL:-30}
accel=${VFIOCTL_LAB_ACCEL:-tcg,thread=single}
case "$accel" in tcg|tcg,*) ;; *) echo "iommu-lab: VFIOCTL_LAB_ACCEL=$accel: the lab runs TCG only (tcg[,OPTIONS])" >&2; exit 2 ;; esac
mem=4G
export VFIOCTL_LAB_CACHE=$cache

log() { echo "iommu-lab: $*"; }
skip() {
  if [ "${VFIOCTL_REQUIRE_LAB:-0}" = 1 ]; then log "FAIL: $* (VFIOCTL_REQUIRE_LAB=1)"; exit 1; fi
  log "SKIPPED: $*"; exit 0
}
now() { date +%s.%N; }
export PATH=$PATH:/usr/sbin:/sbin
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
t_start=$(now)

# --- prerequisites ----------------------------------------------------------------------------
if ! command -v kmod >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    log "installing kmod (its modprobe applies modprobe.d and vfio-pci.ids= in the guest)"
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kmod >/dev/null 2>&1 || true
  fi
fi
kmod_bin=$(command -v kmod || true)
if [ -z "$kmod_bin" ] || ! command -v modprobe >/dev/null || ! command -v depmod >/dev/null; then
  skip "no kmod (apt-get install kmod)"
fi
command -v qemu-system-x86_64 >/dev/null || skip "no qemu-system-x86_64 (apt-get install qemu-system-x86)"
busybox=""
for b in /bin/busybox /usr/bin/busybox; do
  if [ -x "$b" ] && ! ldd "$b" >/dev/null 2>&1; then busybox=$b; break; fi
done
[ -n "$busybox" ] || skip "no static busybox (apt-get install busybox-static)"
for tool in python3 mkfs.ext4 debugfs ldd timeout; do
  command -v "$tool" >/dev/null || skip "no $tool"
done

# --- kernel and modules -----------------------------------------------------------------------
bash "$here/kernel.sh" || skip "no lab kernel (tests/lab/kernel.sh could not fetch one)"
kver=$(awk '{print $1; exit}' "$cache/vmlinuz.version")
kernel="$cache/vmlinuz"
mods="$cache/lib/modules/$kver"
[ -e "$mods/modules.order" ] || skip "no modules for $kver in $cache/lib/modules"
# kernel.sh makes modules.dep only when kmod was there: the dependencies below need it.
[ -e "$mods/modules.dep" ] || depmod -b "$cache" "$kver"

# PVH: QEMU starts the uncompressed ELF of the same kernel (CONFIG_PVH) at its PVH entry,
# which saves the 3-4 s TCG spends in the bzImage's xz decompressor. VFIOCTL_LAB_PVH=0 boots
# the bzImage. Falls back to it when the kernel is not xz-compressed or has no PVH note.
boot_kernel=$kernel
if [ "${VFIOCTL_LAB_PVH:-1}" = 1 ]; then
  vmlinux="$cache/iommu-lab/vmlinux-$kver"
  if [ ! -s "$vmlinux" ] || [ "$vmlinux" -ot "$kernel" ]; then
    mkdir -p "$cache/iommu-lab"
    rm -f "$cache"/iommu-lab/vmlinux-*
    if python3 - "$kernel" "$vmlinux.tmp" <<'EOF_PY'; then mv "$vmlinux.tmp" "$vmlinux"; else rm -f "$vmlinux.tmp"; fi
import lzma, struct, sys
data = open(sys.argv[1], "rb").read()
off = data.find(b"\xfd7zXZ\x00")
if off < 0:
    sys.exit("not xz-compressed")
elf = lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data[off:])
if elf[:4] != b"\x7fELF":
    sys.exit("no ELF inside")
phoff, = struct.unpack_from("<Q", elf, 0x20)
phentsize, phnum = struct.unpack_from("<HH", elf, 0x36)
pvh = False
for i in range(phnum):
    ptype, _, poff, _, _, filesz = struct.unpack_from("<IIQQQQ", elf, phoff + i * phentsize)
    if ptype != 4:  # PT_NOTE
        continue
    p, end = poff, poff + filesz
    while p + 12 <= end:
        namesz, descsz, ntype = struct.unpack_from("<III", elf, p)
        name = elf[p + 12:p + 12 + namesz].rstrip(b"\0")
        pvh |= name == b"Xen" and ntype == 18  # XEN_ELFNOTE_PHYS32_ENTRY
        p += 12 + (namesz + 3) // 4 * 4 + (descsz + 3) // 4 * 4
if not pvh:
    sys.exit("no PVH entry note")
open(sys.argv[2], "wb").write(elf)
EOF_PY
  fi
  if [ -s "$vmlinux" ]; then boot_kernel=$vmlinux; else log "booting the bzImage (no PVH kernel could be made)"; fi
fi

# --- vfioctl ----------------------------------------------------------------------------------
t=$(now)
if [ -n "${VFIOCTL_LAB_BIN:-}" ]; then
  bin=$VFIOCTL_LAB_BIN
else
  profile=${VFIOCTL_LAB_PROFILE:-dev}
  log "cargo build --profile $profile -p vfioctl"
  bin=$(cd "$repo" && cargo build --profile "$profile" -p vfioctl --message-format=json-render-diagnostics |
    python3 -c 'import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["name"] == "vfioctl":
        print(m["executable"])')
fi
[ -x "$bin" ] || { log "FAIL: no vfioctl binary ($bin)"; exit 1; }
t_build=$(since "$t")
log "vfioctl: $bin (${t_build}s)"

# --- initramfs (cached by kernel version and the hash of everything that goes in) --------------
# The modules the guest loads; their dependencies (and softdeps) are added from the kernel's tree.
want_modules="vfio vfio_iommu_type1 vfio_pci vfio_pci_core irqbypass vfio_virqfd nvme e1000e
  bochs aty128fb snd_hda_intel ext4 kvm kvm_intel kvm_amd"
lspci_bin=$(command -v lspci || true)
key=$( {
  echo "$kver"; echo "$want_modules"
  sha256sum "$bin" "$here/iommu-lab.sh" "$here/guest/init" "$here/guest/steps.sh" "$here/guest/regen-stub" "$kmod_bin" "$busybox" "$kernel" ${lspci_bin:+"$lspci_bin"} | awk '{print $1}'
} | sha256sum | cut -c1-16)
initrd="$cache/iommu-lab/initramfs-$key.cpio"

work=$(mktemp -d "${TMPDIR:-/tmp}/vfioctl-iommu-lab.XXXXXX")
qemu_pid=""
# Interrupted (CI cancelling the job): the running guest goes too, then the work directory.
# shellcheck disable=SC2317 # called by the trap
cleanup() {
  if [ -n "$qemu_pid" ]; then kill "$qemu_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# copy_with_libs FILE DEST_IN_ROOT: FILE at DEST, and every shared library ldd names for it at
# its own path (plus the dynamic loader).
copy_with_libs() {
  local src=$1 dest=$2 lib
  install -D -m 0755 "$src" "$root$dest"
  ldd "$src" 2>/dev/null | awk '/=> \//{print $3} /^\t\//{print $1}' | while read -r lib; do
    [ -e "$root$lib" ] && continue
    install -D -m 0755 "$(readlink -f "$lib")" "$root$lib"
  done
}

build_initramfs() {
  root="$work/initramfs"
  mkdir -p "$root"/{bin,sbin,usr/bin,usr/sbin,etc/modprobe.d,lab/steps,lib/modules,proc,sys,dev,tmp,run,root,var/lib,persist}
  install -m 0755 "$busybox" "$root/bin/busybox"
  local applet
  for applet in $("$busybox" --list); do
    case "$applet" in busybox|modprobe|insmod|rmmod|lsmod|depmod|modinfo) continue ;; esac
    ln -sf /bin/busybox "$root/bin/$applet"
  done
  copy_with_libs "$kmod_bin" /bin/kmod
  for applet in modprobe insmod rmmod lsmod depmod modinfo; do
    ln -sf /bin/kmod "$root/sbin/$applet"
  done
  copy_with_libs "$bin" /usr/bin/vfioctl
  # A dev build is 60 MB of debug info: 3 s more to load and unpack under TCG.
  if command -v strip >/dev/null; then strip --strip-debug "$root/usr/bin/vfioctl"; fi
  if [ -n "$lspci_bin" ]; then copy_with_libs "$lspci_bin" /usr/bin/lspci; fi
  install -m 0755 "$here/guest/init" "$root/init"
  install -m 0644 "$here/guest/steps.sh" "$root/lab/steps.sh"
  install -m 0755 "$here/guest/regen-stub" "$root/usr/sbin/update-initramfs"
  ln -s update-initramfs "$root/usr/sbin/update-grub"
  ln -s update-initramfs "$root/usr/sbin/grub-mkconfig"
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\nkvm:x:101:\n' >"$root/etc/group"
  printf '127.0.0.1 localhost\n' >"$root/etc/hosts"
  if [ -e /usr/share/misc/pci.ids ]; then install -D -m 0644 /usr/share/misc/pci.ids "$root/usr/share/misc/pci.ids"; fi

  # Modules: each wanted one (when this kernel has it) with what modprobe would load first.
  local m path rel dest="$root/lib/modules/$kver"
  mkdir -p "$dest"
  for m in $want_modules; do
    modprobe -d "$cache" -S "$kver" --show-depends "$m" 2>/dev/null | awk '$1 == "insmod" {print $2}' |
      while read -r path; do
        rel=${path#"$mods"/}
        install -D -m 0644 "$path" "$dest/$rel"
      done || true
  done
  cp "$mods"/modules.order "$mods"/modules.builtin "$mods"/modules.builtin.modinfo "$dest/"
  depmod -b "$root" "$kver"
  (cd "$root" && find . | LC_ALL=C sort | "$busybox" cpio -o -H newc -R 0:0 2>/dev/null) >"$work/initramfs.cpio"
  mkdir -p "$(dirname "$initrd")"
  find "$(dirname "$initrd")" -name 'initramfs-*' -delete
  mv "$work/initramfs.cpio" "$initrd"
  log "initramfs: $initrd ($(du -h "$initrd" | cut -f1), $(find "$dest" -name '*.ko*' | wc -l) modules)"
}

t=$(now)
if [ -s "$initrd" ]; then
  log "initramfs: $initrd (cached)"
else
  log "building the initramfs for $kver"
  build_initramfs
fi
t_initrd=$(since "$t")

# --- boots ------------------------------------------------------------------------------------
mkdir -p "$logs"
log "logs in $logs"

# make_seed VARIANT DIR: the first boot's disk contents, a Debian-like host configuration.
make_seed() {
  local v=$1 seed=$2 params=""
  case "$v" in
    intel) params="intel_iommu=on iommu=pt" ;;
    amd) params="amd_iommu=on iommu=pt" ;;
  esac
  rm -rf "$seed"
  mkdir -p "$seed"/{etc/default,etc/initramfs-tools,etc/modprobe.d,boot/grub,var/lib/vfioctl}
  # The disk's etc/ hides the initramfs' /etc: the same few files.
  printf 'root:x:0:0:root:/root:/bin/sh\n' >"$seed/etc/passwd"
  printf 'root:x:0:\nkvm:x:101:\n' >"$seed/etc/group"
  printf '127.0.0.1 localhost\n' >"$seed/etc/hosts"
  {
    echo "# If you change this file, run 'update-grub' afterwards to update"
    echo "# /boot/grub/grub.cfg."
    echo "# For full documentation of the options in this file, see:"
    echo "#   info -f grub -n 'Simple configuration'"
    echo
    echo "GRUB_DEFAULT=0"
    echo "GRUB_TIMEOUT=5"
    # shellcheck disable=SC2016 # Debian's line, for grub-mkconfig's shell
    echo 'GRUB_DISTRIBUTOR=`lsb_release -i -s 2> /dev/null || echo Debian`'
    echo "GRUB_CMDLINE_LINUX_DEFAULT=\"$params\""
    echo 'GRUB_CMDLINE_LINUX="console=ttyS0 panic=1"'
    echo
    echo "# Uncomment to disable graphical terminal (grub-pc only)"
    echo "#GRUB_TERMINAL=console"
  } >"$seed/etc/default/grub"
  printf '%s\n' "# List of modules that you want to include in your initramfs." \
    "# They will be loaded at boot time in the order below." "#" "# Syntax:  module_name [args ...]" "#" \
    "# You must run update-initramfs(8) to effect this change." "#" "# Examples:" "#" "# raid1" "# sd_mod" \
    >"$seed/etc/initramfs-tools/modules"
  printf '%s\n' "MODULES=most" "BUSYBOX=auto" "COMPRESS=zstd" >"$seed/etc/initramfs-tools/initramfs.conf"
  # grub.cfg and the initramfs as the installer left them: made by the guest's own stubs.
  LAB_ROOT=$seed LAB_KVER=$kver LAB_CMD=update-grub sh "$here/guest/regen-stub" >/dev/null
  LAB_ROOT=$seed LAB_KVER=$kver LAB_CMD=update-initramfs sh "$here/guest/regen-stub" -u -k all >/dev/null
}

# disk_cmdline IMAGE: what GRUB would boot: the `linux` line of the disk's /boot/grub/grub.cfg,
# after the kernel's path.
disk_cmdline() {
  debugfs -R "cat /boot/grub/grub.cfg" "$1" 2>/dev/null |
    awk '$1 == "linux" { $1 = ""; $2 = ""; sub(/^ +/, ""); print; exit }'
}

# boot NAME VARIANT STEPS IMAGE: runs the guest of VARIANT on the disk IMAGE with the command
# line of its grub.cfg and lab.steps=STEPS, keeps its logs in $logs/NAME; sets boot_seconds.
boot() {
  local name=$1 v=$2 steps=$3 img=$4 out="$logs/$1" smp vendor iommu_dev=() cmdline rc
  rm -rf "$out"; mkdir -p "$out"
  case "$v" in
    intel)
      smp="4,sockets=1,cores=2,threads=2"; vendor=GenuineIntel
      # shellcheck disable=SC2054 # QEMU's option syntax
      iommu_dev=(-device intel-iommu,intremap=on,caching-mode=on) ;;
    amd)
      smp="4,sockets=2,cores=2,threads=1"; vendor=AuthenticAMD
      # shellcheck disable=SC2054 # QEMU's option syntax
      iommu_dev=(-device amd-iommu,intremap=on) ;;
    no-iommu)
      smp="4,sockets=1,cores=2,threads=2"; vendor=GenuineIntel ;;
  esac
  echo "$smp" >"$out/smp"
  boot_seconds=0
  cmdline=$(disk_cmdline "$img")
  echo "$cmdline" >"$out/cmdline"
  if [ -z "$cmdline" ]; then
    log "$name: not booted: no linux line in the disk's /boot/grub/grub.cfg"
    return 0
  fi
  log "$name: booting with $cmdline lab.steps=$steps"
  # Not -cpu max,-svm for an Intel without svm: static glibc (busybox) then aborts in
  # _dl_get_origin under TCG. TCG offers svm but no vmx, so the Intel guest has svm.
  # shellcheck disable=SC2054 # QEMU's option syntax
  local cmd=(qemu-system-x86_64 -accel "$accel" -cpu "max,vendor=$vendor" -m "$mem" -smp "$smp"
    -machine q35,kernel-irqchip=split "${iommu_dev[@]}"
    -nodefaults -display none -monitor none -no-reboot
    -serial "file:$out/console.log" -serial "file:$out/lab.log"
    -kernel "$boot_kernel" -initrd "$initrd" -append "$cmdline no_timer_check lab.steps=$steps"
    -device VGA,addr=02.0
    -device pcie-root-port,id=rp1,chassis=1,addr=1c.0,multifunction=on
    -device ati-vga,bus=rp1,addr=00.0,multifunction=on
    -device ich9-intel-hda,bus=rp1,addr=00.1
    -device pcie-root-port,id=rp2,chassis=2,addr=1c.1
    -drive "file=$img,if=none,id=disk0,format=raw"
    -device nvme,serial=vfioctl-lab,drive=disk0,bus=rp2
    -device pcie-root-port,id=rp3,chassis=3,addr=1c.2
    -netdev user,id=net0 -device e1000e,netdev=net0,bus=rp3
    -device pcie-root-port,id=rp4,chassis=4,addr=1c.3
    -device ich9-intel-hda,bus=rp4)
  printf '%q ' "${cmd[@]}" >"$out/qemu.cmd"; echo >>"$out/qemu.cmd"
  local t0 tries=0 stalled size quiet now_size
  while :; do
    t0=$(now); rc=0; stalled=0; size=-1; quiet=0
    # In the background, so that a signal to this script runs its trap at once (which stops
    # QEMU through timeout) instead of after the boot; and watched: a kernel that prints
    # nothing for $stall_after s before it reaches /init has hung (seen once in a few dozen
    # boots under TCG, in early ACPI setup); it is killed and booted once more (the disk is
    # not mounted before /init).
    timeout --kill-after=5 "$boot_timeout" "${cmd[@]}" >"$out/qemu.out" 2>&1 </dev/null &
    qemu_pid=$!
    while kill -0 "$qemu_pid" 2>/dev/null; do
      sleep 1
      if grep -q "Run /init as init process" "$out/console.log" 2>/dev/null; then break; fi
      now_size=$(stat -c %s "$out/console.log" 2>/dev/null || echo 0)
      if [ "$now_size" = "$size" ]; then quiet=$((quiet + 1)); else quiet=0; size=$now_size; fi
      if [ "$quiet" -ge "$stall_after" ]; then stalled=1; kill "$qemu_pid" 2>/dev/null || true; break; fi
    done
    wait "$qemu_pid" || rc=$?
    qemu_pid=""
    # A panic before /init (seen under load: "timer doesn't work through
    # Interrupt-remapped IO-APIC") is the busy machine, not vfioctl: booted again too.
    if [ "$stalled" = 0 ] && ! grep -q "Run /init as init process" "$out/console.log" 2>/dev/null &&
      grep -q "Kernel panic" "$out/console.log" 2>/dev/null; then
      stalled=1
      log "$name: the kernel panicked before /init: $(grep -m1 "Kernel panic" "$out/console.log")"
    fi
    if [ "$stalled" = 0 ] || [ "$tries" -ge 2 ]; then break; fi
    tries=$((tries + 1))
    log "$name: the kernel stalled or panicked before /init (see $out/console.stalled.log): booting once more"
    mv "$out/console.log" "$out/console.stalled.log"
    rm -f "$out/lab.log"
  done
  boot_seconds=$(since "$t0")
  if [ "$stalled" = 1 ]; then log "$name: the kernel stalled or panicked before /init again"; fi
  echo "$boot_seconds" >"$out/seconds"
  if [ "$rc" = 124 ] || [ "$rc" = 137 ]; then
    log "$name: QEMU killed after ${boot_timeout}s (see $out/console.log)"
  elif [ "$rc" != 0 ]; then
    log "$name: QEMU exited $rc: $(tail -3 "$out/qemu.out")"
  fi
  # What the guest left on its disk: its step results, and the host configuration the next
  # boot of the sequence starts from.
  mkdir -p "$out/disk"
  debugfs -R "rdump /lab /etc /boot /var/lib/vfioctl $out/disk" "$img" >/dev/null 2>&1 || true
  if [ -d "$out/disk/lab" ]; then mv "$out/disk/lab" "$out/persist"; fi
  if [ "$rc" = 0 ]; then log "$name: booted and powered off in ${boot_seconds}s"; fi
  return 0
}

# guest_timing CONSOLE_LOG: where the guest's time went, from the kernel's timestamps and
# the step lines /init prints ("lab-guest: step NAME: rc=N (Xs, uptime Ys)").
guest_timing() {
  awk 'function ts(l) { sub(/^\[ */, "", l); sub(/\].*/, "", l); return l + 0 }
       /Run \/init as init process/ { init = ts($0) }
       /^lab-guest: step / { n = $3; sub(/:$/, "", n); t = $5; gsub(/[(s,]/, "", t); steps = steps n " " t "s, " }
       /reboot: Power down/ { off = ts($0) }
       END { printf "kernel to /init %.1fs, %spower off at %.1fs", init, steps, off }' "$1" 2>/dev/null || true
}

# show_failure DIR: the end of a failed boot's console and the blocks of the steps that exited
# non-zero, into this script's output (CI keeps that, not the files).
show_failure() {
  local d=$1 lines=${VFIOCTL_LAB_TAIL:-40}
  echo "---- $d/console.log (last $lines lines) ----"
  if [ -e "$d/console.log" ]; then tail -n "$lines" "$d/console.log" | tr -d '\r'; else echo "(no console.log)"; fi
  echo "---- $d/lab.log: the steps that finished ----"
  grep -a '^==== END ' "$d/lab.log" 2>/dev/null || echo "(none)"
  echo "---- $d/lab.log: the steps that exited non-zero (at most $lines lines of stdout and of stderr) ----"
  awk -v max="$lines" '/^==== (BEGIN|STDERR) / { n = 0; buf = buf $0 "\n"; next }
       /^==== END / { if ($0 ~ / rc=[1-9][0-9]* ====$/) printf "%s%s\n", buf, $0; buf = ""; next }
       { if (++n <= max) buf = buf $0 "\n"; else if (n == max + 1) buf = buf "[…]\n" }' \
    "$d/lab.log" 2>/dev/null || true
  echo "---- end of $d ----"
}

status=0
summary=()
# check_boot NAME VARIANT [CHECKER OPTIONS…]: checks the boot in $logs/NAME, records the result.
check_boot() {
  local name=$1 v=$2 timing; shift 2
  timing=$(guest_timing "$logs/$name/console.log")
  if python3 "$here/iommu-lab-check.py" --variant "$v" --dir "$logs/$name" --smp "$(cat "$logs/$name/smp")" \
    --memory "$mem" "$@" | tee "$logs/$name/check.txt"; then
    summary+=("PASS  $name  (QEMU ${boot_seconds}s: $timing)")
  else
    summary+=("FAIL  $name  (QEMU ${boot_seconds}s: $timing; logs in $logs/$name)")
    show_failure "$logs/$name"
    status=1
  fi
}

# step_rc DIR STEP: the exit code the guest recorded for a step ("" when it did not run).
step_rc() { cat "$1/persist/$2.rc" 2>/dev/null || true; }

for v in $variants; do
  case "$v" in
    intel) steps="sysfs,lspci,list,list-lspci,list-text,topology,check,check-text,plan,plan-text" ;;
    amd) steps="sysfs,list,topology,check,plan,plan-nvme,plan-boot-vga" ;;
    no-iommu) steps="sysfs,list,check,check-text" ;;
  esac
  stage=()
  if [[ " $sequence " == *" $v "* ]]; then steps+=",apply,status"; stage=(--stage host); fi
  # The NVMe disk: an ext4 image, the guest's /persist and its host configuration.
  make_seed "$v" "$work/$v-seed"
  img="$work/$v.img"
  mkfs.ext4 -q -F -L lab-persist -d "$work/$v-seed" "$img" 32M >/dev/null
  boot "$v" "$v" "$steps" "$img"
  cp -a "$work/$v-seed" "$logs/$v/seed"
  check_boot "$v" "$v" "${stage[@]}"
  [ ${#stage[@]} -gt 0 ] || continue

  # The round trip, on the same disk: boot 2 with what apply wrote, boot 3 after the rollback.
  rc=$(step_rc "$logs/$v" apply)
  if [ "$rc" != 0 ]; then
    summary+=("FAIL  $v-applied  (not booted: apply in $v ${rc:+exited $rc}${rc:-did not run}; see $logs/$v)"); status=1; continue
  fi
  boot "$v-applied" "$v" "sysfs,list,verify,verify-text,status,rom,rollback" "$img"
  check_boot "$v-applied" "$v" --stage applied --first "$logs/$v"
  rc=$(step_rc "$logs/$v-applied" rollback)
  if [ "$rc" != 0 ]; then
    summary+=("FAIL  $v-rolled-back  (not booted: rollback in $v-applied ${rc:+exited $rc}${rc:-did not run}; see $logs/$v-applied)")
    status=1; continue
  fi
  boot "$v-rolled-back" "$v" "sysfs,verify,verify-text,status" "$img"
  check_boot "$v-rolled-back" "$v" --stage rolled-back --first "$logs/$v"
done

echo
log "summary (kernel $kver; vfioctl build ${t_build}s, initramfs ${t_initrd}s, total $(since "$t_start")s; logs in $logs):"
printf '  %s\n' "${summary[@]}"
if [ "$status" = 0 ]; then log "PASS"; else log "FAIL (logs in $logs)"; fi
exit "$status"
