"""``luatos-fota``: run the server and manage products, releases and devices.

Store commands (product, release, device, audit, blobs) act either on a data directory
(``--data``: they work whether or not a server is running on it, SQLite WAL + busy_timeout make
that safe, and a running server picks the change up within a second through the generation
counter) or on a running server through its admin API (``--server URL --token T`` or
``--profile NAME``; see remote.py), so CI can publish with one command. ``push`` always talks
to a server, because only the server holds the device sockets.

Exit codes: 0 ok, 1 unexpected error, 2 usage error, 3 not found, 4 refused (invalid package,
missing version, conflict), 5 server unreachable or it answered an error.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import click

from .blobs import BlobStoreUnavailable
from .store import Conflict, NotFound, Store
from .uploads import UploadError, check_upload

EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_SERVER = 3, 4, 5

data_opt = click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar="LUATOS_FOTA_DATA", required=True, show_envvar=True,
                        help="Data directory (fota.db, blobs/, admin_token).")
db_opt = click.option("--db", "db_url", envvar="LUATOS_FOTA_DB", default=None, show_envvar=True,
                      help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: DATA/fota.db).")
json_opt = click.option("--json", "as_json", is_flag=True, help="Machine-readable JSON output.")


def _remember(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    ctx.meta[f"luatos_fota.{param.name}"] = value
    return value


_STORE_OPTS = (
    click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), envvar="LUATOS_FOTA_DATA",
                 show_envvar=True, help="Data directory of a store on this host (fota.db, blobs/)."),
    click.option("--server", metavar="URL", envvar="LUATOS_FOTA_SERVER", show_envvar=True, expose_value=False,
                 callback=_remember, help="Base URL of a running server: act through its admin API instead."),
    click.option("--token", metavar="TOKEN", envvar="LUATOS_FOTA_TOKEN", show_envvar=True, expose_value=False,
                 callback=_remember, help="Admin token for --server."),
    click.option("--profile", metavar="NAME", envvar="LUATOS_FOTA_PROFILE", show_envvar=True, expose_value=False,
                 callback=_remember, help="[profile.NAME] (server, token/token_file) in "
                 "~/.config/luatos-fota/config.toml or $LUATOS_FOTA_CONFIG."),
)


def store_opts(fn: Any) -> Any:
    """--data DIR (this host's store) or --server URL --token T / --profile NAME (a server)."""
    for opt in reversed(_STORE_OPTS):
        fn = opt(fn)
    return fn


def _open(data_dir: Path | None, db_url: str | None) -> Any:
    """The store a command acts on: local (``--data``) or a server's admin API (``--server``,
    ``--profile``). On the command line one of them; from the environment ``--data`` wins."""
    ctx = click.get_current_context()
    server, tok, profile = (ctx.meta.get(f"luatos_fota.{n}") for n in ("server", "token", "profile"))
    cmdline = click.core.ParameterSource.COMMANDLINE
    local_given = ctx.get_parameter_source("data_dir") == cmdline
    remote_given = cmdline in (ctx.get_parameter_source("server"), ctx.get_parameter_source("profile"))
    if local_given and remote_given:
        raise click.UsageError("give --data DIR (this host) or --server URL / --profile NAME, not both")
    if remote_given or (data_dir is None and (server or profile)):
        from .remote import ProgressBar, RemoteStore, resolve_target

        try:
            target = resolve_target(server, tok, profile)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        assert target is not None
        return RemoteStore(target, progress=ProgressBar("uploading") if sys.stderr.isatty() else None)
    if data_dir is None:
        raise click.UsageError("give --data DIR (or $LUATOS_FOTA_DATA) for a store on this host, "
                               "or --server URL / --profile NAME for a running server")
    return Store(data_dir, db_url)


class _Main(click.Group):
    """Errors talking to a server end every command the same way: exit 5 and the reason."""

    def invoke(self, ctx: click.Context) -> Any:
        from .remote import RemoteError

        try:
            return super().invoke(ctx)
        except RemoteError as e:
            _fail(EXIT_SERVER, str(e))


def _fail(code: int, msg: str) -> None:
    click.secho(f"error: {msg}", fg="red", err=True)
    sys.exit(code)


class _Guard:
    """Map store exceptions to exit codes with a message instead of a traceback."""

    def __enter__(self) -> _Guard:
        return self

    def __exit__(self, et: Any, e: Any, tb: Any) -> None:
        if e is None:
            return
        if isinstance(e, NotFound):
            _fail(EXIT_NOT_FOUND, str(e))
        if isinstance(e, BlobStoreUnavailable):
            _fail(EXIT_SERVER, f"{e}; nothing was recorded")
        if isinstance(e, UploadError):
            _fail(EXIT_REFUSED, f"refused ({e.field}): {e}")
        if isinstance(e, Conflict):
            _fail(EXIT_REFUSED, f"refused: {e}")
        if isinstance(e, ValueError):
            _fail(EXIT_REFUSED, str(e))


def _out(obj: Any) -> None:
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def _ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _table(rows: list[list[Any]], headers: list[str]) -> None:
    cells = [headers] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        click.secho(line, bold=n == 0)


def _split(values: tuple[str, ...] | None) -> list[str] | None:
    """``--devices a,b --devices c`` -> ``["a", "b", "c"]``; nothing -> None."""
    out = [v.strip() for item in (values or ()) for v in item.split(",") if v.strip()]
    return out or None


def _duration(text: str) -> float:
    t = text.strip().lower()
    mult = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    try:
        if t and t[-1] in mult:
            return float(t[:-1]) * mult[t[-1]]
        return float(t)
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected seconds or a duration like 90s, 30m, 24h, 7d") from None


@click.group(cls=_Main, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
             epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 refused, 5 server error.")
def main() -> None:
    """Self-hosted FOTA server for LuatOS devices (libfota2-compatible)."""


# ---------------------------------------------------------------------------- serve

@main.command()
@data_opt
@db_opt
@click.option("--host", default="0.0.0.0", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--push-port", type=int, default=None, help="Also run the TCP push channel on this port.")
@click.option("--admin-token", envvar="LUATOS_FOTA_TOKEN", default=None, show_envvar=True,
              help="Bearer token for /admin/api (default: DATA/admin_token, generated once).")
@click.option("--public-url", default=None, help="Base URL put into v2 answers and push commands.")
@click.option("--loop-max", default=6, show_default=True, type=int, help="Serves of one target before a loop ban.")
@click.option("--loop-window", default="24h", show_default=True, help="Sliding window of the loop guard.")
@click.option("--device-rate", default=5.0, show_default=True, type=float, help="Check-ins/s per device (0: off).")
@click.option("--device-burst", default=100.0, show_default=True, type=float)
@click.option("--ip-rate", default=0.0, show_default=True, type=float,
              help="Requests/s per client IP (0: off; devices behind carrier NAT share IPs).")
@click.option("--ip-burst", default=1000.0, show_default=True, type=float)
@click.option("--max-inflight", default=2000, show_default=True, type=int, help="Above this, answer 503.")
@click.option("--audit-up-to-date/--no-audit-up-to-date", default=True, show_default=True,
              help="Write an audit row for every 'no update' check-in too.")
@click.option("--access-log/--no-access-log", default=False, show_default=True)
@click.option("--serve-counts", type=click.Choice(["database", "memory"]), default="database",
              show_default=True, envvar="LUATOS_FOTA_SERVE_COUNTS", show_envvar=True,
              help="Loop-guard counting: 'database' is exact across instances sharing the DB; 'memory' "
                   "keeps counts in this process and batches serve rows (faster; one instance per DB).")
@click.option("--blobs", "blob_url", envvar="LUATOS_FOTA_BLOBS", default=None, show_envvar=True,
              help="Package store: s3://BUCKET/PREFIX[?endpoint=URL] for an S3-compatible bucket (DATA/blobs "
                   "becomes this instance's cache; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). "
                   "Default: DATA/blobs.")
def serve(data_dir: Path, db_url: str | None, host: str, port: int, push_port: int | None,
          admin_token: str | None, public_url: str | None, loop_max: int, loop_window: str,
          device_rate: float, device_burst: float, ip_rate: float, ip_burst: float,
          max_inflight: int, audit_up_to_date: bool, access_log: bool, serve_counts: str,
          blob_url: str | None) -> None:
    """Run the HTTP server (device endpoint, v2 API, downloads, admin API, dashboard)."""
    from .app import create_app
    from .server import serve_forever

    hub = None
    extra: dict[str, Any] = {}
    if push_port is not None:
        from .push import PushHub

        hub = PushHub()
        extra = {"push_port": push_port, "push_host": host}
    try:
        app = create_app(data_dir, db_url, admin_token, push_hub=hub, public_url=public_url,
                         loop_max_serves=loop_max, loop_window_s=_duration(loop_window),
                         device_rate=device_rate, device_burst=device_burst, ip_rate=ip_rate,
                         ip_burst=ip_burst, max_inflight=max_inflight, audit_up_to_date=audit_up_to_date,
                         serve_counts=serve_counts, blob_url=blob_url, extra=extra)
    except ValueError as e:  # a bad option value (e.g. --blobs): say which, no traceback
        _fail(2, str(e))
    tok_src = "given" if (admin_token or os.environ.get("LUATOS_FOTA_TOKEN")) else f"in {data_dir / 'admin_token'}"
    click.echo(f"luatos-fota: data {data_dir}, db {app.state.store.db_url.split('@')[-1]}, "
               f"packages {app.state.store.blobs.describe()}", err=True)
    click.echo(f"luatos-fota: device URL http://{host}:{port}/api/site/firmware_upgrade? ; "
               f"admin token {tok_src}" + (f"; push channel on port {push_port}" if push_port else ""), err=True)
    serve_forever(app, host, port, access_log=access_log)


# ---------------------------------------------------------------------------- products

@main.group()
def product() -> None:
    """Products: a project_key plus the firmware_name devices send."""


@product.command("add")
@store_opts
@db_opt
@click.option("--project-key", required=True)
@click.option("--firmware-name", required=True, help="What libfota2 sends: <PROJECT>_LuatOS-SoC_<bsp>.")
@click.option("--name", default="", help="Display name.")
@click.option("--closed", is_flag=True, help="Only pre-registered devices may check in (others get code 17).")
@json_opt
def product_add(data_dir: Path | None, db_url: str | None, project_key: str, firmware_name: str, name: str,
                closed: bool, as_json: bool) -> None:
    with _Guard():
        p = _open(data_dir, db_url).add_product(project_key, firmware_name, name, not closed, actor="cli")
    if as_json:
        _out(p)
    else:
        click.echo(f"product {p['id']}: {p['project_key']} / {p['firmware_name']}")


@product.command("list")
@store_opts
@db_opt
@json_opt
def product_list(data_dir: Path | None, db_url: str | None, as_json: bool) -> None:
    rows = _open(data_dir, db_url).list_products()
    if as_json:
        return _out(rows)
    _table([[p["id"], p["project_key"], p["firmware_name"], p["name"], "open" if p["auto_register"] else "closed"]
            for p in rows], ["ID", "PROJECT_KEY", "FIRMWARE_NAME", "NAME", "DEVICES"])


# ---------------------------------------------------------------------------- releases

def _product_id(st: Store, product_id: int | None, project_key: str | None, firmware_name: str | None,
                create: bool = False) -> int:
    if product_id is not None:
        return int(st.get_product(product_id)["id"])
    if not project_key:
        raise click.UsageError("give --product-id, or --project-key (+ --firmware-name)")
    try:
        return int(st.find_product(project_key, firmware_name)["id"])
    except NotFound:
        if create and firmware_name:
            p = st.add_product(project_key, firmware_name, actor="cli")
            click.echo(f"created product {p['id']}: {project_key} / {firmware_name}", err=True)
            return int(p["id"])
        raise


@main.group()
def release() -> None:
    """Releases: a validated package plus its version and targeting."""


@release.command("add")
@store_opts
@db_opt
@click.option("--product-id", type=int, default=None)
@click.option("--project-key", default=None)
@click.option("--firmware-name", default=None, help="Creates the product if it does not exist yet.")
@click.option("--version", "version", default=None,
              help="Script VERSION xxx.yyy.zzz (default: from a PROJECT_core.x.z_LuatOS-SoC_CHIP.bin name).")
@click.option("--core", default=None, help="Core version VNNNN (required for --kind full unless the package names it).")
@click.option("--kind", type=click.Choice(["script", "full"]), default=None, help="Default: from the package.")
@click.option("--percent", type=click.FloatRange(0, 100), default=None, help="Staged rollout: this share of devices.")
@click.option("--devices", multiple=True, help="Only these device ids (comma separated, repeatable).")
@click.option("--forced", is_flag=True, help="Allow serving this release as a downgrade.")
@click.option("--paused", is_flag=True, help="Create it paused (enable later).")
@click.option("--notes", default="")
@json_opt
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def release_add(data_dir: Path | None, db_url: str | None, product_id: int | None, project_key: str | None,
                firmware_name: str | None, version: str | None, core: str | None, kind: str | None,
                percent: float | None, devices: tuple[str, ...], forced: bool, paused: bool, notes: str,
                as_json: bool, package: Path) -> None:
    """Validate PACKAGE and publish it as a release."""
    st = _open(data_dir, db_url)
    spinner: Any = contextlib.nullcontext()
    if sys.stderr.isatty() and isinstance(st, Store):  # remote uploads show a progress bar instead
        from rich.console import Console

        spinner = Console(stderr=True).status(f"validating and storing {package.name} …")
    with _Guard(), spinner:
        data = package.read_bytes()
        try:
            pid = _product_id(st, product_id, project_key, firmware_name)
        except NotFound:
            if not (project_key and firmware_name):
                raise
            # Check the package before creating anything, so a refused upload leaves no trace.
            check_upload(data, filename=package.name, version=version, core=core, kind=kind,
                         firmware_name=firmware_name)
            pid = _product_id(st, None, project_key, firmware_name, create=True)
        rel = st.add_release(data, product_id=pid, version=version, core=core, kind=kind,
                             filename=package.name, notes=notes, enabled=not paused, forced=forced,
                             percent=percent, devices=_split(devices), actor="cli")
    if as_json:
        return _out(rel)
    core_txt = f" core {rel['core_version']}" if rel["core_version"] else ""
    click.echo(f"release {rel['id']}: {rel['firmware_name']} {rel['script_version']}{core_txt} ({rel['kind']}), "
               f"{rel['size']} bytes sha256 {rel['sha256'][:16]}…, target {rel['target_mode']}"
               + (" (paused)" if paused else ""))


@release.command("list")
@store_opts
@db_opt
@click.option("--product-id", type=int, default=None)
@json_opt
def release_list(data_dir: Path | None, db_url: str | None, product_id: int | None, as_json: bool) -> None:
    rows = _open(data_dir, db_url).list_releases(product_id)
    if as_json:
        return _out(rows)
    _table([[r["id"], r["firmware_name"], r["script_version"], r["core_version"] or "", r["kind"],
             "enabled" if r["enabled"] else "paused", "forced" if r["forced"] else "",
             r["target_mode"] + (f" {r['percent']:g}%" if r["target_mode"] == "percent" else
                                 f" {len(r['devices'])}" if r["target_mode"] == "devices" else ""),
             r["size"], r["sha256"][:12]] for r in rows],
           ["ID", "FIRMWARE", "VERSION", "CORE", "KIND", "STATE", "", "TARGET", "SIZE", "SHA256"])


def _set_enabled(data_dir: Path | None, db_url: str | None, rid: int, enabled: bool, as_json: bool) -> None:
    with _Guard():
        r = _open(data_dir, db_url).update_release(rid, enabled=enabled, actor="cli")
    if as_json:
        return _out(r)
    click.echo(f"release {rid} {'enabled' if enabled else 'paused'}")


@release.command("enable")
@store_opts
@db_opt
@json_opt
@click.argument("release_id", type=int)
def release_enable(data_dir: Path | None, db_url: str | None, as_json: bool, release_id: int) -> None:
    _set_enabled(data_dir, db_url, release_id, True, as_json)


@release.command("pause")
@store_opts
@db_opt
@json_opt
@click.argument("release_id", type=int)
def release_pause(data_dir: Path | None, db_url: str | None, as_json: bool, release_id: int) -> None:
    _set_enabled(data_dir, db_url, release_id, False, as_json)


@release.command("target")
@store_opts
@db_opt
@click.option("--all", "all_", is_flag=True, help="Every device of the product.")
@click.option("--percent", type=click.FloatRange(0, 100), default=None)
@click.option("--devices", multiple=True, help="Device ids (comma separated, repeatable).")
@json_opt
@click.argument("release_id", type=int)
def release_target(data_dir: Path | None, db_url: str | None, all_: bool, percent: float | None,
                   devices: tuple[str, ...], as_json: bool, release_id: int) -> None:
    """Change who a release targets (exactly one of --all, --percent, --devices)."""
    if sum((all_, percent is not None, bool(devices))) != 1:
        raise click.UsageError("give exactly one of --all, --percent N, --devices a,b")
    mode = "all" if all_ else ("percent" if percent is not None else "devices")
    with _Guard():
        r = _open(data_dir, db_url).set_release_target(release_id, mode, percent=percent,
                                                       devices=_split(devices),
                                                       actor="cli")
    if as_json:
        return _out(r)
    click.echo(f"release {release_id} targets {mode}")


@release.command("stats")
@store_opts
@db_opt
@click.option("--release-id", type=int, default=None)
@json_opt
def release_stats(data_dir: Path | None, db_url: str | None, release_id: int | None, as_json: bool) -> None:
    """Rollout progress: targeted / served / confirmed devices per release."""
    with _Guard():
        rows = _open(data_dir, db_url).release_stats(release_id)
    if as_json:
        return _out(rows)
    _table([[s["release_id"], s["script_version"], s["target_mode"], s["targeted"], s["served"],
             s["confirmed"], s["failed"]] for s in rows],
           ["ID", "VERSION", "TARGET", "TARGETED", "SERVED", "CONFIRMED", "FAILED"])


# ---------------------------------------------------------------------------- devices

@main.group()
def device() -> None:
    """Devices: versions, last seen, bans and pins."""


@device.command("list")
@store_opts
@db_opt
@click.option("--product-id", type=int, default=None)
@click.option("--banned", is_flag=True, help="Only banned devices.")
@click.option("--limit", type=int, default=1000, show_default=True)
@json_opt
def device_list(data_dir: Path | None, db_url: str | None, product_id: int | None, banned: bool, limit: int,
                as_json: bool) -> None:
    rows = _open(data_dir, db_url).list_devices(product_id=product_id, banned=True if banned else None, limit=limit)
    if as_json:
        return _out(rows)
    _table([[d["device_key"], d["product_id"], d["reported_version"], _ts(d["last_seen"]), d["last_ip"],
             f"{d['ban_code']} {d['ban_reason'][:40]}" if d["ban_code"] else "",
             d["pinned_release_id"] or ""] for d in rows],
           ["DEVICE", "PRODUCT", "VERSION", "LAST SEEN", "IP", "BAN", "PIN"])


@device.command("show")
@store_opts
@db_opt
@click.argument("device_id")
def device_show(data_dir: Path | None, db_url: str | None, device_id: str) -> None:
    with _Guard():
        _out(_open(data_dir, db_url).require_device(device_id))


@device.command("ban")
@store_opts
@db_opt
@click.option("--reason", default="")
@json_opt
@click.argument("device_id")
def device_ban(data_dir: Path | None, db_url: str | None, reason: str, as_json: bool, device_id: str) -> None:
    """Bar a device from upgrades (it gets code 21)."""
    with _Guard():
        d = _open(data_dir, db_url).ban(device_id, reason, actor="cli")
    _out(d) if as_json else click.echo(f"device {d['device_key']} banned")


@device.command("unban")
@store_opts
@db_opt
@json_opt
@click.argument("device_id")
def device_unban(data_dir: Path | None, db_url: str | None, as_json: bool, device_id: str) -> None:
    """Lift an operator ban or a loop ban (code 40)."""
    with _Guard():
        d = _open(data_dir, db_url).unban(device_id, actor="cli")
    _out(d) if as_json else click.echo(f"device {d['device_key']} unbanned")


@device.command("pin")
@store_opts
@db_opt
@json_opt
@click.argument("device_id")
@click.argument("release_id")
def device_pin(data_dir: Path | None, db_url: str | None, as_json: bool, device_id: str, release_id: str) -> None:
    """Pin DEVICE_ID to RELEASE_ID ('none' removes the pin)."""
    rid = None if release_id.lower() in ("none", "-", "0") else int(release_id)
    with _Guard():
        d = _open(data_dir, db_url).pin(device_id, rid, actor="cli")
    _out(d) if as_json else click.echo(f"device {d['device_key']} pinned to {rid}")


# ---------------------------------------------------------------------------- audit

@main.command()
@store_opts
@db_opt
@click.option("--device", default=None, help="Only this device.")
@click.option("--event", "event_", default=None, help="Only this event (serve, checkin, loop_ban, ...).")
@click.option("--release-id", type=int, default=None)
@click.option("--limit", type=int, default=50, show_default=True)
@json_opt
def audit(data_dir: Path | None, db_url: str | None, device: str | None, event_: str | None,
          release_id: int | None, limit: int, as_json: bool) -> None:
    """Why did a device get (or not get) a package? Newest first."""
    rows = _open(data_dir, db_url).query_audit(device=device, event_=event_, release_id=release_id, limit=limit)
    if as_json:
        return _out(rows)
    for a in rows:
        d = a["detail"] if isinstance(a["detail"], dict) else {"detail": a["detail"]}
        why = d.get("reason") or d.get("msg") or ", ".join(f"{k}={v}" for k, v in d.items() if v not in (None, ""))
        click.echo(f"{_ts(a['ts'])}  {a['event']:<16} {a['device_key'] or '-':<16} "
                   f"rel={a['release_id'] or '-'} status={a['status'] or '-'} code={a['code'] if a['code'] is not None else '-'}  {why}")


@main.command("audit-prune")
@store_opts
@db_opt
@click.option("--older-than", required=True, help="Age like 30d, 12h (rows older than this go).")
@json_opt
def audit_prune(data_dir: Path | None, db_url: str | None, older_than: str, as_json: bool) -> None:
    """Delete old audit rows (the table grows with every check-in)."""
    n = _open(data_dir, db_url).prune_audit(_duration(older_than), actor="cli")
    _out({"deleted": n}) if as_json else click.echo(f"deleted {n} audit rows")


@main.group()
def blobs() -> None:
    """Stored packages (content-addressed files under DATA/blobs)."""


@blobs.command("gc")
@store_opts
@db_opt
@click.option("--min-age", default="1h", show_default=True,
              help="Only blobs older than this (younger ones may belong to an upload in progress).")
@json_opt
def blobs_gc(data_dir: Path | None, db_url: str | None, min_age: str, as_json: bool) -> None:
    """Delete packages no release references (left over by a crash during an upload)."""
    removed = _open(data_dir, db_url).gc_blobs(_duration(min_age))
    _out({"removed": removed}) if as_json else click.echo(f"removed {len(removed)} unreferenced blobs")


@main.command()
@data_opt
def token(data_dir: Path) -> None:
    """Print the admin token of DATA (creating it if needed)."""
    from .app import resolve_admin_token

    data_dir.mkdir(parents=True, exist_ok=True)
    click.echo(resolve_admin_token(data_dir, None))


# ---------------------------------------------------------------------------- push (via server)

def _api(server: str, tok: str, method: str, path: str, body: Any = None) -> Any:
    req = urllib.request.Request(server.rstrip("/") + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None,
                                 headers={"Authorization": f"Bearer {tok}", "Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        try:
            msg = json.loads(e.read()).get("msg")
        except ValueError:
            msg = e.reason
        _fail(EXIT_SERVER, f"server answered {e.code}: {msg}")
    except (urllib.error.URLError, OSError) as e:
        _fail(EXIT_SERVER, f"cannot reach {server}: {e}")


@main.command()
@click.option("--server", envvar="LUATOS_FOTA_SERVER", default="http://127.0.0.1:8000", show_default=True,
              show_envvar=True, help="Base URL of the running server.")
@click.option("--token", "tok", envvar="LUATOS_FOTA_TOKEN", default=None, show_envvar=True)
@click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              envvar="LUATOS_FOTA_DATA", help="Read the token from DATA/admin_token.")
@click.option("--devices", default=None, help="Comma-separated device ids (default: the release's online targets).")
@click.option("--release-id", type=int, default=None, help="Push this release's download URL.")
@click.option("--url", default=None, help="Push this URL instead (### is added).")
@click.option("--online", "list_online", is_flag=True, help="Only list devices on the push channel.")
@click.option("--profile", envvar="LUATOS_FOTA_PROFILE", default=None, show_envvar=True,
              help="Server and token from [profile.NAME] (see docs/operations.md).")
@json_opt
def push(server: str, tok: str | None, data_dir: Path | None, devices: str | None, release_id: int | None,
         url: str | None, list_online: bool, profile: str | None, as_json: bool) -> None:
    """Tell connected devices to upgrade now (through the server's push channel)."""
    if profile:
        from .remote import load_profile

        try:
            prof = load_profile(profile)
        except ValueError as e:
            raise click.UsageError(str(e)) from None
        if click.get_current_context().get_parameter_source("server") == click.core.ParameterSource.DEFAULT:
            server = prof.get("server", server)
        tok = tok or prof.get("token")
    if tok is None and data_dir is not None and (data_dir / "admin_token").is_file():
        tok = (data_dir / "admin_token").read_text().strip()
    if not tok:
        raise click.UsageError("no admin token: give --token, $LUATOS_FOTA_TOKEN or --data DIR")
    if list_online:
        res = _api(server, tok, "GET", "/admin/api/push/online")
        if as_json:
            return _out(res)
        _table([[o["device"], o.get("version"), o.get("peer"), o.get("connected_at"), o.get("instance") or "-"]
                for o in res["online"]],
               ["DEVICE", "VERSION", "PEER", "CONNECTED", "INSTANCE"])
        return
    if release_id is None and not url:
        raise click.UsageError("give --release-id or --url")
    body: dict[str, Any] = {}
    if devices:
        body["devices"] = [d for d in devices.split(",") if d]
    if release_id is not None:
        body["release_id"] = release_id
    if url:
        body["url"] = url
    res = _api(server, tok, "POST", "/admin/api/push", body)
    if as_json:
        return _out(res)
    results = res.get("results", {})
    for dev, r in results.items():
        click.echo(f"{dev}: {r}")
    if not results:
        click.echo("no device targeted is online")
    if any(r != "sent" for r in results.values()):
        sys.exit(EXIT_SERVER)


if __name__ == "__main__":  # pragma: no cover
    main()
