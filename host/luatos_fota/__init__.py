"""Self-hosted FOTA server speaking what LuatOS libfota2 sends.

Public API (stable; other packages and tests call these):

* ``create_app(data_dir, db_url=None, admin_token=None, *, push_hub=None, **cfg) -> Starlette``
  (``luatos_fota.app``); ``cfg`` keys are the fields of ``luatos_fota.config.ServerConfig``.
* ``running_server(data_dir, **create_app_kwargs)`` (``luatos_fota.testing``): context manager
  yielding a ``RunningServer`` (``.base_url``, ``.port``, ``.device_url``, ``.store``,
  ``.admin_token``, ``.flush()``), uvicorn on a free loopback port in a thread.
* ``device_request(port, target, ...)`` (``luatos_fota.testing``): one request with the exact
  bytes LuatOS ``http.request`` sends, answer read raw.
* ``Store(data_dir, db_url=None)`` (``luatos_fota.store``): products, releases, devices, audit,
  the same code the CLI and admin API use.

Module map: app (ASGI app, device fast path), devrequest (lenient libfota2 parsing), service
(the decision), catalog (cached products/releases, rollout buckets), store/schema/blobs
(persistence), uploads (package + version checks), writer (buffered audit/last-seen), admin
(admin API + OpenAPI), httpio (Range, raw responses), ratelimit, server (uvicorn protocol),
cli (``luatos-fota``), push (TCP push channel).
"""

from __future__ import annotations

from typing import Any

__all__ = ["create_app", "running_server", "device_request", "Store"]


def __getattr__(name: str) -> Any:  # lazy, so `import luatos_fota.push` stays light
    if name == "create_app":
        from .app import create_app

        return create_app
    if name in ("running_server", "device_request"):
        from . import testing

        return getattr(testing, name)
    if name == "Store":
        from .store import Store

        return Store
    raise AttributeError(name)
