"""One audit-event type written through one function: every entry is an AuditEvent, and only
``Store.insert_audit`` puts rows into the audit table."""

from __future__ import annotations

import ast
import dataclasses
import json
from pathlib import Path

from luatos_fota.audit import AuditEvent, detail_json
from luatos_fota.store import Store
from luatos_fota.writer import BufferedWriter

PACKAGE = Path(__file__).resolve().parents[2] / "host" / "luatos_fota"


def audit_inserts(path: Path) -> list[str]:
    """Where ``path`` builds an insert into the audit table or executes the prepared one, with
    the enclosing function (``<module>`` at the top level)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: list[str] = []

    def visit(node: ast.AST, func: str) -> None:
        for child in ast.iter_child_nodes(node):
            name = child.name if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef) else func
            if (isinstance(child, ast.Call) and isinstance(child.func, ast.Attribute) and child.func.attr == "insert"
                    and isinstance(child.func.value, ast.Attribute) and child.func.value.attr == "audit"):
                found.append(f"{path.name}:{func}:{child.lineno} audit.insert()")
            if isinstance(child, ast.Name) and child.id == "_Q_INSERT_AUDIT" and isinstance(child.ctx, ast.Load):
                found.append(f"{path.name}:{func}:{child.lineno} _Q_INSERT_AUDIT")
            visit(child, name)

    visit(tree, "<module>")
    return found


def test_only_insert_audit_writes_the_audit_table() -> None:
    hits = [h for f in sorted(PACKAGE.glob("*.py")) for h in audit_inserts(f)]
    where = {h.rsplit(":", 1)[0] for h in hits}
    # the prepared statement (module level) and its one user
    assert where == {"repo_audit.py:<module>", "repo_audit.py:insert_audit"}, "\n".join(hits)


def test_the_scan_sees_a_second_writer(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text("Q = t.audit.insert()\ndef f(c):\n    c.execute(_Q_INSERT_AUDIT, {})\n")
    assert audit_inserts(src) == ["m.py:<module>:1 audit.insert()", "m.py:f:3 _Q_INSERT_AUDIT"]


def test_the_writer_clips_an_event_and_the_store_writes_it(tmp_path: Path) -> None:
    st = Store(tmp_path / "d")
    w = BufferedWriter(st, interval=60, detail_max=50)
    try:
        w.record(AuditEvent("probe", "D" * 300, ip="1" * 100, code=27,
                            detail=detail_json({"long": "x" * 200}), ts=1000.0))
        w.record(AuditEvent("probe", "E", actor="api", detail=detail_json({"n": 1, "ü": "ü"})))
        w.flush()
        rows = {(r.device_key or "")[:1]: r for r in st.audit.query(event_="probe")}
        assert rows["D"].device_key == "D" * 200 and rows["D"].ip == "1" * 64
        assert rows["D"].ts == 1000.0 and rows["D"].code == 27
        assert rows["D"].detail == json.dumps({"long": "x" * 200})[:50]  # cut, so no longer JSON
        assert rows["E"].detail == {"n": 1, "ü": "ü"} and rows["E"].actor == "api"
        assert w.flushed_audit == 2 and w.dropped_audit == 0
    finally:
        w.close()
        st.close()


def test_a_state_change_and_a_buffered_entry_make_the_same_row(tmp_path: Path) -> None:
    st = Store(tmp_path / "d")
    try:
        st.products.add("K", "FW_LuatOS-SoC_Air8101")
        (made,) = st.audit.query(event_="product_added")
        st.audit.write([AuditEvent("product_added", product_id=made.product_id, actor=made.actor,
                                   detail=detail_json(made.detail), ts=made.ts)])
        again = st.audit.query(event_="product_added")[0]
        assert dataclasses.replace(again, id=made.id) == made
    finally:
        st.close()
