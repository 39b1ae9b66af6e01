"""Run a release's preflight in a worker process and store the result with the release.

The preflight itself (booting the package in the emulator, see ``luatos_testing.preflight``)
runs in a separate process: the server imports no emulator code, a package that hangs the
emulator is killed at ``wall_limit_s``, and the event loop never waits on it. One preflight
runs at a time per instance (a lock); a release is claimed in the database first, so two
instances sharing one store never run the same one.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .records import Release
from .store import Store

WORKER_MODULE = "luatos_testing.preflight"
DEFAULT_WALL_LIMIT_S = 60.0
DEFAULT_WINDOW_S = 600.0


@dataclass
class PreflightSettings:
    wall_limit_s: float = DEFAULT_WALL_LIMIT_S
    window_s: float = DEFAULT_WINDOW_S  # virtual time of each run (cold boot, upgrade path)
    command: tuple[str, ...] = (sys.executable, "-m", WORKER_MODULE)


def _job(store: Store, release_id: int, window_s: float, baseline: Path | None,
         tmp: Path) -> dict[str, Any]:
    """The worker's job; the packages are copied out of the blob store (which may be remote)."""
    rel = store.releases.get(release_id)
    package = tmp / "candidate.bin"
    package.write_bytes(store.blobs.read(rel.sha256))
    base: str | None = str(baseline) if baseline is not None else None
    if baseline is None:
        prev = store.releases.previous(release_id)
        if prev is not None:
            (tmp / "baseline.bin").write_bytes(store.blobs.read(prev.sha256))
            base = str(tmp / "baseline.bin")
    return {"package": str(package), "project_key": rel.project_key,
            "firmware_name": rel.firmware_name, "version": rel.script_version,
            "kind": rel.kind, "core": rel.core_version, "baseline": base,
            "window_ms": int(window_s * 1000)}


def run_worker(job: dict[str, Any], settings: PreflightSettings) -> dict[str, Any]:
    """Run one preflight job in a child process (blocking); never raises for the package's
    sake: a crash, a timeout or garbage output is a failed result saying so."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="luatos-fota-preflight-") as tmp:
        path = Path(tmp) / "job.json"
        path.write_text(json.dumps(job), "utf-8")
        try:
            proc = subprocess.run([*settings.command, str(path)], capture_output=True, text=True,
                                  timeout=settings.wall_limit_s, env={**os.environ, "PYTHONHASHSEED": "0"})
        except subprocess.TimeoutExpired:
            return {"status": "failed", "summary": f"preflight exceeded its wall-time limit of "
                    f"{settings.wall_limit_s:g} s (the package may hang the device)",
                    "checks": [], "warnings": [], "log_excerpt": "", "virtual_ms": 0,
                    "wall_s": round(time.perf_counter() - t0, 3)}
        except OSError as e:
            return {"status": "unsupported", "summary": f"could not preflight: worker "
                    f"{settings.command[0]} did not start ({e})", "checks": [], "warnings": [],
                    "log_excerpt": "", "virtual_ms": 0, "wall_s": 0.0}
    try:
        result: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError):
        tail = (proc.stderr or proc.stdout or "").strip()[-2000:]
        module_missing = f"No module named '{WORKER_MODULE.split('.')[0]}'" in tail
        return {"status": "unsupported" if module_missing else "failed",
                "summary": ("could not preflight: the emulator harness is not installed"
                            if module_missing else f"preflight worker exited {proc.returncode} "
                            "without a result"),
                "checks": [], "warnings": [], "log_excerpt": tail, "virtual_ms": 0,
                "wall_s": round(time.perf_counter() - t0, 3)}
    result["process_wall_s"] = round(time.perf_counter() - t0, 3)
    return result


class PreflightRunner:
    """One instance's preflight queue: one at a time, in a worker thread driving the child."""

    def __init__(self, store: Store, settings: PreflightSettings | None = None) -> None:
        self.store = store
        self.settings = settings or PreflightSettings()
        self._lock = threading.Lock()
        self._tasks: set[asyncio.Task[Any]] = set()

    def run(self, release_id: int, *, baseline: Path | None = None,
            actor: str = "preflight") -> Release | None:
        """Claim, run and record one release's preflight (blocking). None when another worker
        has it."""
        with self._lock:
            if not self.store.releases.claim_preflight(release_id):
                return None
            with tempfile.TemporaryDirectory(prefix="luatos-fota-preflight-") as tmp:
                try:
                    job = _job(self.store, release_id, self.settings.window_s, baseline, Path(tmp))
                except OSError as e:
                    result: dict[str, Any] = {
                        "status": "unsupported", "summary": f"could not preflight: the package "
                        f"could not be read ({e})", "checks": [], "warnings": [],
                        "log_excerpt": "", "virtual_ms": 0, "wall_s": 0.0}
                else:
                    result = run_worker(job, self.settings)
            return self.store.releases.record_preflight(release_id, result, actor=actor)

    def submit(self, release_id: int, *, baseline: Path | None = None) -> None:
        """Queue a preflight off the request path (call from the event loop)."""
        task = asyncio.get_running_loop().create_task(
            asyncio.to_thread(self.run, release_id, baseline=baseline))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def resume_pending(self) -> None:
        """At startup: run what a stopped instance left pending."""
        for rid in self.store.releases.pending_preflights():
            task = asyncio.get_running_loop().create_task(asyncio.to_thread(self.run, rid))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def drain(self, timeout_s: float = 120.0) -> None:
        """Wait for queued preflights (tests; shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
