"""Benchmark `dicube serve` against Orthanc (+ its DICOMweb plugin) on the same CT series.

    python benchmarks/bench_serve.py [folder] [--repeat N] [--frames N] [--quick]

Both servers on loopback, each in its own process: dicube serves the series' .dcbs, Orthanc
its own storage of the original files. Interleaved server by server, round by round:
WADO-RS whole series with curl (the server's own cost; Explicit VR LE for both, and as
stored HTJ2K for dicube) and through dicomweb-client; one frame (`.../frames/1`, multipart
octet-stream, `Accept-Encoding: identity`, keep-alive) median and p99 with 1 and 8
concurrent curl processes (each transfer timed by curl: the server's cost) and one Python
httpx client (which adds ~2 ms of its own per 512 KB frame); QIDO `/studies`; C-GET of the
series with dcmtk getscu; bytes on the wire. Without --quick, QIDO on a 1,000-series archive too (dicube; built with
benchmarks/_serve_archive.py). Goals (issue 14): series as HTJ2K <= 0.05 s, uncompressed
<= 0.11 s; one frame <= 2 ms median with 1 client and <= 10 ms with 8; QIDO <= 5 ms on a
1,000-series archive; C-GET of the series <= 1 s.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from _common import (interleave, print_load_after, print_machine, print_results, print_table,
                     scaled, series_arg, series_of)

EXPLICIT = "1.2.840.10008.1.2.1"
HTJ2K = "1.2.840.10008.1.2.4.201"
DICOMWEB_PLUGIN = "/usr/share/orthanc/plugins/libOrthancDicomWeb.so"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def program(name: str, folders=("/usr/bin", "/usr/sbin", "/usr/local/bin")) -> str:
    """A system program (dcmtk's getscu, not pynetdicom's console script of that name)."""
    for folder in folders:
        exe = os.path.join(folder, name)
        if os.access(exe, os.X_OK):
            return exe
    sys.exit(f"{name} not found (Debian packages dcmtk, orthanc, orthanc-dicomweb, curl)")


def wait_http(url: str, proc: subprocess.Popen, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                # dicube serve answers during its first scan, with this warning
                if r.status == 200 and "Index incomplete" not in (r.headers.get("Warning") or ""):
                    return
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"{what} did not start")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


class Server:
    """One DICOMweb + DIMSE server: base URL, DIMSE port and AE title."""

    def __init__(self, name, base, dimse_port, aet, proc):
        self.name, self.base, self.dimse_port, self.aet, self.proc = name, base, dimse_port, aet, proc


def start_dicube(archive: Path, log) -> Server:
    http, dimse = free_port(), free_port()
    proc = subprocess.Popen([sys.executable, "-m", "dicube", "serve", str(archive), "--http",
                             f"127.0.0.1:{http}", "--dimse", f"DICUBE@127.0.0.1:{dimse}", "-q"],
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{http}/dicom-web"
    wait_http(base + "/studies", proc, "dicube serve")
    return Server("dicube", base, dimse, "DICUBE", proc)


def start_orthanc(work: Path, files: list, log) -> Server:
    http, dimse = free_port(), free_port()
    storage = work / "orthanc-db"
    cfg = {"Name": "bench", "StorageDirectory": str(storage), "IndexDirectory": str(storage),
           "HttpPort": http, "DicomPort": dimse, "DicomAet": "ORTHANC",
           "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
           "Plugins": [DICOMWEB_PLUGIN], "StorageCompression": False, "SaveJobs": False,
           "DicomAlwaysAllowGet": True, "DicomCheckCalledAet": False,
           "DicomModalities": {"getscu": ["GETSCU", "127.0.0.1", 1]},
           "DicomWeb": {"Enable": True}}
    (work / "orthanc.json").write_text(json.dumps(cfg))
    proc = subprocess.Popen([program("Orthanc"), str(work / "orthanc.json")], stdout=log,
                            stderr=subprocess.STDOUT)
    wait_http(f"http://127.0.0.1:{http}/system", proc, "Orthanc")
    for f in files:
        req = urllib.request.Request(f"http://127.0.0.1:{http}/instances", data=f.read_bytes(),
                                     method="POST")
        urllib.request.urlopen(req, timeout=60).read()
    return Server("orthanc", f"http://127.0.0.1:{http}/dicom-web", dimse, "ORTHANC", proc)


def curl_series(url: str, syntax: str) -> int:
    """Bytes of a whole-series WADO-RS answer fetched with curl (raises on an error status)."""
    out = subprocess.run(
        [program("curl"), "-s", "-f", "-o", "/dev/null", "-w", "%{size_download}",
         "-H", f'Accept: multipart/related; type="application/dicom"; transfer-syntax={syntax}',
         "-H", "Accept-Encoding: identity", url], capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"curl {url}: exit {out.returncode}")
    return int(out.stdout)


def pctl(xs, q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(q * (len(xs) - 1))))]


FRAME_HEADERS = {  # Orthanc answers frames only as multipart (400 for bare octet-stream)
    "Accept": 'multipart/related; type="application/octet-stream"', "Accept-Encoding": "identity"}


def frame_latencies(client_count: int, urls: list, per_client: int,
                    client: str = "curl") -> tuple[list, float, int]:
    """Latencies (s) of one-frame requests by ``client_count`` concurrent keep-alive clients
    (``curl``: one curl process each, every transfer timed by curl itself; ``httpx``: Python
    threads), the wall time, and the bytes received."""
    rngs = [random.Random(k) for k in range(client_count)]
    picks = [[urls[0]] + [r.choice(urls) for _ in range(per_client)] for r in rngs]  # [0]: connect
    if client == "httpx":
        return _httpx_latencies(picks)
    procs = []
    t0 = time.perf_counter()
    for mine in picks:
        args = [program("curl"), "-s", "-f"]
        for k, v in FRAME_HEADERS.items():
            args += ["-H", f"{k}: {v}"]
        for u in mine:
            args += ["-o", "/dev/null", "-w", "%{time_total} %{size_download}\n", u]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, text=True))
    outs = [p.communicate()[0] for p in procs]
    wall = time.perf_counter() - t0
    lat, nbytes = [], 0
    for p, out in zip(procs, outs):
        rows = [line.split() for line in out.splitlines() if line.strip()]
        if p.returncode or len(rows) != per_client + 1:
            raise RuntimeError(f"curl frames: exit {p.returncode}, {len(rows)} answers")
        lat += [float(t) for t, _ in rows[1:]]
        nbytes += sum(int(n) for _, n in rows[1:])
    return lat, wall, nbytes


def _httpx_latencies(picks: list) -> tuple[list, float, int]:
    import httpx

    lat, nbytes, lock = [], [0], threading.Lock()

    def client(mine: list) -> None:
        times, got = [], 0
        with httpx.Client(headers=FRAME_HEADERS, timeout=60) as c:
            c.get(mine[0]).raise_for_status()
            for u in mine[1:]:
                t = time.perf_counter()
                r = c.get(u)
                times.append(time.perf_counter() - t)
                r.raise_for_status()
                got += len(r.content)
        with lock:
            lat.extend(times)
            nbytes[0] += got

    threads = [threading.Thread(target=client, args=(m,)) for m in picks]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return lat, time.perf_counter() - t0, nbytes[0]


def getscu(server: Server, study: str, series: str, out: Path) -> None:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir()
    res = subprocess.run([program("getscu"), "-S", "-aet", "GETSCU", "-aec", server.aet,
                          "-od", str(out), "127.0.0.1", str(server.dimse_port),
                          "-k", "QueryRetrieveLevel=SERIES", "-k", f"StudyInstanceUID={study}",
                          "-k", f"SeriesInstanceUID={series}"], capture_output=True, text=True)
    n = len(list(out.iterdir()))
    if res.returncode or n == 0:
        raise RuntimeError(f"getscu from {server.name}: {n} files, {res.stderr[-500:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    series_arg(ap)
    ap.add_argument("--repeat", type=int, default=3, help="rounds per measurement (--quick: 2)")
    ap.add_argument("--frames", type=int, default=50,
                    help="one-frame requests per client and server (--quick: 10)")
    args = ap.parse_args(argv)
    folder = series_of(args)
    repeat, per_client = (2, 10) if args.quick else (args.repeat, args.frames)
    import httpx
    import pydicom

    import dicube

    files = sorted(p for p in folder.iterdir() if p.is_file())
    first = pydicom.dcmread(files[0], stop_before_pixels=True)
    study, series = str(first.StudyInstanceUID), str(first.SeriesInstanceUID)
    sops = [str(pydicom.dcmread(f, stop_before_pixels=True).SOPInstanceUID) for f in files]
    print_machine(f", Orthanc + DICOMweb plugin ({os.path.realpath(DICOMWEB_PLUGIN).rsplit('.so.', 1)[-1]})")
    print(f"series: {folder} ({len(files)} instances); loopback; servers in their own processes")
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "archive").mkdir()
        dicube.save(dicube.load_from_dicom_folder(folder), work / "archive" / "series.dcbs")
        log = open(work / "servers.log", "wb")
        servers = []
        try:
            servers.append(start_dicube(work / "archive", log))
            servers.append(start_orthanc(work, files, log))
            results = run(servers, study, series, sops, repeat, per_client, work, httpx,
                          20 if args.quick else 200, args.quick)
            if not args.quick:
                results["qido1000"] = qido_1000(work, log, repeat)
        finally:
            for s in servers:
                stop(s.proc)
            log.close()
    report(results)
    print_load_after()
    return 0


def run(servers, study, series, sops, repeat, per_client, work, httpx, qido_calls,
        quick=False) -> dict:
    out: dict = {"bytes": {}}
    series_url = {s.name: f"{s.base}/studies/{study}/series/{series}" for s in servers}
    # whole series, curl
    contenders = {f"{s.name} Explicit VR LE": (lambda u=series_url[s.name]: curl_series(u, EXPLICIT))
                  for s in servers}
    contenders["dicube HTJ2K as stored"] = lambda: curl_series(series_url["dicube"], HTJ2K)
    for name, fn in contenders.items():
        out["bytes"][f"series, {name}"] = fn()
    try:
        curl_series(series_url["orthanc"], HTJ2K)
        out["orthanc_htj2k"] = "served"
    except RuntimeError:
        out["orthanc_htj2k"] = "refused"
    out["series"] = interleave(contenders, repeat)
    # whole series, dicomweb-client (parses the multipart answer)
    from dicomweb_client.api import DICOMwebClient

    clients = {s.name: DICOMwebClient(s.base) for s in servers}
    out["dwc"] = interleave({
        f"{name} dicomweb-client": (lambda c=c: c.retrieve_series(
            study, series, media_types=(("application/dicom", EXPLICIT),)))
        for name, c in clients.items()}, repeat)
    # one frame, 1 and 8 clients
    frame_urls = {s.name: [f"{series_url[s.name]}/instances/{sop}/frames/1" for sop in sops]
                  for s in servers}
    out["frames"] = {}
    for k in range(repeat):
        order = servers if k % 2 == 0 else servers[::-1]
        for client, n_clients in (("curl", 1), ("curl", 8), ("httpx", 1)):
            for s in order:
                lat, wall, nbytes = frame_latencies(n_clients, frame_urls[s.name], per_client,
                                                    client)
                rec = out["frames"].setdefault((s.name, client, n_clients),
                                               {"lat": [], "wall": 0.0, "n": 0, "bytes": 0})
                rec["lat"] += lat
                rec["wall"] += wall
                rec["n"] += len(lat)
                rec["bytes"] = nbytes // len(lat)
    # QIDO /studies
    hc = {s.name: httpx.Client(headers={"Accept": "application/dicom+json"}) for s in servers}
    for c in hc.values():
        c.get(f"{servers[0].base}/studies")
    out["qido"] = interleave({f"{s.name} QIDO /studies": (
        lambda s=s: hc[s.name].get(f"{s.base}/studies").raise_for_status())
        for s in servers}, qido_calls)
    # C-GET with getscu
    out["cget"] = interleave({f"{s.name} getscu C-GET": (
        lambda s=s: getscu(s, study, series, work / f"get-{s.name}")) for s in servers},
        repeat, warmup=0 if quick else 1)  # warm-up: readers open, Orthanc's caches warm
    return out


def qido_1000(work: Path, log, repeat: int) -> dict:
    """QIDO latency on a 1,000-series archive (100 studies x 10 series), dicube only."""
    import httpx
    from _serve_archive import make_archive

    root = work / "archive1000"
    make_archive(root, studies=100, series_per_study=10, instances_per_series=1)
    server = start_dicube(root, log)
    try:
        c = httpx.Client(headers={"Accept": "application/dicom+json"})
        c.get(f"{server.base}/studies")
        studies = c.get(f"{server.base}/studies").json()
        patient = studies[len(studies) // 2]["00100020"]["Value"][0]
        uid = studies[len(studies) // 3]["0020000D"]["Value"][0]
        return interleave({
            "/studies (100 studies)": lambda: c.get(f"{server.base}/studies").raise_for_status(),
            "/studies?PatientID=": lambda: c.get(f"{server.base}/studies",
                                                  params={"PatientID": patient}).raise_for_status(),
            "/studies/{uid}/series (10)": lambda: c.get(
                f"{server.base}/studies/{uid}/series").raise_for_status(),
        }, max(repeat, 5) * 20)
    finally:
        stop(server.proc)


def report(r: dict) -> None:
    print("\nWADO-RS whole series with curl (s):")
    print_results(r["series"], "s", ratios=[("orthanc / dicube, Explicit VR LE",
                                             "orthanc Explicit VR LE", "dicube Explicit VR LE")])
    print(f"Orthanc asked for HTJ2K (.201): {r['orthanc_htj2k']}")
    print("\nWADO-RS whole series through dicomweb-client (s):")
    print_results(r["dwc"], "s")
    print("\nOne frame (.../frames/1, octet-stream, identity), keep-alive clients (curl: the"
          " server's own cost; httpx: with a Python client's):")
    rows = []
    for (name, client, n), rec in r["frames"].items():
        ms = [x * 1e3 for x in rec["lat"]]
        rows.append([name, client, n, rec["n"], statistics.median(ms), pctl(ms, 0.99),
                     rec["n"] / rec["wall"], rec["bytes"]])
    print_table(["server", "client", "clients", "requests", "median ms", "p99 ms", "frames/s",
                 "bytes/frame"], rows)
    print("\nQIDO (ms):")
    print_results(scaled(r["qido"], 1e3), "ms")
    if "qido1000" in r:
        print("\nQIDO on a 1,000-series archive, dicube (ms):")
        print_results(scaled(r["qido1000"], 1e3), "ms")
    print("\nC-GET of the series with dcmtk getscu (s):")
    print_results(r["cget"], "s", ratios=[("orthanc / dicube", "orthanc getscu C-GET",
                                           "dicube getscu C-GET")])
    print("\nBytes on the wire:")
    print_table(["answer", "bytes"], [[k, v] for k, v in r["bytes"].items()])


if __name__ == "__main__":
    sys.exit(main())
