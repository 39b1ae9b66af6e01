"""The FastLZ block format (levels 1 and 2), as the firmware's fastlz component writes and reads it.

A block is a run of instructions. The first byte's top three bits carry the level (0 for level 1,
1 for level 2) and its low five bits are the first instruction, always a literal run. An
instruction byte ``c`` is a literal run of ``(c & 31) + 1`` bytes when ``c < 32``; otherwise a
match: the top three bits are the length code (7 means more length follows), the low five bits
the high bits of the distance minus one, and the next byte its low bits.

- level 1: a length code 7 adds one byte; distances up to 8192; matches of 3 to 264 bytes (longer
  ones are split).
- level 2: a length code 7 adds bytes while they are 255; a near distance of 8191 (low byte 255
  with high bits 31) means a 16-bit far distance follows, plus 8191; far matches need 5 bytes.

The compressor follows the firmware's algorithm step by step (hash of the next three bytes into
an 8192-entry table of last positions, the same match extension and hash updates), so it emits
what the device emits. Both directions are bounded: the decoder stops with ``None`` on any
instruction that would read or write out of bounds, as the firmware's returns 0.
"""

from __future__ import annotations

HASH_LOG = 13
HASH_SIZE = 1 << HASH_LOG
MAX_COPY = 32
MAX_LEN = 264
MAX_L1_DISTANCE = 8192
MAX_L2_DISTANCE = 8191
MAX_FARDISTANCE = 65535 + MAX_L2_DISTANCE - 1


def _hash(v: int) -> int:
    return ((v * 2654435769) >> (32 - HASH_LOG)) & (HASH_SIZE - 1)


def _read24(data: bytes, i: int) -> int:
    return data[i] | data[i + 1] << 8 | data[i + 2] << 16


def _literals(data: bytes, start: int, end: int, out: bytearray) -> None:
    while end - start >= MAX_COPY:
        out.append(MAX_COPY - 1)
        out += data[start:start + MAX_COPY]
        start += MAX_COPY
    if end > start:
        out.append(end - start - 1)
        out += data[start:end]


def _match_length(data: bytes, p: int, q: int, bound: int) -> int:
    """The firmware's 32-bit flz_cmp: bytes compared until a difference (which is counted)
    or until ``q`` reaches ``bound``."""
    start = p
    while q < bound:
        differ = data[p] != data[q]
        p += 1
        q += 1
        if differ:
            break
    return p - start


def _match1(length: int, distance: int, out: bytearray) -> None:
    distance -= 1
    while length > MAX_LEN - 2:
        out += bytes(((7 << 5) + (distance >> 8), MAX_LEN - 2 - 7 - 2, distance & 255))
        length -= MAX_LEN - 2
    if length < 7:
        out += bytes(((length << 5) + (distance >> 8), distance & 255))
    else:
        out += bytes(((7 << 5) + (distance >> 8), length - 7, distance & 255))


def _length_bytes(length: int, out: bytearray) -> None:
    length -= 7
    while length >= 255:
        out.append(255)
        length -= 255
    out.append(length)


def _match2(length: int, distance: int, out: bytearray) -> None:
    distance -= 1
    if distance < MAX_L2_DISTANCE:
        out.append(((min(length, 7)) << 5) + (distance >> 8))
        if length >= 7:
            _length_bytes(length, out)
        out.append(distance & 255)
        return
    distance -= MAX_L2_DISTANCE
    out.append((min(length, 7) << 5) + 31)
    if length >= 7:
        _length_bytes(length, out)
    out += bytes((255, distance >> 8, distance & 255))


def compress(data: bytes, level: int) -> bytes:
    """A FastLZ block of ``data`` at level 1 or 2; ``b""`` for empty data or another level
    (the firmware's "0 bytes written")."""
    if level not in (1, 2) or not data:
        return b""
    n = len(data)
    ip_bound, ip_limit = n - 4, n - 13
    max_distance = MAX_L1_DISTANCE if level == 1 else MAX_FARDISTANCE
    htab = [0] * HASH_SIZE
    out = bytearray()
    anchor, ip = 0, 2
    while ip < ip_limit:
        while True:  # find a position whose next 3 bytes were seen within reach
            seq = _read24(data, ip)
            h = _hash(seq)
            ref = htab[h]
            htab[h] = ip
            distance = ip - ref
            found = distance < max_distance and _read24(data, ref) == seq
            if ip >= ip_limit:
                break
            ip += 1
            if found:
                break
        if ip >= ip_limit:
            break
        ip -= 1
        if level == 2 and distance >= MAX_L2_DISTANCE and (
                data[ref + 3] != data[ip + 3] or data[ref + 4] != data[ip + 4]):
            ip += 1
            continue
        if ip > anchor:
            _literals(data, anchor, ip, out)
        length = _match_length(data, ref + 3, ip + 3, ip_bound)
        (_match1 if level == 1 else _match2)(length, distance, out)
        ip += length
        htab[_hash(_read24(data, ip))] = ip
        htab[_hash(_read24(data, ip + 1))] = ip + 1
        ip += 2
        anchor = ip
    _literals(data, anchor, n, out)
    if level == 2:
        out[0] |= 1 << 5
    return bytes(out)


def decompress(data: bytes, maxout: int) -> bytes | None:
    """The block's bytes, or None when it is not a well-formed FastLZ block that fits in
    ``maxout`` bytes (or decodes to nothing)."""
    if not data:
        return None  # the firmware reads the string's NUL: a literal run past the end
    level = (data[0] >> 5) + 1
    if level not in (1, 2):
        return None
    n = len(data)
    # A level-2 block may end on a match byte whose distance byte is the string's NUL.
    src = data + b"\0"
    out = bytearray()
    ip, ctrl = 1, data[0] & 31
    while True:
        if ctrl >= 32:
            length = (ctrl >> 5) - 1
            ofs = (ctrl & 31) << 8
            if length == 6:
                while True:
                    if ip > n - 2:
                        return None
                    code = src[ip]
                    ip += 1
                    length += code
                    if level == 1 or code != 255:
                        break
            code = src[ip]
            ip += 1
            ref = len(out) - ofs - 1 - code
            if level == 2 and code == 255 and ofs == 31 << 8:
                if not ip < n - 2:
                    return None
                ref = len(out) - ((src[ip] << 8) | src[ip + 1]) - MAX_L2_DISTANCE - 1
                ip += 2
            length += 3
            if len(out) + length > maxout or ref < 0:
                return None
            distance = len(out) - ref
            if distance >= length:
                out += out[ref:ref + length]
            else:  # overlapping: the last `distance` bytes repeat
                out += (out[ref:] * (length // distance + 1))[:length]
        else:
            ctrl += 1
            if len(out) + ctrl > maxout or ip + ctrl > n:
                return None
            out += data[ip:ip + ctrl]
            ip += ctrl
        if (ip > n - 2) if level == 1 else (ip >= n):
            break
        ctrl = src[ip]
        ip += 1
    return bytes(out) if out else None
