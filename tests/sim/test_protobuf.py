"""protobuf: a project loads a descriptor set from its files (the vendor demo's idiom) and what
the emulator encodes is read back by google.protobuf, and what google.protobuf writes is decoded
by the emulator; the firmware library's own corners (field order, proto3 zeros, errors) hold."""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from luatos_sim import Device, DeviceOptions

F = descriptor_pb2.FieldDescriptorProto
OPT, REP = F.LABEL_OPTIONAL, F.LABEL_REPEATED


def person_set() -> descriptor_pb2.FileDescriptorSet:
    """The vendor demo's person.pbtxt shape (proto2)."""
    fs = descriptor_pb2.FileDescriptorSet()
    f = fs.file.add(name="person.proto", syntax="proto2")
    m = f.message_type.add(name="Person")
    m.field.add(name="name", number=1, type=F.TYPE_STRING, label=OPT)
    m.field.add(name="id", number=2, type=F.TYPE_INT32, label=OPT)
    m.field.add(name="email", number=3, type=F.TYPE_STRING, label=OPT)
    return fs


def rich_set() -> descriptor_pb2.FileDescriptorSet:
    """proto3 with a package, nested, repeated, enum, bytes, 64-bit, map and oneof fields."""
    fs = descriptor_pb2.FileDescriptorSet()
    f = fs.file.add(name="dev.proto", package="dev", syntax="proto3")
    e = f.enum_type.add(name="Mode")
    for name, number in (("IDLE", 0), ("RUN", 1), ("SLEEP", 2), ("BAD", -1)):
        e.value.add(name=name, number=number)
    pos = f.message_type.add(name="Pos")
    pos.field.add(name="lat", number=1, type=F.TYPE_DOUBLE, label=OPT)
    pos.field.add(name="lng", number=2, type=F.TYPE_FLOAT, label=OPT)
    r = f.message_type.add(name="Report")
    add = r.field.add
    add(name="imei", number=1, type=F.TYPE_STRING, label=OPT)
    add(name="seq", number=2, type=F.TYPE_UINT32, label=OPT)
    add(name="mode", number=3, type=F.TYPE_ENUM, label=OPT, type_name=".dev.Mode")
    add(name="pos", number=4, type=F.TYPE_MESSAGE, label=OPT, type_name=".dev.Pos")
    add(name="samples", number=5, type=F.TYPE_SINT32, label=REP)
    add(name="tags", number=6, type=F.TYPE_STRING, label=REP)
    add(name="blob", number=7, type=F.TYPE_BYTES, label=OPT)
    add(name="big", number=8, type=F.TYPE_INT64, label=OPT)
    add(name="huge", number=9, type=F.TYPE_UINT64, label=OPT)
    add(name="track", number=10, type=F.TYPE_MESSAGE, label=REP, type_name=".dev.Pos")
    add(name="counters", number=11, type=F.TYPE_MESSAGE, label=REP,
        type_name=".dev.Report.CountersEntry")
    add(name="text", number=12, type=F.TYPE_STRING, label=OPT, oneof_index=0)
    add(name="code", number=13, type=F.TYPE_INT32, label=OPT, oneof_index=0)
    add(name="ok", number=14, type=F.TYPE_BOOL, label=OPT)
    r.oneof_decl.add(name="result")
    entry = r.nested_type.add(name="CountersEntry")
    entry.field.add(name="key", number=1, type=F.TYPE_STRING, label=OPT)
    entry.field.add(name="value", number=2, type=F.TYPE_INT32, label=OPT)
    entry.options.map_entry = True
    # Field numbers 1, 9 and 17 share pb.h's first hash slot: encode writes 1, 17, 9.
    o = f.message_type.add(name="Order")
    for name, number in (("a", 1), ("b", 9), ("c", 17)):
        o.field.add(name=name, number=number, type=F.TYPE_UINT32, label=OPT)
    return fs


def message_class(fs: descriptor_pb2.FileDescriptorSet, name: str) -> Any:
    pool = descriptor_pool.DescriptorPool()
    for f in fs.file:
        pool.Add(f)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName(name))


@pytest.fixture
def run(tmp_path: Path) -> Iterator[Callable[..., list[str]]]:
    devices: list[Device] = []

    def make(body: str, files: dict[str, bytes] | None = None) -> list[str]:
        root = tmp_path / f"p{len(devices)}"
        root.mkdir()
        for name, data in (files or {}).items():
            (root / name).write_bytes(data)
        (root / "main.lua").write_text(
            'sys = require("sys")\nsys.taskInit(function()\n' + body
            + '\nlog.info("end")\nend)\nsys.run()\n')
        dev = Device(root, options=DeviceOptions(epoch_at_power_on=1_700_000_000))
        devices.append(dev)
        dev.run_until("I/user.end", within="10s")
        lines = dev.lines()
        assert not any("Traceback" in ln for ln in lines), lines
        return [ln[len("I/user."):] for ln in lines if ln.startswith("I/user.")]

    yield make
    for d in devices:
        d.close()


def value(lines: list[str], tag: str) -> str:
    return next(ln[len(tag) + 1:] for ln in lines if ln.startswith(tag + " "))


def test_vendor_idiom_round_trips_through_google_protobuf(run: Callable[..., list[str]]) -> None:
    fs = person_set()
    pb = fs.SerializeToString()
    lines = run('''
        local ok, n = protobuf.load(io.readFile("/luadb/person.pb"))
        log.info("load", ok, n)
        local data = protobuf.encode("Person", {name = "wendal", id = 123, email = "abc@qq.com"})
        log.info("hex", data:toHex())
        local t = protobuf.decode("Person", data)
        log.info("dec", t.name, t.id, t.email, t.absent)
        local z = protobuf.decode(".Person", protobuf.encode("Person", {id = 0}))
        log.info("zero", z.id, z.name)
    ''', {"person.pb": pb})
    assert value(lines, "load") == f"true {len(pb) + 1}"
    Person = message_class(fs, "Person")
    msg = Person.FromString(bytes.fromhex(value(lines, "hex").split()[0]))
    assert (msg.name, msg.id, msg.email) == ("wendal", 123, "abc@qq.com")
    assert value(lines, "dec") == "wendal 123 abc@qq.com nil"
    # proto2: a zero is written (explicit), and nothing missing is filled in on decode.
    assert value(lines, "zero") == "0 nil"


def test_rich_message_encoded_by_the_device_reads_in_google_protobuf(
        run: Callable[..., list[str]]) -> None:
    fs = rich_set()
    lines = run('''
        protobuf.load(io.readFile("/luadb/dev.pb"))
        local data = protobuf.encode("dev.Report", {
            imei = "860000000000001", seq = 7, mode = "SLEEP",
            pos = {lat = 31.25, lng = 121.5},
            samples = {-1, 0, 150, -70000}, tags = {"a", "", "c"},
            blob = "\\0\\255\\1", big = -9007199254740993, huge = -1,
            track = {{lat = 1}, {lng = 2}},
            counters = {boot = 3}, code = 0, ok = false,
        })
        log.info("hex", data:toHex())
    ''', {"dev.pb": fs.SerializeToString()})
    Report = message_class(fs, "dev.Report")
    msg = Report.FromString(bytes.fromhex(value(lines, "hex").split()[0]))
    assert msg.imei == "860000000000001" and msg.seq == 7 and msg.mode == 2
    assert (msg.pos.lat, msg.pos.lng) == (31.25, 121.5)
    assert list(msg.samples) == [-1, 0, 150, -70000]
    assert list(msg.tags) == ["a", "", "c"]
    assert msg.blob == b"\0\xff\x01"
    assert msg.big == -9007199254740993
    assert msg.huge == 2 ** 64 - 1
    assert [(p.lat, p.lng) for p in msg.track] == [(1.0, 0.0), (0.0, 2.0)]
    assert dict(msg.counters) == {"boot": 3}
    # A oneof member is written even when it is zero; a plain proto3 zero (ok=false) is not.
    assert msg.WhichOneof("result") == "code" and msg.code == 0
    assert not msg.ok


def test_google_protobuf_output_decodes_on_the_device(run: Callable[..., list[str]]) -> None:
    fs = rich_set()
    Report = message_class(fs, "dev.Report")
    msg = Report(imei="x", seq=4294967295, mode=7, samples=[3, -3], tags=["t"],
                 blob=b"\x00\x80", big=-(2 ** 63), huge=2 ** 64 - 2, text="hi")
    msg.pos.lat = -0.5
    msg.track.add(lat=2.5)
    msg.counters["k"] = -4
    wire = msg.SerializeToString() + b"\xa0\x06\x05"  # plus unknown field 100
    lines = run('''
        protobuf.load(io.readFile("/luadb/dev.pb"))
        local t = protobuf.decode("dev.Report", io.readFile("/luadb/msg.bin"))
        log.info("scalars", t.imei, t.seq, t.mode, t.big, t.huge, t.ok, math.type(t.big))
        log.info("pos", t.pos.lat, t.pos.lng, t.track[1].lat, #t.track)
        log.info("lists", table.concat(t.samples, ","), t.tags[1], t.blob:toHex(), t.counters.k)
        log.info("oneof", t.result, t.text, t.code)
    ''', {"dev.pb": fs.SerializeToString(), "msg.bin": wire})
    # An enum number the schema does not name comes back as that number; uint64 wraps.
    assert value(lines, "scalars") == \
        "x 4294967295 7 -9223372036854775808 -2 false integer"
    assert value(lines, "pos") == "-0.5 0.0 2.5 1"
    assert value(lines, "lists") == "3,-3 t 0080 -4"
    assert value(lines, "oneof") == "text hi nil"


def test_proto3_zeros_and_field_order_follow_the_firmware_library(
        run: Callable[..., list[str]]) -> None:
    fs = rich_set()
    lines = run('''
        protobuf.load(io.readFile("/luadb/dev.pb"))
        local t = protobuf.decode("dev.Report", "")
        log.info("empty", t.imei == "", t.seq, t.mode, t.big, t.ok, t.pos, #t.samples,
            next(t.counters), t.text, t.code, t.result)
        log.info("enum0", protobuf.encode("dev.Report", {mode = "IDLE", seq = 0}):toHex())
        log.info("order", protobuf.encode("dev.Order", {a = 1, b = 2, c = 3}):toHex())
        log.info("negenum", protobuf.encode("dev.Report", {mode = "BAD"}):toHex())
    ''', {"dev.pb": fs.SerializeToString()})
    assert value(lines, "empty") == "true 0 IDLE 0 false nil 0 nil nil nil nil"
    # pb.h writes a proto3 enum even at 0 (google.protobuf would not); seq=0 is dropped.
    assert value(lines, "enum0") == "1800 4"
    hexed = value(lines, "order").split()[0]
    assert bytes.fromhex(hexed) == bytes([0x08, 1, 0x88, 0x01, 3, 0x48, 2])
    assert value(lines, "negenum") == "18FFFFFFFF0F 12"


def test_64bit_and_loose_values(run: Callable[..., list[str]]) -> None:
    fs = rich_set()
    lines = run('''
        protobuf.load(io.readFile("/luadb/dev.pb"))
        local function rt(t) return protobuf.decode("dev.Report", protobuf.encode("dev.Report", t)) end
        log.info("strings", rt({big = "#-12"}).big, rt({big = "0x10"}).big, rt({seq = "7"}).seq,
            rt({big = "9223372036854775807"}).big)
        log.info("floats", rt({seq = 3.0}).seq, rt({ok = 0}).ok, rt({mode = 1.9}).mode)
    ''', {"dev.pb": fs.SerializeToString()})
    assert value(lines, "strings") == "-12 16 7 9223372036854775807"
    # bool takes any truthy value (0 is true in Lua); an enum number is truncated.
    assert value(lines, "floats") == "3 true RUN"


def test_errors_are_lua_errors_named_like_the_firmware(run: Callable[..., list[str]]) -> None:
    fs = rich_set()
    lines = run('''
        local function try(tag, f, ...) log.info(tag, pcall(f, ...)) end
        try("before", protobuf.encode, "dev.Report", {})
        try("nilload", protobuf.load, io.readFile("/luadb/missing.pb"))
        log.info("garbage", protobuf.load("hello"))
        log.info("emptyset", protobuf.load(""))
        protobuf.load(io.readFile("/luadb/dev.pb"))
        try("notable", protobuf.encode, "dev.Report", "x")
        try("int", protobuf.encode, "dev.Report", {seq = "abc"})
        try("str", protobuf.encode, "dev.Report", {imei = 5})
        try("enum", protobuf.encode, "dev.Report", {mode = "FLY"})
        try("msg", protobuf.encode, "dev.Report", {pos = 1})
        try("rep", protobuf.encode, "dev.Report", {samples = 1})
        try("trunc", protobuf.decode, "dev.Report", "\\x10")
        try("short", protobuf.decode, "dev.Report", "\\x0a\\x05ab")
        try("wire", protobuf.decode, "dev.Report", "\\x0a\\x01a\\x10\\x01\\x22\\x02\\x08\\x01")
        try("data", protobuf.decode, "dev.Report", 5)
        protobuf.clear()
        try("cleared", protobuf.decode, "dev.Report", "")
    ''', {"dev.pb": fs.SerializeToString()})
    expect = {
        "before": "false bad argument #1 to 'encode' (type 'dev.Report' does not exists)",
        "nilload": "false bad argument #1 to 'load' (string/buffer/slice expected, got nil)",
        "garbage": "false 4",
        "emptyset": "true 1",
        "notable": "false bad argument #2 to 'encode' (table expected, got string)",
        "int": "false integer format error: 'abc'",
        "str": "false bad argument #2 to 'encode' (string expected for field 'imei', got number)",
        "enum": "false bad argument #2 to 'encode' (can not encode unknown enum 'FLY' at field "
                "'mode')",
        "msg": "false bad argument #2 to 'encode' (table expected at field 'pos', got number)",
        "rep": "false bad argument #2 to 'encode' (table expected at field 'samples', got number)",
        "trunc": "false invalid varint value at offset 2",
        "short": "false unfinished bytes (len 5 at offset 3)",
        "wire": "false type mismatch for field 'lat' at offset 9, 64bit expected for type double,"
                " got varint",
        "data": "false bad argument #2 to 'decode' (string/buffer/slice expected, got number)",
        "cleared": "false bad argument #1 to 'decode' (type 'dev.Report' does not exists)",
    }
    got = {tag: value(lines, tag) for tag in expect}
    for tag, text in expect.items():
        assert text in got[tag], (tag, got[tag])


def wide_set() -> descriptor_pb2.FileDescriptorSet:
    """40 fields with scattered numbers (pb.h's table grows from 8 slots to 64) and a message
    that holds itself."""
    fs = descriptor_pb2.FileDescriptorSet()
    f = fs.file.add(name="wide.proto", syntax="proto3")
    w = f.message_type.add(name="Wide")
    for i in range(40):
        w.field.add(name=f"f{i}", number=i * 37 + 1, type=F.TYPE_INT32, label=OPT)
    n = f.message_type.add(name="Node")
    n.field.add(name="next", number=1, type=F.TYPE_MESSAGE, label=OPT, type_name=".Node")
    n.field.add(name="v", number=2, type=F.TYPE_INT32, label=OPT)
    return fs


def test_a_wide_message_and_deep_nesting(run: Callable[..., list[str]]) -> None:
    fs = wide_set()
    nested = message_class(fs, "Node")()
    cur = nested
    for _ in range(150):
        cur = cur.next
    cur.v = 1
    lines = run('''
        protobuf.load(io.readFile("/luadb/wide.pb"))
        local t = {}
        for i = 0, 39 do t["f" .. i] = i + 1 end
        log.info("wide", protobuf.encode("Wide", t):toHex())
        local loop = {v = 1}
        loop.next = loop
        log.info("loop", pcall(protobuf.encode, "Node", loop))
        log.info("deep", pcall(protobuf.decode, "Node", io.readFile("/luadb/deep.bin")))
        local n = protobuf.decode("Node", protobuf.encode("Node", {next = {next = {v = 5}}}))
        log.info("three", n.next.next.v, n.v, n.next.next.next)
    ''', {"wide.pb": fs.SerializeToString(), "deep.bin": nested.SerializeToString()})
    wide = message_class(fs, "Wide").FromString(bytes.fromhex(value(lines, "wide").split()[0]))
    assert [getattr(wide, f"f{i}") for i in range(40)] == list(range(1, 41))
    assert "stack overflow (message too many levels)" in value(lines, "loop")
    assert "stack overflow (too many levels)" in value(lines, "deep")
    assert value(lines, "three") == "5 0 nil"


def test_clear_reload_and_a_reboot_forget_or_keep_types(run: Callable[..., list[str]]) -> None:
    fs = person_set()
    lines = run('''
        local pb = io.readFile("/luadb/person.pb")
        protobuf.load(pb)
        log.info("twice", protobuf.load(pb))
        log.info("again", protobuf.encode("Person", {name = "a", id = 1}):toHex())
        log.info("count", select("#", protobuf.clear("Person", 2)))
        log.info("nofield", protobuf.encode("Person", {name = "a", id = 1}):toHex())
        protobuf.clear(".Person")
        log.info("notype", pcall(protobuf.encode, "Person", {}))
        protobuf.load(pb)
        log.info("back", protobuf.encode("Person", {id = 2}):toHex())
    ''', {"person.pb": fs.SerializeToString()})
    assert value(lines, "twice").startswith("true ")
    assert value(lines, "again") == "0A01611001 10"
    assert value(lines, "count") == "0"
    assert value(lines, "nofield") == "0A0161 6"
    assert "type 'Person' does not exists" in value(lines, "notype")
    assert value(lines, "back") == "1002 4"


def test_random_bytes_decode_or_fail_cleanly(run: Callable[..., list[str]]) -> None:
    rnd = random.Random(11)
    blobs = b"".join(len(b).to_bytes(1, "big") + b for b in
                     (bytes(rnd.randrange(256) for _ in range(rnd.randrange(1, 40)))
                      for _ in range(200)))
    lines = run('''
        protobuf.load(io.readFile("/luadb/dev.pb"))
        local all, i, ok_n, err_n = io.readFile("/luadb/blobs.bin"), 1, 0, 0
        while i <= #all do
            local n = all:byte(i)
            local ok, r = pcall(protobuf.decode, "dev.Report", all:sub(i + 1, i + n))
            if ok and type(r) == "table" then ok_n = ok_n + 1
            elseif not ok and type(r) == "string" then err_n = err_n + 1 end
            i = i + n + 1
        end
        log.info("fuzz", ok_n + err_n, err_n > 0, ok_n > 0)
    ''', {"dev.pb": rich_set().SerializeToString(), "blobs.bin": blobs})
    assert value(lines, "fuzz") == "200 true true"


def test_decode_corners_unpacked_lists_replaced_messages_and_optional(
        run: Callable[..., list[str]]) -> None:
    fs = rich_set()
    r = fs.file[0].message_type[1]
    r.oneof_decl.add(name="_level")
    r.field.add(name="level", number=15, type=F.TYPE_INT32, label=OPT, oneof_index=1,
                proto3_optional=True)
    # samples (5) unpacked twice, then packed once; pos (4) twice: the second replaces.
    wire = (bytes([0x28, 0x03, 0x28, 0x04, 0x2A, 0x01, 0x05])
            + bytes([0x22, 0x09, 0x09]) + struct.pack("<d", 1.5)
            + bytes([0x22, 0x05, 0x15]) + struct.pack("<f", 2.0))
    lines = run('''
        protobuf.load(io.readFile("/luadb/dev.pb"))
        local t = protobuf.decode("dev.Report", io.readFile("/luadb/msg.bin"))
        log.info("list", table.concat(t.samples, ","))
        log.info("pos", t.pos.lat, t.pos.lng)
        local mine = {keep = "me"}
        local back = protobuf.decode("dev.Report", protobuf.encode("dev.Report", {level = 0}), mine)
        log.info("into", back == mine, mine.keep, mine.level, mine._level, mine.result)
    ''', {"dev.pb": fs.SerializeToString(), "msg.bin": wire})
    assert value(lines, "list") == "-2,2,-3"
    assert value(lines, "pos") == "0.0 2.0"
    assert value(lines, "into") == "true me 0 level nil"



def _ld(tag: int, body: bytes) -> bytes:
    """One length-delimited field (tag byte, varint length, body), written by hand."""
    n, size = len(body), b""
    while n > 0x7F:
        size += bytes((n & 0x7F | 0x80,))
        n >>= 7
    return bytes((tag,)) + size + bytes((n,)) + body


def deep_descriptor_set(levels: int) -> bytes:
    """A FileDescriptorSet whose message types nest ``levels`` deep (DescriptorProto: name is
    field 1, nested_type field 3; FileDescriptorProto: message_type field 4; the set: file 1)."""
    msg = _ld(0x0A, b"T")
    for _ in range(levels - 1):
        msg = _ld(0x0A, b"T") + _ld(0x1A, msg)
    return _ld(0x0A, _ld(0x0A, b"deep.proto") + _ld(0x22, msg) + _ld(0x62, b"proto3"))


def test_hostile_nesting_is_refused_cleanly(run: Callable[..., list[str]]) -> None:
    """Thousands of nested group starts, in data or in a descriptor set, and a descriptor whose
    types nest 3,000 deep: a clean failure each time, never a Python stack overflow."""
    fs = wide_set()
    lines = run('''
        protobuf.load(io.readFile("/luadb/wide.pb"))
        log.info("groups", pcall(protobuf.decode, "Node", io.readFile("/luadb/groups.bin")))
        log.info("groupset", protobuf.load(io.readFile("/luadb/groups.bin")))
        log.info("deepset", protobuf.load(io.readFile("/luadb/deepset.pb")))
        log.info("shallow", protobuf.load(io.readFile("/luadb/shallow.pb")))
        log.info("after", protobuf.decode("Node", protobuf.encode("Node", {v = 7})).v)
    ''', {"wide.pb": fs.SerializeToString(), "groups.bin": b"\x7b" * 5000,
          "deepset.pb": deep_descriptor_set(3000), "shallow.pb": deep_descriptor_set(20)})
    # an unknown field the decoder cannot skip is passed over, as for any other bad unknown field
    assert value(lines, "groups").startswith("true table") and "Recursion" not in value(lines, "groups")
    assert value(lines, "groupset").split()[0] in ("true", "false")
    assert value(lines, "deepset").startswith("false ")
    assert value(lines, "shallow").startswith("true ")  # the bound is far above a real schema
    assert value(lines, "after") == "7"
