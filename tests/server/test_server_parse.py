"""Unit checks of the lenient request parser and the Range planner (no server needed)."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from luatos_fota.devrequest import looks_like_device_request, parse_device_request, split_target
from luatos_fota.httpio import plan_range


def test_split_glued_and_question_mark():
    assert split_target(b"/updatemac=AB&project_key=K") == (b"/update", b"mac=AB&project_key=K", True)
    assert split_target(b"/u?mac=AB") == (b"/u", b"mac=AB", False)
    assert split_target(b"/api/site/firmware_upgradeimei=1&version=2") == (
        b"/api/site/firmware_upgrade", b"imei=1&version=2", True)
    assert split_target(b"/plain/path") == (b"/plain/path", b"", False)


def test_parse_fields_first_occurrence_wins_and_utf8():
    r = parse_device_request("/x?mac=nil&project_key=K&firmware_name=温度_LuatOS-SoC_Air8101&version=2001.001.000"
                             "&mac=OTHER&model=Air8101".encode())
    assert (r.key_type, r.device_key, r.project_key, r.version) == ("mac", "nil", "K", "2001.001.000")
    assert r.firmware_name == "温度_LuatOS-SoC_Air8101" and r.params["model"] == "Air8101"
    assert r.problems == []


def test_parse_reports_non_utf8():
    r = parse_device_request(b"/x?mac=AB&project_key=K&firmware_name=\xb0\xa1_LuatOS&version=1.2.3")
    assert r.problems and "not UTF-8" in r.problems[0]


def test_percent_encoded_alternative():
    r = parse_device_request(b"/x?project_key=K&firmware_name=A%20B")
    assert r.firmware_name == "A%20B" and r.alt("firmware_name") == "A B"


def test_reserved_paths_are_not_check_ins():
    assert looks_like_device_request(b"/upgrade?mac=1&project_key=K")
    assert not looks_like_device_request(b"/admin/api/devices?mac=1")
    assert not looks_like_device_request(b"/dl/abc.bin?mac=1")
    assert not looks_like_device_request(b"/upgrade?foo=1")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_parser_never_raises(target):
    r = parse_device_request(target)
    assert isinstance(r.params, dict)
    looks_like_device_request(target)


def test_plan_range_cases():
    etag = '"e"'
    assert plan_range(None, None, etag, 100).status == 200
    p = plan_range(b"bytes=10-", None, etag, 100)
    assert (p.status, p.start, p.end) == (206, 10, 99)
    p = plan_range(b"bytes=10-19", None, etag, 100)
    assert (p.status, p.start, p.end) == (206, 10, 19)
    p = plan_range(b"bytes=90-500", None, etag, 100)
    assert (p.status, p.end) == (206, 99)
    p = plan_range(b"bytes=-5", None, etag, 100)
    assert (p.status, p.start, p.end) == (206, 95, 99)
    assert plan_range(b"bytes=100-", None, etag, 100).status == 416
    assert plan_range(b"bytes=-0", None, etag, 100).status == 416
    assert plan_range(b"bytes=5-1", None, etag, 100).status == 200  # invalid: ignored
    assert plan_range(b"items=1-", None, etag, 100).status == 200
    assert plan_range(b"bytes=1-2,5-6", None, etag, 100).status == 200
    assert plan_range(b"bytes=1-", b'"other"', etag, 100).status == 200
    assert plan_range(b"bytes=1-", b'"e"', etag, 100).status == 206


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 10_000), st.integers(1, 5000))
def test_plan_range_never_out_of_bounds(start, total):
    p = plan_range(f"bytes={start}-".encode(), None, '"e"', total)
    if start >= total:
        assert p.status == 416
    else:
        assert p.status == 206 and 0 <= p.start <= p.end < total


def test_user_base_url_with_its_own_query_glued():
    # opts.url = "http://h/upgrade?token=abc" -> libfota2 appends "mac=..." right after "abc"
    r = parse_device_request(b"/upgrade?token=abcmac=C8C2C68CD602&project_key=K&firmware_name=F&version=1.2.3")
    assert (r.params["token"], r.device_key, r.project_key) == ("abc", "C8C2C68CD602", "K")
