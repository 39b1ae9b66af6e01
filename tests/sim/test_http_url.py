"""http.request's URL rules (docs/behaviour.md §6 setup checks), without a device."""

from __future__ import annotations

import pytest

from luatos_sim.modules.http_mod import SetupError, parse_url


@pytest.mark.parametrize(("url", "expected"), [
    (b"http://ota.example.com", ("http", "ota.example.com", 80, "/", None)),
    (b"https://ota.example.com/a?b", ("https", "ota.example.com", 443, "/a?b", None)),
    (b"http://[fe80::1]:8080/x", ("http", "fe80::1", 8080, "/x", None)),
    (b"http://u:p@h.example:81/", ("http", "h.example", 81, "/", b"Basic dTpw")),
    (b"http://h.example/a b", ("http", "h.example", 80, "/a b", None)),
])
def test_urls_the_device_accepts(url: bytes, expected: tuple[object, ...]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", [b"ftp://h.example/", b"http://ab", b"http://h:0/",
                                 b"http://h:99999/", b"http://[::1/", b"http://:80/x",
                                 b"HTTP://h.example/"])
def test_urls_the_device_rejects(url: bytes) -> None:
    with pytest.raises(SetupError):
        parse_url(url)
