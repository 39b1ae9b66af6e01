"""The ``fota_server`` fixture's object: a real FOTA server plus the steps a test takes on it.

The helpers do what an operator does with ``luatos-fota`` (create the product, publish a
release), through the same store, so a test reads like the rollout it checks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .app import LuatosApp


class FotaServer:
    """A running FOTA server (``luatos_fota.testing.RunningServer``) with test helpers.

    Unknown attributes are the RunningServer's (``store``, ``admin_token``, ``port``, ...)."""

    def __init__(self, server: Any) -> None:
        self.server = server
        self.url: str = server.base_url
        self.data_dir: Path = Path(server.data_dir)

    @property
    def device_url(self) -> str:
        """What a device's libfota2 ``opts.url`` should be."""
        return str(self.server.device_url)

    @property
    def address(self) -> str:
        """``127.0.0.1:<port>``: what to map the device's configured server address to, e.g.
        ``luatos_device.net.map_address("192.168.1.10:8000", fota_server.address)``."""
        return f"{self.server.host}:{self.server.port}"

    def product(self, project_key: str, firmware_name: str) -> dict[str, Any]:
        """The product with this key and firmware name, created if missing."""
        from luatos_fota.store import NotFound

        try:
            return self.server.store.products.find(project_key, firmware_name).to_json()
        except NotFound:
            return self.server.store.products.add(project_key, firmware_name).to_json()

    def add_release(self, data: bytes, *, project_key: str, firmware_name: str,
                    **kwargs: Any) -> dict[str, Any]:
        """Upload a package as the admin would (``kwargs``: version, percent, devices, ...)."""
        pid = self.product(project_key, firmware_name)["id"]
        if "devices" in kwargs:  # this fixture's word for the release's device list
            kwargs["device_keys"] = kwargs.pop("devices")
        return self.server.store.releases.add(data, product_id=pid, **kwargs).to_json()

    def publish_project(self, project: LuatosApp | str | Path, *, version: str,
                        project_key: str | None = None, model: str = "Air8101",
                        **kwargs: Any) -> dict[str, Any]:
        """Build ``project`` with main.lua's VERSION set to ``version`` and publish it.

        ``project`` is the ``luatos_app`` fixture or a project directory. ``project_key``
        defaults to main.lua's ``PRODUCT_KEY``; the firmware name is what libfota2 derives
        from ``PROJECT`` and the model. ``kwargs`` go to the release (``percent=10``,
        ``devices=[...]``, ``enabled=False``, ...); without them it targets every device."""
        app = project if isinstance(project, LuatosApp) else LuatosApp(Path(project), model)
        key = project_key or app.product_key
        if not key:
            raise ValueError(f"{app.project}/main.lua sets no PRODUCT_KEY: pass "
                             "publish_project(..., project_key=\"<the key the device sends>\")")
        return self.add_release(app.package(version), project_key=key,
                                firmware_name=app.firmware_name, version=version, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.server, name)

    def __str__(self) -> str:
        return self.url
