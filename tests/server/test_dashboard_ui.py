"""The web dashboard in headless Debian Chromium against a real running server.

What a user does: open the page, enter the token, see the device that checked in, upload a
package through the form, bar and unbar the device, filter the audit log. Every action is
checked on the server side too (store state and the device endpoint's answer), so the page is
not only drawing things, it is changing them.
"""

from __future__ import annotations

import json
import os
import re
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from luatos_common.packages import build_air8101_ota
from luatos_fota.push import PushHub
from luatos_fota.testing import RunningServer, device_request, running_server

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
TOKEN = "dashboard-test-token-5f2c"
KEY = "dash_project_key"
FW = "FOTA2_DEMO_LuatOS-SoC_Air8101"
MAC = "C8C2C68CD602"
OTHER = "C8C2C68C0001"
UI_WAIT_MS = 15_000
SCREENSHOT_DIR = Path(os.environ.get("DASHBOARD_SCREENSHOTS", "/tmp"))


def check_in(srv: RunningServer, mac: str, version: str) -> Any:
    target = f"/api/site/firmware_upgrade?mac={mac}&project_key={KEY}&firmware_name={FW}&version={version}"
    return device_request(srv.port, target)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    if not Path(CHROMIUM).exists():
        reason = f"{CHROMIUM} not installed: run make sysdeps (Debian package chromium)"
        if os.environ.get("CI"):
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


@pytest.fixture
def srv(tmp_path: Path) -> Iterator[RunningServer]:
    hub = PushHub(min_gap=0.0)
    with running_server(
        tmp_path / "data",
        admin_token=TOKEN,
        push_hub=hub,
        extra={"push_port": 0, "push_host": "127.0.0.1"},
    ) as s:
        yield s


@pytest.fixture
def page(browser: Any, srv: RunningServer) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1360, "height": 860})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(UI_WAIT_MS)
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"


def sign_in(page: Any, srv: RunningServer, token: str = TOKEN) -> None:
    page.goto(f"{srv.base_url}/dashboard/")
    page.fill("#token", token)
    page.click("#token-form button[type=submit]")


def wait_status(page: Any, kind: str, text: str) -> str:
    """Wait until the status line is of `kind` and says `text`.

    The status line keeps the previous action's message until the next answer arrives, so
    waiting on the class alone can read the old message (an earlier "unbanned" is also ok).
    """
    status_says(page, kind, text)  # locator checks: no page-side eval, which the CSP forbids
    return str(page.inner_text("#status"))


def push_login(srv: RunningServer, mac: str, version: str) -> socket.socket:
    hub: PushHub = srv.app.state.push_hub
    sock = socket.create_connection(("127.0.0.1", hub.port), timeout=10)
    sock.sendall(
        json.dumps({"login": {"device": mac, "version": version, "core": "V2001"}}).encode() + b"\n"
    )
    assert sock.makefile("rb").readline() == b'{"login":"ok"}\n'
    return sock


def test_wrong_token_is_refused_and_nothing_is_shown(page: Any, srv: RunningServer) -> None:
    sign_in(page, srv, token="not-the-token")
    assert "token" in wait_status(page, "error", "oken").lower()
    assert page.is_visible("#token-form")
    assert not page.is_visible("section[data-panel=devices]")
    assert page.evaluate("sessionStorage.getItem('luatos-fota-token')") is None


def test_dashboard_devices_upload_ban_unban_audit(
    page: Any, srv: RunningServer, tmp_path: Path
) -> None:
    product = srv.store.products.add(KEY, FW, name="Demo product")
    assert check_in(srv, MAC, "2001.001.000").status == 304  # no release yet: up to date
    assert check_in(srv, OTHER, "2001.001.000").status == 304
    srv.flush()
    push_sock = push_login(srv, MAC, "2001.001.000")

    # Sign in: the token is kept for the tab, the device that checked in is listed.
    sign_in(page, srv)
    row = page.locator(f"#devices-body tr[data-device='{MAC}']")
    row.wait_for()
    assert "2001.001.000" in row.inner_text()
    assert "Demo product" in row.inner_text()
    assert "online" in row.inner_text()  # on the push channel
    assert page.locator(f"#devices-body tr[data-device='{OTHER}']").count() == 1
    assert page.evaluate("sessionStorage.getItem('luatos-fota-token')") == TOKEN

    # Upload a package through the form.
    package = tmp_path / "demo_v2.bin"
    package.write_bytes(
        build_air8101_ota({"main.lua": b"PROJECT='FOTA2_DEMO'\nVERSION='001.000.002'\n"})
    )
    page.click("#tabs button[data-tab=upload]")
    page.select_option("#up-product", str(product.id))
    page.set_input_files("#up-file", str(package))
    page.fill("#up-version", "001.000.002")
    page.fill("#up-notes", "uploaded from the dashboard test")
    page.check("#up-skip-preflight")  # a bare test package; the preflight has its own tests
    page.click("#upload-submit")
    page.locator("#releases-body tr[data-release]").first.wait_for()
    releases = srv.store.releases.all(product.id)
    assert [(r.script_version, r.size) for r in releases] == [
        ("001.000.002", package.stat().st_size)
    ]
    rel_row = page.locator(f"#releases-body tr[data-release='{releases[0].id}']")
    assert "001.000.002" in rel_row.inner_text() and "enabled" in rel_row.inner_text()
    assert rel_row.locator("[data-preflight]").inner_text() == "skipped"
    assert "targeted 2" in rel_row.inner_text()

    # The device now gets the package; the rollout progress shows it after a refresh.
    served = check_in(srv, MAC, "2001.001.000")
    assert served.status == 200 and served.body == package.read_bytes()
    page.click("#releases-refresh")
    from playwright.sync_api import expect

    # (locator checks: the page's CSP forbids the eval behind wait_for_function)
    expect(page.locator("#releases-body")).to_contain_text("served 1", timeout=UI_WAIT_MS)
    page.screenshot(path=str(SCREENSHOT_DIR / "luatos-fota-dashboard-releases.png"), full_page=True)
    # Under the dashboard's Content-Security-Policy the rollout bar still gets its width, and the
    # package link (packages are private) is a signed one that downloads.
    width = page.evaluate("getComputedStyle(document.querySelector('#releases-body span.served')).width")
    assert width not in ("0px", "auto"), width
    href = rel_row.locator("a.hint").get_attribute("href")
    assert "&sig=" in href
    got = requests.get(href if href.startswith("http") else srv.base_url + href, timeout=10)
    assert got.status_code == 200 and got.content == package.read_bytes()

    # A bad upload shows the server's reason (field + message), and creates nothing.
    page.click("#tabs button[data-tab=upload]")
    page.select_option("#up-product", str(product.id))
    bad = tmp_path / "not_a_package.bin"
    bad.write_bytes(b"hello, not a package")
    page.set_input_files("#up-file", str(bad))
    page.fill("#up-version", "001.000.003")
    page.click("#upload-submit")
    assert "file" in wait_status(page, "error", "invalid package")
    assert len(srv.store.releases.all(product.id)) == 1

    # Pause and re-enable the release from its row.
    page.click("#tabs button[data-tab=releases]")
    rel_row.locator("button[data-action=pause]").click()
    rel_row.locator("button[data-action=enable]").wait_for()
    assert srv.store.releases.get(releases[0].id).enabled is False
    rel_row.locator("button[data-action=enable]").click()
    rel_row.locator("button[data-action=pause]").wait_for()
    assert srv.store.releases.get(releases[0].id).enabled is True

    # Ban the device (the page asks for a reason), then unban it.
    page.click("#tabs button[data-tab=devices]")
    page.once("dialog", lambda dialog: dialog.accept("stolen unit"))
    row.locator("button[data-action=ban]").click()
    row.locator("button[data-action=unban]").wait_for()
    assert "barred" in row.inner_text() and "stolen unit" in row.inner_text()
    assert srv.store.devices.get(MAC).ban_code == 21
    refused = check_in(srv, MAC, "2001.001.000")
    assert refused.status >= 400 and refused.json()["code"] == 21
    SCREENSHOT_DIR.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOT_DIR / "luatos-fota-dashboard-devices.png"), full_page=True)

    row.locator("button[data-action=unban]").click()
    row.locator("button[data-action=ban]").wait_for()
    assert srv.store.devices.get(MAC).ban_code == 0
    assert check_in(srv, MAC, "2001.001.000").status == 200

    # Audit log, filtered by device: only that device's entries, including the ban and unban.
    page.click("#tabs button[data-tab=audit]")
    page.fill("#audit-device", MAC)
    page.click("#audit-refresh")
    page.locator(f"#audit-body[data-filter='{MAC}|']").wait_for(state="attached")
    device_cells = page.locator("#audit-body tr td:nth-child(3)").all_inner_texts()
    assert device_cells and set(device_cells) == {MAC}
    events = page.locator("#audit-body tr td:nth-child(2)").all_inner_texts()
    assert {"banned", "unbanned", "serve"} <= set(events)
    page.screenshot(path=str(SCREENSHOT_DIR / "luatos-fota-dashboard-audit.png"), full_page=True)

    # Push tab lists the connected device; pushing a release reaches its socket.
    page.click("#tabs button[data-tab=push]")
    push_row = page.locator(f"#push-body tr[data-device='{MAC}']")
    push_row.wait_for()
    page.once("dialog", lambda dialog: dialog.accept(str(releases[0].id)))
    push_row.locator("button").click()
    assert MAC in wait_status(page, "ok", "sent")
    push_sock.settimeout(10)
    command = json.loads(push_sock.makefile("rb").readline())
    assert command["fota"] == "true" and command["url"].startswith("###http://")
    assert f"/dl/{releases[0].sha256}.bin?fota_sn=" in command["url"]
    push_sock.close()

    # The token survives a reload of the tab (sessionStorage), and sign-out forgets it.
    page.reload()
    page.locator(f"#devices-body tr[data-device='{MAC}']").wait_for()
    page.click("#sign-out")
    assert page.is_visible("#token-form")
    assert page.evaluate("sessionStorage.getItem('luatos-fota-token')") is None


def test_device_ids_are_shown_as_text_not_html(page: Any, srv: RunningServer) -> None:
    """A device id is attacker-controlled: it must never become markup in the operator's page."""
    srv.store.products.add(KEY, FW)
    evil = "<img src=x onerror=window.pwned=1>"
    srv.store.devices.register(evil)
    sign_in(page, srv)
    page.locator("#devices-body tr[data-device]").first.wait_for()
    assert evil in page.inner_text("#devices-body")
    assert page.locator("#devices-body img").count() == 0
    assert page.evaluate("window.pwned === undefined")


def test_without_push_channel_the_page_says_so(browser: Any, tmp_path: Path) -> None:
    with running_server(tmp_path / "data", admin_token=TOKEN) as plain:
        plain.store.products.add(KEY, FW)
        assert check_in(plain, MAC, "2001.001.000").status == 304
        context = browser.new_context()
        page = context.new_page()
        page.set_default_timeout(UI_WAIT_MS)
        try:
            sign_in(page, plain)
            row = page.locator(f"#devices-body tr[data-device='{MAC}']")
            row.wait_for()
            assert "online" not in row.inner_text()
            page.click("#tabs button[data-tab=push]")
            from playwright.sync_api import expect

            expect(page.locator("#push-body")).to_contain_text("not running", timeout=UI_WAIT_MS)
            assert not page.is_visible("#status.error")
        finally:
            context.close()


# -- running a rollout from the dashboard ---------------------------------------------------------

# What a strict Content-Security-Policy allows: the page's own files, no inline script or style.
STRICT_CSP = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:"


def status_says(page: Any, kind: str, text: str) -> None:
    """wait_status without page-side eval (a strict CSP forbids it; locator checks need none)."""
    from playwright.sync_api import expect

    box = page.locator("#status")
    expect(box).to_have_class(re.compile(rf"\b{kind}\b"), timeout=UI_WAIT_MS)
    expect(box).to_contain_text(text, timeout=UI_WAIT_MS)


def with_strict_csp(page: Any, srv: RunningServer) -> list[str]:
    """Serve the dashboard with a strict CSP and collect the violations the page reports."""
    violations: list[str] = []

    def add_csp(route: Any) -> None:
        resp = route.fetch()
        route.fulfill(response=resp, headers={**resp.headers, "content-security-policy": STRICT_CSP})

    page.route(f"{srv.base_url}/dashboard/**", add_csp)
    page.on("console", lambda msg: violations.append(msg.text)
            if "Content Security Policy" in msg.text else None)
    return violations


def test_operator_runs_a_rollout_products_target_device_history_paging(
    page: Any, srv: RunningServer
) -> None:
    from playwright.sync_api import expect

    violations = with_strict_csp(page, srv)
    product = srv.store.products.add(KEY, FW, name="Demo product")
    package = build_air8101_ota({"main.lua": b"PROJECT='FOTA2_DEMO'\nVERSION='001.000.002'\n"})
    rel = srv.store.releases.add(package, product_id=product.id, version="001.000.002",
                                percent=0)
    # 60 check-ins of one device (more than a history page), none served while at 0 %.
    for _ in range(60):
        assert check_in(srv, MAC, "2001.001.000").status == 304
    srv.store.devices.ban(MAC, "bench unit", actor="test")
    srv.store.devices.unban(MAC, actor="test")
    push_sock = push_login(srv, MAC, "2001.001.000")
    srv.flush()

    # Products show the key devices send.
    sign_in(page, srv)
    page.click("#tabs button[data-tab=products]")
    prow = page.locator(f"#products-body tr[data-product='{product.id}']")
    prow.wait_for()
    assert prow.locator("[data-role=project-key]").inner_text() == KEY
    assert FW in prow.inner_text() and "Demo product" in prow.inner_text()
    page.screenshot(path=str(SCREENSHOT_DIR / "luatos-fota-dashboard-products.png"), full_page=True)

    # Raise the release from 0 % to 50 %, then to everyone; the store follows each step.
    page.click("#tabs button[data-tab=releases]")
    rrow = page.locator(f"#releases-body tr[data-release='{rel.id}']")
    rrow.wait_for()
    assert "0%" in rrow.inner_text() and "001.000.002" in rrow.inner_text()
    rrow.locator("input[data-role=percent]").fill("50")
    page.once("dialog", lambda dialog: dialog.accept())
    rrow.locator("button[data-action=set-percent]").click()
    status_says(page, "ok", "now targets 50% of devices")
    got = srv.store.releases.get(rel.id)
    assert (got.target_mode, got.percent) == ("percent", 50)
    page.once("dialog", lambda dialog: dialog.accept())
    rrow.locator("button[data-action=target-all]").click()
    status_says(page, "ok", "now targets all devices")
    assert srv.store.releases.get(rel.id).target_mode == "all"
    served = check_in(srv, MAC, "2001.001.000")
    assert served.status == 200 and served.body == package
    # A percentage out of range is refused in the page, nothing changes.
    rrow.locator("input[data-role=percent]").fill("150")
    rrow.locator("button[data-action=set-percent]").click()
    status_says(page, "error", "from 0 to 100")
    assert srv.store.releases.get(rel.id).target_mode == "all"
    page.screenshot(path=str(SCREENSHOT_DIR / "luatos-fota-dashboard-rollout.png"), full_page=True)

    # The device page: facts and the whole history, paged 50 at a time, newest first.
    page.click("#tabs button[data-tab=devices]")
    page.locator(f"#devices-body tr[data-device='{MAC}'] button[data-action=open-device]").click()
    page.locator("#device-history-body tr[data-event]").first.wait_for()
    assert page.inner_text("#device-title") == MAC
    facts = page.inner_text("#device-info")
    assert "2001.001.000" in facts and KEY in facts and "online" in facts
    first_page = page.locator("#device-history-body tr[data-event]")
    assert first_page.count() == 50
    events_1 = [first_page.nth(i).get_attribute("data-event") for i in range(50)]
    ids_1 = [int(first_page.nth(i).get_attribute("data-id")) for i in range(50)]
    assert ids_1 == sorted(ids_1, reverse=True)
    assert events_1[0] == "serve" and {"push_login", "checkin"} <= set(events_1)
    assert page.is_disabled("#device-newer") and not page.is_disabled("#device-older")
    page.screenshot(path=str(SCREENSHOT_DIR / "luatos-fota-dashboard-device.png"), full_page=True)
    page.click("#device-older")
    expect(page.locator("#device-history-range")).to_have_text(re.compile(r"^entries 51"))
    older = page.locator("#device-history-body tr[data-event]")
    ids_2 = [int(older.nth(i).get_attribute("data-id")) for i in range(older.count())]
    every = srv.store.audit.query(device_key=MAC, limit=1000)
    assert ids_1 + ids_2 == [a.id for a in every]  # nothing skipped, nothing twice
    events_2 = [older.nth(i).get_attribute("data-event") for i in range(older.count())]
    # (the ban rows are written at once, check-ins in batches: either page may hold them)
    assert {"banned", "unbanned", "push_login", "checkin", "serve"} <= set(events_1 + events_2)
    assert events_2[-1] == "device_registered"
    assert page.is_disabled("#device-older") and "(oldest)" in page.inner_text("#device-history-range")
    page.click("#device-newer")
    expect(page.locator("#device-history-range")).to_have_text(re.compile(r"^entries 1–50"))

    # The audit log: one line per time, the reason first, the details as name/value pairs.
    page.click("#tabs button[data-tab=audit]")
    first = page.locator("#audit-body tr").first
    first.wait_for()
    time_cell = first.locator("td.time")
    assert page.evaluate("(e) => getComputedStyle(e).whiteSpace", time_cell.element_handle()) == "nowrap"
    lines = page.evaluate(  # line boxes of the text: 1 when the date and the time share a line
        "(e) => { const r = document.createRange(); r.selectNodeContents(e);"
        " return r.getClientRects().length; }", time_cell.element_handle())
    assert lines == 1
    serve_row = page.locator("#audit-body tr", has_text="serve").first
    kvs = serve_row.locator("td.detail .kv")
    assert kvs.first.get_attribute("class") == "kv reason"
    assert "release 1 targets this device" in kvs.first.inner_text()
    total = len(srv.store.audit.query(limit=1000))
    assert page.locator("#audit-body tr").count() == total < 100
    assert page.inner_text("#audit-range") == f"entries 1–{total} (oldest)"
    assert page.is_disabled("#audit-older") and page.is_disabled("#audit-newer")
    page.screenshot(path=str(SCREENSHOT_DIR / "luatos-fota-dashboard-audit-pages.png"), full_page=True)

    # Archive the release: paused for good, out of the list unless asked for, never served.
    page.click("#tabs button[data-tab=releases]")
    rrow.wait_for()
    page.once("dialog", lambda dialog: dialog.accept())
    rrow.locator("button[data-action=archive]").click()
    status_says(page, "ok", f"release #{rel.id} archived")
    expect(rrow).to_have_count(0)
    got = srv.store.releases.get(rel.id)
    assert got.archived is True and got.enabled is False
    assert check_in(srv, OTHER, "2001.001.000").status == 304  # nothing to serve any more
    page.check("#releases-archived")
    expect(rrow).to_contain_text("archived")
    assert rrow.locator("button[data-action=enable]").count() == 0
    page.screenshot(path=str(SCREENSHOT_DIR / "luatos-fota-dashboard-archived.png"), full_page=True)
    push_sock.close()
    assert violations == [], violations
def test_upload_is_preflighted_and_the_result_shown(page: Any, srv: RunningServer,
                                                    tmp_path: Path) -> None:
    """device/ uploaded through the form: pending, then the preflight's verdict in the row;
    a candidate that reboot-loops shows "failed" with its reason on hover and stays paused."""
    from luatos_sim.scripts import load_project_files
    from luatos_testing.demo import PROJECT_RE, with_version

    files = load_project_files(Path(__file__).resolve().parents[2] / "device")
    m = PROJECT_RE.search(files["main.lua"])
    assert m
    product = srv.store.products.add("DEMO_PRODUCT_KEY", f"{m[1].decode()}_LuatOS-SoC_Air8101")
    good, bad = tmp_path / "good.bin", tmp_path / "bad.bin"
    good.write_bytes(build_air8101_ota(with_version(files, "001.000.001")))
    loops = with_version(files, "001.000.002")
    loops["main.lua"] = loops["main.lua"].replace(b"\nsys.run()", b"\n-- sys.run() forgotten")
    bad.write_bytes(build_air8101_ota(loops))
    sign_in(page, srv)
    for n, package in enumerate((good, bad), start=1):
        page.click("#tabs button[data-tab=upload]")
        page.select_option("#up-product", str(product.id))
        page.set_input_files("#up-file", str(package))
        page.click("#upload-submit")
        assert "preflight running" in wait_status(page, "ok", f"release #{n} created")
    rels = srv.store.releases.all(product.id)
    for rel, verdict in zip(rels, ("passed", "failed"), strict=True):
        badge = page.locator(f"#releases-body tr[data-release='{rel.id}'] [data-preflight]")
        deadline = time.monotonic() + 60
        while badge.inner_text() != verdict and time.monotonic() < deadline:
            page.click("#releases-refresh")
            time.sleep(0.3)
        assert badge.inner_text() == verdict
    bad_row = page.locator(f"#releases-body tr[data-release='{rels[1].id}']")
    assert "reboot loop" in bad_row.locator("[data-preflight]").get_attribute("title")
    assert "paused" in bad_row.inner_text()
    assert "enabled" in page.locator(f"#releases-body tr[data-release='{rels[0].id}']").inner_text()
