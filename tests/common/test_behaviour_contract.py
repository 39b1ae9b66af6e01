"""The behaviour contract lives in the repository: every citation points at docs/behaviour.md
(never at a file outside the repository) and names a section that exists there."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCANNED = ("host", "tools", "tests", "bench", "device", "docs", "README.md", "Makefile")
SUFFIXES = {".py", ".lua", ".md", ".toml", ""}
CITE_RE = re.compile(r"behaviour\.md,? §(\d+(?:\.\d+)?)((?:/§\d+(?:\.\d+)?)*)")


def _files() -> list[Path]:
    out: list[Path] = []
    for name in SCANNED:
        p = ROOT / name
        if p.is_file():
            out.append(p)
            continue
        out += [f for f in p.rglob("*") if f.is_file() and f.suffix in SUFFIXES
                and "__pycache__" not in f.parts and not f.name.startswith("review-")]
    return out


def _sections() -> set[str]:
    text = (ROOT / "docs" / "behaviour.md").read_text(encoding="utf-8")
    return set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)\.? ", text, re.M))


def test_nothing_cites_a_contract_outside_the_repository() -> None:
    bad = []
    for f in _files():
        if f == Path(__file__):
            continue
        text = f.read_text(encoding="utf-8", errors="replace")
        for n, line in enumerate(text.splitlines(), 1):
            if "luatos-reference" in line or "shared/" in line:
                bad.append(f"{f.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not bad, "citations of a file users never see:\n" + "\n".join(bad)


def test_every_behaviour_citation_names_an_existing_section() -> None:
    sections = _sections()
    assert {"2.5", "3", "6", "7.2", "8.2", "11.3", "13"} <= sections
    missing, count = [], 0
    for f in _files():
        for m in CITE_RE.finditer(f.read_text(encoding="utf-8", errors="replace")):
            for sec in [m[1], *re.findall(r"§(\d+(?:\.\d+)?)", m[2])]:
                count += 1
                if sec not in sections:
                    missing.append(f"{f.relative_to(ROOT)}: §{sec}")
    assert count > 40  # the code really does cite it
    assert not missing, "citations of sections docs/behaviour.md does not have:\n" + \
        "\n".join(missing)


def test_every_unconfirmed_default_is_in_defaults_md() -> None:
    """docs/behaviour.md marks points UNCONFIRMED; docs/defaults.md lists their knobs."""
    contract = (ROOT / "docs" / "behaviour.md").read_text(encoding="utf-8")
    defaults = (ROOT / "docs" / "defaults.md").read_text(encoding="utf-8")
    assert contract.count("UNCONFIRMED") >= 15
    for point in ("15000", "fota.wait()", "`mobile` on Air8101", "wdt", "1, 3, 0, 0",
                  "GPIO constants", "`os.time()` before SNTP"):
        assert point in defaults, point
