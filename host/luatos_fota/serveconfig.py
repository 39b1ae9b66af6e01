"""``luatos-fota serve`` settings from a TOML file, flags and defaults, in that order of weight.

Every :class:`~luatos_fota.config.ServerConfig` field can be set in the file under its own name
(``max_connections = 4096``) and with a flag of the same name (``--max-connections 4096``); the
few settings that belong to the process, not the app (``host``, ``port``, ``push_port``,
``tls_cert``, ``tls_key``, ``access_log``, ``db``), are keys of the same file. Durations in the
file are numbers of seconds. Unknown keys and wrong types are refused with the file and key named.
"""

from __future__ import annotations

import tomllib
from dataclasses import MISSING, fields
from pathlib import Path
from typing import Any

from .config import ServerConfig

#: Settings of the serving process (not of the app), with their types.
PROCESS_KEYS: dict[str, type] = {"host": str, "port": int, "push_port": int, "tls_cert": str, "tls_key": str,
                                 "access_log": bool, "db": str, "public_url": str}
#: ServerConfig fields that get a generic flag (the others have hand-written ones or are internal).
_NO_FLAG = {"extra", "device_endpoint", "public_url", "blob_url", "loop_max_serves", "loop_window_s", "device_rate",
            "device_burst", "ip_rate", "ip_burst", "max_inflight", "audit_up_to_date", "serve_counts"}
_TYPES = {"int": int, "float": float, "bool": bool, "str": str}


def config_fields() -> dict[str, tuple[type, Any]]:
    """name -> (type, default) of every ServerConfig field settable from a file or a flag."""
    out: dict[str, tuple[type, Any]] = {}
    for f in fields(ServerConfig):
        if f.name == "extra":
            continue
        typ = _TYPES.get(str(f.type).replace(" | None", ""))
        if typ is None:
            continue
        out[f.name] = (typ, None if f.default is MISSING else f.default)
    return out


def flag_fields() -> dict[str, tuple[type, Any]]:
    return {k: v for k, v in config_fields().items() if k not in _NO_FLAG}


class ConfigFileError(ValueError):
    pass


def load(path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(ServerConfig keys, process keys) from a TOML file; raises ConfigFileError naming the problem."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise ConfigFileError(f"{path}: cannot read: {e.strerror or e}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigFileError(f"{path}: not valid TOML: {e}") from None
    known = config_fields()
    app: dict[str, Any] = {}
    proc: dict[str, Any] = {}
    for key, value in raw.items():
        if key in PROCESS_KEYS:
            typ = PROCESS_KEYS[key]
            dest = proc
        elif key in known:
            typ = known[key][0]
            dest = app
        else:
            raise ConfigFileError(f"{path}: unknown key {key!r}; known: "
                                  f"{', '.join(sorted([*known, *PROCESS_KEYS]))}")
        if typ is float and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, typ) or (typ is not bool and isinstance(value, bool)):
            raise ConfigFileError(f"{path}: key {key!r} must be {typ.__name__}, not {value!r}")
        dest[key] = value
    return app, proc
