#!/usr/bin/env bash
# Prove a dicube wheel on a bare Debian system: no libopenjph, no libzstd, no compiler.
#
#   bash tools/check_wheel.sh [WHEEL]    (default: the newest dist/dicube-*manylinux*.whl)
#
# Needs root (debootstrap, chroot, mount) and network access to a Debian mirror (first run)
# and to PyPI (the wheel's dependencies). Steps, each timed:
#   1. a minimal Debian bookworm root (debootstrap --variant=minbase, plus python3,
#      python3-venv, python3-pip), with libzstd1 purged; cached as a tarball in
#      ${DICUBE_CACHE:-$HOME/.cache/dicube}/bookworm-root.tar.zst and reused when present;
#   2. a fresh copy of it, with /proc and /dev/shm mounted (always unmounted on exit),
#      the host's resolv.conf and its pip index/proxy settings;
#   3. a venv in the chroot, `pip install` of the wheel (dependencies from PyPI);
#   4. `dicube demo`, tools/wheel_smoke.py (load/save/stream, libraries mapped) and `ldd`
#      of the extension: libopenjph and libzstd must come from dicube.libs/.
# DICUBE_DEBIAN_MIRROR overrides the mirror (default http://deb.debian.org/debian).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
wheel=${1:-$(ls -t "$repo"/dist/dicube-*manylinux*.whl 2>/dev/null | head -1 || true)}
[ -f "$wheel" ] || { echo "no wheel: run tools/build_wheel.sh first or name one" >&2; exit 2; }
wheel=$(cd "$(dirname "$wheel")" && pwd)/$(basename "$wheel")
[ "$(id -u)" -eq 0 ] || { echo "check_wheel.sh needs root (debootstrap, chroot, mount)" >&2; exit 2; }
cache=${DICUBE_CACHE:-$HOME/.cache/dicube}
tarball=$cache/bookworm-root.tar.zst
mirror=${DICUBE_DEBIAN_MIRROR:-http://deb.debian.org/debian}
mkdir -p "$cache"

phase_start=$(date +%s%3N)
phase_ms=0
phase() {  # phase NAME: print how long the phase just finished took (also in $phase_ms)
  local now; now=$(date +%s%3N)
  phase_ms=$((now - phase_start))
  printf '[%4d.%d s] %s\n' $((phase_ms / 1000)) $((phase_ms % 1000 / 100)) "$1"
  phase_start=$now
}
secs() { printf '%d.%d' $(($1 / 1000)) $(($1 % 1000 / 100)); }

# 1. the cached bare root
if [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq debootstrap >/dev/null; }
  new=$cache/bookworm-root.new
  rm -rf --one-file-system "$new"
  echo "debootstrap bookworm (minbase + python3, python3-venv, python3-pip) from $mirror"
  debootstrap --variant=minbase --include=python3,python3-venv,python3-pip \
    bookworm "$new" "$mirror" > "$cache/debootstrap.log" 2>&1 || {
    tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  # minbase has libzstd1 (dpkg uses it): purge it, the wheel must bring its own.
  chroot "$new" dpkg --purge --force-depends --force-remove-essential libzstd1 \
    >> "$cache/debootstrap.log" 2>&1
  rm -f "$new"/var/cache/apt/archives/*.deb "$new"/var/lib/apt/lists/*_Packages
  tar --numeric-owner -C "$new" -cf - . | zstd -q -T0 -o "$tarball.tmp"
  mv "$tarball.tmp" "$tarball"
  rm -rf --one-file-system "$new"
  phase "debootstrap (cached in $tarball)"
fi

# 2. a fresh copy with /proc and /dev/shm
work=$(mktemp -d /tmp/dicube-check.XXXXXX)
root=$work/root
cleanup() {
  for m in "$root/dev/shm" "$root/proc"; do
    mountpoint -q "$m" && { umount "$m" || umount -l "$m"; }
  done
  # only after the unmounts, and never across a file system boundary
  rm -rf --one-file-system "$work"
}
trap cleanup EXIT
mkdir -p "$root"
zstd -q -dc "$tarball" | tar --numeric-owner -C "$root" -xf -
mount -t proc proc "$root/proc"
mount -t tmpfs -o size=256m tmpfs "$root/dev/shm"
cp -L /etc/resolv.conf "$root/etc/resolv.conf"
for bad in gcc g++ cc c++; do
  [ ! -e "$root/usr/bin/$bad" ] || { echo "FAIL: the bare root has $bad" >&2; exit 1; }
done
if ls "$root"/usr/lib/*/libopenjph* "$root"/usr/lib/*/libzstd* >/dev/null 2>&1; then
  echo "FAIL: the bare root has a system libopenjph or libzstd" >&2; exit 1
fi
# The host's pip index, proxy and certificate settings (this machine may reach PyPI only
# through them); local paths (file:// indexes, find-links, constraints) exist only on the host.
python3 - "$root" <<'EOF'
import re, shutil, subprocess, sys
root = sys.argv[1]
out = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True,
                     text=True).stdout
keep = {"index-url", "extra-index-url", "trusted-host", "proxy", "timeout", "default-timeout",
        "retries", "cert", "client-cert"}
conf = {}
for line in out.splitlines():
    m = re.match(r"[^.]*\.([\w-]+)='(.*)'$", line)
    if not m or m.group(1) not in keep:
        continue
    key, value = m.groups()
    if key in ("cert", "client-cert"):
        dest = f"/etc/pip-host-{key}.pem"
        shutil.copyfile(value, root + dest)
        value = dest
    value = " ".join(v for v in value.split() if not v.startswith("file:"))
    if value:
        conf[key] = value
with open(root + "/etc/pip.conf", "w") as f:
    f.write("[global]\n" + "".join(f"{k} = {v}\n" for k, v in conf.items()))
print("pip settings from the host:", ", ".join(f"{k}={v}" for k, v in conf.items()) or "none")
EOF
cp "$wheel" "$repo/tools/wheel_smoke.py" "$root/tmp/"
phase "fresh bare root ready"

# 3. venv + pip install, 4. demo and smoke test, inside the chroot
in_root() {
  chroot "$root" /usr/bin/env -i HOME=/root LANG=C.UTF-8 PATH=/opt/venv/bin:/usr/bin:/bin \
    ${http_proxy:+http_proxy=$http_proxy} ${https_proxy:+https_proxy=$https_proxy} \
    ${no_proxy:+no_proxy=$no_proxy} ${HTTP_PROXY:+HTTP_PROXY=$HTTP_PROXY} \
    ${HTTPS_PROXY:+HTTPS_PROXY=$HTTPS_PROXY} ${NO_PROXY:+NO_PROXY=$NO_PROXY} "$@"
}
in_root python3 -m venv /opt/venv
in_root pip install -q --disable-pip-version-check "/tmp/$(basename "$wheel")"
phase "venv + pip install $(basename "$wheel") and its PyPI dependencies"
install_ms=$phase_ms
in_root dicube demo
phase "dicube demo"
demo_ms=$phase_ms
in_root python /tmp/wheel_smoke.py
in_root dicube info --build
ext=$(in_root python -c "import dicube._native as n; print(n.__file__)")
echo "ldd $ext:"
in_root ldd "$ext" | tee "$work/ldd.txt"
grep -E 'libopenjph|libzstd' "$work/ldd.txt" | grep -v '/dicube.libs/' && {
  echo "FAIL: a codec library is not the bundled one" >&2; exit 1; }
[ "$(grep -cE '(libopenjph|libzstd)[^ ]* => /opt/venv/.*/dicube.libs/' "$work/ldd.txt")" -eq 2 ] || {
  echo "FAIL: libopenjph and libzstd not both resolved to dicube.libs/" >&2; exit 1; }
phase "smoke test and ldd"
echo "PASS: $(basename "$wheel") on bare Debian bookworm (Python $(in_root python -c 'import platform; print(platform.python_version())')):" \
  "install $(secs $install_ms) s + demo $(secs $demo_ms) s = $(secs $((install_ms + demo_ms))) s"
