#!/usr/bin/env python3
"""Benchmark luatos-fota: check-in rate and latency, and package download speed against nginx.

Why these figures: a fleet of devices on a 4-hour timer is mostly "no update" check-ins, each a
fresh TCP connection (libfota2 sends ``Connection: Close``), so check-ins per second at a few
hundred concurrent clients is what sizes a server; the download is the other half, and nginx
serving the same file is the honest yardstick for it.

What runs: the real ``luatos-fota serve`` (uvicorn) in a subprocess over a temp data dir, and
nginx (``/usr/sbin/nginx -p tmp -c conf``, daemon off) serving the same package on another
loopback port. Load comes from ``wrk`` when installed (C, so the 2-core box spends its CPU on
the server, not on the client), else from a built-in multiprocess asyncio client.

Prints a table; exit code 1 when a goal is missed (>= 2000 check-ins/s, 0 errors at 200
concurrent, >= 0.5x nginx download throughput), 2 when the bench cannot run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from luatos_common.ports import free_port

GOAL_CHECKINS = 2000.0
GOAL_RATIO = 0.5
NGINX = "/usr/sbin/nginx"
MAC_BASE = 0xC8C2C6000000
PROJECT_KEY = "bench_project_key"
FIRMWARE = "BENCH_LuatOS-SoC_Air8101"
CORE = "V2001"
LATEST = "2001.002.000"  # what the release carries; check-ins report it -> 304
OLDER = "2001.001.000"  # check-ins reporting this get the package


def wait_port(
    port: int, proc: subprocess.Popen[Any] | None, what: str, timeout: float = 20
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{what} exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not listen on 127.0.0.1:{port} within {timeout:g} s")


# ----------------------------------------------------------------------------- results


@dataclass
class LoadResult:
    tool: str
    requests: int = 0
    errors: int = 0
    error_kinds: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    bytes: int = 0
    seconds: float = 0.0
    p50_ms: float = float("nan")
    p99_ms: float = float("nan")

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    @property
    def mb_per_s(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds else 0.0


# ----------------------------------------------------------------------------- python client


def _request(path: str, port: int, method: str = "GET") -> bytes:
    # Exactly what libfota2 sends (behaviour.md §11.1): Host with the port, Connection: Close,
    # nothing else.
    return (
        f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Close\r\n\r\n".encode()
    )


async def _one(port: int, request: bytes) -> tuple[int, int]:
    """Send one request, read the whole answer; (status, body bytes)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
    try:
        writer.write(request)
        head = await reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        if request.startswith(b"HEAD "):
            return status, 0
        match = re.search(rb"(?i)\r\ncontent-length:\s*(\d+)", head)
        if match:
            length = int(match.group(1))
            got = 0
            while got < length:
                chunk = await reader.read(min(1 << 20, length - got))
                if not chunk:
                    raise ConnectionError(f"body cut at {got} of {length} bytes")
                got += len(chunk)
        else:
            got = 0
            while chunk := await reader.read(1 << 20):
                got += len(chunk)
        return status, got
    finally:
        writer.close()


async def _client_process(
    port: int, template: str, concurrency: int, duration: float, mac_offset: int, ndevices: int
) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors: dict[str, int] = {}
    nbytes = 0
    counter = 0
    start = time.perf_counter()
    deadline = start + duration

    async def worker() -> None:
        nonlocal nbytes, counter
        while time.perf_counter() < deadline:
            counter += 1
            mac = f"{MAC_BASE + (mac_offset + counter) % ndevices:012X}"
            request = _request(template.replace("{mac}", mac), port)
            t0 = time.perf_counter()
            try:
                status, got = await asyncio.wait_for(_one(port, request), 30)
            except (OSError, asyncio.IncompleteReadError, TimeoutError, ValueError) as exc:
                kind = type(exc).__name__
                errors[kind] = errors.get(kind, 0) + 1
                continue
            latencies.append(time.perf_counter() - t0)
            statuses[status] = statuses.get(status, 0) + 1
            nbytes += got

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return {
        "latencies": latencies,
        "statuses": statuses,
        "errors": errors,
        "bytes": nbytes,
        "seconds": time.perf_counter() - start,
    }


def _client_entry(args: tuple[Any, ...], out: Any) -> None:
    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    out.put(asyncio.run(_client_process(*args)))


def python_load(
    port: int, template: str, concurrency: int, duration: float, ndevices: int, procs: int
) -> LoadResult:
    procs = max(1, min(procs, concurrency))
    queue: mp.Queue[dict[str, Any]] = mp.Queue()
    workers = []
    for i in range(procs):
        share = concurrency // procs + (1 if i < concurrency % procs else 0)
        args = (port, template, share, duration, i * ndevices // procs, ndevices)
        p = mp.Process(target=_client_entry, args=(args, queue), daemon=True)
        p.start()
        workers.append(p)
    parts = [queue.get(timeout=duration + 60) for _ in workers]
    for p in workers:
        p.join(10)
    result = LoadResult(tool=f"python x{procs}")
    latencies: list[float] = []
    for part in parts:
        latencies += part["latencies"]
        for k, v in part["statuses"].items():
            result.statuses[k] = result.statuses.get(k, 0) + v
        for k, v in part["errors"].items():
            result.error_kinds[k] = result.error_kinds.get(k, 0) + v
        result.bytes += part["bytes"]
    result.seconds = max(part["seconds"] for part in parts)
    result.requests = len(latencies)
    result.errors = sum(result.error_kinds.values())
    if latencies:
        latencies.sort()
        result.p50_ms = statistics.median(latencies) * 1000
        result.p99_ms = latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000
    return result


# ----------------------------------------------------------------------------- wrk client

WRK_SCRIPT = r"""
local counter = 0
local offset = 0
local threads = {}
unexpected = 0
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
if EXPECT then
  function response(status, headers, body)
    if status ~= EXPECT then unexpected = unexpected + 1 end
  end
end
function init(args)
  offset = math.floor(tid * NDEV / NTHREADS)
end
function request()
  counter = counter + 1
  local mac = string.format("%012X", MAC_BASE + (offset + counter) % NDEV)
  local path = string.gsub(TEMPLATE, "{mac}", mac)
  return wrk.format("GET", path, {["Connection"] = "Close"})
end
function done(summary, latency, requests)
  local e = summary.errors
  local bad = 0
  for _, thread in ipairs(threads) do bad = bad + (thread:get("unexpected") or 0) end
  io.write(string.format("WRKBAD %d\n", bad))
  io.write(string.format(
    'WRKJSON {"requests":%d,"duration_us":%d,"bytes":%d,"connect":%d,"read":%d,"write":%d,' ..
    '"status":%d,"timeout":%d,"p50_us":%d,"p99_us":%d}\n',
    summary.requests, summary.duration, summary.bytes, e.connect, e.read, e.write, e.status,
    e.timeout, latency:percentile(50), latency:percentile(99)))
end
"""


def wrk_load(
    port: int,
    template: str,
    concurrency: int,
    duration: float,
    ndevices: int,
    threads: int,
    workdir: Path,
    expect: int | None = None,
) -> LoadResult:
    script = workdir / "bench.lua"
    script.write_text(
        f"MAC_BASE = {MAC_BASE}\nNDEV = {ndevices}\nTEMPLATE = {json.dumps(template)}\n"
        f"EXPECT = {expect if expect is not None else 'nil'}\nNTHREADS = {threads}\n" + WRK_SCRIPT
    )
    cmd = [
        "wrk",
        f"-t{threads}",
        f"-c{concurrency}",
        f"-d{max(1, round(duration))}s",
        "--timeout",
        "10s",
        "-s",
        str(script),
        f"http://127.0.0.1:{port}/",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=duration + 60, check=False)
    match = re.search(r"WRKJSON (\{.*\})", proc.stdout)
    if proc.returncode != 0 or not match:
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stdout}\n{proc.stderr}")
    w = json.loads(match.group(1))
    result = LoadResult(tool=f"wrk -t{threads}")
    result.requests = w["requests"]
    result.seconds = w["duration_us"] / 1e6
    result.bytes = w["bytes"]
    result.error_kinds = {
        k: w[k] for k in ("connect", "read", "write", "status", "timeout") if w[k]
    }
    # wrk counts a close after a complete "Connection: Close" response as a read error only when
    # the response was incomplete, so read errors are real errors here.
    result.errors = sum(result.error_kinds.values())
    result.p50_ms = w["p50_us"] / 1000
    result.p99_ms = w["p99_us"] / 1000
    bad = re.search(r"WRKBAD (\d+)", proc.stdout)
    if expect is not None and bad:
        # Only the count of unexpected statuses is known; keep it under a pseudo status 0.
        result.statuses = {expect: result.requests - int(bad.group(1))}
        if int(bad.group(1)):
            result.statuses[0] = int(bad.group(1))
    return result


def load(
    tool: str,
    port: int,
    template: str,
    concurrency: int,
    duration: float,
    ndevices: int,
    workdir: Path,
    expect: int | None = None,
) -> LoadResult:
    cpus = os.cpu_count() or 2
    if tool == "wrk":
        threads = max(1, cpus // 2)
        return wrk_load(port, template, concurrency, duration, ndevices, threads, workdir, expect)
    return python_load(port, template, concurrency, duration, ndevices, max(1, cpus // 2))


# ----------------------------------------------------------------------------- nginx


def start_nginx(root: Path, workdir: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    prefix = workdir / "nginx"
    (prefix / "logs").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    user = "user root;\n" if os.geteuid() == 0 else ""
    conf.write_text(
        textwrap.dedent(
            f"""\
            {user}daemon off;
            worker_processes 1;
            error_log {prefix}/logs/error.log warn;
            pid {prefix}/nginx.pid;
            events {{ worker_connections 4096; }}
            http {{
                access_log off;
                sendfile on;
                tcp_nopush on;
                default_type application/octet-stream;
                client_body_temp_path {prefix}/body;
                proxy_temp_path {prefix}/proxy;
                fastcgi_temp_path {prefix}/fastcgi;
                uwsgi_temp_path {prefix}/uwsgi;
                scgi_temp_path {prefix}/scgi;
                server {{
                    listen 127.0.0.1:{port};
                    root {root};
                    location / {{ }}
                }}
            }}
            """
        )
    )
    proc = subprocess.Popen(
        [NGINX, "-p", str(prefix), "-c", str(conf), "-e", str(prefix / "logs" / "error.log")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    wait_port(port, proc, "nginx")
    return proc, port


def stop(proc: subprocess.Popen[Any] | None) -> None:
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


# ----------------------------------------------------------------------------- luatos-fota


def fota_cli() -> list[str]:
    exe = Path(sys.executable).with_name("luatos-fota")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "luatos_fota.cli"]


def run_cli(*args: str) -> str:
    proc = subprocess.run(
        [*fota_cli(), *args], capture_output=True, text=True, timeout=120, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(
            f"luatos-fota {' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr}"
        )
    return proc.stdout


def build_package(size: int) -> bytes:
    """A valid Air8101 script package of about `size` bytes (random payload files)."""
    from luatos_common.packages import build_air8101_ota

    payload = max(0, int(size / 1.0625) - 2000)  # framing adds 2 bytes per 32
    half = payload // 2
    files = {
        "main.lua": b'PROJECT="BENCH"\nVERSION="001.000.002"\n',
        "payload_a.bin": os.urandom(half),
        "payload_b.bin": os.urandom(payload - half),
    }
    return build_air8101_ota(files)


def start_fota(data: Path, port: int, log_path: Path, new_device_limits: bool = False) -> subprocess.Popen[bytes]:
    log = log_path.open("wb")
    # --new-device-limits: the per-IP and per-product new-device rates on, set so high that
    # nothing is refused, so the first check-ins pay for the limit bookkeeping (the shared
    # buckets in the database) without their answers changing.
    new_rate = "1000000" if new_device_limits else "0"
    proc = subprocess.Popen(
        [
            *fota_cli(),
            "serve",
            "--data",
            str(data),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--admin-token",
            "bench-token",
            # The load comes from one loopback address, like a fleet behind one carrier NAT:
            # new device ids and audit rows are not capped per IP, so every check-in costs what
            # it did before these caps existed (the figures stay comparable).
            "--new-device-ip-rate",
            new_rate,
            "--new-device-ip-burst",
            "1000000",
            "--new-device-product-rate",
            new_rate,
            "--new-device-product-burst",
            "1000000",
            "--audit-ip-rate",
            "0",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    wait_port(port, proc, "luatos-fota serve")
    return proc


def checkin_path(version: str) -> str:
    return (
        "/api/site/firmware_upgrade?mac={mac}"
        f"&project_key={PROJECT_KEY}&firmware_name={FIRMWARE}&version={version}"
    )


async def _warm_up(port: int, targets: list[bytes], concurrency: int) -> dict[int, int]:
    statuses: dict[int, int] = {}
    queue = list(targets)

    async def worker() -> None:
        while queue:
            status, _ = await _one(port, queue.pop())
            statuses[status] = statuses.get(status, 0) + 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return statuses


def warm_up(port: int, template: str, ndevices: int, method: str = "GET") -> dict[int, int]:
    """One check-in per device id of the pool, so the measured phase sees known devices."""
    targets = [
        _request(template.replace("{mac}", f"{MAC_BASE + i:012X}"), port, method)
        for i in range(ndevices)
    ]
    return asyncio.run(_warm_up(port, targets, 32))


def profile_server(pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes] | None:
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(spy).exists():
        print("py-spy not found (pip install py-spy); no profile", file=sys.stderr)
        return None
    return subprocess.Popen(
        [
            spy,
            "record",
            "-p",
            str(pid),
            "-d",
            str(max(1, round(seconds))),
            "-r",
            "200",
            "--format",
            "raw",
            "-o",
            str(out),
            "--nonblocking",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def summarize_profile(raw: Path, top: int = 18) -> list[tuple[float, float, str]]:
    """(self %, total %, frame) from py-spy's collapsed stacks."""
    own: dict[str, int] = {}
    total: dict[str, int] = {}
    samples = 0
    for line in raw.read_text(errors="replace").splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = stack.split(";")
        own[frames[-1]] = own.get(frames[-1], 0) + count
        for frame in set(frames):
            total[frame] = total.get(frame, 0) + count
    if not samples:
        return []
    ranked = sorted(own.items(), key=lambda kv: -kv[1])[:top]
    return [(100 * n / samples, 100 * total[f] / samples, f) for f, n in ranked]


# ----------------------------------------------------------------------------- main


def table(rows: list[list[str]], headers: list[str]) -> str:
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True))
    out = [line, "  ".join("-" * w for w in widths)]
    out += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in rows]
    return "\n".join(out)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--concurrency", type=int, default=200, help="check-in clients (default 200)"
    )
    parser.add_argument("--duration", type=float, default=6.0, help="seconds per check-in phase")
    parser.add_argument(
        "--download-duration", type=float, default=4.0, help="seconds per download phase"
    )
    parser.add_argument("--download-concurrency", type=int, default=16)
    parser.add_argument("--devices", type=int, default=2000, help="distinct device ids")
    parser.add_argument(
        "--download-devices", type=int, default=3000, help="device pool of the check-in download"
    )
    parser.add_argument("--package-size", type=int, default=1_000_000)
    parser.add_argument("--new-device-limits", action="store_true",
                        help="new-device rates on (never reached): first check-ins pay for them")
    parser.add_argument("--client", choices=["auto", "wrk", "python"], default="auto")
    parser.add_argument(
        "--profile", action="store_true", help="py-spy the server during each phase"
    )
    parser.add_argument("--json", action="store_true", help="print the figures as JSON too")
    parser.add_argument(
        "--keep", action="store_true", help="keep the temp dir (server log, profile)"
    )
    args = parser.parse_args()

    tool = args.client
    if tool == "auto":
        tool = "wrk" if shutil.which("wrk") else "python"
    elif tool == "wrk" and not shutil.which("wrk"):
        print("wrk is not installed (apt-get install wrk), use --client python", file=sys.stderr)
        return 2
    have_nginx = Path(NGINX).exists()
    work = Path(tempfile.mkdtemp(prefix="fota-bench-"))
    fota: subprocess.Popen[bytes] | None = None
    nginx: subprocess.Popen[bytes] | None = None
    started = time.monotonic()
    figures: dict[str, Any] = {"client": tool}
    try:
        data = work / "data"
        data.mkdir()  # the CLI refuses a data directory that does not exist (a typo guard)
        package = build_package(args.package_size)
        pkg_path = work / "BENCH_V2001.000.002.bin"
        pkg_path.write_bytes(package)
        run_cli("init", "--data", str(data))
        run_cli(
            "product",
            "add",
            "--data",
            str(data),
            "--project-key",
            PROJECT_KEY,
            "--firmware-name",
            FIRMWARE,
        )
        rel = json.loads(
            run_cli(
                "release",
                "add",
                "--data",
                str(data),
                "--product-id",
                "1",
                "--version",
                "001.000.002",
                "--skip-preflight",  # random payload: nothing to boot; the bench measures serving
                "--json",
                str(pkg_path),
            )
        )
        port = free_port()
        fota = start_fota(data, port, work / "server.log", args.new_device_limits)

        # Sanity: what a device at the latest version and an older one get.
        probe = asyncio.run(
            _one(port, _request(checkin_path(LATEST).replace("{mac}", "C8C2C6FFFFFF"), port))
        )
        if probe[0] != 304:
            raise RuntimeError(
                f"up-to-date check-in answered {probe[0]}, expected 304; see {work / 'server.log'}"
            )
        probe = asyncio.run(
            _one(port, _request(checkin_path(OLDER).replace("{mac}", "C8C2C6FFFFFE"), port))
        )
        if probe != (200, len(package)):
            raise RuntimeError(
                f"outdated check-in answered {probe}, expected (200, {len(package)})"
            )

        # Packages are private (issue 13): /dl/ is fetched with the signed link a v2 check hands
        # out, as a device would (counted once when handed out, not per download).
        dl_path = rel["download_path"]
        v2 = (f"/api/site/turnkey_fota?mac=E0E0E0E0E0E0&project_key={PROJECT_KEY}"
              f"&firmware_name={FIRMWARE}&core_version=2001&script_version=001.001.000")
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(_request(v2, port))
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
        handed = json.loads(answer.partition(b"\r\n\r\n")[2] or b"{}").get("url", "")
        if "/dl/" in handed:
            dl_path = handed[handed.index("/dl/"):]

        t0 = time.perf_counter()
        warm = warm_up(port, checkin_path(LATEST), args.devices)
        warm_s = time.perf_counter() - t0
        figures["first_checkins_per_s"] = args.devices / warm_s
        figures["first_checkin_statuses"] = warm

        profiles: dict[str, Path] = {}

        def phase(
            name: str, template: str, conc: int, secs: float, ndev: int, expect: int | None
        ) -> LoadResult:
            spy = None
            if args.profile and fota is not None:
                profiles[name] = work / f"profile-{name}.txt"
                spy = profile_server(fota.pid, secs, profiles[name])
            try:
                return load(tool, port, template, conc, secs, ndev, work, expect)
            finally:
                if spy is not None:
                    spy.wait(60)

        checkins = phase(
            "checkin", checkin_path(LATEST), args.concurrency, args.duration, args.devices, 304
        )
        dl = phase(
            "download",
            dl_path,
            args.download_concurrency,
            args.download_duration,
            args.devices,
            None,
        )
        # The device path: an outdated, known device gets the package as the answer to its
        # check-in. The pool is registered first with HEAD (no serve counted) and is large
        # enough that no device reaches the loop guard's 6 serves.
        dev_template = checkin_path(OLDER).replace("mac={mac}", "mac=D{mac}")
        warm_up(port, dev_template, args.download_devices, "HEAD")
        dev_dl = phase(
            "device-download",
            dev_template,
            args.download_concurrency,
            args.download_duration,
            args.download_devices,
            None,
        )
        stop(fota)
        fota = None

        ng = None
        if have_nginx:
            www = work / "www"
            www.mkdir()
            (www / "pkg.bin").write_bytes(package)
            if os.geteuid() == 0:
                os.chmod(work, 0o755)
            nginx, nport = start_nginx(www, work)
            ng = load(
                tool,
                nport,
                "/pkg.bin",
                args.download_concurrency,
                args.download_duration,
                args.devices,
                work,
            )
            stop(nginx)
            nginx = None
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        print(f"bench failed: {exc}", file=sys.stderr)
        return 2
    finally:
        stop(fota)
        stop(nginx)

    elapsed = time.monotonic() - started
    ratio = dl.mb_per_s / ng.mb_per_s if ng and ng.mb_per_s else float("nan")
    dev_ratio = dev_dl.mb_per_s / ng.mb_per_s if ng and ng.mb_per_s else float("nan")
    non304 = {k: v for k, v in checkins.statuses.items() if k != 304}
    rows = [
        [
            "check-in, up to date (304)",
            f"{checkins.rate:,.0f} req/s",
            f"{checkins.p50_ms:.1f} / {checkins.p99_ms:.1f}",
            f"{checkins.errors}"
            + (f" {checkins.error_kinds}" if checkins.errors else "")
            + (f" non-304 {non304}" if non304 else ""),
            f"c={args.concurrency}, {args.devices} devices",
        ],
        [
            "first check-in (new device)",
            f"{figures['first_checkins_per_s']:,.0f} req/s",
            "-",
            "-",
            f"c=32, statuses {warm}",
        ],
        [
            "download /dl/<sha>.bin",
            f"{dl.mb_per_s:,.0f} MB/s",
            f"{dl.p50_ms:.1f} / {dl.p99_ms:.1f}",
            f"{dl.errors}",
            f"c={args.download_concurrency}, {len(package) / 1e6:.2f} MB",
        ],
        [
            "download via check-in",
            f"{dev_dl.mb_per_s:,.0f} MB/s",
            f"{dev_dl.p50_ms:.1f} / {dev_dl.p99_ms:.1f}",
            f"{dev_dl.errors}",
            "known outdated devices",
        ],
    ]
    if ng:
        rows.append(
            [
                "download nginx (same file)",
                f"{ng.mb_per_s:,.0f} MB/s",
                f"{ng.p50_ms:.1f} / {ng.p99_ms:.1f}",
                f"{ng.errors}",
                "sendfile, 1 worker",
            ]
        )
        rows.append(
            ["ratio fota/nginx", f"{ratio:.2f}x (/dl)", f"{dev_ratio:.2f}x (check-in)", "", ""]
        )
    print(
        f"\nluatos-fota bench ({tool} client, {os.cpu_count()} CPUs, server and client on one host)\n"
    )
    print(table(rows, ["measure", "rate", "p50 / p99 ms", "errors", "notes"]))
    goals = [
        (f"check-ins >= {GOAL_CHECKINS:,.0f}/s", checkins.rate >= GOAL_CHECKINS),
        (f"0 errors at {args.concurrency} concurrent", checkins.errors == 0 and not non304),
    ]
    if ng:
        goals.append((f"download /dl/ >= {GOAL_RATIO}x nginx", ratio >= GOAL_RATIO))
        goals.append((f"download via check-in >= {GOAL_RATIO}x nginx", dev_ratio >= GOAL_RATIO))
    print()
    for name, ok in goals:
        print(f"  {'PASS' if ok else 'MISS'}  {name}")
    print(f"\n(total {elapsed:.0f} s)")
    for name, path in profiles.items() if args.profile else ():
        if path.exists():
            print(f"\nserver profile, {name} phase (py-spy; self % / total % of samples):")
            for own, tot, frame in summarize_profile(path):
                print(f"  {own:5.1f}  {tot:5.1f}  {frame}")
    figures.update(
        checkins_per_s=checkins.rate,
        checkin_p50_ms=checkins.p50_ms,
        checkin_p99_ms=checkins.p99_ms,
        checkin_errors=checkins.errors,
        checkin_non304=non304,
        download_mb_s=dl.mb_per_s,
        device_download_mb_s=dev_dl.mb_per_s,
        nginx_mb_s=ng.mb_per_s if ng else None,
        ratio=ratio,
        device_ratio=dev_ratio,
        seconds=elapsed,
    )
    if args.json:
        print(json.dumps(figures, default=str))
    if args.keep:
        print(f"kept {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if all(ok for _, ok in goals) else 1


if __name__ == "__main__":
    sys.exit(main())
