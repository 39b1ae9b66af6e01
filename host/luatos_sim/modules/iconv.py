"""iconv: character set conversion (UCS-2 / UTF-8 / GB2312), through Python's codecs.

``iconv.open(to, from)`` gives a converter whose ``:iconv(s)`` converts; bytes that do not
decode give nil, as iconv(3) failing does on the device."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot

CODECS = {"ucs2": "utf-16-le", "ucs2be": "utf-16-be", "utf8": "utf-8", "utf-8": "utf-8",
          "gb2312": "gb2312", "gbk": "gbk"}


class Converter:
    def __init__(self, to: str, frm: str) -> None:
        self.to, self.frm = to, frm


def install(boot: Boot) -> None:
    def iconv_open(to: bytes, frm: bytes, *_: Any) -> Converter | None:
        t, f = CODECS.get(to.decode(errors="replace").lower()), \
            CODECS.get(frm.decode(errors="replace").lower())
        if t is None or f is None:
            return None
        return Converter(t, f)

    def convert(cd: Converter, data: bytes, *_: Any) -> bytes | None:
        try:
            return data.decode(cd.frm).encode(cd.to)
        except (UnicodeDecodeError, UnicodeEncodeError):
            return None

    boot.objects.define(Converter, "iconv_t", methods={"iconv": convert})
    boot.firmware_module("iconv", {"open": iconv_open})
