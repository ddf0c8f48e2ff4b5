"""Smoke runs of the benchmark scripts (--quick, on sample_10) and checks of their shared
machinery: contenders interleaved, medians with min-max, load average, versions."""
from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "benchmarks"
sys.path.insert(0, str(BENCH))
import _common  # noqa: E402

SCRIPTS = ["bench_codec", "bench_container", "bench_streaming", "bench_dataloader",
           "bench_ingest", "bench_preview", "bench_cli", "bench_concurrency", "bench_serve"]
NEEDS_NGINX = {"bench_preview", "bench_concurrency"}
NEEDS_ORTHANC = {"bench_serve"}  # Orthanc + orthanc-dicomweb, dcmtk, curl
# scripts stating ratios print the ratio table
RATIOS = set(SCRIPTS)


@pytest.fixture(scope="module")
def outputs(sample_10):
    """All scripts run at once with --quick (the whole lot in well under a minute)."""
    procs = {}
    for name in SCRIPTS:
        if name in NEEDS_NGINX and not (shutil.which("nginx") or os.path.exists("/usr/sbin/nginx")):
            continue  # its test skips (or fails under CI) below
        if name in NEEDS_ORTHANC and not (shutil.which("Orthanc") or os.path.exists("/usr/sbin/Orthanc")):
            continue
        procs[name] = subprocess.Popen(
            [sys.executable, str(BENCH / f"{name}.py"), str(sample_10), "--quick"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=BENCH.parent)
    deadline = time.monotonic() + 240
    out = {}
    for name, proc in procs.items():
        try:
            text, _ = proc.communicate(timeout=max(1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            text = proc.communicate()[0] + "\n<timed out>"
        out[name] = (proc.returncode, text)
    return out


@pytest.mark.parametrize("name", SCRIPTS)
def test_quick_run_reports_medians_min_max_and_load(outputs, name):
    if name not in outputs:
        from preview_servers import require_tool

        require_tool(None, "Orthanc (Debian packages orthanc, orthanc-dicomweb)"
                     if name in NEEDS_ORTHANC else "nginx (Debian package nginx)")
    code, text = outputs[name]
    assert code == 0, text
    assert re.search(r"^machine: \d+ cores .*Python 3\.\d+.*dicube \S+.*OpenJPH \d+\.\d+", text, re.M), text
    assert re.search(r"^load average before: [\d.]+ / [\d.]+ / [\d.]+", text, re.M), text
    assert re.search(r"^load average after: [\d.]+ / [\d.]+ / [\d.]+", text, re.M), text
    header = re.search(r"^\| [^\n]*\| runs +\| median [^|]+\| min-max [^|]+\|", text, re.M)
    assert header, text
    # every contender row: a median and a lo-hi range, lo <= hi
    rows = re.findall(r"^\| [^|]+\| (\d+) +\| ([\d.e+]+) +\| ([\d.e+]+)-([\d.e+]+) +\|", text, re.M)
    assert rows, text
    for runs, med, lo, hi in rows:
        assert int(runs) >= 2 and float(lo) <= float(med) <= float(hi), (runs, med, lo, hi)
    if name in RATIOS:
        assert re.search(r"^\| ratio +\| ratio of medians +\| per-pair min-max +\|", text, re.M), text
        for med, lo, hi in re.findall(r"\| ([\d.e+]+)x +\| ([\d.e+]+)-([\d.e+]+)x +\|", text):
            assert float(lo) <= float(hi)


def test_concurrency_states_every_goal_with_cache_and_link(outputs):
    """bench_concurrency: the seed's N processes x M series, one ratio row per goal (warm,
    dropped cache, shaped HTTP link; metadata and full), bytes on the wire, how the cache
    was dropped and what the link measured."""
    if "bench_concurrency" not in outputs:
        from preview_servers import require_tool

        require_tool(None, "nginx (Debian package nginx)")
    code, text = outputs["bench_concurrency"]
    assert code == 0, text
    for wl in ("meta", "full"):
        for scen in ("warm", "cold", "http"):
            assert re.search(rf"^\| {wl}, {scen}: pydicom / dicube +\| [\d.e+]+x +\| [\d.e+]+-[\d.e+]+x +"
                             rf"\| >= [\d.]+x +\| (met|MISSED) +\|", text, re.M), (wl, scen, text)
        m = re.search(rf"^\| {wl}, http: bytes on the wire dicube / pydicom +\| ([\d.e+]+)x", text, re.M)
        assert m and 0 < float(m.group(1)) < 1, text
    assert re.search(r"^page cache: (echo 3 > /proc/sys/vm/drop_caches|posix_fadvise)", text, re.M), text
    assert re.search(r"^link: .*measured: first request [\d.]+ ms", text, re.M), text


def test_codec_labels_ojph_expand_with_the_binary_version(outputs):
    code, text = outputs["bench_codec"]
    assert code == 0, text
    from dicube.codecs.jph import OPENJPH_VERSION

    assert f"dicube (OpenJPH {OPENJPH_VERSION}) decode, 1 thread" in text
    exe = shutil.which("ojph_expand")
    if exe:
        m = re.search(r"^\| ojph_expand, OpenJPH (\S+)[^|]*start-up subtracted", text, re.M)
        assert m, text
        assert m.group(1) == _common.tool_version(exe).split()[0]


def _fake_tool(tmp_path: Path, body: str) -> str:
    exe = tmp_path / "fake_expand"
    exe.write_text("#!/bin/sh\n" + body + "\n")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return str(exe)


def test_tool_version_from_the_binary_or_unknown(tmp_path):
    assert _common.tool_version(_fake_tool(tmp_path, 'echo "version: 0.31.0"')) == "0.31.0"
    assert _common.tool_version(_fake_tool(tmp_path, 'echo "ojph_expand version 0.31.0"')) == "0.31.0"
    # no version printed, not owned by a package
    assert _common.tool_version(_fake_tool(tmp_path, "echo 'arguments not interpreted: -v'")) == "unknown"
    exe = "/usr/bin/ojph_expand"
    if os.path.exists(exe) and shutil.which("dpkg-query"):
        pkg = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "openjph-tools"],
                             capture_output=True, text=True).stdout.strip()
        if pkg:
            assert _common.tool_version(exe).startswith(pkg.split("-")[0] + " (Debian openjph-tools")


def test_interleave_rotates_rounds_and_forks_fresh_children():
    calls = []
    contenders = {k: (lambda k=k: calls.append(k)) for k in "ABC"}
    times = _common.interleave(contenders, 3, warmup=1)
    assert calls == list("ABC" "ABC" "BCA" "CAB")
    assert {k: len(v) for k, v in times.items()} == {"A": 3, "B": 3, "C": 3}
    # fresh: each timed call in its own child (its state does not leak to the parent)
    state = []
    times = _common.interleave({"x": lambda: state.append(1)}, 3, warmup=0, fresh=True)
    assert state == [] and len(times["x"]) == 3
    with pytest.raises(RuntimeError, match="ZeroDivisionError"):
        _common.interleave({"bad": lambda: 1 / 0}, 1, warmup=0, fresh=True)


def test_ratio_is_ratio_of_medians_with_per_pair_range():
    med, lo, hi = _common.ratio([1.0, 2.0, 10.0], [2.0, 2.0, 4.0])
    assert med == pytest.approx(1.0) and lo == pytest.approx(0.5) and hi == pytest.approx(2.5)
