"""Products (what a device's project_key + firmware_name select) and their device credentials."""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa

from luatos_common.deviceid import normalize_device_key

from . import schema as t
from .db import Database
from .errors import Conflict, NotFound
from .records import Product
from .repo_audit import audit_change


class ProductsRepo:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, project_key: str, firmware_name: str, name: str = "",
            auto_register: bool = True, actor: str = "admin") -> Product:
        pkey, fw = project_key.strip(), firmware_name.strip()
        if not pkey:
            raise ValueError("project_key must not be empty")
        if not fw:
            raise ValueError("firmware_name must not be empty (libfota2 sends <PROJECT>_LuatOS-SoC_<bsp>)")
        if any(ch.isspace() for ch in fw):
            raise ValueError(f"firmware_name {fw!r} contains whitespace: the device's request line "
                             "would break (HTTP 400) before reaching the server")
        with self.db.tx() as c:
            exists = c.execute(sa.select(t.products.c.id).where(
                t.products.c.project_key == pkey, t.products.c.firmware_name == fw)).first()
            if exists:
                raise Conflict(f"product {pkey!r}/{fw!r} already exists (id {exists[0]})")
            pid = c.execute(t.products.insert().values(
                project_key=pkey, firmware_name=fw, name=name or fw, auto_register=auto_register,
                created_at=time.time())).inserted_primary_key[0]  # type: ignore[index]
            self.db.bump(c)
            audit_change(c, "product_added", actor=actor, product_id=pid, project_key=pkey, firmware_name=fw)
        return self.get(pid)

    def get(self, product_id: int) -> Product:
        with self.db.ro() as c:
            r = c.execute(sa.select(t.products).where(t.products.c.id == product_id)).first()
        if r is None:
            raise NotFound(f"product {product_id} does not exist")
        return Product.from_row(r)

    def find(self, project_key: str, firmware_name: str | None = None) -> Product:
        with self.db.ro() as c:
            q = sa.select(t.products).where(t.products.c.project_key == project_key)
            if firmware_name is not None:
                q = q.where(t.products.c.firmware_name == firmware_name)
            rows = c.execute(q).fetchall()
        if not rows:
            what = f"{project_key!r}/{firmware_name!r}" if firmware_name else f"key {project_key!r}"
            raise NotFound(f"no product {what}; create it with `luatos-fota product add`")
        if len(rows) > 1:
            raise Conflict(f"project key {project_key!r} has {len(rows)} products; give the firmware name")
        return Product.from_row(rows[0])

    def all(self) -> list[Product]:
        with self.db.ro() as c:
            return [Product.from_row(r) for r in c.execute(sa.select(t.products).order_by(t.products.c.id))]

    def update(self, product_id: int, *, name: str | None = None,
               auto_register: bool | None = None, actor: str = "admin") -> Product:
        vals: dict[str, Any] = {}
        if name is not None:
            vals["name"] = name
        if auto_register is not None:
            vals["auto_register"] = bool(auto_register)
        self.get(product_id)
        if vals:
            with self.db.tx() as c:
                c.execute(t.products.update().where(t.products.c.id == product_id).values(**vals))
                self.db.bump(c)
                audit_change(c, "product_updated", actor=actor, product_id=product_id, changes=vals)
        return self.get(product_id)

    def set_auth(self, product_id: int, mode: str, *, secret: str | None = None,
                 actor: str = "admin") -> Product:
        """Switch a product's device authentication (deviceauth.py); ``hmac`` gets a new random
        secret unless one is given (returned once in the result, as ``auth_secret``)."""
        from .deviceauth import AUTH_MODES, new_secret

        if mode not in AUTH_MODES:
            raise ValueError(f"auth mode must be one of {', '.join(AUTH_MODES)}, not {mode!r}")
        self.get(product_id)
        vals: dict[str, Any] = {"auth_mode": mode}
        if mode == "hmac":
            vals["auth_secret"] = secret or new_secret()
        with self.db.tx() as c:
            c.execute(t.products.update().where(t.products.c.id == product_id).values(**vals))
            self.db.bump(c)
            audit_change(c, "product_auth", actor=actor, product_id=product_id, mode=mode)
        return self.get(product_id)

    def import_device_tokens(self, product_id: int, tokens: Iterable[tuple[str, str]], *,
                             actor: str = "admin") -> int:
        """Set per-device tokens (``token`` mode): (device key, token) pairs, replacing older ones."""
        from .deviceauth import MAX_TOKEN_LEN, token_hash

        self.get(product_id)
        rows = {}
        for n, (given, tok) in enumerate(tokens, 1):
            device_key, tok = normalize_device_key(str(given).strip()), str(tok).strip()
            if not device_key or len(device_key) > 64:
                raise ValueError(f"row {n}: device id {given!r} must be 1..64 characters")
            if len(tok) < 16 or len(tok) > MAX_TOKEN_LEN:
                raise ValueError(f"row {n} ({device_key}): token must be 16..{MAX_TOKEN_LEN} characters, "
                                 f"not {len(tok)}")
            rows[device_key] = token_hash(tok)
        now = time.time()
        with self.db.tx() as c:
            if rows:
                c.execute(t.device_tokens.delete().where(t.device_tokens.c.device_key.in_(list(rows))))
                c.execute(t.device_tokens.insert(), [{"device_key": k, "product_id": product_id,
                                                      "token_sha256": h, "created_at": now}
                                                     for k, h in rows.items()])
            self.db.bump(c, devices_only=True)
            audit_change(c, "device_tokens", actor=actor, product_id=product_id, count=len(rows))
        return len(rows)

    def device_token_hash(self, device_key: str) -> tuple[int, str] | None:
        """(product id, token SHA-256) of a device's imported token, or None."""
        with self.db.ro() as c:
            r = c.execute(sa.select(t.device_tokens.c.product_id, t.device_tokens.c.token_sha256)
                          .where(t.device_tokens.c.device_key == device_key)).first()
        return (int(r[0]), str(r[1])) if r else None
