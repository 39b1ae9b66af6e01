"""One vendor-code enum: the codes, their HTTP statuses and metric labels live in codes.py only.

The scan is the guard against drift: a handler that writes ``{"code": 17}`` or ``code=40``
by hand would agree with the enum today and silently disagree after the next change.
"""

from __future__ import annotations

import ast
from pathlib import Path

from luatos_fota.codes import VendorCode, outcome_label, status_for
from luatos_fota.service import Outcome

PACKAGE = Path(__file__).resolve().parents[2] / "host" / "luatos_fota"
VALUES = {int(c) for c in VendorCode}


def test_each_code_has_the_documented_status() -> None:
    # docs/behaviour.md §11.3 (codes) and §11.4 (what this server answers with).
    assert {c.name: (int(c), c.status) for c in VendorCode} == {
        "OK": (0, 200), "ERROR": (1, None), "INVALID_DEVICE": (3, 400), "NO_PERMISSION": (17, 403),
        "NOT_ALLOWED": (21, 403), "INVALID_PROJECT": (25, 404), "INVALID_FIRMWARE": (26, 404),
        "LATEST": (27, 304), "LOOP": (40, 403), "WAIT": (43, 503), "UNAUTHENTICATED": (401, 401)}
    assert status_for(VendorCode.ERROR) == 400 and status_for(99) == 400
    assert outcome_label(27) == "up_to_date" and outcome_label(99) == "99" and outcome_label(None) == "none"


def test_an_outcome_takes_its_status_from_the_enum() -> None:
    assert Outcome(VendorCode.LATEST, "no update").status == 304
    assert Outcome(VendorCode.OK, "upgrade").serve
    assert not Outcome(VendorCode.LOOP, "loop").serve and Outcome(VendorCode.LOOP, "loop").status == 403


def literal_codes(path: Path) -> list[str]:
    """``"code": N`` dict entries and ``code=N`` keywords whose N is a vendor code's number."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found = []
    for node in ast.walk(tree):
        pairs: list[tuple[str | None, ast.expr]] = []
        if isinstance(node, ast.Dict):
            pairs = [(k.value if isinstance(k, ast.Constant) else None, v)
                     for k, v in zip(node.keys, node.values, strict=True) if k is not None]
        elif isinstance(node, ast.Call):
            pairs = [(kw.arg, kw.value) for kw in node.keywords]
        for key, value in pairs:
            if (key in ("code", "ban_code") and isinstance(value, ast.Constant) and type(value.value) is int
                    and value.value in VALUES and value.value != 0):
                found.append(f"{path.name}:{value.lineno} {key}={value.value}")
    return found


def test_no_module_spells_a_vendor_code_as_a_number() -> None:
    # 0 is also "no ban" (ban_code=0) and a device's own result code: only non-zero codes are
    # checked. The admin API's code is the HTTP status (admin.py), not a vendor code.
    bad = [hit for f in sorted(PACKAGE.glob("*.py")) if f.name not in ("codes.py", "admin.py")
           for hit in literal_codes(f)]
    assert not bad, "use luatos_fota.codes.VendorCode:\n" + "\n".join(bad)


def test_the_scan_finds_a_bare_code(tmp_path: Path) -> None:
    src = tmp_path / "m.py"
    src.write_text('x = {"code": 17, "msg": "no"}\nf(code=40)\ny = {"code": 413}\nf(ban_code=0)\n')
    assert literal_codes(src) == ["m.py:1 code=17", "m.py:2 code=40"]
