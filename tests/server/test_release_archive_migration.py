"""A database made before releases could be archived gains the column and keeps its rows."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa

from luatos_fota import schema


def test_old_database_gains_archived_column(tmp_path: Path) -> None:
    eng = sa.create_engine(f"sqlite:///{tmp_path / 'old.db'}")
    with eng.begin() as c:
        schema.schema_version.create(c)
        for m in schema.MIGRATIONS[:4]:  # the schema as it was before archiving existed
            m(c)
        c.execute(schema.schema_version.insert().values(id=1, version=4))
        c.execute(sa.text("INSERT INTO products (project_key, firmware_name, name, auto_register, created_at)"
                          " VALUES ('K', 'F_LuatOS-SoC_Air8101', '', 1, 0)"))
        c.execute(sa.text("INSERT INTO artifacts (sha256, size, kind, details, filename, created_at)"
                          " VALUES ('ab', 1, 'air8101-script', '{}', '', 0)"))
        c.execute(sa.text("INSERT INTO releases (product_id, artifact_id, script_version, kind, notes,"
                          " enabled, forced, target_mode, percent, created_at)"
                          " VALUES (1, 1, '001.000.001', 'script', '', 1, 0, 'all', 100, 0)"))
        assert "archived" not in {col["name"] for col in sa.inspect(c).get_columns("releases")}
    with eng.begin() as c:
        assert schema.migrate(c) == schema.LATEST
        assert "archived" in {col["name"] for col in sa.inspect(c).get_columns("releases")}
        assert c.execute(sa.text("SELECT script_version, archived FROM releases")).all() == [("001.000.001", 0)]
    with eng.begin() as c:
        schema.MIGRATIONS[4](c)  # idempotent: a second run changes nothing
    eng.dispose()
