"""SMS PDUs (3GPP TS 23.040): what the module's modem and the cellular network exchange.

Written from the sms module's documentation and the firmware's PDU rules (luat_sms.c,
luat_lib_sms.c), for both ends of the air interface: the device builds SMS-SUBMIT PDUs the way
its firmware does (GSM 7-bit when every byte is in the ASCII subset the firmware maps, else
UCS-2; 160 / 153 septets or 140 / 134 bytes per part; the +86 number rules) and reads
SMS-DELIVER PDUs as its firmware does (7-bit text mapped down to ASCII, UCS-2 left as hex for
the binding); the bench's network does the reverse so a test reads what a phone would.
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass

GSM7, BIT8, UCS2 = 0x00, 0x04, 0x08  # the encoding bits of the DCS (alphabet)
SHORT_7BIT_CHARS = 160  # septets in a single SMS
LONG_7BIT_CHARS = 153  # septets per part of a concatenated SMS (7 go to the UDH)
SHORT_UCS2_BYTES = 140  # LUAT_SMS_SHORT_MSG_PDU_SIZE
LONG_UCS2_BYTES = 134  # LUAT_SMS_LONG_MSG_PDU_SIZE
TOA_INTERNATIONAL, TOA_UNKNOWN = 0x91, 0x81
ESC = 0x1B

# GSM 03.38 default alphabet (basic table), by code.
_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
          "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
# The extension table (after ESC) the firmware's ASCII subset uses.
_EXT = {0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~", 0x3E: "]", 0x40: "|",
        0x65: "€"}
_EXT_OF = {ch: code for code, ch in _EXT.items()}


def _ascii_subset() -> dict[int, tuple[int, ...]]:
    """The ASCII bytes the firmware sends as 7-bit: the printable ones with a GSM code (``$``,
    ``@`` and ``_`` moved; ``[\\]^{|}~`` through the extension table), plus LF and CR. A
    backquote, DEL or any other control byte makes the whole message UCS-2."""
    table: dict[int, tuple[int, ...]] = {0x0A: (0x0A,), 0x0D: (0x0D,)}
    for b in range(0x20, 0x7F):
        ch = chr(b)
        if ch in _EXT_OF and ch != "€":
            table[b] = (ESC, _EXT_OF[ch])
        elif ch in _BASIC and ch != "\x1b":
            table[b] = (_BASIC.index(ch),)
    return table


ASCII_TO_GSM7 = _ascii_subset()


def _to_ascii(ch: str) -> str:
    """What the firmware prints for a GSM character: itself when ASCII, the base letter of an
    accented one, else ``?``."""
    if ch.isascii():
        return ch
    base = unicodedata.normalize("NFKD", ch)[:1]
    return base if base.isascii() and base.isalpha() else "?"


GSM7_TO_ASCII = bytes(ord(_to_ascii(c)) for c in _BASIC)


def gsm7_septets(data: bytes) -> list[int] | None:
    """The septets of ``data`` in the firmware's 7-bit subset, or None (send as UCS-2)."""
    out: list[int] = []
    for b in data:
        codes = ASCII_TO_GSM7.get(b)
        if codes is None:
            return None
        out.extend(codes)
    return out


def pack7(septets: list[int], bit_offset: int = 0) -> bytes:
    total = bit_offset + len(septets) * 7
    out = bytearray((total + 7) // 8)
    for i, v in enumerate(septets):
        pos = bit_offset + i * 7
        out[pos // 8] |= (v << (pos % 8)) & 0xFF
        if pos % 8 > 1:
            out[pos // 8 + 1] |= v >> (8 - pos % 8)
    return bytes(out)


def unpack7(data: bytes, count: int, bit_offset: int = 0) -> list[int]:
    out: list[int] = []
    for i in range(count):
        pos = bit_offset + i * 7
        if pos // 8 >= len(data):
            break
        v = data[pos // 8] >> (pos % 8)
        if pos % 8 > 1 and pos // 8 + 1 < len(data):
            v |= data[pos // 8 + 1] << (8 - pos % 8)
        out.append(v & 0x7F)
    return out


def gsm7_to_text(septets: list[int]) -> bytes:
    """The firmware's reading of 7-bit text: ASCII, the extension characters it knows."""
    out = bytearray()
    it = iter(septets)
    for s in it:
        if s == ESC:
            nxt = next(it, None)
            if nxt is None:
                break
            ch = _EXT.get(nxt)
            out.append(ord(ch) if ch is not None and ch.isascii() else GSM7_TO_ASCII[nxt])
        else:
            out.append(GSM7_TO_ASCII[s])
    return bytes(out)


def ucs2_to_utf8(data: bytes) -> bytes:
    """UCS-2 (big-endian) to UTF-8 one 16-bit unit at a time, up to a 0x0000 unit, as the
    firmware converts (a surrogate pair comes out as two 3-byte sequences)."""
    out = bytearray()
    for i in range(0, len(data) - 1, 2):
        u = (data[i] << 8) | data[i + 1]
        if u == 0:
            break
        if u < 0x80:
            out.append(u)
        elif u < 0x800:
            out += bytes((0xC0 | u >> 6, 0x80 | u & 0x3F))
        else:
            out += bytes((0xE0 | u >> 12, 0x80 | (u >> 6) & 0x3F, 0x80 | u & 0x3F))
    return bytes(out)


def _nibble(ch: str) -> int:
    """The firmware's ``hex2int(c) & 0x0F``: a hex digit's value, anything else 0; never fails
    (a stray character in a phone number is packed, not refused)."""
    return int(ch, 16) if ch in "0123456789abcdefABCDEF" and len(ch) == 1 else 0


def _semi_octets(digits: str) -> bytes:
    s = digits + ("F" if len(digits) % 2 else "")
    return bytes(_nibble(s[i + 1]) << 4 | _nibble(s[i]) for i in range(0, len(s), 2))


def _from_semi_octets(data: bytes, ndigits: int) -> str:
    text = "".join(f"{b & 0x0F:X}{b >> 4:X}" for b in data)
    return text[:ndigits]


# -- sending: SMS-SUBMIT -------------------------------------------------------------------------

def submit_address(phone: bytes, auto_phone: bool) -> tuple[str, int]:
    """The destination the firmware puts in the PDU: (digits, type of address). With the
    automatic fix, ``+CC...`` drops the ``+`` (international), ``86...`` is international, and
    an 11-digit number starting with 1 (a mainland mobile) gets ``86`` in front; a number of 15
    or more digits starting ``10`` (an SMS gateway) is kept as given."""
    p = phone.decode("latin-1")
    if len(p) >= 15 and p.startswith("10"):
        return p, TOA_UNKNOWN
    if auto_phone:
        if p.startswith("+"):
            return p[1:], TOA_INTERNATIONAL
        if p.startswith("86"):
            return p, TOA_INTERNATIONAL
        if len(p) == 11 and p.startswith("1"):
            return "86" + p, TOA_INTERNATIONAL
        return p, TOA_UNKNOWN
    return p, TOA_INTERNATIONAL if p.startswith("86") else TOA_UNKNOWN


@dataclass
class Submit:
    """One message the firmware is sending, split into the parts it submits one by one."""

    dcs: int
    parts: list[bytes]  # the user data of each part, ready for submit_pdu
    udls: list[int]  # TP-UDL of each part (septets for 7-bit, bytes for UCS-2, UDH included)
    ref: int = 0  # the concatenation reference (long messages)

    @property
    def count(self) -> int:
        return len(self.parts)


def plan_submit(payload: bytes, ref: int) -> Submit:
    """Encode ``payload`` (UTF-8) and split it as the firmware does; ``ref`` is the reference a
    long message uses. UCS-2 parts are cut every 134 bytes, 7-bit parts every 153 septets."""
    septets = gsm7_septets(payload)
    if septets is not None:
        if len(septets) <= SHORT_7BIT_CHARS:
            return Submit(GSM7, [pack7(septets)], [len(septets)])
        chunks = [septets[i:i + LONG_7BIT_CHARS] for i in range(0, len(septets), LONG_7BIT_CHARS)]
        return Submit(GSM7, [pack7(c, 1) for c in chunks], [7 + len(c) for c in chunks], ref)
    data = payload.decode("utf-8", "replace").encode("utf-16-be")
    if len(data) <= SHORT_UCS2_BYTES:
        return Submit(UCS2, [data], [len(data)])
    chunks_b = [data[i:i + LONG_UCS2_BYTES] for i in range(0, len(data), LONG_UCS2_BYTES)]
    return Submit(UCS2, chunks_b, [6 + len(c) for c in chunks_b], ref)


def submit_pdu(number: str, toa: int, plan: Submit, seq: int) -> bytes:
    """Part ``seq`` (1-based) of ``plan`` as an SMS-SUBMIT TPDU with a zero-length SMSC."""
    single = plan.count == 1
    out = bytearray((0x00, 0x01 if single else 0x41, 0x00, len(number), toa))
    out += _semi_octets(number)
    out += bytes((0x00, plan.dcs, plan.udls[seq - 1] & 0xFF))
    if not single:
        out += bytes((0x05, 0x00, 0x03, plan.ref & 0xFF, plan.count & 0xFF, seq & 0xFF))
    out += plan.parts[seq - 1]
    return bytes(out)


@dataclass
class SubmitPart:
    """What the network reads from one SMS-SUBMIT: destination, encoding, the part's text."""

    number: str
    toa: int
    dcs: int
    text: str
    ref: int = 0
    count: int = 1
    seq: int = 1


def read_submit(pdu: bytes) -> SubmitPart:
    """Parse an SMS-SUBMIT TPDU (after a zero SMSC octet) as the network would."""
    pos = 1 + pdu[0]
    first = pdu[pos]
    ndigits, toa = pdu[pos + 2], pdu[pos + 3]
    pos += 4
    nbytes = (ndigits + 1) // 2
    number = _from_semi_octets(pdu[pos:pos + nbytes], ndigits)
    pos += nbytes
    dcs, udl = pdu[pos + 1], pdu[pos + 2]
    pos += 3
    if first & 0x18:  # a validity period follows
        pos += 1 if first & 0x18 == 0x10 else 7
    ud = pdu[pos:]
    ref, count, seq, hdr = 0, 1, 1, 0
    if first & 0x40:
        hdr = ud[0] + 1
        if ud[1] == 0x00:
            ref, count, seq = ud[3], ud[4], ud[5]
        elif ud[1] == 0x08:
            ref, count, seq = (ud[3] << 8) | ud[4], ud[5], ud[6]
    if dcs & 0x0C == GSM7:
        skip = (hdr * 8 + 6) // 7
        text = _gsm7_to_unicode(unpack7(ud, udl)[skip:])
    else:
        text = ud[hdr:udl].decode("utf-16-be", "replace")
    return SubmitPart(number, toa, dcs, text, ref, count, seq)


def _gsm7_to_unicode(septets: list[int]) -> str:
    out: list[str] = []
    esc = False
    for s in septets:
        if esc:
            out.append(_EXT.get(s, _BASIC[s]))
            esc = False
        elif s == ESC:
            esc = True
        else:
            out.append(_BASIC[s])
    return "".join(out)


# -- receiving: SMS-DELIVER ----------------------------------------------------------------------

@dataclass
class Deliver:
    """One SMS-DELIVER as the firmware's parser sees it."""

    phone: bytes  # the originating address as digits (or text, for an alphanumeric sender)
    alphabet: int  # GSM7 / BIT8 / UCS2
    dcs: int
    body: bytes  # 7-bit: ASCII text; 8-bit: raw; UCS-2: the raw UCS-2 bytes
    ref: int = 0
    max_num: int = 0
    seq: int = 0
    time: tuple[int, int, int, int, int, int] = (0, 0, 0, 0, 0, 0)  # yy mm dd hh mm ss
    tz_quarters: int = 0
    toa: int = TOA_UNKNOWN


def _bcd(b: int) -> int:
    return (b & 0x0F) * 10 + (b >> 4)


def _to_bcd(v: int) -> int:
    return ((v % 10) << 4) | (v // 10 % 10)


@dataclass
class DeliverPart:
    """The bench's input for one part: built into a PDU by :func:`deliver_pdu`."""

    sender: str
    text: str
    dcs: int
    time: tuple[int, int, int, int, int, int]
    tz_quarters: int
    ref: int = 0
    count: int = 1
    seq: int = 1


def split_for_delivery(text: str) -> tuple[int, list[str]]:
    """How the network carries ``text``: GSM 7-bit when every character is in the default
    alphabet (extension included), else UCS-2; split into 153-septet / 67-character parts
    when one SMS cannot hold it (never between an escape and its character)."""
    try:
        septets = [_septets_of(ch) for ch in text]
    except KeyError:
        units = text.encode("utf-16-be")
        if len(units) <= SHORT_UCS2_BYTES:
            return UCS2, [text]
        parts, cur = [], ""
        for ch in text:
            if len((cur + ch).encode("utf-16-be")) > LONG_UCS2_BYTES:
                parts.append(cur)
                cur = ""
            cur += ch
        return UCS2, parts + [cur]
    if sum(len(s) for s in septets) <= SHORT_7BIT_CHARS:
        return GSM7, [text]
    parts7, cur, n = [], "", 0
    for ch, s in zip(text, septets, strict=True):
        if n + len(s) > LONG_7BIT_CHARS:
            parts7.append(cur)
            cur, n = "", 0
        cur += ch
        n += len(s)
    return GSM7, parts7 + [cur]


def _septets_of(ch: str) -> tuple[int, ...]:
    if ch in _EXT_OF:
        return (ESC, _EXT_OF[ch])
    i = _BASIC.index(ch) if ch in _BASIC and ch != "\x1b" else -1
    if i < 0:
        raise KeyError(ch)
    return (i,)


def deliver_pdu(part: DeliverPart) -> bytes:
    """An SMS-DELIVER TPDU (with a zero-length SMSC) carrying one part."""
    sender = part.sender
    if sender.startswith("+"):
        digits, toa = sender[1:], TOA_INTERNATIONAL
    else:
        digits, toa = sender, TOA_UNKNOWN
    if digits.isdigit():
        if len(digits) > 20:
            raise ValueError(f"deliver: sender {sender!r} has more than the 20 digits an SMS carries")
        oa = bytes((len(digits), toa)) + _semi_octets(digits)
    else:  # alphanumeric sender
        try:
            sept = [s for ch in sender for s in _septets_of(ch)]
        except KeyError:
            raise ValueError(f"deliver: sender {sender!r} is neither digits nor GSM 7-bit text") from None
        if len(sept) > 11:
            raise ValueError(f"deliver: alphanumeric sender {sender!r} is longer than 11 characters")
        packed = pack7(sept)
        oa = bytes((len(packed) * 2, 0xD0)) + packed
    long_msg = part.count > 1
    first = 0x44 if long_msg else 0x04
    scts = bytes(_to_bcd(v) for v in part.time)
    tz = part.tz_quarters
    scts += bytes((_to_bcd(abs(tz)) | (0x08 if tz < 0 else 0),))
    udh = bytes((0x05, 0x00, 0x03, part.ref & 0xFF, part.count, part.seq)) if long_msg else b""
    if part.dcs == GSM7:
        sept = [s for ch in part.text for s in _septets_of(ch)]
        if long_msg:  # after the 6-byte header, one fill bit to the next septet boundary
            ud, udl = udh + pack7(sept, 1), 7 + len(sept)
        else:
            ud, udl = pack7(sept), len(sept)
    else:
        body = part.text.encode("utf-16-be")
        ud, udl = udh + body, len(udh) + len(body)
    return bytes((0x00, first)) + oa + bytes((0x00, part.dcs)) + scts + bytes((udl,)) + ud


class PduError(ValueError):
    """A PDU the firmware's parser refuses (it reports -1)."""


def read_deliver(pdu: bytes) -> Deliver:
    """Parse an SMS-DELIVER as the firmware does (luat_sms_pdu_message_unpack's rules: a UDH
    is also recognised when the UDHI bit is missing but the user data starts like one)."""
    n = len(pdu)
    if n < 1:
        raise PduError("empty")
    pos = 1 + pdu[0]
    if pos + 2 > n:
        raise PduError("short")
    first, oa_len = pdu[pos], pdu[pos + 1]
    pos += 2
    if pos + 1 > n:
        raise PduError("short")
    toa = pdu[pos]
    pos += 1
    oa_bytes = (oa_len + 1) // 2
    if oa_bytes > 20 or pos + oa_bytes > n:
        raise PduError("address")
    oa = pdu[pos:pos + oa_bytes]
    pos += oa_bytes
    if (toa >> 4) & 0x07 == 5:
        phone = gsm7_to_text(unpack7(oa, oa_bytes * 8 // 7))[:oa_bytes]
    else:
        phone = _from_semi_octets(oa, oa_len).encode()
    if pos + 9 > n:
        raise PduError("short")
    dcs = pdu[pos + 1]
    scts = pdu[pos + 2:pos + 9]
    pos += 9
    if pos >= n:
        raise PduError("short")
    udl = pdu[pos]
    ud = pdu[pos + 1:pos + 160]
    long_msg = bool(first & 0x40) or (len(ud) >= 6 and (
        tuple(ud[:3]) == (0x05, 0x00, 0x03) or tuple(ud[:3]) == (0x06, 0x08, 0x04)))
    ref = max_num = seq = hdr = 0
    if long_msg:
        if not ud or ud[0] + 1 > len(ud):
            raise PduError("header")
        hdr = ud[0] + 1
        # the firmware reads the header from a zeroed 160-byte copy: past the data is 0
        h = ud.ljust(7, b"\0")
        if h[0] == 6 and h[1] == 0x08:
            ref, max_num, seq = (h[3] << 8) | h[4], h[5], h[6]
        else:
            ref, max_num, seq = h[3], h[4], h[5]
    alphabet = dcs & 0x0C
    if alphabet == GSM7:
        fill = (7 - (hdr * 8) % 7) % 7 if hdr else 0
        count = udl - (hdr * 8 + fill) // 7 if hdr else udl
        body = gsm7_to_text(unpack7(ud[hdr:], count, fill))
    elif alphabet == UCS2:
        body = ud[hdr:hdr + max(udl - hdr, 0)]
    else:
        body = ud[hdr:hdr + max(udl - hdr, 0)]
    tz_byte = scts[6]
    tz = _bcd(tz_byte & 0xF7) * (-1 if tz_byte & 0x08 else 1)
    t = tuple(_bcd(b) for b in scts[:6])
    return Deliver(phone, alphabet, dcs, body, ref, max_num, seq,
                   (t[0], t[1], t[2], t[3], t[4], t[5]), tz, toa)
