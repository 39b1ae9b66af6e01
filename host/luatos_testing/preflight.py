"""Preflight: boot a release candidate in the emulator before any device gets it.

The FOTA server runs this as a worker process (``python -m luatos_testing.preflight JOB``, one
at a time per instance, killed at a wall-time limit), so devices never wait on it and a package
that hangs the emulator cannot hang the server. The job is a JSON file naming the candidate
package, the baseline a device runs today (the product's previous release, a package the
operator gave, or none), the product and the window; the result is one JSON document on stdout.

Two runs, each in virtual time:

* **cold boot** - the candidate flashed on a fresh device: no Lua error, no VM exit, no reboot
  loop within the window, and its first libfota2 check reports exactly the release's version
  (otherwise every device that installs it downloads it again and again);
* **upgrade path** - the baseline flashed, upgrading over loopback HTTP from a FOTA server
  (this project's server code, on a scratch store holding the product and the candidate): the
  package is served, applied, the device comes up on the new version and its next check gets
  "no update". Without a baseline the candidate itself declaring ``000.000.000`` stands in.

Every address the package's sources name in an ``http://`` URL (plus libfota2's default host)
is mapped to that server. A failure that comes from firmware the emulator does not cover is
reported as ``unsupported`` ("could not preflight: <module> is not emulated"), not as a failed
package: the operator decides.
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from luatos_common.apilint import FIRMWARE_MODULES, lint_calls
from luatos_common.logline import SIM
from luatos_common.packages import detect_and_validate
from luatos_common.scriptcheck import stamp_version
from luatos_common.version import ScriptVersion
from luatos_fota.records import AuditRecord
from luatos_fota.testing import RunningServer, running_server
from luatos_sim import Device, DeviceOptions
from luatos_sim.api_surface import surface_for
from luatos_sim.crashes import crashes
from luatos_sim.profiles import PROFILES, ModelProfile

PASSED, FAILED, UNSUPPORTED = "passed", "failed", "unsupported"
DEFAULT_WINDOW_MS = 10 * 60 * 1000
LIBFOTA2_DEFAULT_HOST = "iot.openluat.com"
_URL_HOST = re.compile(rb"https?://([A-Za-z0-9.\-]+)(?::\d+)?[/\"'?]")
_NOT_EMULATED = re.compile(r"(\w+(?:\.\w+)?) is not emulated by luatos-sim")
_NIL_GLOBAL = re.compile(r"attempt to (?:index|call) a nil value \(global '(\w+)'\)")
EXCERPT_LINES = 25


@dataclass
class Job:
    package: str  # path of the candidate package
    project_key: str
    firmware_name: str
    version: str  # the release's script VERSION (xxx.yyy.zzz)
    kind: str = "script"  # script | full
    core: str | None = None  # the release's core (V2002) for a full package
    baseline: str | None = None  # path of the package devices run today
    window_ms: int = DEFAULT_WINDOW_MS


@dataclass
class Check:
    name: str
    ok: bool
    detail: str
    virtual_ms: int = 0


@dataclass
class Result:
    status: str  # passed | failed | unsupported
    summary: str
    model: str = ""
    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    log_excerpt: str = ""
    virtual_ms: int = 0
    wall_s: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


class Unsupported(Exception):
    """The run hit firmware the emulator does not cover; not the package's fault."""


def model_for(firmware_name: str) -> ModelProfile | None:
    """The profile whose bsp (or model) is the ``<bsp>`` of ``<PROJECT>_LuatOS-SoC_<bsp>``."""
    bsp = firmware_name.rpartition("_LuatOS-SoC_")[2]
    for p in PROFILES.values():
        if bsp in (p.bsp, p.model):
            return p
    return None


def server_hosts(files: dict[str, bytes]) -> set[str]:
    hosts = {LIBFOTA2_DEFAULT_HOST}
    for name, data in files.items():
        if name.endswith(".lua"):
            hosts.update(h.decode().lower() for h in _URL_HOST.findall(data))
    return hosts


def _excerpt(dev: Device, lines: int = EXCERPT_LINES) -> str:
    recs = list(dev.log)[-lines:]
    return "\n".join(f"{(r.device_ms or 0) / 1000:10.3f} {r.line}" for r in recs)


def _unsupported_reason(dev: Device, profile: ModelProfile) -> str | None:
    for rec in dev.log:
        if rec.source == SIM:
            m = _NOT_EMULATED.search(rec.line)
            if m:
                return m[1]
        m = _NIL_GLOBAL.search(rec.line)
        if m and m[1] in FIRMWARE_MODULES and m[1] not in profile.modules:
            return m[1]
    return None


def _crash(dev: Device) -> str | None:
    """Why the device did not run cleanly (luatos_sim.crashes), or None: a reboot loop first,
    it says the most."""
    found = crashes(dev)
    if not found:
        return None
    loop = [c for c in found if c.kind == "reboot_loop"]
    return str(loop[0] if loop else found[0])


def _make_device(files: dict[str, bytes], profile: ModelProfile, srv: RunningServer, mac: str,
                 core: str | None, state: Path) -> Device:
    overrides: dict[str, Any] = {"mac": mac}
    if core:
        overrides["core"] = core
    dev = Device(files=files, model=profile, state_dir=state,
                 options=DeviceOptions(epoch_at_power_on=1_764_000_000), **overrides)
    for host in server_hosts(files):
        dev.net.map_address(host, f"{srv.host}:{srv.port}")
    return dev


def _checkins(srv: RunningServer, mac: str) -> list[AuditRecord]:
    srv.flush()
    rows = srv.store.audit.query(device_key=mac, limit=1000)
    return sorted((r for r in rows if r.event in ("checkin", "serve")), key=lambda r: r.id)


def _run_checked(dev: Device, window_ms: int, done: Any) -> None:
    """Run in steps until ``done()``, a reboot loop, or the window ends."""
    end = dev.current_ms() + window_ms
    step = 5_000
    while dev.current_ms() < end and not dev.reboot_loop and not done():
        dev.run_for(f"{min(step, end - dev.current_ms())}ms")


def cold_boot(job: Job, files: dict[str, bytes], profile: ModelProfile, srv: RunningServer,
              target: str, tmp: Path) -> tuple[Check, Device]:
    mac = "C0FFEE000001"
    dev = _make_device(files, profile, srv, mac, job.core if job.kind == "full" else None,
                       tmp / "cold")
    _run_checked(dev, job.window_ms, lambda: bool(_checkins(srv, mac)) and dev.current_ms() > 60_000)
    # Run on through the window so a late error or a reboot loop is seen.
    if dev.current_ms() < job.window_ms and not dev.reboot_loop:
        dev.run_for(f"{job.window_ms - dev.current_ms()}ms")
    ms = dev.current_ms()
    crash = _crash(dev)
    if crash:
        return Check("cold boot", False, crash, ms), dev
    seen = _checkins(srv, mac)
    if not seen:
        return Check("cold boot", False, f"no libfota2 check within {job.window_ms // 1000} s of "
                     "virtual time: a device running it could not be upgraded again", ms), dev
    first = seen[0]
    reported = (first.detail or {}).get("version")
    if reported != target:
        why = (first.detail or {}).get("msg") or ""
        return Check("cold boot", False, f"the first check reported version={reported!r}, not "
                     f"{target!r} (server: {first.status} {why}); every device that installs "
                     "it would download it again", ms), dev
    return Check("cold boot", True, f"ran {ms // 1000} s without an error; first check "
                 f"reported {target} and got {first.status}", ms), dev


def upgrade_path(job: Job, baseline: dict[str, bytes], baseline_core: str | None,
                 profile: ModelProfile, srv: RunningServer, target: str,
                 tmp: Path) -> tuple[Check, Device]:
    mac = "C0FFEE000002"
    dev = _make_device(baseline, profile, srv, mac, baseline_core, tmp / "upgrade")

    def settled() -> bool:
        rows = _checkins(srv, mac)
        served = next((i for i, r in enumerate(rows) if r.event == "serve"), None)
        return served is not None and any(
            (r.detail or {}).get("version") == target for r in rows[served + 1:])

    _run_checked(dev, job.window_ms, settled)
    # Run on through the window: the new version must keep running and not download again.
    if dev.current_ms() < job.window_ms and not dev.reboot_loop:
        dev.run_for(f"{job.window_ms - dev.current_ms()}ms")
    ms = dev.current_ms()
    crash = _crash(dev)
    rows = _checkins(srv, mac)
    if crash:
        return Check("upgrade path", False, crash, ms), dev
    served = next((i for i, r in enumerate(rows) if r.event == "serve"), None)
    if served is None:
        got = [(r.status, (r.detail or {}).get("msg")) for r in rows]
        return Check("upgrade path", False, "the baseline never downloaded the candidate "
                     f"(its checks got {got or 'nothing'})", ms), dev
    after = [r for r in rows[served + 1:] if (r.detail or {}).get("version") == target]
    if not after:
        return Check("upgrade path", False, f"downloaded the package but never came up "
                     f"reporting {target} within the window", ms), dev
    if after[0].status != 304:
        return Check("upgrade path", False, f"after the upgrade the check reporting {target} got "
                     f"{after[0].status}, not 304 (no update)", ms), dev
    extra = [r for r in rows[served + 1:] if r.event == "serve"]
    if extra:
        return Check("upgrade path", False, f"the package was served again after the upgrade "
                     f"({len(extra)} more serves): an upgrade loop", ms), dev
    return Check("upgrade path", True, f"upgraded to {target} over HTTP, next check got 304 "
                 f"(no update), ran {ms // 1000} s without an error", ms), dev


def run(job: Job) -> Result:
    t0 = time.perf_counter()
    profile = model_for(job.firmware_name)
    if profile is None:
        bsp = job.firmware_name.rpartition("_LuatOS-SoC_")[2] or job.firmware_name
        return Result(UNSUPPORTED, f"could not preflight: model {bsp!r} is not emulated "
                      f"(emulated: {', '.join(sorted(PROFILES))})")
    pkg = detect_and_validate(Path(job.package).read_bytes())
    files = dict(pkg.files or {})
    warnings = [str(f) for f in lint_calls(files, surface_for(profile.model))]
    sv = ScriptVersion.parse(job.version)
    core = job.core if job.kind == "full" and job.core else profile.core
    target = str(sv.fota_version(core))
    if job.baseline:
        base_pkg = detect_and_validate(Path(job.baseline).read_bytes())
        baseline = dict(base_pkg.files or {})
        base_core = base_pkg.core_version
        base_what = "the product's previous release"
    else:
        baseline = {**files, "main.lua": stamp_version(files["main.lua"], "000.000.000")}
        base_core = None
        base_what = "the candidate declaring 000.000.000 (no previous release)"
    if job.kind == "full" and base_core is None:
        base_core = profile.core
    checks: list[Check] = []
    excerpt = ""
    with tempfile.TemporaryDirectory(prefix="luatos-preflight-") as tmpdir:
        tmp = Path(tmpdir)
        with running_server(tmp / "server", loop_max_serves=3) as srv:
            product = srv.store.products.add(job.project_key, job.firmware_name)
            srv.store.releases.add(Path(job.package).read_bytes(), product_id=product.id,
                                  version=job.version, core=job.core, kind=job.kind)
            srv.app.fota.invalidate()
            for step in ("cold", "upgrade"):
                if step == "cold":
                    check, dev = cold_boot(job, files, profile, srv, target, tmp)
                else:
                    check, dev = upgrade_path(job, baseline, base_core, profile, srv, target, tmp)
                    check.detail += f" [baseline: {base_what}]"
                try:
                    if not check.ok:
                        module = _unsupported_reason(dev, profile)
                        if module:
                            excerpt = _excerpt(dev)
                            checks.append(check)
                            return _finish(Result(
                                UNSUPPORTED, f"could not preflight: {module} is not emulated "
                                f"({check.name}: {check.detail})", profile.model, checks, warnings,
                                excerpt), t0)
                        excerpt = _excerpt(dev)
                    checks.append(check)
                finally:
                    dev.close()
                if not check.ok:
                    break
    failed = [c for c in checks if not c.ok]
    if failed:
        return _finish(Result(FAILED, f"{failed[0].name}: {failed[0].detail}", profile.model, checks,
                              warnings, excerpt), t0)
    return _finish(Result(PASSED, "cold boot and upgrade path passed", profile.model, checks,
                          warnings), t0)


def _finish(res: Result, t0: float) -> Result:
    res.virtual_ms = sum(c.virtual_ms for c in res.checks)
    res.wall_s = round(time.perf_counter() - t0, 3)
    return res


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m luatos_testing.preflight JOB.json", file=sys.stderr)
        return 2
    job = Job(**json.loads(Path(args[0]).read_text("utf-8")))
    try:
        res = run(job)
    except Exception as e:  # the package or the emulator broke in a way not foreseen: say so
        res = Result(FAILED, f"preflight error: {type(e).__name__}: {e}")
    sys.stdout.write(json.dumps(res.as_json()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
