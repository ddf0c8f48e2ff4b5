"""Real servers for the remote preview tests, on loopback, in temporary folders.

- :func:`start_nginx`: Debian's nginx serving a folder with Range support and a JSON
  directory index; its access log records the body bytes sent per request.
- :func:`start_moto`: moto's S3-compatible server; :func:`s3_env`, a fixture putting the
  ``moto`` fixture's credentials and endpoint in the AWS environment.

A missing server binary skips the test on a developer machine and fails it under CI.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest


def require_tool(found, what: str):
    if not found:
        msg = f"{what} is not installed"
        if os.environ.get("CI"):
            pytest.fail(msg)
        pytest.skip(msg)
    return found


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(url: str, proc: subprocess.Popen, log: Path, what: str, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # the server answers
        except OSError:
            time.sleep(0.05)
    proc.kill()
    pytest.fail(f"{what} did not start: " + (log.read_text(errors="replace")[-2000:] if log.exists() else ""))


def stop_process(proc: subprocess.Popen, timeout: float = 10) -> None:
    """Stop a server started by a test: SIGTERM, then SIGKILL after ``timeout`` seconds."""
    proc.terminate()
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


def publish(folder, dest: Path) -> Path:
    """Put the files of ``folder`` into ``dest`` (hard links, else copies), world-readable:
    nginx's workers may not be able to pass through the folders above the test data."""
    dest.mkdir(mode=0o755, parents=True)
    for name in sorted(os.listdir(folder)):
        src = Path(folder) / name
        if not src.is_file():
            continue
        try:
            os.link(src, dest / name)
        except OSError:
            shutil.copyfile(src, dest / name)
            (dest / name).chmod(0o644)
    return dest


class Nginx:
    """A running nginx: ``url`` of its document root ``www``; ``sent_bytes()`` sums the
    body bytes of the requests logged since the last ``mark()``."""

    def __init__(self, proc, url: str, www: Path, access_log: Path):
        self.proc, self.url, self.www, self.access_log = proc, url, www, access_log
        self.base = www.parent
        self._mark = 0

    def mark(self) -> None:
        self._mark = self.access_log.stat().st_size if self.access_log.exists() else 0

    def log_lines(self) -> list[str]:
        with open(self.access_log, "rb") as fh:
            fh.seek(self._mark)
            return fh.read().decode().splitlines()

    def sent_bytes(self) -> tuple[int, int]:
        """(body bytes, requests) logged since ``mark()`` (log format: ``$status $body_bytes_sent
    "$request" $bytes_sent "$http_range" $connection $connection_requests``)."""
        lines = self.log_lines()
        return sum(int(ln.split()[1]) for ln in lines), len(lines)

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.base, ignore_errors=True)


def start_nginx() -> Nginx:
    """nginx on a free loopback port serving a fresh world-readable folder (``www``)."""
    exe = require_tool(shutil.which("nginx") or next(
        (p for p in ("/usr/sbin/nginx",) if os.path.exists(p)), None), "nginx (Debian package nginx)")
    base = Path(tempfile.mkdtemp(prefix="dicube-nginx-"))
    base.chmod(0o755)  # workers run as nobody when the tests run as root
    www = base / "www"
    www.mkdir(mode=0o755)
    port = free_port()
    user = "user nobody nogroup;" if os.geteuid() == 0 else ""
    temp = " ".join(f"{k}_temp_path {base}/{k};" for k in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    conf = base / "nginx.conf"
    conf.write_text(f"""{user}
worker_processes 1;
daemon off;
pid {base}/nginx.pid;
error_log {base}/error.log;
events {{ worker_connections 256; }}
http {{
  log_format bytes '$status $body_bytes_sent "$request" $bytes_sent "$http_range" $connection $connection_requests';
  access_log {base}/access.log bytes;
  {temp}
  sendfile on;
  keepalive_requests 100000;
  server {{
    listen 127.0.0.1:{port};
    root {www};
    autoindex on;
    autoindex_format json;
  }}
}}
""")
    log = base / "error.log"
    proc = subprocess.Popen([exe, "-c", str(conf), "-p", str(base), "-e", str(log)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    _wait(url + "/", proc, log, "nginx")
    return Nginx(proc, url, www, base / "access.log")


class Moto:
    """A running moto S3 server: ``endpoint``; ``env`` holds the AWS_* variables for it."""

    def __init__(self, proc, endpoint: str):
        self.proc, self.endpoint = proc, endpoint
        self.env = {"AWS_ENDPOINT_URL": endpoint, "AWS_ALLOW_HTTP": "true",
                    "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
                    "AWS_REGION": "us-east-1"}

    def store(self, bucket: str):
        from obstore.store import S3Store

        return S3Store(bucket, endpoint=self.endpoint, access_key_id="testing",
                       secret_access_key="testing", region="us-east-1",
                       client_options={"allow_http": True})

    def create_bucket(self, bucket: str) -> None:
        req = urllib.request.Request(f"{self.endpoint}/{bucket}", method="PUT")
        urllib.request.urlopen(req, timeout=10).close()

    def stop(self) -> None:
        stop_process(self.proc)


def start_moto(log_dir: Path) -> Moto:
    """moto's server mode on a free loopback port."""
    exe = shutil.which("moto_server")
    if exe:
        cmd = [exe]
    else:
        try:
            import moto.server  # noqa: F401
        except ImportError:
            require_tool(None, "moto[server] (pip)")
        cmd = [sys.executable, "-m", "moto.server"]
    port = free_port()
    log = log_dir / "moto.log"
    proc = subprocess.Popen(cmd + ["-H", "127.0.0.1", "-p", str(port)],
                            stdout=open(log, "wb"), stderr=subprocess.STDOUT)
    endpoint = f"http://127.0.0.1:{port}"
    _wait(endpoint + "/", proc, log, "moto_server", timeout=60)
    return Moto(proc, endpoint)


@pytest.fixture
def s3_env(moto, monkeypatch):
    """The AWS environment pointing at the test module's ``moto`` server."""
    for k, v in moto.env.items():
        monkeypatch.setenv(k, v)
    return moto
