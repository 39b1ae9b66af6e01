"""In-memory view of products and releases that the check-in path decides from.

Loaded in one go from the store and replaced as a whole when the DB generation counter moves,
so a check-in never sees half of an operator's change. Staged rollout buckets are a hash of
release id and device id: stable across runs, instances and restarts, and independent between
releases (the first 10 % of one release are not always the first 10 % of the next).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from luatos_common.version import FotaVersion, ScriptVersion

BUCKETS = 10_000


def rollout_bucket(device_key: str, release_id: int) -> int:
    """A device's position in [0, 10000) for one release's percentage rollout."""
    h = hashlib.sha256(f"{release_id}:{device_key}".encode()).digest()
    return int.from_bytes(h[:8], "big") % BUCKETS


@dataclass(frozen=True)
class ProductInfo:
    id: int
    project_key: str
    firmware_name: str
    name: str
    auto_register: bool
    auth_mode: str = "none"  # deviceauth.AUTH_MODES
    auth_secret: str = ""


@dataclass(frozen=True)
class ReleaseInfo:
    id: int
    product_id: int
    script: ScriptVersion
    core: int | None
    kind: str
    enabled: bool
    forced: bool
    target_mode: str
    percent: float
    devices: frozenset[str]
    artifact_id: int
    sha256: str
    size: int

    def target_for(self, device_core: int) -> FotaVersion:
        """The version the device will report after installing this release."""
        core = self.core if (self.kind == "full" and self.core is not None) else device_core
        x, _, z = self.script.groups
        return FotaVersion(core, self.script.x, self.script.z, f"{core}.{x}.{z}")

    def targets(self, device_key: str) -> bool:
        if self.target_mode == "all":
            return True
        if self.target_mode == "devices":
            return device_key in self.devices
        if self.target_mode == "percent":
            return rollout_bucket(device_key, self.id) < round(self.percent * BUCKETS / 100)
        return False


@dataclass
class Catalog:
    generation: int
    products: dict[int, ProductInfo] = field(default_factory=dict)
    by_key_name: dict[tuple[str, str], ProductInfo] = field(default_factory=dict)
    by_key: dict[str, list[ProductInfo]] = field(default_factory=dict)
    releases: dict[int, ReleaseInfo] = field(default_factory=dict)
    releases_by_product: dict[int, list[ReleaseInfo]] = field(default_factory=dict)

    def add_product(self, p: ProductInfo) -> None:
        self.products[p.id] = p
        self.by_key_name[(p.project_key, p.firmware_name)] = p
        self.by_key.setdefault(p.project_key, []).append(p)

    def add_release(self, r: ReleaseInfo) -> None:
        self.releases[r.id] = r
        self.releases_by_product.setdefault(r.product_id, []).append(r)
