#!/usr/bin/env bash
# A real Debian kernel for the real-component tests (libvirt direct kernel boot under TCG,
# the QEMU lab with an emulated IOMMU, tests/lab/iommu-lab.sh): puts the vmlinuz of Debian's
# current linux-image-amd64 at $VFIOCTL_LAB_CACHE/vmlinuz (default /var/cache/vfioctl-lab/vmlinuz)
# and the modules of the same package at $VFIOCTL_LAB_CACHE/lib/modules/VERSION (so that
# `modinfo -b $VFIOCTL_LAB_CACHE -k VERSION` works), when they are not there yet. The first word
# of $VFIOCTL_LAB_CACHE/vmlinuz.version is VERSION. The package is downloaded (`apt-get
# download`) and unpacked with `dpkg -x`, never installed. Idempotent; prints what it did.
# Exit 0 with the kernel in place, 1 when it could not be fetched.
set -euo pipefail
cache=${VFIOCTL_LAB_CACHE:-/var/cache/vfioctl-lab}
dest="$cache/vmlinuz"

have=$(awk '{print $1; exit}' "$dest.version" 2>/dev/null || true)
if [ -s "$dest" ] && [ -n "$have" ] && [ -e "$cache/lib/modules/$have/modules.order" ]; then
  echo "lab kernel: $dest and $cache/lib/modules/$have are there ($(cat "$dest.version")); nothing to do"
  exit 0
fi
# A kernel cached before the modules were kept: fetch again, so that both come from one package.
if [ -s "$dest" ]; then echo "lab kernel: $dest is there but not its modules: fetching both again"; fi
command -v apt-get >/dev/null || { echo "lab kernel: no apt-get here: cannot fetch a Debian kernel" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d /tmp/vfioctl-kernel.XXXXXX)
trap 'rm -rf "$work"' EXIT
# apt-get download as root drops to the _apt user for the transfer: let it write here.
chmod 0777 "$work"
cd "$work"

download() { apt-get download -q=2 "$1" >/dev/null 2>"$work/apt.err"; }

echo "lab kernel: apt-get download linux-image-amd64"
if ! download linux-image-amd64; then
  cat "$work/apt.err" >&2
  echo "lab kernel: cannot download linux-image-amd64 (run apt-get update? network?)" >&2
  exit 1
fi
meta=$(ls linux-image-amd64_*.deb)
# The metapackage depends on the real image, e.g. `linux-image-6.1.0-56-amd64 (= 6.1.192-2)`
# (signed on amd64); an `-unsigned` build of the same name is tried when that is missing.
image=$(dpkg-deb -f "$meta" Depends | sed 's/[,|]/\n/g' | sed -n 's/^ *\(linux-image-[^ (]*\).*/\1/p' | head -1)
[ -n "$image" ] || { echo "lab kernel: $meta depends on no linux-image package" >&2; exit 1; }
got=""
for pkg in "$image" "$image-unsigned"; do
  echo "lab kernel: apt-get download $pkg"
  if download "$pkg"; then got=$pkg; break; fi
done
[ -n "$got" ] || { cat "$work/apt.err" >&2; echo "lab kernel: cannot download $image (signed or unsigned)" >&2; exit 1; }
deb=$(ls "${got}"_*.deb)
dpkg -x "$deb" "$work/x"
kernel=$(find "$work/x/boot" -maxdepth 1 -name 'vmlinuz-*' 2>/dev/null | head -1 || true)
[ -s "$kernel" ] || { echo "lab kernel: $deb holds no /boot/vmlinuz-*" >&2; exit 1; }
version=${kernel##*/vmlinuz-}
[ -e "$work/x/lib/modules/$version/modules.order" ] || { echo "lab kernel: $deb holds no /lib/modules/$version" >&2; exit 1; }
cp "$kernel" "$dest.tmp"
# The modules tree: other versions' trees go, this one is moved in whole.
mkdir -p "$cache/lib/modules"
rm -rf "$cache/lib/modules/$version.tmp"
mv "$work/x/lib/modules/$version" "$cache/lib/modules/$version.tmp"
find "$cache/lib/modules" -mindepth 1 -maxdepth 1 ! -name "$version.tmp" -exec rm -rf {} +
mv "$cache/lib/modules/$version.tmp" "$cache/lib/modules/$version"
# The .deb carries no modules.dep (the package's postinst makes it): make it here when kmod is
# installed (iommu-lab.sh runs depmod on its own initramfs tree anyway).
if command -v depmod >/dev/null; then depmod -b "$cache" "$version"; fi
printf '%s (%s)\n' "$version" "$(basename "$deb")" >"$dest.version"
mv "$dest.tmp" "$dest"
echo "lab kernel: $dest is Linux $version from $(basename "$deb"), modules in $cache/lib/modules/$version"
