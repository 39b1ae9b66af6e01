"""``luatos-fota``: run the server and manage products, releases and devices.

Store commands (product, release, device, audit, blobs) act either on a data directory
(``--data``: they work whether or not a server is running on it, SQLite WAL + busy_timeout make
that safe, and a running server picks the change up within 0.2 s through the generation
counter) or on a running server through its admin API (``--server URL --token T`` or
``--profile NAME``; see remote.py), so CI can publish with one command. ``push`` always talks
to a server, because only the server holds the device sockets.

Exit codes: 0 ok, 1 unexpected error, 2 usage error, 3 not found, 4 refused (invalid package,
missing version, conflict), 5 server unreachable or it answered an error, 6 the preflight failed
or could not run (the release is kept, disabled).
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

from luatos_common.cliconv import CONTEXT_SETTINGS, honour_no_color, version_option

from . import records
from .blobs import BlobStoreUnavailable
from .preflight import PreflightRunner, PreflightSettings
from .records import Release
from .store import Conflict, NotFound, Store
from .uploads import UploadError, check_upload

EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_SERVER, EXIT_PREFLIGHT = 3, 4, 5, 6

# Commands that may create the data directory; every other one refuses a missing one, so a
# typo in --data never silently starts a new, empty database.
CREATES_DATA = ("serve", "init")


def _missing_data_dir(path: Path) -> str:
    return (f"data directory {str(path)!r} does not exist. `luatos-fota serve --data {path}` "
            f"(or `luatos-fota init --data {path}`) creates it; check the path otherwise.")


def _existing_data_dir(ctx: click.Context, param: click.Parameter, value: Path | None) -> Path | None:
    if value is None or ctx.info_name in CREATES_DATA or value.is_dir():
        return value
    raise click.BadParameter(_missing_data_dir(value), ctx=ctx, param=param)


data_opt = click.option("--data", "data_dir", type=click.Path(file_okay=False, path_type=Path),
                        envvar="LUATOS_FOTA_DATA", required=True, show_envvar=True,
                        callback=_existing_data_dir,
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
    if not data_dir.is_dir():
        raise click.BadParameter(_missing_data_dir(data_dir), param_hint="'--data'")
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
    click.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=records.to_json))


_TIME_FIELDS = ("last_seen", "first_seen", "ts", "created", "updated", "banned_until")


def _ts(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


def _table(rows: list[list[Any]], headers: list[str]) -> None:
    cells = [headers] + [[("" if c is None else str(c)) for c in r] for r in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    for n, r in enumerate(cells):
        line = "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        click.secho(line, bold=n == 0)


def _wire_form(script_version: str) -> str:
    """``001.000.001`` -> ``<core>.001.001``: the script VERSION as libfota2 reports it."""
    parts = script_version.split(".")
    return f"<core>.{parts[0]}.{parts[2]}" if len(parts) == 3 else script_version


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


@click.group(cls=_Main, context_settings=CONTEXT_SETTINGS,
             epilog="Exit codes: 0 ok, 1 error, 2 usage, 3 not found, 4 refused, 5 server error.")
@version_option("luatos-fota")
@click.pass_context
def main(ctx: click.Context) -> None:
    """Self-hosted FOTA server for LuatOS devices (libfota2-compatible)."""
    honour_no_color(ctx)


@main.command()
@data_opt
@db_opt
def init(data_dir: Path, db_url: str | None) -> None:
    """Create a data directory (database, package store, admin token) without serving."""
    from .admintoken import resolve_admin_token

    with _Guard():
        Store(data_dir, db_url).close()
    resolve_admin_token(data_dir, None)
    click.echo(f"data directory {data_dir} ready; admin token in {data_dir / 'admin_token'}")


# ---------------------------------------------------------------------------- serve

def _limit_options(fn: Any) -> Any:
    """One flag per ServerConfig limit (``--max-connections``...), default: the config file or
    the built-in default (see ``luatos-fota serve --help`` and docs/defaults.md)."""
    from .serveconfig import flag_fields

    for name, (typ, default) in reversed(list(flag_fields().items())):
        flag = "--" + name.replace("_", "-")
        if typ is bool:
            fn = click.option(f"{flag}/--no-{name.replace('_', '-')}", name, default=None,
                              help=f"[default: {default}]")(fn)
        else:
            fn = click.option(flag, name, type=typ, default=None, help=f"[default: {default}]")(fn)
    return fn


@main.command(context_settings={"max_content_width": 120})
@data_opt
@click.option("--db", "db_url", envvar="LUATOS_FOTA_DB", default=None, show_envvar=True,
              help="SQLAlchemy URL, e.g. postgresql+psycopg://user@host/db (default: DATA/fota.db).")
@click.option("--config", "config_file", type=click.Path(dir_okay=False, path_type=Path), default=None,
              envvar="LUATOS_FOTA_CONFIG", show_envvar=True,
              help="TOML file with any setting below by its name with underscores (flags win).")
@click.option("--host", default=None, help="[default: 0.0.0.0]")
@click.option("--port", default=None, type=int, help="[default: 8000]")
@click.option("--push-port", type=int, default=None, help="Also run the TCP push channel on this port.")
@click.option("--admin-token", envvar="LUATOS_FOTA_TOKEN", default=None, show_envvar=True,
              help="Bearer token for /admin/api (default: DATA/admin_token, generated once).")
@click.option("--public-url", default=None,
              help="Base URL (https://fota.example.com) put into every URL handed to devices; "
                   "without it, the address the connection reached (never the Host header).")
@click.option("--tls-cert", default=None, type=click.Path(exists=True, dir_okay=False),
              help="PEM certificate (chain): serve HTTPS, and TLS on the push port.")
@click.option("--tls-key", default=None, type=click.Path(exists=True, dir_okay=False), help="PEM private key.")
@click.option("--loop-max", default=None, type=int, help="Serves of one target before a loop ban. [default: 6]")
@click.option("--loop-window", default=None, help="Sliding window of the loop guard. [default: 24h]")
@click.option("--device-rate", default=None, type=float, help="Check-ins/s per device (0: off). [default: 5]")
@click.option("--device-burst", default=None, type=float, help="[default: 100]")
@click.option("--ip-rate", default=None, type=float,
              help="Requests/s per client IP (0: off; devices behind carrier NAT share IPs). [default: 0]")
@click.option("--ip-burst", default=None, type=float, help="[default: 1000]")
@click.option("--max-inflight", default=None, type=int, help="Above this, answer 503. [default: 2000]")
@click.option("--audit-up-to-date/--no-audit-up-to-date", default=None,
              help="Write an audit row for every 'no update' check-in too. [default: on]")
@click.option("--access-log/--no-access-log", default=None, help="[default: off]")
@click.option("--serve-counts", type=click.Choice(["database", "memory"]), default=None,
              envvar="LUATOS_FOTA_SERVE_COUNTS", show_envvar=True,
              help="Loop-guard counting: 'database' is exact across instances sharing the DB; 'memory' "
                   "keeps counts in this process and batches serve rows (faster; one instance per DB).")
@click.option("--blobs", "blob_url", envvar="LUATOS_FOTA_BLOBS", default=None, show_envvar=True,
              help="Package store: s3://BUCKET/PREFIX[?endpoint=URL] for an S3-compatible bucket (DATA/blobs "
                   "becomes this instance's cache; credentials from AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY). "
                   "Default: DATA/blobs.")
@_limit_options
def serve(data_dir: Path, db_url: str | None, config_file: Path | None, host: str | None, port: int | None,
          push_port: int | None, admin_token: str | None, public_url: str | None, tls_cert: str | None,
          tls_key: str | None, loop_max: int | None, loop_window: str | None, device_rate: float | None,
          device_burst: float | None, ip_rate: float | None, ip_burst: float | None, max_inflight: int | None,
          audit_up_to_date: bool | None, access_log: bool | None, serve_counts: str | None,
          blob_url: str | None, **limits: Any) -> None:
    """Run the HTTP server (device endpoint, v2 API, downloads, admin API, dashboard).

    Settings: flags beat the --config file, which beats the defaults (docs/defaults.md)."""
    from .app import create_app
    from .config import ServerConfig
    from .serveconfig import ConfigFileError, load
    from .server import serve_forever, tls_context

    cfg: dict[str, Any] = {}
    proc: dict[str, Any] = {}
    if config_file is not None:
        try:
            cfg, proc = load(config_file)
        except ConfigFileError as e:
            raise click.BadParameter(str(e), param_hint="--config") from None
    given = {"public_url": public_url, "blob_url": blob_url, "loop_max_serves": loop_max,
             "loop_window_s": _duration(loop_window) if loop_window else None,
             "device_rate": device_rate, "device_burst": device_burst, "ip_rate": ip_rate, "ip_burst": ip_burst,
             "max_inflight": max_inflight, "audit_up_to_date": audit_up_to_date, "serve_counts": serve_counts,
             **limits}
    cfg.update({k: v for k, v in given.items() if v is not None})
    if "public_url" in proc:
        cfg.setdefault("public_url", proc.pop("public_url"))
    for key, value in (("host", host), ("port", port), ("push_port", push_port), ("tls_cert", tls_cert),
                       ("tls_key", tls_key), ("access_log", access_log), ("db", db_url)):
        if value is not None:
            proc[key] = value
    host_, port_ = proc.get("host", "0.0.0.0"), int(proc.get("port", 8000))
    if bool(proc.get("tls_cert")) != bool(proc.get("tls_key")):
        raise click.UsageError("give both --tls-cert and --tls-key (or neither)")
    try:
        conf = ServerConfig.from_kwargs(**cfg)
    except (TypeError, ValueError) as e:
        raise click.UsageError(str(e)) from None
    hub = None
    extra: dict[str, Any] = {}
    if proc.get("push_port") is not None:
        from .push import PushHub

        hub = PushHub(idle_timeout=conf.push_idle_timeout_s, line_rate=conf.push_line_rate,
                      line_burst=conf.push_line_burst, max_depth=conf.json_max_depth,
                      max_connections=conf.push_max_connections,
                      max_connections_per_ip=conf.push_max_connections_per_ip,
                      keepalive=(conf.push_keepalive_idle_s, conf.push_keepalive_interval_s,
                                 conf.push_keepalive_count),
                      ssl=tls_context(proc["tls_cert"], proc["tls_key"]) if proc.get("tls_cert") else None)
        extra = {"push_port": proc["push_port"], "push_host": host_}
    try:
        app = create_app(data_dir, proc.get("db"), admin_token, push_hub=hub, extra=extra, **cfg)
    except ValueError as e:  # a bad option value (e.g. --blobs): say which, no traceback
        _fail(2, str(e))
    tok_src = "given" if (admin_token or os.environ.get("LUATOS_FOTA_TOKEN")) else f"in {data_dir / 'admin_token'}"
    scheme = "https" if proc.get("tls_cert") else "http"
    click.echo(f"luatos-fota: data {data_dir}, db {app.state.store.db_url.split('@')[-1]}, "
               f"packages {app.state.store.blobs.describe()}", err=True)
    click.echo(f"luatos-fota: device URL {scheme}://{host_}:{port_}/api/site/firmware_upgrade? ; "
               f"admin token {tok_src}" + (f"; push channel on port {proc['push_port']}" if hub else ""), err=True)
    serve_forever(app, host_, port_, access_log=bool(proc.get("access_log", False)),
                  tls_cert=proc.get("tls_cert"), tls_key=proc.get("tls_key"))


# ---------------------------------------------------------------------------- products

@main.group()
def product() -> None:
    """Products: a project_key plus the firmware_name devices send."""


@product.command("add")
@store_opts
@db_opt
@click.option("--project-key", required=True, help="The key devices send (libfota2 project_key / PRODUCT_KEY).")
@click.option("--firmware-name", required=True, help="What libfota2 sends: <PROJECT>_LuatOS-SoC_<bsp>.")
@click.option("--name", default="", help="Display name.")
@click.option("--closed", is_flag=True, help="Only pre-registered devices may check in (others get code 17).")
@json_opt
def product_add(data_dir: Path | None, db_url: str | None, project_key: str, firmware_name: str, name: str,
                closed: bool, as_json: bool) -> None:
    """Register a product: the project key and firmware name its devices send."""
    with _Guard():
        p = _open(data_dir, db_url).products.add(project_key, firmware_name, name, not closed, actor="cli")
    if as_json:
        _out(p)
    else:
        click.echo(f"product {p.id}: {p.project_key} / {p.firmware_name}")


@product.command("auth")
@data_opt
@db_opt
@click.option("--product-id", type=int, default=None, help="The product by its id (product list).")
@click.option("--project-key", default=None, help="The product by its key (with --firmware-name).")
@click.option("--firmware-name", default=None, help="What libfota2 sends: <PROJECT>_LuatOS-SoC_<bsp>.")
@click.option("--secret", default=None, help="hmac: use this product secret (default: a new random one).")
@json_opt
@click.argument("mode", type=click.Choice(["none", "token", "hmac"]))
def product_auth(data_dir: Path, db_url: str | None, product_id: int | None, project_key: str | None,
                 firmware_name: str | None, secret: str | None, as_json: bool, mode: str) -> None:
    """Set how devices of a product prove who they are: none, token (per-device secrets, see
    `device tokens`) or hmac (token = HMAC-SHA256(product secret, device id); put the printed
    secret into the device's config.lua as auth_secret)."""
    with _Guard():
        st = Store(data_dir, db_url)
        pid = _product_id(st, product_id, project_key, firmware_name)
        p = st.products.set_auth(pid, mode, secret=secret, actor="cli")
    if as_json:
        return _out(p)
    click.echo(f"product {pid}: device auth {mode}")
    if mode == "hmac":
        click.echo(f"auth_secret = \"{p.auth_secret}\"  (config.lua of every device of this product)")


@product.command("list")
@store_opts
@db_opt
@json_opt
def product_list(data_dir: Path | None, db_url: str | None, as_json: bool) -> None:
    """List the products with their project keys."""
    rows = _open(data_dir, db_url).products.all()
    if as_json:
        return _out(rows)
    _table([[p.id, p.project_key, p.firmware_name, p.name, "open" if p.auto_register else "closed"]
            for p in rows], ["ID", "PROJECT_KEY", "FIRMWARE_NAME", "NAME", "DEVICES"])


# ---------------------------------------------------------------------------- releases

def _product_id(st: Store, product_id: int | None, project_key: str | None, firmware_name: str | None,
                create: bool = False) -> int:
    if product_id is not None:
        return st.products.get(product_id).id
    if not project_key:
        raise click.UsageError("give --product-id, or --project-key (+ --firmware-name)")
    try:
        return st.products.find(project_key, firmware_name).id
    except NotFound:
        if create and firmware_name:
            p = st.products.add(project_key, firmware_name, actor="cli")
            click.echo(f"created product {p.id}: {project_key} / {firmware_name}", err=True)
            return int(p.id)
        raise


@main.group()
def release() -> None:
    """Releases: a validated package plus its version and targeting."""


@release.command("add")
@store_opts
@db_opt
@click.option("--product-id", type=int, default=None, help="The product by its id (product list).")
@click.option("--project-key", default=None, help="The product by its key (with --firmware-name).")
@click.option("--firmware-name", default=None, help="What libfota2 sends: <PROJECT>_LuatOS-SoC_<bsp>.")
@click.option("--create-product", is_flag=True,
              help="Create the product (--project-key + --firmware-name) if it does not exist.")
@click.option("--version", "version", default=None,
              help="Script VERSION xxx.yyy.zzz (default: from a PROJECT_core.x.z_LuatOS-SoC_CHIP.bin name).")
@click.option("--core", default=None, help="Core version VNNNN (required for --kind full unless the package names it).")
@click.option("--kind", type=click.Choice(["script", "full"]), default=None, help="Default: from the package.")
@click.option("--percent", type=click.FloatRange(0, 100), default=None, help="Staged rollout: this share of devices.")
@click.option("--devices", multiple=True, help="Only these device ids (comma separated, repeatable).")
@click.option("--forced", is_flag=True, help="Allow serving this release as a downgrade.")
@click.option("--downgrade", is_flag=True,
              help="Publish although the version is not above every version the product's devices "
              "may run (recorded in the release notes and the audit).")
@click.option("--paused", is_flag=True, help="Create it paused (enable later).")
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Package devices run today, for the preflight's upgrade path (default: the "
              "product's previous release).")
@click.option("--skip-preflight", is_flag=True,
              help="Publish without booting it in the emulator first (recorded in the audit).")
@click.option("--preflight-window", default="10m", show_default=True,
              help="Virtual time of each preflight run (cold boot, upgrade path).")
@click.option("--preflight-wall", default="60s", show_default=True,
              help="Wall-time limit of the preflight worker.")
@click.option("--notes", default="", help="Free text shown with the release.")
@json_opt
@click.argument("package", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def release_add(data_dir: Path | None, db_url: str | None, product_id: int | None, project_key: str | None,
                firmware_name: str | None, create_product: bool, version: str | None,
                core: str | None, kind: str | None,
                percent: float | None, devices: tuple[str, ...], forced: bool, downgrade: bool,
                paused: bool, baseline: Path | None, skip_preflight: bool, preflight_window: str,
                preflight_wall: str, notes: str, as_json: bool, package: Path) -> None:
    """Validate PACKAGE, preflight it, and publish it as a release.

    The package must be what it claims: its main.lua's PROJECT is the product's, its VERSION
    is --version (when given) and the file name's, its scripts compile, and the version is
    above every version the product's devices may run (--downgrade overrides that last one).

    Then the preflight boots it in the emulator for the product's model (cold boot, and the
    upgrade from --baseline or the previous release over loopback HTTP); the release is
    enabled only when that passes. Exit 6 when the preflight failed or could not run (the
    release is kept, disabled; `release preflight ID` runs it again)."""
    if skip_preflight and baseline is not None:
        _fail(2, "--baseline is for the preflight; it cannot go with --skip-preflight")
    st = _open(data_dir, db_url)
    if baseline is not None and not isinstance(st, Store):
        _fail(2, "--baseline works with --data (a store on this host); through a server, upload "
              "it as the admin API's 'baseline' field")
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
            if not create_product:
                _fail(EXIT_NOT_FOUND, f"no product {project_key} / {firmware_name}: create it with "
                      f"`luatos-fota product add --project-key {project_key} --firmware-name "
                      f"{firmware_name}`, or pass --create-product")
            pid = _product_id(st, None, project_key, firmware_name, create=True)
        rel = st.releases.add(data, product_id=pid, version=version, core=core, kind=kind,
                             filename=package.name, notes=notes, enabled=not paused, forced=forced,
                             percent=percent, device_keys=_split(devices), allow_downgrade=downgrade,
                             preflight="skipped" if skip_preflight else "pending", actor="cli")
        if not skip_preflight and isinstance(st, Store):
            if hasattr(spinner, "update"):
                spinner.update(f"preflight of release {rel.id}: booting it in the emulator …")
            settings = PreflightSettings(wall_limit_s=_duration(preflight_wall),
                                         window_s=_duration(preflight_window))
            rel = PreflightRunner(st, settings).run(rel.id, baseline=baseline, actor="cli") or rel
        elif not skip_preflight:  # the server runs it off its request path: wait for the result
            deadline = time.monotonic() + _duration(preflight_wall) + 30
            while rel.preflight_status in ("pending", "running") and time.monotonic() < deadline:
                time.sleep(0.2)
                rel = st.releases.get(rel.id)
    if as_json:
        _out(rel)
    else:
        core_txt = f" core {rel.core_version}" if rel.core_version else ""
        click.echo(f"release {rel.id}: {rel.firmware_name} {rel.script_version}{core_txt} "
                   f"({rel.kind}), {rel.size} bytes sha256 {rel.sha256[:16]}…, target "
                   f"{rel.target_mode}, {'enabled' if rel.enabled else 'disabled'}")
        click.echo(f"  devices report this build as {_wire_form(rel.script_version)} "
                   "(libfota2 sends <core>.xxx.zzz, e.g. 2001.001.001 for 001.000.001 on core V2001)")
        _print_preflight(rel)
    if rel.preflight_status in ("failed", "unsupported"):
        sys.exit(EXIT_PREFLIGHT)


def _print_preflight(rel: Release) -> None:
    status = rel.preflight_status or "none"
    res = rel.preflight_result or {}
    colour = {"passed": "green", "failed": "red", "unsupported": "yellow", "skipped": "yellow"}
    click.secho(f"preflight: {status}" + (f" - {res['summary']}" if res.get("summary") else ""),
                fg=colour.get(status), err=status != "passed")
    for c in res.get("checks") or []:
        click.echo(f"  {'ok  ' if c['ok'] else 'FAIL'} {c['name']}: {c['detail']}", err=not c["ok"])
    for w in res.get("warnings") or []:
        click.secho(f"  warning: {w}", fg="yellow", err=True)
    if res.get("wall_s") is not None:
        click.echo(f"  {res.get('virtual_ms', 0) / 1000:.0f} s of device time in "
                   f"{res.get('process_wall_s', res['wall_s']):.2f} s of wall time")
    if status in ("failed", "unsupported") and res.get("log_excerpt"):
        click.echo("  last lines of the device log:", err=True)
        for line in str(res["log_excerpt"]).splitlines():
            click.echo(f"    {line}", err=True)


@release.command("preflight")
@data_opt
@db_opt
@click.option("--baseline", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Package devices run today (default: the product's previous release).")
@click.option("--preflight-window", default="10m", show_default=True,
              help="Virtual time of each preflight run (cold boot, upgrade path).")
@click.option("--preflight-wall", default="60s", show_default=True,
              help="Wall-time limit of the preflight worker.")
@json_opt
@click.argument("release_id", type=int)
def release_preflight(data_dir: Path, db_url: str | None, baseline: Path | None, preflight_window: str,
                      preflight_wall: str, as_json: bool, release_id: int) -> None:
    """Run RELEASE_ID's preflight (again); enable it if it passes and was meant to be enabled."""
    with _Guard():
        st = Store(data_dir, db_url)
        st.releases.request_preflight(release_id, actor="cli")
        settings = PreflightSettings(wall_limit_s=_duration(preflight_wall),
                                     window_s=_duration(preflight_window))
        rel = PreflightRunner(st, settings).run(release_id, baseline=baseline, actor="cli")
        if rel is None:
            _fail(EXIT_REFUSED, f"release {release_id}: another worker is running its preflight")
            return
    if as_json:
        _out(rel)
    else:
        _print_preflight(rel)
    if rel.preflight_status in ("failed", "unsupported"):
        sys.exit(EXIT_PREFLIGHT)


@release.command("list")
@store_opts
@db_opt
@click.option("--product-id", type=int, default=None, help="The product by its id (product list).")
@json_opt
def release_list(data_dir: Path | None, db_url: str | None, product_id: int | None, as_json: bool) -> None:
    """List releases (script version, state, target, size)."""
    rows = _open(data_dir, db_url).releases.all(product_id)
    if as_json:
        return _out(rows)
    _table([[r.id, r.firmware_name, r.script_version, r.core_version or "", r.kind,
             "archived" if r.archived else "enabled" if r.enabled else "paused",
             r.preflight_status or "-",
             "forced" if r.forced else "",
             r.target_mode + (f" {r.percent:g}%" if r.target_mode == "percent" else
                                 f" {len(r.device_keys)}" if r.target_mode == "devices" else ""),
             r.size, r.sha256[:12]] for r in rows],
           ["ID", "FIRMWARE", "SCRIPT VERSION", "CORE", "KIND", "STATE", "PREFLIGHT", "", "TARGET", "SIZE",
            "SHA256"])


def _set_enabled(data_dir: Path | None, db_url: str | None, rid: int, enabled: bool, as_json: bool) -> None:
    with _Guard():
        r = _open(data_dir, db_url).releases.update(rid, enabled=enabled, actor="cli")
    if as_json:
        return _out(r)
    click.echo(f"release {rid} {'enabled' if enabled else 'paused'}")


@release.command("enable")
@store_opts
@db_opt
@json_opt
@click.argument("release_id", type=int)
def release_enable(data_dir: Path | None, db_url: str | None, as_json: bool, release_id: int) -> None:
    """Serve a paused release again."""
    _set_enabled(data_dir, db_url, release_id, True, as_json)


@release.command("pause")
@store_opts
@db_opt
@json_opt
@click.argument("release_id", type=int)
def release_pause(data_dir: Path | None, db_url: str | None, as_json: bool, release_id: int) -> None:
    """Stop serving a release (devices keep what they have)."""
    _set_enabled(data_dir, db_url, release_id, False, as_json)


@release.command("archive")
@store_opts
@db_opt
@json_opt
@click.argument("release_id", type=int)
def release_archive(data_dir: Path | None, db_url: str | None, as_json: bool, release_id: int) -> None:
    """Retire a release for good: paused, never served again, listed apart."""
    with _Guard():
        r = _open(data_dir, db_url).releases.archive(release_id, actor="cli")
    if as_json:
        return _out(r)
    click.echo(f"release {release_id} archived")


@release.command("target")
@store_opts
@db_opt
@click.option("--all", "all_", is_flag=True, help="Every device of the product.")
@click.option("--percent", type=click.FloatRange(0, 100), default=None, help="This share of the product's devices.")
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
        r = _open(data_dir, db_url).releases.set_target(release_id, mode, percent=percent,
                                                       device_keys=_split(devices),
                                                       actor="cli")
    if as_json:
        return _out(r)
    click.echo(f"release {release_id} targets {mode}")


@release.command("stats")
@store_opts
@db_opt
@click.option("--release-id", type=int, default=None, help="Only this release.")
@json_opt
def release_stats(data_dir: Path | None, db_url: str | None, release_id: int | None, as_json: bool) -> None:
    """Rollout progress: targeted / served / confirmed devices per release."""
    with _Guard():
        rows = _open(data_dir, db_url).releases.stats(release_id)
    if as_json:
        return _out(rows)
    _table([[s.release_id, s.script_version, s.target_mode, s.targeted, s.served,
             s.confirmed, s.failed] for s in rows],
           ["ID", "SCRIPT VERSION", "TARGET", "TARGETED", "SERVED", "CONFIRMED", "FAILED"])


# ---------------------------------------------------------------------------- devices

@main.group()
def device() -> None:
    """Devices: versions, last seen, bans and pins."""


@device.command("tokens")
@data_opt
@db_opt
@click.option("--product-id", type=int, default=None, help="The product by its id (product list).")
@click.option("--project-key", default=None, help="The product by its key (with --firmware-name).")
@click.option("--firmware-name", default=None, help="What libfota2 sends: <PROJECT>_LuatOS-SoC_<bsp>.")
@json_opt
@click.argument("csv_file", type=click.File("r", encoding="utf-8"))
def device_tokens(data_dir: Path, db_url: str | None, product_id: int | None, project_key: str | None,
                  firmware_name: str | None, as_json: bool, csv_file: Any) -> None:
    """Import per-device tokens (product auth mode `token`) from a CSV of `device,token` lines
    (`-` reads stdin). Only a hash of each token is stored."""
    from .admin import parse_token_csv

    with _Guard():
        st = Store(data_dir, db_url)
        pid = _product_id(st, product_id, project_key, firmware_name)
        n = st.products.import_device_tokens(pid, parse_token_csv(csv_file.read()), actor="cli")
    _out({"imported": n}) if as_json else click.echo(f"imported {n} device tokens for product {pid}")


@device.command("list")
@store_opts
@db_opt
@click.option("--product-id", type=int, default=None, help="The product by its id (product list).")
@click.option("--banned", is_flag=True, help="Only banned devices.")
@click.option("--limit", type=int, default=1000, show_default=True, help="At most this many devices.")
@json_opt
def device_list(data_dir: Path | None, db_url: str | None, product_id: int | None, banned: bool, limit: int,
                as_json: bool) -> None:
    """List devices: version, last check-in, ban, pin."""
    rows = _open(data_dir, db_url).devices.all(product_id=product_id, banned=True if banned else None, limit=limit)
    if as_json:
        return _out(rows)
    _table([[d.device_key, d.product_id, d.reported_version, _ts(d.last_seen), d.last_ip,
             f"{d.ban_code} {d.ban_reason[:40]}" if d.ban_code else "",
             d.pinned_release_id or ""] for d in rows],
           ["DEVICE", "PRODUCT", "REPORTED (core.xxx.zzz)", "LAST SEEN", "IP", "BAN", "PIN"])


@device.command("show")
@store_opts
@db_opt
@json_opt
@click.argument("device_key", metavar="DEVICE_ID")
def device_show(data_dir: Path | None, db_url: str | None, as_json: bool, device_key: str) -> None:
    """One device: its version, last check-in, ban and pin (the audit has its history)."""
    with _Guard():
        d = _open(data_dir, db_url).devices.require(device_key)
    if as_json:
        return _out(d)
    fields = d.to_json()
    width = max(len(k) for k in fields)
    for k, v in fields.items():
        shown = _ts(v) if isinstance(v, int | float) and (k.endswith("_at") or k in _TIME_FIELDS) \
            else ("-" if v in (None, "") else v)
        click.echo(f"{k.replace('_', ' '):<{width}}  {shown}")


@device.command("ban")
@store_opts
@db_opt
@click.option("--reason", default="", help="Why (shown in the audit and the dashboard).")
@json_opt
@click.argument("device_key", metavar="DEVICE_ID")
def device_ban(data_dir: Path | None, db_url: str | None, reason: str, as_json: bool, device_key: str) -> None:
    """Bar a device from upgrades (it gets code 21)."""
    with _Guard():
        d = _open(data_dir, db_url).devices.ban(device_key, reason, actor="cli")
    _out(d) if as_json else click.echo(f"device {d.device_key} banned")


@device.command("unban")
@store_opts
@db_opt
@json_opt
@click.argument("device_key", metavar="DEVICE_ID")
def device_unban(data_dir: Path | None, db_url: str | None, as_json: bool, device_key: str) -> None:
    """Lift an operator ban or a loop ban (code 40)."""
    with _Guard():
        d = _open(data_dir, db_url).devices.unban(device_key, actor="cli")
    _out(d) if as_json else click.echo(f"device {d.device_key} unbanned")


@device.command("pin")
@store_opts
@db_opt
@json_opt
@click.argument("device_key", metavar="DEVICE_ID")
@click.argument("release_id")
def device_pin(data_dir: Path | None, db_url: str | None, as_json: bool, device_key: str, release_id: str) -> None:
    """Pin DEVICE_ID to RELEASE_ID ('none' removes the pin)."""
    rid = None if release_id.lower() in ("none", "-", "0") else int(release_id)
    with _Guard():
        d = _open(data_dir, db_url).devices.pin(device_key, rid, actor="cli")
    _out(d) if as_json else click.echo(f"device {d.device_key} pinned to {rid}")


# ---------------------------------------------------------------------------- audit

@main.command()
@store_opts
@db_opt
@click.option("--device", "device_key", default=None, help="Only this device.")
@click.option("--event", "event_", default=None, help="Only this event (serve, checkin, loop_ban, ...).")
@click.option("--release-id", type=int, default=None, help="Only rows about this release.")
@click.option("--limit", type=int, default=50, show_default=True, help="At most this many rows.")
@json_opt
def audit(data_dir: Path | None, db_url: str | None, device_key: str | None, event_: str | None,
          release_id: int | None, limit: int, as_json: bool) -> None:
    """Why did a device get (or not get) a package? Newest first."""
    st = _open(data_dir, db_url)
    rows = st.audit.query(device_key=device_key, event_=event_, release_id=release_id, limit=limit)
    if as_json:
        return _out(rows)
    if not rows:
        click.echo(_why_no_audit(st, device_key, event_, release_id), err=True)
        return None
    for a in rows:
        d = a.detail if isinstance(a.detail, dict) else {"detail": a.detail}
        why = d.get("reason") or d.get("msg") or ", ".join(f"{k}={v}" for k, v in d.items() if v not in (None, ""))
        click.echo(f"{_ts(a.ts)}  {a.event:<16} {a.device_key or '-':<16} "
                   f"rel={a.release_id or '-'} status={a.status or '-'} code={a.code if a.code is not None else '-'}  {why}")


def _why_no_audit(st: Store, device_key: str | None, event_: str | None, release_id: int | None) -> str:
    """Say why ``audit`` printed nothing, so an empty answer is never a puzzle."""
    if device_key is not None:
        try:
            st.devices.require(device_key)
        except NotFound:
            known = [d.device_key for d in st.devices.all(limit=5)]
            hint = f" (devices it knows: {', '.join(known)})" if known else " (it knows no devices yet)"
            return (f"no audit rows: device {device_key} has never checked in with this server"
                    f"{hint}; the id is the MAC (Air8101) or IMEI the device sends")
    filters = [f"{k} {v}" for k, v in (("device", device_key), ("event", event_), ("release", release_id))
               if v is not None]
    if filters:
        return f"no audit rows for {', '.join(filters)}"
    return "no audit rows yet: nothing has happened on this server"


@main.command("audit-prune")
@store_opts
@db_opt
@click.option("--older-than", required=True, help="Age like 30d, 12h (rows older than this go).")
@json_opt
def audit_prune(data_dir: Path | None, db_url: str | None, older_than: str, as_json: bool) -> None:
    """Delete old audit rows (the table grows with every check-in)."""
    n = _open(data_dir, db_url).audit.prune(_duration(older_than), actor="cli")
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
    removed = _open(data_dir, db_url).releases.gc_blobs(_duration(min_age))
    _out({"removed": removed}) if as_json else click.echo(f"removed {len(removed)} unreferenced blobs")


@main.command()
@data_opt
@db_opt
@click.option("--repair", is_flag=True, help="Quarantine corrupt blobs, pause their releases, delete "
              "unreferenced blobs and dead temp files (older than 10 minutes).")
@json_opt
def check(data_dir: Path, db_url: str | None, repair: bool, as_json: bool) -> None:
    """Verify the database against the stored packages (exit 4 when something is wrong and not repaired)."""
    with _Guard():
        rep = Store(data_dir, db_url).check(repair=repair)
    if as_json:
        _out(rep)
    else:
        click.echo(f"{rep['artifacts']} packages checked")
        for key, what in (("missing_blobs", "missing package"), ("corrupt_blobs", "corrupt package"),
                          ("orphan_blobs", "unreferenced blob"), ("temp_files", "temp file")):
            for item in rep[key]:
                click.echo(f"{what}: {item}")
        if rep["releases_affected"]:
            verb = "paused" if repair else "affected"
            click.echo(f"releases {verb}: {', '.join(map(str, rep['releases_affected']))}")
        click.echo("ok" if rep["ok"] else ("repaired" if repair else "problems found (run with --repair)"))
    if not rep["ok"] and not repair:
        sys.exit(EXIT_REFUSED)


@main.command()
@data_opt
def token(data_dir: Path) -> None:
    """Print the admin token of DATA (creating the token if the directory has none yet)."""
    from .admintoken import resolve_admin_token

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
@click.option("--token", "tok", envvar="LUATOS_FOTA_TOKEN", default=None, show_envvar=True,
              help="Admin token (luatos-fota token --data DIR prints it).")
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
