#!/usr/bin/env bash
# Installs the .deb into a clean Debian 12 (bookworm) chroot, as a user would with apt, and runs
# it there: `longlive --version`, `longlive presets`, and the studio's --self-test (tiny model,
# two blocks on screen) under Xvfb.
#   packaging/test_deb.sh [path/to/longlive-studio_*.deb]   (default: the newest in build/)
# Needs root, debootstrap (apt-get install debootstrap) and deb.debian.org. The debootstrapped
# base is kept as a tarball ($LONGLIVE_DEB_BASE, default build/debian12-base.tar) and every run
# installs into a fresh copy of it, removed afterwards.
set -euo pipefail
repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
deb=${1:-$(ls -t "$repo"/build/longlive-studio_*.deb 2>/dev/null | head -1)}
base=${LONGLIVE_DEB_BASE:-$repo/build/debian12-base.tar}
mirror=${LONGLIVE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
say() { printf '\033[1m[test_deb]\033[0m %s\n' "$*"; }

[ -f "$deb" ] || { say "no .deb given or found in build/ (cmake --build build --target package)"; exit 2; }
[ "$(id -u)" -eq 0 ] || { say "needs root (chroot, mounts)"; exit 2; }
command -v debootstrap >/dev/null || { say "needs debootstrap: apt-get install debootstrap"; exit 2; }

if [ ! -f "$base" ]; then
  say "debootstrapping Debian 12 from $mirror into $base"
  tmp=$(mktemp -d)
  debootstrap --variant=minbase bookworm "$tmp" "$mirror" >"$base.log" 2>&1 ||
    { tail -20 "$base.log"; rm -rf "$tmp"; exit 1; }
  tar -C "$tmp" -cf "$base" .
  rm -rf "$tmp"
fi

root=$(mktemp -d /tmp/longlive-deb-XXXXXX)
cleanup() {
  for m in dev/pts dev proc sys; do umount -l "$root/$m" 2>/dev/null || true; done
  rm -rf --one-file-system "$root"
}
trap cleanup EXIT
tar -C "$root" -xf "$base"
mount -t proc proc "$root/proc"
mount --rbind /sys "$root/sys"
mount --rbind /dev "$root/dev"
cp /etc/resolv.conf "$root/etc/resolv.conf"
cp "$deb" "$root/tmp/"
in_root() { chroot "$root" /usr/bin/env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin HOME=/root "$@"; }

say "apt install ./$(basename "$deb") (and xvfb for the self-test)"
in_root apt-get update -qq
in_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
  "/tmp/$(basename "$deb")" xvfb xauth >"$root/tmp/apt.log" 2>&1 ||
  { tail -30 "$root/tmp/apt.log"; exit 1; }

fail=0
check() {  # name, expected regex, command...
  local name=$1 expect=$2
  shift 2
  local out
  if out=$(in_root "$@" 2>&1) && grep -Eq "$expect" <<<"$out"; then
    say "ok: $name"
  else
    say "FAILED: $name"
    printf '%s\n' "$out" | tail -20
    fail=1
  fi
}
version=$(sed -n 's/^project(LongLiveStudio VERSION \([0-9.]*\).*/\1/p' "$repo/CMakeLists.txt")
check "longlive --version" "^longlive $version\$" longlive --version
check "longlive presets" "^balanced .*" longlive presets
if in_root test -x /usr/bin/longlive-studio; then
  check "longlive-studio --self-test (Xvfb)" "self-test passed" \
    env QT_QPA_PLATFORM=xcb LIBGL_ALWAYS_SOFTWARE=1 HOME=/tmp \
    timeout 300 xvfb-run -a -s "-screen 0 1280x900x24" longlive-studio --self-test
else
  say "FAILED: /usr/bin/longlive-studio is not in the package (built with LONGLIVE_GUI=OFF?)"
  fail=1
fi
exit $fail
