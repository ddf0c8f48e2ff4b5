"""The design rationale's concurrency benchmark made honest: N processes x M series, DICOM
folders read with pydicom against .dcbs files read with dicube, metadata only and full loads,
on (a) the warm page cache, (b) local files with the page cache dropped, (c) an HTTP object
store on loopback (nginx) behind a link shaped to cloud figures (default 5 ms RTT, 1 Gbit/s).

    python benchmarks/bench_concurrency.py [SERIES_FOLDER] [--processes 10] [--series 5]
        [--copies 50] [--repeat 3] [--scenarios warm,cold,http] [--threads T] [--quick]

Series: ``--copies`` copies of SERIES_FOLDER (default the shared 200-slice CT) whose Study,
Series, SOP and Frame of Reference UIDs are rewritten (so no cache can share them), each also
converted to .dcbs; built once into ``--cache-dir`` (default /tmp/dicube-bench-corpus).
Every round gives each contender the same random assignment of series to processes; the
contenders of a scenario run interleaved (A B, B A, ...), each run a fresh process pool timed
around ``pool.map`` as in the seed. pydicom: ``dcmread`` of every file of the folder
(``stop_before_pixels`` for metadata; full = the pixel arrays stacked); over HTTP one GET per
file through one kept-alive client per process (the file names are given, not listed).
dicube: ``load_meta`` / ``load`` of the path or URL (ranged GETs). The metadata workload also
reads every slice's InstanceNumber and ImagePositionPatient on both sides (pydicom from each
data set, dicube from the DicomMeta), so that neither side's lazy parsing is free. Medians with min-max; ratios
pydicom / dicube of medians with the min-max of the per-round ratios; bytes on the wire from
nginx's access log ($bytes_sent + $request_length).

The link: with root and ``ip``/``tc``, nginx runs in a network namespace the benchmark creates,
reached over a veth pair shaped with ``tc tbf`` (this kernel has no netem); the latency comes
from a small asyncio TCP proxy adding half the RTT to every chunk in each direction (and one
RTT to each new connection, the TCP handshake). Without them (fallback, printed): nginx on
127.0.0.1 and the proxy also limiting the rate (one token bucket for all connections).
"""
from __future__ import annotations

import argparse
import gc
import http.client
import io
import json
import multiprocessing as mp
import os
import random
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np
import pydicom
from pydicom.uid import generate_uid

from _common import (default_series, evict, print_load_after, print_machine, print_results,
                     print_table, ratio, scaled)

import dicube

UID_TAGS = ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID", "FrameOfReferenceUID")
PYD, DCB = "pydicom", "dicube"


# --- the corpus ------------------------------------------------------------------------------

def _copy_series(job) -> None:
    """Copy k of a series: every file with new UIDs (derived from the old UID and k), then
    the copy converted to .dcbs (written under a temporary name, renamed when complete)."""
    src, folder, dcbs, k, threads = job
    folder.mkdir(mode=0o755, parents=True, exist_ok=True)
    for f in sorted(p for p in Path(src).iterdir() if p.is_file()):
        ds = pydicom.dcmread(f)
        for tag in UID_TAGS:
            if tag in ds:
                ds[tag].value = generate_uid(entropy_srcs=[str(ds[tag].value), str(k)])
        if "SOPInstanceUID" in ds and ds.file_meta is not None:
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
        ds.save_as(folder / f"{f.name}.dcm")
    img = dicube.load_from_dicom_folder(folder, num_threads=threads)
    tmp = dcbs.with_suffix(".part.dcbs")
    dicube.save(img, tmp, num_threads=threads)
    os.chmod(tmp, 0o644)
    os.replace(tmp, dcbs)


def build_corpus(source: Path, copies: int, cache: Path) -> Path:
    """``cache``/<series>x<copies>/{dicom/sNNN/, dcbs/sNNN.dcbs}; built once (a marker file
    records what it holds), into a temporary folder renamed when complete."""
    root = cache / f"{source.name}x{copies}"
    marker = {"source": str(source.resolve()), "copies": copies, "dicube": dicube.__version__}
    done = root / "corpus.json"
    if done.is_file() and json.loads(done.read_text()) == marker:
        return root
    cache.mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chmod(cache, 0o755)  # nginx's workers (nobody) read it
    tmp = Path(tempfile.mkdtemp(prefix=root.name + ".", dir=cache))
    os.chmod(tmp, 0o755)
    (tmp / "dcbs").mkdir(mode=0o755)
    print(f"building the corpus: {copies} copies of {source} with new UIDs -> {root} ...",
          flush=True)
    t = time.perf_counter()
    cores = len(os.sched_getaffinity(0))
    jobs = [(source, tmp / "dicom" / f"s{k:03d}", tmp / "dcbs" / f"s{k:03d}.dcbs", k, 1)
            for k in range(copies)]
    with mp.get_context("fork").Pool(cores) as pool:
        pool.map(_copy_series, jobs, chunksize=1)
    (tmp / "corpus.json").write_text(json.dumps(marker))
    if root.exists():
        shutil.rmtree(root)
    os.replace(tmp, root)
    print(f"  built in {time.perf_counter() - t:.0f} s", flush=True)
    return root


# --- the workloads (module level: run in forked pool workers) --------------------------------

_store = {}


def _http_store(base: str):
    """One obstore HTTP client per process (kept-alive connections), as an fsspec user has."""
    key = (os.getpid(), base)
    if key not in _store:
        from obstore.store import HTTPStore

        _store[key] = HTTPStore.from_url(base, client_options={"allow_http": True,
                                                               "timeout": "600s"})
    return _store[key]


def positions_pydicom(datasets) -> list:
    """What a metadata user reads of every slice: (InstanceNumber, ImagePositionPatient),
    in instance order (pydicom: from each data set)."""
    return sorted((int(ds.InstanceNumber), *map(float, ds.ImagePositionPatient)) for ds in datasets)


def positions_dicube(meta) -> list:
    """The same from a DicomMeta (its per-slice accessors)."""
    ipp = meta.get_array("ImagePositionPatient").tolist()
    return sorted((int(k), *p) for k, p in zip(meta.get_values("InstanceNumber"), ipp))


def work(task):
    """One process's share: ``task`` = (contender, metadata only?, [series...], options).
    Returns what it read (frames per series, so the parent can check both sides agree) and
    the CPU seconds the process spent on it (every thread)."""
    who, meta_only, series, opt = task
    t0 = resource.getrusage(resource.RUSAGE_SELF)
    out = []
    for s in series:
        if who == PYD:
            if opt.get("http"):
                import obstore

                store = _http_store(opt["http"])
                datasets = [pydicom.dcmread(io.BytesIO(bytes(obstore.get(store, f"dicom/{s}/{n}").bytes())),
                                            stop_before_pixels=meta_only)
                            for n in opt["names"]]
            else:  # as the seed: list the folder, read every .dcm file
                folder = os.path.join(opt["root"], "dicom", s)
                datasets = [pydicom.dcmread(os.path.join(folder, f), stop_before_pixels=meta_only)
                            for f in os.listdir(folder) if f.endswith(".dcm")]
            if meta_only:  # both sides read every slice's position and number
                out.append(len(positions_pydicom(datasets)))
            else:
                out.append(np.stack([ds.pixel_array for ds in datasets]).shape[0])
        else:
            loc = (f"{opt['http']}/dcbs/{s}.dcbs" if opt.get("http")
                   else os.path.join(opt["root"], "dcbs", f"{s}.dcbs"))
            if meta_only:
                out.append(len(positions_dicube(dicube.load_meta(loc))))
            else:
                out.append(dicube.load(loc, num_threads=opt["threads"].get(who)).raw_image.shape[0])
    t1 = resource.getrusage(resource.RUSAGE_SELF)
    return out, (t1.ru_utime - t0.ru_utime) + (t1.ru_stime - t0.ru_stime)


def run_pool(who: str, meta_only: bool, assignment: List[List[str]], opt: dict):
    """The seed's run_performance_test: a pool of len(assignment) processes, timed around map."""
    tasks = [(who, meta_only, part, opt) for part in assignment]
    pool = mp.get_context("fork").Pool(processes=len(tasks))
    try:
        t = time.perf_counter()
        res = pool.map(work, tasks, chunksize=1)
        dt = time.perf_counter() - t
    finally:
        pool.close()
        pool.join()
    return dt, [x for part, _ in res for x in part], sum(c for _, c in res)


# --- the page cache --------------------------------------------------------------------------

def drop_cache(files: List[Path]) -> str:
    """Empty the page cache: the kernel's drop_caches when writable, else
    posix_fadvise(DONTNEED) on every file. Returns which was used."""
    os.sync()
    try:
        with open("/proc/sys/vm/drop_caches", "w") as fh:
            fh.write("3\n")
        return "echo 3 > /proc/sys/vm/drop_caches"
    except OSError:
        pass
    evict(files)
    return "posix_fadvise(DONTNEED) on every file"


def warm_cache(files: List[Path]) -> None:
    for f in files:
        with open(f, "rb") as fh:
            while fh.read(1 << 20):
                pass


# --- the shaped link -------------------------------------------------------------------------

def _run(*cmd: str) -> None:
    subprocess.run(cmd, check=True, capture_output=True, text=True)


def _die_with_parent() -> None:
    """In a child before exec: SIGTERM when the benchmark dies, even by SIGKILL (a smoke
    test's timeout), so no nginx or proxy outlives it."""
    import ctypes
    import signal

    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _remove_stale_namespaces() -> None:
    """Delete the namespaces of earlier runs killed before they could (dcb<pid>, pid gone)."""
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    for line in out.splitlines():
        name = line.split()[0] if line.split() else ""
        if name.startswith("dcb") and name[3:].isdigit() and not Path(f"/proc/{name[3:]}").exists():
            subprocess.run(["ip", "netns", "del", name], capture_output=True)


def _wait_for(addr: tuple, proc, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(addr, timeout=1).close()
            return
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{what} did not start") from None
            time.sleep(0.05)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Link:
    """nginx serving ``root`` behind the shaped link; ``url`` for the clients."""

    def __init__(self, root: Path, rtt_ms: float, mbit: float):
        self.base = Path(tempfile.mkdtemp(prefix="dicube-bench-nginx-"))
        os.chmod(self.base, 0o755)
        self.ns = None
        self.procs: list = []
        rate = mbit * 1e6 / 8
        tag = os.getpid() % 100000
        if self._can_netns():
            self.ns, host, peer = f"dcb{tag}", f"dcbh{tag}", f"dcbn{tag}"
            net = f"10.{200 + tag % 50}.{tag % 250}"
            ip_host, ip_srv = f"{net}.1", f"{net}.2"
            tbf = ["tbf", "rate", f"{mbit:g}mbit", "burst", "256kb", "latency", "50ms"]
            try:
                _run("ip", "netns", "add", self.ns)
                _run("ip", "link", "add", host, "type", "veth", "peer", "name", peer)
                _run("ip", "link", "set", peer, "netns", self.ns)
                _run("ip", "addr", "add", f"{ip_host}/30", "dev", host)
                _run("ip", "link", "set", host, "up")
                nsx = ["ip", "netns", "exec", self.ns]
                _run(*nsx, "ip", "addr", "add", f"{ip_srv}/30", "dev", peer)
                _run(*nsx, "ip", "link", "set", peer, "up")
                _run(*nsx, "ip", "link", "set", "lo", "up")
                _run("tc", "qdisc", "add", "dev", host, "root", *tbf)
                _run(*nsx, "tc", "qdisc", "add", "dev", peer, "root", *tbf)
            except subprocess.CalledProcessError as exc:
                self.close()
                raise RuntimeError(f"network namespace setup failed: {exc.cmd}: {exc.stderr}") from exc
            self.listen, front, prefix, proxy_rate = ("127.0.0.1", 8080), (ip_srv, 8081), nsx, None
            self.how = (f"nginx and the latency proxy in network namespace {self.ns}, reached over a "
                        f"veth pair shaped with tc tbf {mbit:g} Mbit/s each way (this kernel has no "
                        f"netem); latency from an asyncio proxy adding {rtt_ms / 2:g} ms per direction "
                        f"+ 1 RTT per new connection")
        else:
            self.listen, front, prefix, proxy_rate = (("127.0.0.1", _free_port()),
                                                      ("127.0.0.1", _free_port()), [], rate)
            self.how = (f"FALLBACK (no ip netns/tc here): nginx on loopback; an asyncio proxy adds "
                        f"{rtt_ms / 2:g} ms per direction + 1 RTT per new connection and limits the "
                        f"rate to {mbit:g} Mbit/s (one token bucket)")
        self.url = f"http://{front[0]}:{front[1]}"
        try:
            self._start_nginx(root, prefix)
            self.procs.append(subprocess.Popen(
                [*prefix, sys.executable, str(Path(__file__).with_name("_latency_proxy.py")),
                 json.dumps([list(front), list(self.listen), rtt_ms / 2e3, proxy_rate])],
                preexec_fn=_die_with_parent))
            _wait_for(front, self.procs[-1], "the latency proxy")
        except BaseException:
            self.close()
            raise

    @staticmethod
    def _can_netns() -> bool:
        if os.geteuid() != 0 or not (shutil.which("ip") and shutil.which("tc")):
            return False
        _remove_stale_namespaces()
        probe = f"dcbprobe{os.getpid() % 100000}"
        try:
            _run("ip", "netns", "add", probe)
        except (OSError, subprocess.CalledProcessError):
            return False
        try:
            _run("ip", "netns", "exec", probe, "tc", "qdisc", "add", "dev", "lo", "root", "tbf",
                 "rate", "1gbit", "burst", "256kb", "latency", "50ms")
            return True
        except (OSError, subprocess.CalledProcessError):
            return False
        finally:
            subprocess.run(["ip", "netns", "del", probe], capture_output=True)

    def _start_nginx(self, root: Path, prefix: list) -> None:
        exe = shutil.which("nginx") or "/usr/sbin/nginx"
        user = "user nobody nogroup;" if os.geteuid() == 0 else ""
        temp = " ".join(f"{k}_temp_path {self.base}/{k};"
                        for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
        self.log = self.base / "access.log"
        (self.base / "nginx.conf").write_text(f"""{user}
worker_processes 1;
daemon off;
pid {self.base}/nginx.pid;
error_log {self.base}/error.log;
events {{ worker_connections 1024; }}
http {{
  log_format wire '$bytes_sent $request_length';
  access_log {self.log} wire;
  {temp}
  sendfile on;
  keepalive_requests 100000;
  keepalive_timeout 300s;
  server {{ listen {self.listen[0]}:{self.listen[1]}; root {root}; }}
}}
""")
        self.procs.append(subprocess.Popen(
            [*prefix, exe, "-c", str(self.base / "nginx.conf"), "-p", str(self.base),
             "-e", str(self.base / "error.log")], stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent))
        deadline = time.monotonic() + 60
        while not (self.base / "nginx.pid").exists():
            if self.procs[-1].poll() is not None or time.monotonic() > deadline:
                log = self.base / "error.log"
                raise RuntimeError(f"nginx did not start: {log.read_text() if log.exists() else ''}")
            time.sleep(0.05)

    def mark(self) -> None:
        self._mark = self.log.stat().st_size if self.log.exists() else 0

    def wire(self) -> tuple:
        """(bytes both ways, requests) logged by nginx since mark()."""
        with open(self.log, "rb") as fh:
            fh.seek(self._mark)
            lines = fh.read().split(b"\n")
        pairs = [ln.split() for ln in lines if ln.strip()]
        return sum(int(a) + int(b) for a, b in pairs), len(pairs)

    def probe(self, small: str, big: str) -> str:
        """The link as measured: request-response time on a kept-alive connection, the first
        request (with the handshake), one connection's GET rate of a big file."""
        host, port = self.url[len("http://"):].split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=60)
        times = []
        for _ in range(12):
            t = time.perf_counter()
            conn.request("GET", small)
            conn.getresponse().read()
            times.append(time.perf_counter() - t)
        t = time.perf_counter()
        conn.request("GET", big)
        n = len(conn.getresponse().read())
        rate = n / (time.perf_counter() - t) / 1e6
        conn.close()
        return (f"measured: first request {times[0] * 1e3:.1f} ms, then "
                f"{statistics.median(times[1:]) * 1e3:.1f} ms per request-response (median), "
                f"one connection GETs {rate:.0f} MB/s")

    def close(self) -> None:
        for p in self.procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        if self.ns:
            subprocess.run(["ip", "netns", "del", self.ns], capture_output=True)
            self.ns = None
        shutil.rmtree(self.base, ignore_errors=True)


# --- the run ---------------------------------------------------------------------------------

GOALS = {  # (scenario, workload): goal for pydicom time / dicube time
    ("warm", "meta"): 50, ("cold", "meta"): 50, ("http", "meta"): 100,
    ("warm", "full"): 1.5, ("cold", "full"): 2, ("http", "full"): 5,
}
WIRE_GOAL = 0.3


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", nargs="?", default=os.environ.get("DICUBE_BENCH_SERIES"),
                    help="DICOM series to copy (default: the shared sample_200 CT)")
    ap.add_argument("--quick", action="store_true",
                    help="smoke run: 2 processes x 2 series of sample_10, 2 rounds")
    ap.add_argument("--processes", type=int, default=None, help="N (default 10; --quick 2)")
    ap.add_argument("--series", type=int, default=None, help="M per process (default 5; --quick 2)")
    ap.add_argument("--copies", type=int, default=None, help="copies in the corpus (default N x M)")
    ap.add_argument("--repeat", type=int, default=None, help="rounds (default 3; --quick 2)")
    ap.add_argument("--scenarios", default="warm,cold,http", help="any of warm,cold,http")
    ap.add_argument("--workloads", default="meta,full", help="any of meta,full")
    ap.add_argument("--threads", default="",
                    help="more dicube contenders: dicube.load num_threads values, comma-separated "
                         "(e.g. 1); the first dicube contender keeps dicube's default")
    ap.add_argument("--rtt-ms", type=float, default=5.0)
    ap.add_argument("--mbit", type=float, default=1000.0)
    ap.add_argument("--cache-dir", default=os.environ.get("DICUBE_BENCH_CACHE", "/tmp/dicube-bench-corpus"))
    args = ap.parse_args(argv)
    n = args.processes or (2 if args.quick else 10)
    m = args.series or (2 if args.quick else 5)
    copies = args.copies or n * m
    repeat = args.repeat or (2 if args.quick else 3)
    scenarios = [s for s in args.scenarios.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    source = Path(args.folder) if args.folder else default_series(args.quick)
    if not source.is_dir():
        sys.exit(f"series folder not found: {source}")

    print_machine(f"; {n} processes x {m} series, {copies} copies of {source.name}, {repeat} rounds")
    root = build_corpus(source, copies, Path(args.cache_dir))
    names = sorted(os.listdir(root / "dicom" / "s000"))
    series = [f"s{k:03d}" for k in range(copies)]
    dicom_files = {s: [root / "dicom" / s / f for f in names] for s in series}
    dcbs_files = {s: root / "dcbs" / f"{s}.dcbs" for s in series}
    dicom_bytes = sum(f.stat().st_size for f in dicom_files["s000"])
    dcbs_bytes = dcbs_files["s000"].stat().st_size
    # warm the libraries' lazy imports in the parent (inherited by the forked workers) and
    # check once that both sides read the same pixels
    vol = np.stack([pydicom.dcmread(f).pixel_array for f in dicom_files["s000"]])
    img = dicube.load(dcbs_files["s000"])
    assert positions_dicube(dicube.load_meta(dcbs_files["s000"])) == positions_pydicom(
        pydicom.dcmread(f, stop_before_pixels=True) for f in dicom_files["s000"]), \
        "dicube and pydicom disagree on the slice positions"
    assert img.raw_image.shape == vol.shape and int(img.raw_image.sum(dtype=np.int64)) == \
        int(vol.sum(dtype=np.int64)), "dicube and pydicom disagree on the pixels"
    frames = vol.shape[0]
    import obstore  # noqa: F401  (imported, no client made: forked workers make their own)

    # The workers are forked from this process: without freezing, their first garbage
    # collections walk (and so copy, page by page) every object inherited from here, ~50 ms
    # per worker, as much as 5 load_meta calls. A parent holding little (the seed's) pays
    # nothing of the kind; frozen objects are skipped by the collector.
    del vol, img
    gc.collect()
    gc.freeze()

    threads = {f"{DCB}, num_threads={t}": int(t) for t in args.threads.split(",") if t}
    contenders = [PYD, DCB, *threads]
    rng = random.Random(20261128)
    cpu: Dict[str, List[float]] = {}
    times: Dict[str, List[float]] = {}
    wire: Dict[str, List[int]] = {}
    notes = []
    link = None
    try:
        for scen in scenarios:
            opt = {"root": str(root), "threads": threads, "names": names}
            if scen == "http":
                link = Link(root, args.rtt_ms, args.mbit)
                opt["http"] = link.url
                notes.append(f"link: {link.how}; "
                             + link.probe("/corpus.json", "/dcbs/s000.dcbs"))
                notes.append("server page cache warm (nginx reads from memory)")
            for wl in workloads:
                keys = {who: f"{scen} {wl} {who}" for who in contenders}
                for k in keys.values():
                    times[k], wire[k], cpu[k] = [], [], []
                for r in range(repeat):
                    chosen = rng.sample(series, n * m) if copies >= n * m else \
                        [rng.choice(series) for _ in range(n * m)]
                    assignment = [chosen[i * m:(i + 1) * m] for i in range(n)]
                    shift = r % len(contenders)
                    order = contenders[shift:] + contenders[:shift]
                    for who in order:
                        files = [f for s in chosen for f in
                                 (dicom_files[s] if who == PYD else [dcbs_files[s]])]
                        if scen == "cold":
                            note = f"page cache: {drop_cache(files)} before every cold run"
                            if note not in notes:
                                notes.append(note)
                        elif scen == "warm":
                            warm_cache(files)
                        if link:
                            link.mark()
                        dt, got, used = run_pool(who, wl == "meta", assignment, opt)
                        assert got == [frames] * (n * m), f"{who} read {got[:3]}..., expected {frames} each"
                        times[keys[who]].append(dt)
                        cpu[keys[who]].append(used)
                        if link:
                            wire[keys[who]].append(link.wire()[0])
                print(f"  {scen} {wl}: " + ", ".join(
                    f"{who} {statistics.median(times[k]):.2f} s" for who, k in keys.items()), flush=True)
            if link:
                link.close()
                link = None
    finally:
        if link:
            link.close()

    print(f"\n{n} processes x {m} series of {frames} slices; one series: {len(names)} DICOM files, "
          f"{dicom_bytes / 1e6:.1f} MB; .dcbs {dcbs_bytes / 1e6:.1f} MB ({dicom_bytes / dcbs_bytes:.2f}x "
          f"smaller); CPU s: user + system of the worker processes (all threads), summed")
    for note in notes:
        print(note)
    extra = {k: [f"{statistics.median(cpu[k]):.3g}",
                 f"{statistics.median(v) / 1e6:.1f}" if v else "-"] for k, v in wire.items()}
    rows = []
    for scen in scenarios:
        for wl in workloads:
            a, b = f"{scen} {wl} {PYD}", f"{scen} {wl} {DCB}"
            goal = GOALS[(scen, wl)]
            for who in contenders[1:]:
                med, lo, hi = ratio(times[a], times[f"{scen} {wl} {who}"])
                rows.append([f"{wl}, {scen}: pydicom / {who}", f"{med:.3g}x", f"{lo:.3g}-{hi:.3g}x",
                             f">= {goal:g}x", "met" if med >= goal else "MISSED"])
            c = statistics.median(cpu[a]) / statistics.median(cpu[b])
            rows.append([f"{wl}, {scen}: CPU s pydicom / dicube", f"{c:.3g}x",
                         f"{min(x / y for x, y in zip(cpu[a], cpu[b])):.3g}-"
                         f"{max(x / y for x, y in zip(cpu[a], cpu[b])):.3g}x", "", ""])
            if wire[b]:
                w = statistics.median(wire[b]) / statistics.median(wire[a])
                rows.append([f"{wl}, {scen}: bytes on the wire dicube / pydicom", f"{w:.3g}x",
                             f"{min(x / y for x, y in zip(wire[b], wire[a])):.3g}-"
                             f"{max(x / y for x, y in zip(wire[b], wire[a])):.3g}x",
                             f"<= {WIRE_GOAL:g}x", "met" if w <= WIRE_GOAL else "MISSED"])
    print()
    print_results(scaled(times, 1.0), "s", first="scenario, workload, reader",
                  extra=extra, extra_headers=["CPU s (median)", "MB on the wire (median)"])
    print()
    print_table(["ratio", "ratio of medians", "per-pair min-max", "goal", ""], rows)
    print_load_after()
    return 0


if __name__ == "__main__":
    sys.exit(main())
