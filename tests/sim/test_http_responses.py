"""http.request's result mapping over the requests transport, with servers mocked by
``responses`` (no sockets at all)."""

from __future__ import annotations

import http.client
from collections.abc import Callable, Iterator

import pytest
import requests
import responses
from urllib3.exceptions import ProtocolError

from luatos_sim import Device

BASE = "http://ota.example.com:8000"


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def run(boot: Callable[..., Device], path: str, opts: str = "nil") -> str:
    dev = boot(f"""
sys.taskInit(function()
  wlan.init(); wlan.connect("ap", "pw"); sys.waitUntil("IP_READY")
  local code, headers, body = http.request("GET", "{BASE}{path}", nil, nil, {opts}).wait()
  log.info("result", code, type(headers), headers and headers["X-Tag"], type(body),
    type(body) == "string" and "[" .. body .. "]" or body)
end)
sys.run()
""")
    dev.net.allow_real_network = True  # `responses` intercepts every request: nothing leaves
    return dev.run_until("I/user.result", within="15m").line


def test_plain_200_returns_status_headers_and_body(boot: Callable[..., Device],
                                                   mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, f"{BASE}/plain", body=b"hello", headers={"X-Tag": "t1"})
    assert run(boot, "/plain") == "I/user.result 200 table t1 string [hello]"
    sent = mocked.calls[0].request
    assert list(sent.headers.items())[:2] == [("Connection", "Close"),
                                              ("Host", "ota.example.com:8000")]
    assert sent.url == f"{BASE}/plain"


def test_refused_maps_to_minus_4(boot: Callable[..., Device],
                                 mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, f"{BASE}/refused",
               body=requests.exceptions.ConnectionError("Connection refused"))
    assert run(boot, "/refused") == "I/user.result -4 nil nil nil nil"


def test_aborted_before_headers_maps_to_minus_5(boot: Callable[..., Device],
                                                mocked: responses.RequestsMock) -> None:
    err = requests.exceptions.ConnectionError(ProtocolError(
        "Connection aborted.", http.client.RemoteDisconnected("closed")))
    mocked.add(responses.GET, f"{BASE}/aborted", body=err)
    assert run(boot, "/aborted") == "I/user.result -5 nil nil nil nil"


def test_status_codes_pass_through_without_redirects(boot: Callable[..., Device],
                                                     mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, f"{BASE}/moved", status=301,
               headers={"Location": f"{BASE}/elsewhere", "X-Tag": "r"})
    mocked.add(responses.GET, f"{BASE}/elsewhere", body=b"should not be fetched")
    assert run(boot, "/moved") == "I/user.result 301 table r string []"
    assert [c.request.url for c in mocked.calls] == [f"{BASE}/moved"]


def test_fota_mode_error_status_maps_to_minus_9(boot: Callable[..., Device],
                                                mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, f"{BASE}/none", status=304, headers={"X-Tag": "n"})
    assert run(boot, "/none", "{fota=true}") == "I/user.result -9 table n string []"


def test_dst_mode_error_status_returns_a_count(boot: Callable[..., Device],
                                               mocked: responses.RequestsMock) -> None:
    mocked.add(responses.GET, f"{BASE}/gone", status=410, body=b"gone!")
    assert run(boot, "/gone", '{dst="/g.bin"}') == "I/user.result 410 table nil number 5"
