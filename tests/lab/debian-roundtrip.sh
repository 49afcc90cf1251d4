#!/usr/bin/env bash
# A real round trip on a real Debian root:
#   debootstrap a bookworm root (cached), give it the PCI/CPU view of the r2600x example host,
#   `vfioctl --root ROOT apply` runs the real update-initramfs inside it (chroot), and
#   lsinitramfs must show the vfio modules and vfio-pci's options in the new initramfs;
#   the same apply again changes nothing and writes no journal; an apply with other memory
#   and page size replaces the first one's; `rollback` returns to the first apply's files;
#   `rollback --all` must restore every file byte for byte (mode and owner too) and
#   rebuild the initramfs without them.
# Skips (exit 0, with a clear message) when debootstrap cannot run here (no root, no
# network to the Debian mirror). Cache: $VFIOCTL_LAB_CACHE (default /var/cache/vfioctl-lab).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
cache=${VFIOCTL_LAB_CACHE:-/var/cache/vfioctl-lab}
base="$cache/bookworm"
skip() { echo "lab: SKIPPED: $*"; exit 0; }

[ "$(id -u)" = 0 ] || skip "needs root (debootstrap, chroot)"
if ! command -v debootstrap >/dev/null; then
  if command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null 2>&1 || skip "cannot install debootstrap"
  else
    skip "no debootstrap"
  fi
fi
mirror=$(sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/debian.sources 2>/dev/null | head -1)
[ -n "$mirror" ] || mirror=$(awk '/^deb /{print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
[ -n "$mirror" ] || mirror=http://deb.debian.org/debian

if [ ! -e "$base/.complete" ]; then
  echo "lab: debootstrap bookworm into $base (once; cached)"
  rm -rf "$base"; mkdir -p "$cache"
  if ! debootstrap --variant=minbase --include=initramfs-tools,linux-image-amd64,kmod bookworm "$base" "$mirror" >"$cache/debootstrap.log" 2>&1; then
    tail -5 "$cache/debootstrap.log"
    skip "debootstrap failed (network or mirror); log in $cache/debootstrap.log"
  fi
  touch "$base/.complete"
fi

work=$(mktemp -d /tmp/vfioctl-lab.XXXXXX)
trap 'rm -rf "$work"' EXIT
root="$work/root"
echo "lab: copying the cached root"
cp -a "$base" "$root"
# The hardware view (PCI devices, CPUs, /proc) of the guide's Ryzen host, and its GRUB
# defaults; the rest (/etc, /usr, /boot, the kernel and initramfs-tools) is real Debian.
rm -rf "$root/sys" "$root/proc"
cp -a "$repo/examples/hosts/r2600x/sys" "$repo/examples/hosts/r2600x/proc" "$root/"
mkdir -p "$root/etc/default"
cp "$repo/examples/hosts/r2600x/etc/default/grub" "$root/etc/default/grub"
kver=$(find "$root/lib/modules" -mindepth 1 -maxdepth 1 -printf '%f\n' | sort | head -1)
printf '%s\n' "$kver" > "$root/proc/sys/kernel/osrelease"

vfioctl="$repo/target/debug/vfioctl"
[ -x "$vfioctl" ] || (cd "$repo" && cargo build -q -p vfioctl)
snapshot() { (cd "$root" && find etc boot -type f -print0 | sort -z | xargs -0 sha256sum; find etc boot -type f -printf '%p %m %U %G\n' | sort); }
before=$(snapshot)
initrd=$(find "$root/boot" -maxdepth 1 -name 'initrd.img-*' | sort | head -1)

echo "lab: vfioctl apply (runs update-initramfs in the root)"
"$vfioctl" --root "$root" apply gpu --vcpus 8 --memory 16G --hugepages 2M --yes | tee "$work/apply.txt"
grep -q "update-initramfs -u -k all: ok" "$work/apply.txt" || { echo "lab: FAIL: update-initramfs did not run in the root"; exit 1; }
listing=$(chroot "$root" lsinitramfs "/boot/$(basename "$initrd")")
for want in etc/modprobe.d/vfio.conf vfio-pci.ko vfio_iommu_type1.ko vfio.ko; do
  grep -q "$want" <<<"$listing" || { echo "lab: FAIL: $want not in the new initramfs"; exit 1; }
done
chroot "$root" unmkinitramfs "/boot/$(basename "$initrd")" /tmp/unpacked
grep -qs "options vfio-pci ids=10de:1b06,10de:10ef" "$root"/tmp/unpacked/etc/modprobe.d/vfio.conf "$root"/tmp/unpacked/main/etc/modprobe.d/vfio.conf \
  || { echo "lab: FAIL: vfio-pci's ids are not in the initramfs' modprobe.d"; exit 1; }
grep -q "^vfio_pci$" "$root/etc/initramfs-tools/modules" || { echo "lab: FAIL: modules not listed"; exit 1; }
"$vfioctl" --root "$root" status
journals() { find "$root/var/lib/vfioctl/journal" -mindepth 1 -maxdepth 1 -type d | wc -l; }
echo "lab: apply again: nothing to do, no new journal"
"$vfioctl" --root "$root" apply gpu --vcpus 8 --memory 16G --hugepages 2M --yes | grep -q "^Nothing to do" || { echo "lab: FAIL: second apply changed something"; exit 1; }
[ "$(journals)" = 1 ] || { echo "lab: FAIL: the same apply again wrote a journal ($(journals) journals)"; exit 1; }
applied_once=$(snapshot | grep -v "boot/initrd.img" || true)

echo "lab: apply with other memory and page size (1G pages, 8 GiB)"
"$vfioctl" --root "$root" apply gpu --vcpus 4 --memory 8G --hugepages 1G --yes | tee "$work/apply2.txt"
[ "$(journals)" = 2 ] || { echo "lab: FAIL: the second apply did not write its own journal"; exit 1; }
grep -q "hugepagesz=1G hugepages=8" "$root/etc/default/grub" || { echo "lab: FAIL: 1G pages not on GRUB's command line"; grep GRUB_CMDLINE "$root/etc/default/grub"; exit 1; }
if grep -q "hugepagesz=2M" "$root/etc/default/grub"; then echo "lab: FAIL: the first apply's 2M page size stayed"; exit 1; fi
"$vfioctl" --root "$root" apply gpu --vcpus 4 --memory 8G --hugepages 1G --yes | grep -q "^Nothing to do" || { echo "lab: FAIL: the second apply again changed something"; exit 1; }
[ "$(journals)" = 2 ] || { echo "lab: FAIL: the second apply again wrote a journal"; exit 1; }

echo "lab: rollback (the last apply only) returns to the first apply's files"
"$vfioctl" --root "$root" rollback --yes
[ "$(snapshot | grep -v "boot/initrd.img" || true)" = "$applied_once" ] \
  || { echo "lab: FAIL: rollback of the second apply did not return to the first one's files"; diff <(echo "$applied_once") <(snapshot | grep -v "boot/initrd.img") | head; exit 1; }
"$vfioctl" --root "$root" apply gpu --vcpus 4 --memory 8G --hugepages 1G --yes >/dev/null

echo "lab: vfioctl rollback --all"
"$vfioctl" --root "$root" rollback --all --yes
rm -rf "$root/tmp/unpacked"
after=$(snapshot | grep -v "boot/initrd.img" || true)
before_no_initrd=$(echo "$before" | grep -v "boot/initrd.img" || true)
[ "$after" = "$before_no_initrd" ] || { echo "lab: FAIL: rollback --all did not restore every file"; diff <(echo "$before_no_initrd") <(echo "$after") | head; exit 1; }
listing=$(chroot "$root" lsinitramfs "/boot/$(basename "$initrd")")
if grep -q "etc/modprobe.d/vfio.conf" <<<"$listing"; then echo "lab: FAIL: the rebuilt initramfs still has vfio.conf"; exit 1; fi
echo "lab: PASS: apply ran update-initramfs in a real Debian root, the initramfs got the vfio modules and options, a repeat wrote no journal, another apply replaced it, rollback --all restored every file and rebuilt it"
