"""miniz: deflate/inflate (zlib), with the firmware's flag constants. Only the zlib-header
flags change the output here; the other tuning flags are accepted and ignored."""

from __future__ import annotations

import zlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..vm import Boot

# miniz's tdefl (compress) and tinfl (uncompress) flags
WRITE_ZLIB_HEADER, GREEDY_PARSING_FLAG, NONDETERMINISTIC_PARSING_FLAG = 0x01000, 0x04000, 0x08000
RLE_MATCHES, FILTER_MATCHES = 0x10000, 0x20000
FORCE_ALL_STATIC_BLOCKS, FORCE_ALL_RAW_BLOCKS = 0x40000, 0x80000
PARSE_ZLIB_HEADER, HAS_MORE_INPUT, USING_NON_WRAPPING_OUTPUT_BUF = 1, 2, 4


def install(boot: Boot) -> None:
    def compress(data: bytes, flags: int = WRITE_ZLIB_HEADER, *_: Any) -> bytes | None:
        c = zlib.compressobj(9 if not flags & FORCE_ALL_RAW_BLOCKS else 0, zlib.DEFLATED,
                             15 if flags & WRITE_ZLIB_HEADER else -15)
        return c.compress(data) + c.flush()

    def uncompress(data: bytes, flags: int = PARSE_ZLIB_HEADER, *_: Any) -> bytes | None:
        try:
            return zlib.decompress(data, 15 if flags & PARSE_ZLIB_HEADER else -15)
        except zlib.error:
            return None  # the firmware answers nil for data that does not inflate

    boot.firmware_module("miniz", {"compress": compress, "uncompress": uncompress}, {
        "WRITE_ZLIB_HEADER": WRITE_ZLIB_HEADER, "GREEDY_PARSING_FLAG": GREEDY_PARSING_FLAG,
        "NONDETERMINISTIC_PARSING_FLAG": NONDETERMINISTIC_PARSING_FLAG,
        "RLE_MATCHES": RLE_MATCHES, "FILTER_MATCHES": FILTER_MATCHES,
        "FORCE_ALL_STATIC_BLOCKS": FORCE_ALL_STATIC_BLOCKS,
        "FORCE_ALL_RAW_BLOCKS": FORCE_ALL_RAW_BLOCKS, "PARSE_ZLIB_HEADER": PARSE_ZLIB_HEADER,
        "HAS_MORE_INPUT": HAS_MORE_INPUT,
        "USING_NON_WRAPPING_OUTPUT_BUF": USING_NON_WRAPPING_OUTPUT_BUF,
    })
