"""fastlz: what the emulator writes is read back by a decoder written here from the FastLZ
format description, and what an encoder written here makes (long lengths, far distances)
is read by the emulator; malformed blocks, small buffers and odd arguments answer as the
firmware does."""

from __future__ import annotations

import random
from collections.abc import Callable

from luatos_sim import Device


def reference_decode(block: bytes) -> bytes:
    """FastLZ levels 1 and 2 from the format: top 3 bits of byte 0 = level - 1; an
    instruction < 32 copies (c & 31) + 1 literal bytes; otherwise length code c >> 5 (7: more
    length follows, one byte at level 1, bytes while 255 at level 2), distance - 1 =
    (c & 31) << 8 | next byte; at level 2 a near distance of 8191 means a 16-bit far distance
    + 8191 follows. A match copies length code + 2 (+ extra) bytes, overlapping forward."""
    level = (block[0] >> 5) + 1
    assert level in (1, 2)
    out = bytearray()
    i = 0
    first = True
    while i < len(block):
        c = block[i] & 31 if first else block[i]
        first = False
        i += 1
        if c < 32:
            out += block[i:i + c + 1]
            assert len(block[i:i + c + 1]) == c + 1
            i += c + 1
            continue
        length = c >> 5
        if length == 7:
            while True:
                extra = block[i]
                i += 1
                length += extra
                if level == 1 or extra != 255:
                    break
        low = block[i]
        i += 1
        distance = ((c & 31) << 8 | low) + 1
        if level == 2 and low == 255 and c & 31 == 31:
            distance = (block[i] << 8 | block[i + 1]) + 8191 + 1
            i += 2
        assert 0 < distance <= len(out)
        for _ in range(length + 2):
            out.append(out[-distance])
    return bytes(out)


def reference_encode(data: bytes, level: int) -> bytes:
    """A greedy FastLZ encoder that is not the firmware's: the longest match among the 16
    latest earlier places of the same 3 bytes, long lengths as the format allows (split at
    level 1, 255-chains at level 2), far distances at level 2."""
    max_distance = 8192 if level == 1 else 65535 + 8191
    out = bytearray()
    lits = bytearray()

    def flush() -> None:
        for k in range(0, len(lits), 32):
            chunk = lits[k:k + 32]
            out.append(len(chunk) - 1)
            out.extend(chunk)
        lits.clear()

    seen: dict[bytes, list[int]] = {}
    i = 0
    end = len(data) - 8  # the block ends on literals, as the firmware's compressor's do
    while i < len(data):
        best_len, best_dist = 0, 0
        for j in reversed(seen.get(data[i:i + 3], [])[-16:]):
            dist = i - j
            if dist > max_distance:
                break
            n = 0
            while i + n < end and data[i + n] == data[j + n] and n < 700:
                n += 1
            if n > best_len and n >= (5 if level == 2 and dist > 8191 else 3):
                best_len, best_dist = n, dist
        seen.setdefault(data[i:i + 3], []).append(i)
        if best_len < 3 or i == 0:
            lits.append(data[i])
            i += 1
            continue
        flush()
        length, d = min(best_len, 264) if level == 1 else best_len, best_dist - 1
        for k in range(i + 1, i + length):
            seen.setdefault(data[k:k + 3], []).append(k)
        if level == 1:
            code = length - 2
            if code < 7:
                out += bytes(((code << 5) | d >> 8, d & 255))
            else:
                out += bytes(((7 << 5) | d >> 8, code - 7, d & 255))
        else:
            code = length - 2
            far = d >= 8191
            out.append((min(code, 7) << 5) | (31 if far else d >> 8))
            if code >= 7:
                rest = code - 7
                while rest >= 255:
                    out.append(255)
                    rest -= 255
                out.append(rest)
            if far:
                d -= 8191
                out += bytes((255, d >> 8, d & 255))
            else:
                out.append(d & 255)
        i += length
    flush()
    if level == 2:
        out[0] |= 1 << 5
    return bytes(out)


def run(boot: Callable[..., Device], body: str) -> list[str]:
    dev = boot(body + '\nlog.info("end")\nsys.run()\n')
    dev.run_until("I/user.end", within="10s")
    return [ln[len("I/user."):] for ln in dev.lines() if ln.startswith("I/user.")]


def hex_after(lines: list[str], tag: str) -> bytes:
    return bytes.fromhex(next(ln for ln in lines if ln.startswith(tag + " ")).split()[1])


SAMPLE = (b"123jfoiq4hlkfjbnasdilfhuqwo;hfashfp9qw38hrfaios;hfiuoaghfluaeisw" * 3
          + bytes(300) + b"LuatOS " * 50)


def test_emulator_output_is_fastlz(boot: Callable[..., Device]) -> None:
    rnd = random.Random(7)
    far = bytes(rnd.randrange(256) for _ in range(9000)) * 2  # repeats 9000 bytes back
    lines = run(boot, f"""
local sample = ("{SAMPLE.hex()}"):fromHex()
local far = ("{far.hex()}"):fromHex()
log.info("l1", fastlz.compress(sample):toHex())
log.info("l2", fastlz.compress(sample, 2):toHex())
log.info("far1", fastlz.compress(far, 1):toHex())
log.info("far2", fastlz.compress(far, 2):toHex())
log.info("tiny", fastlz.compress("ab"):toHex(), fastlz.uncompress(fastlz.compress("ab")))
for k = 255, 285 do  -- match lengths around the level-1 split (262 per instruction)
  log.info("run" .. k, fastlz.compress("ab" .. string.rep("z", k) .. "0123456789ABCDEF"):toHex())
end
log.info("back", fastlz.uncompress(fastlz.compress(sample, 2)) == sample,
  fastlz.uncompress(fastlz.compress(far, 2), #far) == far)
""")
    l1, l2 = hex_after(lines, "l1"), hex_after(lines, "l2")
    assert l1[0] >> 5 == 0 and l2[0] >> 5 == 1  # the level marker
    assert reference_decode(l1) == SAMPLE and reference_decode(l2) == SAMPLE
    assert len(l1) < len(SAMPLE) // 2
    far1, far2 = hex_after(lines, "far1"), hex_after(lines, "far2")
    assert reference_decode(far1) == far and reference_decode(far2) == far
    # level 1 cannot reach 9000 bytes back; level 2 can (a 16-bit far distance)
    assert len(far1) > len(far) and len(far2) < len(far) * 0.6
    assert "tiny 016162 ab" in lines
    for k in range(255, 286):
        assert reference_decode(hex_after(lines, f"run{k}")) == b"ab" + b"z" * k + b"0123456789ABCDEF"
    assert "back true true" in lines


def test_emulator_reads_blocks_made_elsewhere(boot: Callable[..., Device]) -> None:
    rnd = random.Random(3)
    noise = bytes(rnd.randrange(256) for _ in range(8300))
    inputs = {
        "run": b"x" + b"y" * 1500,  # long lengths: split at level 1, 255-chains at level 2
        "text": SAMPLE,
        "far": noise + b"tail" + noise[:40],  # 8304 back: a far match at level 2
    }
    blocks = {f"{name}{level}": reference_encode(data, level)
              for name, data in inputs.items() for level in (1, 2)}
    assert all(reference_decode(b) == inputs[k[:-1]] for k, b in blocks.items())
    assert b"\xff\xff" in blocks["run2"]  # the encoder did write a length chain
    body = "\n".join(f'log.info("{k}", fastlz.uncompress(("{b.hex()}"):fromHex(), 20000):toHex())'
                     for k, b in blocks.items())
    lines = run(boot, body)
    for key in blocks:
        assert hex_after(lines, key) == inputs[key[:-1]], key
    # hand-made: "abc", then a 5-byte match 3 back (overlapping), level 1 and level 2
    lines = run(boot, """
log.info("hand", fastlz.uncompress("\\2abc\\96\\2"), fastlz.uncompress("\\34abc\\96\\2"))
""")
    assert "hand abcabcab abcabcab" in lines


def test_malformed_and_small_buffers_answer_nothing(boot: Callable[..., Device]) -> None:
    lines = run(boot, """
local function n(...) return select("#", ...) end
local big = string.rep("0123456789", 500)
local c = fastlz.compress(big)
log.info("maxout", n(fastlz.uncompress(c)), #fastlz.uncompress(c, #big), n(fastlz.uncompress(c, #big - 1)))
log.info("empty", n(fastlz.compress("")), n(fastlz.uncompress("")), n(fastlz.uncompress(c, 0)))
log.info("level", n(fastlz.compress(big, 3)), n(fastlz.compress(big, 0)), n(fastlz.uncompress("\\64abc")))
log.info("cut", n(fastlz.uncompress(c:sub(1, 5))), n(fastlz.uncompress("\\5abc")))
local p = fastlz.uncompress(c:sub(1, 11), 10000)  -- no end marker: whole instructions decode
log.info("prefix", #p, big:sub(1, #p) == p)
log.info("before start", n(fastlz.uncompress("\\0a\\64\\9")))
log.info("nil level", fastlz.uncompress(fastlz.compress("hello hello hello", nil)))
log.info("args", pcall(fastlz.compress))
log.info("table", pcall(fastlz.compress, {}))
log.info("level arg", pcall(fastlz.compress, "x", 1.5))
log.info("memory", pcall(fastlz.uncompress, c, -1))
log.info("heap", pcall(fastlz.uncompress, c, 64 * 1024 * 1024))
""")
    assert "maxout 0 5000 0" in lines  # maxout defaults to 4096
    assert "empty 0 0 0" in lines
    assert "level 0 0 0" in lines
    assert "cut 0 0" in lines
    assert "prefix 10 true" in lines
    assert "before start 0" in lines
    assert "nil level hello hello hello" in lines
    assert "args false bad argument #1 to 'compress' (string expected, got no value)" in lines
    assert "table false bad argument #1 to 'compress' (string expected, got table)" in lines
    assert ("level arg false bad argument #2 to 'compress' (number has no integer "
            "representation)") in lines
    assert "memory false not enough memory" in lines
    assert "heap false not enough memory" in lines


def test_fuzzed_blocks_never_break_the_script(boot: Callable[..., Device]) -> None:
    rnd = random.Random(11)
    good = reference_encode(SAMPLE, 2)
    cases = []
    for _ in range(150):
        b = bytearray(good)
        for _ in range(rnd.randint(1, 3)):
            b[rnd.randrange(len(b))] = rnd.randrange(256)
        cases.append(bytes(b[:rnd.randrange(1, len(b) + 1)]))
    body = "local ok = 0\n" + "\n".join(
        f'if pcall(fastlz.uncompress, ("{c.hex()}"):fromHex(), 2000) then ok = ok + 1 end'
        for c in cases) + '\nlog.info("fuzz", ok)'
    lines = run(boot, body)
    assert "fuzz 150" in lines  # every call returned (a string or nothing), none raised


def test_a_level2_block_ending_on_a_far_match_is_refused(boot: Callable[..., Device]) -> None:
    """The firmware's decoder wants a far distance's two bytes before the last two bytes of the
    block, so a block whose last instruction is a far match reads as broken (its own
    compressor always ends on literals)."""
    literals = bytes(range(256)) * 33
    block = bytearray()
    for k in range(0, len(literals), 32):
        block += bytes((31,)) + literals[k:k + 32]
    block[0] |= 1 << 5
    far = bytes(((1 << 5) | 31, 255, 1, 0))  # 3 bytes from 8448 back: 8191 + 256 + 1
    assert reference_decode(bytes(block) + far) == literals + literals[:3]
    lines = run(boot, f"""
local head = ("{bytes(block).hex()}"):fromHex()
log.info("ends on far", select("#", fastlz.uncompress(head .. ("{far.hex()}"):fromHex(), 9000)))
local out = fastlz.uncompress(head .. ("{far.hex()}0021"):fromHex(), 9000)
log.info("then a literal", #out, out:sub(-4):toHex())
""")
    assert "ends on far 0" in lines
    assert "then a literal 8452 00010221 8" in lines
