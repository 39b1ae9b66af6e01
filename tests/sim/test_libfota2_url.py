"""libfota2's synchronous part: URL construction, its log lines, PRODUCT_KEY and VERSION rules."""

from __future__ import annotations

import pytest

from luatos_sim.profiles import get_profile

MAC = "C8C2C68CD602"
QUERY = (f"mac={MAC}&project_key=K&firmware_name=FOTA2_DEMO_LuatOS-SoC_Air8101"
         "&version=2001.001.000")


def program(body: str, head: str = 'PRODUCT_KEY = "K"') -> str:
    return f"""
        PROJECT = "FOTA2_DEMO"
        VERSION = "001.999.000"
        {head}
        libfota2 = require "libfota2"
        function cb(ret) log.info("cb", ret) end
        {body}
        sys.run()
    """


def fota_lines(dev):
    return [ln for ln in dev.lines() if ln.startswith(("I/user.libfota2", "E/user.libfota2",
                                                       "D/user.libfota2"))]


def test_reference_example_and_load_line(boot):
    dev = boot(program("""
        log.info("ver", libfota2.version())
        libfota2.request(cb, {url = "http://ota.example.com:8000/upgrade?"})
    """))
    dev.run_for("900ms")
    assert fota_lines(dev) == [
        "D/user.libfota2 version -> 202607021200",
        f"I/user.libfota2.url GET http://ota.example.com:8000/upgrade?{QUERY}",
        f"I/user.libfota2.imei/mac mac={MAC}",
        "I/user.libfota2.project_key K",
        "I/user.libfota2.firmware_name FOTA2_DEMO_LuatOS-SoC_Air8101",
        "I/user.libfota2.version 2001.001.000",
    ]
    assert "I/user.ver 202607021200" in dev.lines()
    assert any(t.kind == "libfota2_request" for t in dev.trace)


def test_default_url_opts_defaults_and_url_done_on_the_callers_table(boot):
    dev = boot(program("""
        local opts = {}
        libfota2.request(cb, opts)
        log.info("opts", opts.fota, opts.dst, opts.method, opts.url_done, opts.url)
    """))
    dev.run_for("900ms")
    url = f"http://iot.openluat.com/api/site/firmware_upgrade?{QUERY}"
    assert f"I/user.libfota2.url GET {url}" in dev.lines()
    assert f"I/user.opts true nil GET true {url}" in dev.lines()


def test_hash_url_is_verbatim_and_the_query_line_has_a_trailing_space(boot):
    dev = boot(program("""
        libfota2.request(cb, {url = "###http://h:9/pkg.bin", version = "9.9.9", method = "POST"})
    """, head=""))
    dev.run_for("900ms")
    assert fota_lines(dev)[1:] == [
        "I/user.libfota2.url POST http://h:9/pkg.bin",
        "I/user.libfota2.imei/mac ",
        "I/user.libfota2.project_key nil",
        "I/user.libfota2.firmware_name nil",
        "I/user.libfota2.version 9.9.9",
    ]


def test_missing_question_mark_glues_the_query_and_lint_warns(boot):
    dev = boot(program('libfota2.request(cb, {url = "http://h/update"})'))
    dev.run_for("900ms")
    assert f"I/user.libfota2.url GET http://h/update{QUERY}" in dev.lines()
    codes = [w.code for w in dev.upgrade_checks.warnings]
    assert codes == ["url-glue"]


def test_product_key_missing_gives_5_synchronously_even_self_hosted(boot):
    dev = boot(program("""
        local opts = {url = "http://my.server/upgrade?"}
        libfota2.request(cb, opts)
        log.info("after", opts.url_done, opts.url)
    """, head=""))
    dev.run_for("900ms")
    lines = dev.lines()
    i = lines.index("E/user.libfota2 iot.openluat.com need PRODUCT_KEY!!!")
    assert lines[i + 1] == "I/user.cb 5"
    assert lines[i + 2] == "I/user.after nil http://my.server/upgrade?"
    assert not any(ln.startswith("I/user.libfota2.url") for ln in lines)


def test_project_key_in_opts_replaces_product_key(boot):
    dev = boot(program('libfota2.request(cb, {url = "http://h/u?", project_key = "PK"})',
                       head=""))
    dev.run_for("900ms")
    assert "I/user.libfota2.project_key PK" in dev.lines()


def test_version_mismatch_raises_in_the_caller(boot):
    dev = boot(program("""
        VERSION = "1.2"
        local ok, err = pcall(libfota2.request, cb, {url = "http://h/u?"})
        log.info("pcall", ok, err ~= nil)
        VERSION = nil
        log.info("pcall2", pcall(libfota2.request, cb, {url = "http://h/u?"}))
    """))
    dev.run_for("900ms")
    assert "I/user.pcall false true" in dev.lines()
    assert any(ln.startswith("I/user.pcall2 false") for ln in dev.lines())
    assert not any(ln.startswith("I/user.cb") for ln in dev.lines())
    assert "version-format" in [w.code for w in dev.upgrade_checks.warnings]


def test_url_done_reuse_pitfall(boot):
    dev = boot(program("""
        local opts = {url = "http://h/u?"}
        libfota2.request(cb, opts)
        libfota2.request(cb, opts)              -- the 4 h loop: same URL again, verbatim
        PRODUCT_KEY = nil
        opts.url = "http://pushed.example/pkg.bin"
        libfota2.request(cb, opts)              -- pushed URL: verbatim, no key check
        opts.url = "###http://pushed.example/p2.bin"
        libfota2.request(cb, opts)
    """))
    dev.run_for("900ms")
    urls = [ln for ln in dev.lines() if ln.startswith("I/user.libfota2.url")]
    assert urls == [
        f"I/user.libfota2.url GET http://h/u?{QUERY}",
        f"I/user.libfota2.url GET http://h/u?{QUERY}",
        "I/user.libfota2.url GET http://pushed.example/pkg.bin",
        "I/user.libfota2.url GET http://pushed.example/p2.bin",
    ]
    queries = [ln for ln in dev.lines() if ln.startswith("I/user.libfota2.imei/mac")]
    assert queries == [f"I/user.libfota2.imei/mac mac={MAC}"] + ["I/user.libfota2.imei/mac "] * 3
    assert not any(ln == "I/user.cb 5" for ln in dev.lines())
    assert [w.code for w in dev.upgrade_checks.warnings] == ["opts-reuse"]


@pytest.mark.parametrize(("model", "overrides", "query", "name"), [
    ("Air780E", {}, "imei=864536071234561", "FOTA2_DEMO_LuatOS-SoC_EC618"),
    ("Air8101", {"bsp": "Air8101-PRO"}, f"mac={MAC}", "FOTA2_DEMO_LuatOS-SoC_Air8101"),
    ("Air8101", {"model": "Air9999"}, "nil", "FOTA2_DEMO_LuatOS-SoC_Air8101"),
    ("Air8101", {"model": "Air1601"}, "mac=54540D5E2E", "FOTA2_DEMO_LuatOS-SoC_Air8101"),
])
def test_device_query_by_model_and_bsp_cut(boot, model, overrides, query, name):
    profile = get_profile(model).with_overrides(**overrides)
    dev = boot(program('libfota2.request(cb, {url = "http://h/u?"})'), model=profile)
    dev.run_for("900ms")
    core = dev.profile.core[1:]
    assert (f"I/user.libfota2.url GET http://h/u?{query}&project_key=K&firmware_name={name}"
            f"&version={core}.001.000") in dev.lines()
    assert f"I/user.libfota2.imei/mac {query}" in dev.lines()


def test_opts_imei_overrides_the_query(boot):
    dev = boot(program('libfota2.request(cb, {url = "http://h/u?", imei = "IMEI1"})'))
    dev.run_for("900ms")
    assert "I/user.libfota2.imei/mac imei=IMEI1" in dev.lines()


def test_libfota_v1_vendor_url_and_version_check(boot):
    dev = boot("""
        PROJECT = "P1" VERSION = "001.002.003" PRODUCT_KEY = "K1"
        local libfota = require "libfota"
        local seen = {}
        local real = http.request
        http.request = function(m, url, ...) seen[#seen + 1] = url; return real(m, url, ...) end
        libfota.request(function(r) log.info("cb", r) end)
        log.info("url", seen[1])
        VERSION = "1.2"
        libfota.request(function(r) log.info("cb", r) end)
        sys.run()
    """)
    dev.run_for("900ms")
    assert ("I/user.url http://iot.openluat.com/api/site/firmware_upgrade?project_key=K1"
            f"&firmware_name=P1_LuatOS-SoC_Air8101&version=2001.001.003&mac={MAC}") in dev.lines()
    i = dev.lines().index("E/user.fota _G.VERSION must be xxx.yyy.zzz!!!")
    assert dev.lines()[i + 1] == "I/user.cb 5"
