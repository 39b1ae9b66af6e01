"""Tables (SQLAlchemy Core) and the ordered migrations that create and evolve them.

Timestamps are float seconds since the epoch: portable between SQLite and PostgreSQL and cheap
to compare in the loop guard. ``generation`` is a one-row counter bumped by every write that
changes what a check-in may decide (products, releases, targeting, bans, pins); instances poll it
to know when their in-memory catalogue is stale.
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import Connection

metadata = sa.MetaData()

schema_version = sa.Table(
    "schema_version", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

generation = sa.Table(
    "generation", metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("value", sa.BigInteger, nullable=False),
)

products = sa.Table(
    "products", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("project_key", sa.String(200), nullable=False),
    sa.Column("firmware_name", sa.String(300), nullable=False),
    sa.Column("name", sa.String(300), nullable=False, server_default=""),
    # False: only devices an operator registered may check in (others get code 17).
    sa.Column("auto_register", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_at", sa.Float, nullable=False),
    # Device authentication (migration 4, deviceauth.py): none | token | hmac, and the hmac key.
    sa.Column("auth_mode", sa.String(10), nullable=False, server_default="none"),
    sa.Column("auth_secret", sa.String(128), nullable=False, server_default=""),
    sa.UniqueConstraint("project_key", "firmware_name", name="uq_products_key_name"),
)

# Per-device tokens of ``token`` products (migration 4): only the SHA-256 is kept.
device_tokens = sa.Table(
    "device_tokens", metadata,
    sa.Column("device_key", sa.String(200), primary_key=True),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
    sa.Column("token_sha256", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
)

artifacts = sa.Table(
    "artifacts", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("sha256", sa.String(64), nullable=False, unique=True),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("core_version", sa.Integer, nullable=True),
    sa.Column("details", sa.Text, nullable=False, server_default="{}"),
    sa.Column("filename", sa.String(500), nullable=False, server_default=""),
    sa.Column("created_at", sa.Float, nullable=False),
)

releases = sa.Table(
    "releases", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
    sa.Column("artifact_id", sa.Integer, sa.ForeignKey("artifacts.id"), nullable=False),
    sa.Column("script_version", sa.String(40), nullable=False),
    sa.Column("core_version", sa.Integer, nullable=True),
    sa.Column("kind", sa.String(10), nullable=False),  # script | full
    sa.Column("notes", sa.Text, nullable=False, server_default=""),
    sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("target_mode", sa.String(10), nullable=False, server_default="all"),  # all|devices|percent
    sa.Column("percent", sa.Float, nullable=False, server_default="100"),
    sa.Column("created_at", sa.Float, nullable=False),
    # Archived (migration 5): retired for good, never served, listed apart.
    sa.Column("archived", sa.Boolean, nullable=False, server_default=sa.false()),
    # Preflight (migration 4): "" (none asked: a library call), pending | running | passed |
    # failed | unsupported | skipped; the result JSON; whether to enable the release on a pass.
    sa.Column("preflight_status", sa.String(12), nullable=False, server_default=""),
    sa.Column("preflight", sa.Text, nullable=False, server_default=""),
    sa.Column("enable_on_pass", sa.Boolean, nullable=False, server_default=sa.false()),
)

release_devices = sa.Table(
    "release_devices", metadata,
    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), primary_key=True),
    sa.Column("device_key", sa.String(200), primary_key=True),
)

devices = sa.Table(
    "devices", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("device_key", sa.String(200), nullable=False, unique=True),
    sa.Column("key_type", sa.String(10), nullable=False, server_default="mac"),
    sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=True),
    sa.Column("reported_version", sa.String(60), nullable=False, server_default=""),
    sa.Column("version_changed_at", sa.Float, nullable=False, server_default="0"),
    sa.Column("first_seen", sa.Float, nullable=False),
    sa.Column("last_seen", sa.Float, nullable=False),
    sa.Column("last_ip", sa.String(64), nullable=False, server_default=""),
    sa.Column("check_ins", sa.BigInteger, nullable=False, server_default="0"),
    # ban_code: 0 = not banned, 21 = barred by an operator, 40 = loop ban.
    sa.Column("ban_code", sa.Integer, nullable=False, server_default="0"),
    sa.Column("ban_reason", sa.Text, nullable=False, server_default=""),
    sa.Column("banned_at", sa.Float, nullable=True),
    sa.Column("pinned_release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=True),
    sa.Column("registered", sa.Boolean, nullable=False, server_default=sa.false()),
)

serves = sa.Table(
    "serves", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("fota_sn", sa.String(40), nullable=False, unique=True),
    sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
    sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=False),
    sa.Column("channel", sa.String(10), nullable=False),  # v1 | v2
    sa.Column("from_version", sa.String(60), nullable=False, server_default=""),
    sa.Column("served_at", sa.Float, nullable=False),
    sa.Column("result_code", sa.Integer, nullable=True),
    sa.Column("reported_at", sa.Float, nullable=True),
    sa.Column("confirmed_at", sa.Float, nullable=True),
    # Bytes of the package this serve sent (migration 4): what the loop guard adds up. NULL on
    # rows written before: they count as one whole package each.
    sa.Column("bytes", sa.BigInteger, nullable=True),
    sa.Index("ix_serves_device_release", "device_id", "release_id", "served_at"),
)

audit = sa.Table(
    "audit", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("event", sa.String(40), nullable=False),
    sa.Column("device_key", sa.String(200), nullable=True),
    sa.Column("product_id", sa.Integer, nullable=True),
    sa.Column("release_id", sa.Integer, nullable=True),
    sa.Column("status", sa.Integer, nullable=True),
    sa.Column("code", sa.Integer, nullable=True),
    sa.Column("ip", sa.String(64), nullable=True),
    sa.Column("actor", sa.String(40), nullable=True),
    sa.Column("detail", sa.Text, nullable=False, server_default=""),
    sa.Index("ix_audit_device", "device_key", "id"),
    sa.Index("ix_audit_ts", "ts"),  # migration 2: pruning and time-range queries
)

# The push channel across instances (migration 3). Each server instance that runs a push hub
# has a row it heartbeats; a device logged in to an instance has a session row naming it; a push
# asked of one instance for a device connected to another is an outbox row that the owning
# instance picks up, sends and marks with the hub's result.
push_instances = sa.Table(
    "push_instances", metadata,
    sa.Column("instance_id", sa.String(40), primary_key=True),
    sa.Column("push_address", sa.String(200), nullable=False, server_default=""),
    sa.Column("started_at", sa.Float, nullable=False),
    sa.Column("heartbeat_at", sa.Float, nullable=False),
)

push_sessions = sa.Table(
    "push_sessions", metadata,
    sa.Column("device_key", sa.String(200), primary_key=True),
    sa.Column("instance_id", sa.String(40), nullable=False),
    sa.Column("peer", sa.String(100), nullable=False, server_default=""),
    sa.Column("info", sa.Text, nullable=False, server_default="{}"),
    sa.Column("connected_at", sa.Float, nullable=False),
    sa.Column("last_answer", sa.Text, nullable=True),
    sa.Column("last_answer_at", sa.Float, nullable=True),
)

push_outbox = sa.Table(
    "push_outbox", metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("instance_id", sa.String(40), nullable=False),  # the instance holding the socket
    sa.Column("origin", sa.String(40), nullable=False),       # the instance that was asked
    sa.Column("device_key", sa.String(200), nullable=False),
    sa.Column("message", sa.Text, nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("state", sa.String(10), nullable=False, server_default="queued"),  # queued | done
    sa.Column("result", sa.Text, nullable=False, server_default=""),
    sa.Column("done_at", sa.Float, nullable=True),
    sa.Index("ix_push_outbox_instance_state", "instance_id", "state"),
)

# Token buckets shared by every instance on this database (migration 7): the new-device rates,
# taken in the same transaction that inserts the device row, so N instances together never
# create more devices than one would. ``key`` is ``product:<id>`` or ``ip:<address>``.
rate_buckets = sa.Table(
    "rate_buckets", metadata,
    sa.Column("key", sa.String(120), primary_key=True),
    sa.Column("tokens", sa.Float, nullable=False),
    sa.Column("updated_at", sa.Float, nullable=False),
)

# generation rows: 1 = catalogue (products, releases, targeting), 2 = device state (bans, pins,
# registrations; migration 2). A device-only change drops cached devices, not the catalogue.
GEN_CATALOG = 1
GEN_DEVICES = 2


def _v1_tables() -> sa.MetaData:
    """The version-1 schema, frozen: migration 1 must create exactly this forever, whatever the
    ``Table`` definitions above grow into (later changes are later migrations)."""
    md = sa.MetaData()
    sa.Table("generation", md, sa.Column("id", sa.Integer, primary_key=True),
             sa.Column("value", sa.BigInteger, nullable=False))
    sa.Table("products", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("project_key", sa.String(200), nullable=False),
             sa.Column("firmware_name", sa.String(300), nullable=False),
             sa.Column("name", sa.String(300), nullable=False, server_default=""),
             sa.Column("auto_register", sa.Boolean, nullable=False, server_default=sa.true()),
             sa.Column("created_at", sa.Float, nullable=False),
             sa.UniqueConstraint("project_key", "firmware_name", name="uq_products_key_name"))
    sa.Table("artifacts", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("sha256", sa.String(64), nullable=False, unique=True),
             sa.Column("size", sa.BigInteger, nullable=False),
             sa.Column("kind", sa.String(40), nullable=False),
             sa.Column("core_version", sa.Integer, nullable=True),
             sa.Column("details", sa.Text, nullable=False, server_default="{}"),
             sa.Column("filename", sa.String(500), nullable=False, server_default=""),
             sa.Column("created_at", sa.Float, nullable=False))
    sa.Table("releases", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
             sa.Column("artifact_id", sa.Integer, sa.ForeignKey("artifacts.id"), nullable=False),
             sa.Column("script_version", sa.String(40), nullable=False),
             sa.Column("core_version", sa.Integer, nullable=True),
             sa.Column("kind", sa.String(10), nullable=False),
             sa.Column("notes", sa.Text, nullable=False, server_default=""),
             sa.Column("enabled", sa.Boolean, nullable=False, server_default=sa.true()),
             sa.Column("forced", sa.Boolean, nullable=False, server_default=sa.false()),
             sa.Column("target_mode", sa.String(10), nullable=False, server_default="all"),
             sa.Column("percent", sa.Float, nullable=False, server_default="100"),
             sa.Column("created_at", sa.Float, nullable=False))
    sa.Table("release_devices", md,
             sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), primary_key=True),
             sa.Column("device_key", sa.String(200), primary_key=True))
    sa.Table("devices", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("device_key", sa.String(200), nullable=False, unique=True),
             sa.Column("key_type", sa.String(10), nullable=False, server_default="mac"),
             sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=True),
             sa.Column("reported_version", sa.String(60), nullable=False, server_default=""),
             sa.Column("version_changed_at", sa.Float, nullable=False, server_default="0"),
             sa.Column("first_seen", sa.Float, nullable=False),
             sa.Column("last_seen", sa.Float, nullable=False),
             sa.Column("last_ip", sa.String(64), nullable=False, server_default=""),
             sa.Column("check_ins", sa.BigInteger, nullable=False, server_default="0"),
             sa.Column("ban_code", sa.Integer, nullable=False, server_default="0"),
             sa.Column("ban_reason", sa.Text, nullable=False, server_default=""),
             sa.Column("banned_at", sa.Float, nullable=True),
             sa.Column("pinned_release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=True),
             sa.Column("registered", sa.Boolean, nullable=False, server_default=sa.false()))
    sa.Table("serves", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("fota_sn", sa.String(40), nullable=False, unique=True),
             sa.Column("device_id", sa.Integer, sa.ForeignKey("devices.id"), nullable=False),
             sa.Column("release_id", sa.Integer, sa.ForeignKey("releases.id"), nullable=False),
             sa.Column("channel", sa.String(10), nullable=False),
             sa.Column("from_version", sa.String(60), nullable=False, server_default=""),
             sa.Column("served_at", sa.Float, nullable=False),
             sa.Column("result_code", sa.Integer, nullable=True),
             sa.Column("reported_at", sa.Float, nullable=True),
             sa.Column("confirmed_at", sa.Float, nullable=True),
             sa.Index("ix_serves_device_release", "device_id", "release_id", "served_at"))
    sa.Table("audit", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("ts", sa.Float, nullable=False),
             sa.Column("event", sa.String(40), nullable=False),
             sa.Column("device_key", sa.String(200), nullable=True),
             sa.Column("product_id", sa.Integer, nullable=True),
             sa.Column("release_id", sa.Integer, nullable=True),
             sa.Column("status", sa.Integer, nullable=True),
             sa.Column("code", sa.Integer, nullable=True),
             sa.Column("ip", sa.String(64), nullable=True),
             sa.Column("actor", sa.String(40), nullable=True),
             sa.Column("detail", sa.Text, nullable=False, server_default=""),
             sa.Index("ix_audit_device", "device_key", "id"))
    return md


def _m1_initial(conn: Connection) -> None:
    _v1_tables().create_all(conn, checkfirst=True)
    if conn.execute(sa.select(generation.c.value).where(generation.c.id == 1)).first() is None:
        conn.execute(generation.insert().values(id=1, value=1))


def _m2_device_generation_and_audit_ts(conn: Connection) -> None:
    next(i for i in audit.indexes if i.name == "ix_audit_ts").create(conn, checkfirst=True)
    if conn.execute(sa.select(generation.c.value).where(generation.c.id == GEN_DEVICES)).first() is None:
        conn.execute(generation.insert().values(id=GEN_DEVICES, value=1))


def _m3_push_relay(conn: Connection) -> None:
    """Frozen copies (as in migration 1): later changes to the tables above are later migrations."""
    md = sa.MetaData()
    sa.Table("push_instances", md,
             sa.Column("instance_id", sa.String(40), primary_key=True),
             sa.Column("push_address", sa.String(200), nullable=False, server_default=""),
             sa.Column("started_at", sa.Float, nullable=False),
             sa.Column("heartbeat_at", sa.Float, nullable=False))
    sa.Table("push_sessions", md,
             sa.Column("device_key", sa.String(200), primary_key=True),
             sa.Column("instance_id", sa.String(40), nullable=False),
             sa.Column("peer", sa.String(100), nullable=False, server_default=""),
             sa.Column("info", sa.Text, nullable=False, server_default="{}"),
             sa.Column("connected_at", sa.Float, nullable=False),
             sa.Column("last_answer", sa.Text, nullable=True),
             sa.Column("last_answer_at", sa.Float, nullable=True))
    sa.Table("push_outbox", md,
             sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
             sa.Column("instance_id", sa.String(40), nullable=False),
             sa.Column("origin", sa.String(40), nullable=False),
             sa.Column("device_key", sa.String(200), nullable=False),
             sa.Column("message", sa.Text, nullable=False),
             sa.Column("created_at", sa.Float, nullable=False),
             sa.Column("state", sa.String(10), nullable=False, server_default="queued"),
             sa.Column("result", sa.Text, nullable=False, server_default=""),
             sa.Column("done_at", sa.Float, nullable=True),
             sa.Index("ix_push_outbox_instance_state", "instance_id", "state"))
    md.create_all(conn, checkfirst=True)


def _m4_preflight_and_serve_bytes(conn: Connection) -> None:
    """Release preflight state (issue 12) and the bytes each serve sent (loop guard)."""
    false = "0" if conn.dialect.name == "sqlite" else "false"
    for stmt in (
        "ALTER TABLE releases ADD COLUMN preflight_status VARCHAR(12) NOT NULL DEFAULT ''",
        "ALTER TABLE releases ADD COLUMN preflight TEXT NOT NULL DEFAULT ''",
        f"ALTER TABLE releases ADD COLUMN enable_on_pass BOOLEAN NOT NULL DEFAULT {false}",
        "ALTER TABLE serves ADD COLUMN bytes BIGINT",
    ):
        conn.execute(sa.text(stmt))


def _m5_release_archived(conn: Connection) -> None:
    """Releases retired for good (``release archive``)."""
    cols = {c["name"] for c in sa.inspect(conn).get_columns("releases")}
    if "archived" not in cols:
        conn.execute(sa.text("ALTER TABLE releases ADD COLUMN archived BOOLEAN NOT NULL DEFAULT FALSE"))
def _m6_device_auth(conn: Connection) -> None:
    """Device credentials: a product's auth mode and secret, per-device token digests."""
    cols = {c["name"] for c in sa.inspect(conn).get_columns("products")}
    if "auth_mode" not in cols:
        conn.execute(sa.text("ALTER TABLE products ADD COLUMN auth_mode VARCHAR(10) NOT NULL DEFAULT 'none'"))
    if "auth_secret" not in cols:
        conn.execute(sa.text("ALTER TABLE products ADD COLUMN auth_secret VARCHAR(128) NOT NULL DEFAULT ''"))
    md = sa.MetaData()
    sa.Table("products", md, sa.Column("id", sa.Integer, primary_key=True))
    sa.Table("device_tokens", md,
             sa.Column("device_key", sa.String(200), primary_key=True),
             sa.Column("product_id", sa.Integer, sa.ForeignKey("products.id"), nullable=False),
             sa.Column("token_sha256", sa.String(64), nullable=False),
             sa.Column("created_at", sa.Float, nullable=False))
    md.tables["device_tokens"].create(conn, checkfirst=True)


def _m7_rate_buckets(conn: Connection) -> None:
    """Shared new-device rate limits (a frozen copy of ``rate_buckets``, as in migration 1)."""
    md = sa.MetaData()
    sa.Table("rate_buckets", md,
             sa.Column("key", sa.String(120), primary_key=True),
             sa.Column("tokens", sa.Float, nullable=False),
             sa.Column("updated_at", sa.Float, nullable=False))
    md.tables["rate_buckets"].create(conn, checkfirst=True)


# Ordered: MIGRATIONS[i] brings the schema from version i to i + 1. Append, never edit.
MIGRATIONS: list[Callable[[Connection], None]] = [_m1_initial, _m2_device_generation_and_audit_ts,
                                                  _m3_push_relay, _m4_preflight_and_serve_bytes,
                                                  _m5_release_archived, _m6_device_auth,
                                                  _m7_rate_buckets]
LATEST = len(MIGRATIONS)


def current_version(conn: Connection) -> int:
    insp = sa.inspect(conn)
    if not insp.has_table("schema_version"):
        return 0
    row = conn.execute(sa.select(schema_version.c.version).where(schema_version.c.id == 1)).first()
    return int(row[0]) if row else 0


def migrate(conn: Connection) -> int:
    """Run pending migrations inside the caller's transaction; returns the resulting version."""
    ver = current_version(conn)
    if ver > LATEST:
        raise RuntimeError(f"database schema version {ver} is newer than this server ({LATEST}); upgrade luatos-fota")
    if ver == LATEST:
        return ver
    schema_version.create(conn, checkfirst=True)
    for i in range(ver, LATEST):
        MIGRATIONS[i](conn)
    if conn.execute(sa.select(schema_version.c.id)).first() is None:
        conn.execute(schema_version.insert().values(id=1, version=LATEST))
    else:
        conn.execute(schema_version.update().where(schema_version.c.id == 1).values(version=LATEST))
    return LATEST
