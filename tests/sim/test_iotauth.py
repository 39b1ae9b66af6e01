"""iotauth: the credentials a script computes in the emulator are the ones each cloud's own
public documentation of its signing algorithm gives (computed here with hmac/hashlib/base64,
never with the binding's helpers), with the firmware's defaults and corners; and a project in
the vendor's mqtt-demo pattern logs in to a real broker that checks those credentials."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import quote

import pytest

from luatos_sim import Device
from luatos_testing.mosquitto import (
    BrokerError,
    MosquittoBroker,
    broker_for_test,
    write_password_file,
)

from .conftest import missing_dependency

EPOCH = 1_700_000_000  # the boot fixture's epoch at power-on
FAR_FUTURE = 32472115200  # the firmware's documented default: 2999-01-01 00:00 (UTC+8)
TUYA_DEFAULT = 7258089600  # tuya's documented default: 2200-01-01 00:00 (UTC+8)

ALI = ("a1B2c3D4e5F", "meter-0042", "Y877Bgo8X5owd3lcB5wWDjryNPoB")
ONENET_KEY = "KuF3NT/jUBJ62LNBB/A8XZA9CqS3Cu79B/ABmfA1UCw="
IOTDA = ("6203cc94c7fb24029b110408_88888888", "123456789")
QCLOUD = ("LD8S5J1L07", "test", "acyv3QDJrRa0fW5UE58KnQ==")
TUYA = ("6c95875d0f5ba69607nzfl", "fb803786602df760")
BAIDU = ("abcd123", "mydevice", "ImSeCrEt0I1M2jkl")


# -- each cloud's published algorithm -------------------------------------------------------------

def aliyun_expected(pk: str, dn: str, secret: str, method: str, ts: int, tls: bool = False
                    ) -> tuple[str, str, str]:
    """Aliyun IoT "MQTT-TCP connection" (one secret per device): the sign is HMAC(device
    secret) over the sorted parameters clientId, deviceName, productKey, timestamp written as
    name+value; securemode 2 over TLS, 3 over TCP. The firmware writes the hex upper case."""
    client = f"{pk}.{dn}"
    digest = method.lower().removeprefix("hmac")
    content = f"clientId{client}deviceName{dn}productKey{pk}timestamp{ts}"
    sign = hmac.new(secret.encode(), content.encode(), digest).hexdigest().upper()
    mode = 2 if tls else 3
    return (f"{client}|securemode={mode},signmethod={method.lower()},timestamp={ts}|",
            f"{dn}&{pk}", sign)


def onenet_expected(pid: str, dn: str, key: str, method: str, et: int,
                    version: str = "2018-10-31", res: str | None = None) -> tuple[str, str, str]:
    """OneNET's token: sign = base64(HMAC_method(base64decode(key), et\\nmethod\\nres\\nversion)),
    token = version=..&res=..&et=..&method=..&sign=.. with res and sign URL-encoded."""
    res = res or f"products/{pid}/devices/{dn}"
    text = f"{et}\n{method}\n{res}\n{version}".encode()
    sign = base64.b64encode(hmac.new(base64.b64decode(key), text, method.lower()).digest())
    token = (f"version={version}&res={quote(res, safe='')}&et={et}&method={method}"
             f"&sign={quote(sign.decode(), safe='')}")
    return dn, pid, token


def iotda_expected(device_id: str, secret: str, ts: int, zone_hours: float,
                   checked: bool) -> tuple[str, str, str]:
    """Huawei IoTDA: client id deviceId_0_<sign type>_YYYYMMDDHH (sign type 1: the platform
    checks the time), password = HMAC-SHA256 keyed with YYYYMMDDHH over the secret, lower hex.
    The firmware takes YYYYMMDDHH from the device's local time."""
    hour = time.strftime("%Y%m%d%H", time.gmtime(ts + int(zone_hours * 3600)))
    password = hmac.new(hour.encode(), secret.encode(), hashlib.sha256).hexdigest()
    return f"{device_id}_0_{1 if checked else 0}_{hour}", device_id, password


def qcloud_password(username: str, psk: str, method: str) -> str:
    """Tencent IoT Explorer: password = hex(HMAC(base64decode(psk), username));signmethod."""
    sign = hmac.new(base64.b64decode(psk), username.encode(), method).hexdigest()
    return f"{sign};hmac{method}"


def tuya_expected(device_id: str, secret: str, ts: int) -> tuple[str, str, str]:
    """Tuya's MQTT login: client id tuyalink_<id>; password = HMAC-SHA256(secret) over
    deviceId=..,timestamp=..,secureMode=1,accessType=1, 64 lower-case hex digits."""
    content = f"deviceId={device_id},timestamp={ts},secureMode=1,accessType=1"
    password = hmac.new(secret.encode(), content.encode(), hashlib.sha256).hexdigest()
    return (f"tuyalink_{device_id}",
            f"{device_id}|signMethod=hmacSha256,timestamp={ts},secureMode=1,accessType=1",
            password)


def baidu_expected(core: str, key: str, secret: str, method: str, ts: int
                   ) -> tuple[str, str, str]:
    """Baidu IoT Core signature login: username thingidp@core|key|timestamp|ALG, password =
    hex ALG("key&timestamp&ALG" + secret). The firmware drops the timestamp field from the
    username when none is given and signs with 0."""
    alg = method.upper()
    user = f"thingidp@{core}|{key}|{ts}|{alg}" if ts else f"thingidp@{core}|{key}|{alg}"
    password = hashlib.new(alg.lower(), f"{key}&{ts}&{alg}{secret}".encode()).hexdigest()
    return core, user, password


# -- running scripts ------------------------------------------------------------------------------

def lua_str(v: str) -> str:
    return '"' + v.replace("\\", "\\\\").replace('"', '\\"') + '"'


def run_calls(boot: Callable[..., Device], calls: dict[str, str], prelude: str = "",
              **kw: object) -> dict[str, list[str]]:
    """Each call's results, one tab-separated line per name (results may hold spaces)."""
    body = "\n".join(
        f'R({lua_str(name)}, {call})' for name, call in calls.items())
    dev = boot(f"""
PROJECT = "iotauth" VERSION = "1.0.0"
local function R(name, ...)
  local out = {{}}
  for i = 1, select("#", ...) do out[i] = tostring((select(i, ...))) end
  log.info("r", name .. "\\t" .. table.concat(out, "\\t"))
end
sys.taskInit(function()
{prelude}
{body}
log.info("done")
end)
sys.run()
""", **kw)
    dev.run_until("I/user.done", within="2h")
    results: dict[str, list[str]] = {}
    for line in dev.lines():
        if line.startswith("I/user.r "):
            name, *values = line[len("I/user.r "):].split("\t")
            results[name] = values
    missing = set(calls) - set(results)
    assert not missing, (missing, dev.lines()[-20:])
    return results


def call(fn: str, *args: str | int | bool | None) -> str:
    def lua(v: str | int | bool | None) -> str:
        if v is None:
            return "nil"
        if isinstance(v, bool):
            return "true" if v else "false"
        return str(v) if isinstance(v, int) else lua_str(v)
    return f"iotauth.{fn}({', '.join(lua(a) for a in args)})"


# -- the credentials ------------------------------------------------------------------------------

def test_aliyun_matches_its_signing_for_every_method_and_mode(boot: Callable[..., Device]) -> None:
    pk, dn, ds = ALI
    got = run_calls(boot, {
        "default": call("aliyun", pk, dn, ds),
        "md5": call("aliyun", pk, dn, ds, "hmacmd5", 1700001234),
        "sha1": call("aliyun", pk, dn, ds, "hmacsha1", 1700001234),
        "sha256_tls": call("aliyun", pk, dn, ds, "hmacsha256", 1700001234, True),
        "upper": call("aliyun", pk, dn, ds, "HMACSHA256", 1700001234),
        "str_ts_ignored": call("aliyun", pk, dn, ds, "hmacsha1", "1700001234", "yes"),
    })
    assert got["default"] == list(aliyun_expected(pk, dn, ds, "hmacmd5", FAR_FUTURE))
    assert got["md5"] == list(aliyun_expected(pk, dn, ds, "hmacmd5", 1700001234))
    assert got["sha1"] == list(aliyun_expected(pk, dn, ds, "hmacsha1", 1700001234))
    assert got["sha256_tls"] == list(aliyun_expected(pk, dn, ds, "hmacsha256", 1700001234, True))
    # an upper-case method signs the same and is written lower case in the client id
    assert got["upper"] == list(aliyun_expected(pk, dn, ds, "hmacsha256", 1700001234))
    # only a number is a timestamp and only a boolean a TLS flag (lua_type checks)
    assert got["str_ts_ignored"] == list(aliyun_expected(pk, dn, ds, "hmacsha1", FAR_FUTURE))


def test_onenet_token_matches_the_platform_algorithm(boot: Callable[..., Device]) -> None:
    got = run_calls(boot, {
        "default": call("onenet", "Ck2AF9QD2K", "dev-1", ONENET_KEY),
        "sha1": call("onenet", "Ck2AF9QD2K", "dev-1", ONENET_KEY, "sha1"),
        "sha256_ts_ignored": call("onenet", "Ck2AF9QD2K", "dev-1", ONENET_KEY, "sha256",
                                  1700000000),
        "upper": call("onenet", "Ck2AF9QD2K", "dev-1", ONENET_KEY, "MD5"),
        "version": call("onenet", "Ck2AF9QD2K", "dev-1", ONENET_KEY, "sha256", None,
                        "2022-05-01"),
        "old_res": call("onenet", "12342334", "dev-1", "adfasdfadsfadsf=", "sha1", None, None,
                        "products/12342334"),
    })
    assert got["default"] == list(onenet_expected("Ck2AF9QD2K", "dev-1", ONENET_KEY, "md5",
                                                  FAR_FUTURE))
    assert got["sha1"] == list(onenet_expected("Ck2AF9QD2K", "dev-1", ONENET_KEY, "sha1",
                                               FAR_FUTURE))
    # the firmware ignores its timestamp argument: the token always expires in 2999
    assert got["sha256_ts_ignored"] == list(onenet_expected("Ck2AF9QD2K", "dev-1", ONENET_KEY,
                                                            "sha256", FAR_FUTURE))
    assert got["upper"] == list(onenet_expected("Ck2AF9QD2K", "dev-1", ONENET_KEY, "MD5",
                                                FAR_FUTURE))
    assert got["version"] == list(onenet_expected("Ck2AF9QD2K", "dev-1", ONENET_KEY, "sha256",
                                                  FAR_FUTURE, version="2022-05-01"))
    assert got["old_res"] == list(onenet_expected("12342334", "dev-1", "adfasdfadsfadsf=",
                                                  "sha1", FAR_FUTURE, res="products/12342334"))
    assert "%2F" in got["default"][2] and "/" not in got["default"][2]


def test_iotda_password_is_keyed_by_the_local_hour(boot: Callable[..., Device]) -> None:
    did, secret = IOTDA
    got = run_calls(boot, {
        "default": call("iotda", did, secret),
        "ts": call("iotda", did, secret, 1700000000),
        "utc": f"(function() rtc.timezone(0) return {call('iotda', did, secret, 1700000000)} end)()",
        "west4": f"(function() rtc.timezone(-16) return {call('iotda', did, secret, 1700000000)}"
                 " end)()",
    })
    # UTC+8 until rtc.timezone says otherwise: the default expiry is 2999-01-01 00h there
    assert got["default"] == list(iotda_expected(did, secret, FAR_FUTURE, 8, checked=False))
    assert got["default"][0].endswith("_0_0_2999010100")
    assert got["ts"] == list(iotda_expected(did, secret, 1700000000, 8, checked=True))
    # in UTC the hour is the one Huawei's documentation asks for
    assert got["utc"] == list(iotda_expected(did, secret, 1700000000, 0, checked=True))
    assert got["utc"][0].endswith("_0_1_2023111422")
    assert got["west4"] == list(iotda_expected(did, secret, 1700000000, -4, checked=True))


def test_the_zone_iotda_uses_is_per_boot(boot: Callable[..., Device]) -> None:
    did, secret = IOTDA
    dev = boot(f"""
PROJECT = "iotauth" VERSION = "1.0.0"
fskv.init()
local boots = fskv.get("boots") or 0
fskv.set("boots", boots + 1)
log.info("zone", boots, rtc.timezone(), ({call('iotda', did, secret, 1700000000)}))
if boots == 0 then
    rtc.timezone(0)
    log.info("zone", boots, rtc.timezone(), ({call('iotda', did, secret, 1700000000)}))
    sys.timerStart(rtos.reboot, 100)
end
sys.run()
""")
    dev.run_until(r"I/user\.zone 1 ", within="30s")
    utc8 = iotda_expected(did, secret, 1700000000, 8, checked=True)[0]
    utc = iotda_expected(did, secret, 1700000000, 0, checked=True)[0]
    zones = [ln for ln in dev.lines() if ln.startswith("I/user.zone")]
    assert zones == [f"I/user.zone 0 32 {utc8}", f"I/user.zone 0 0 {utc}",
                     f"I/user.zone 1 32 {utc8}"]


def test_qcloud_signs_its_username_with_a_fresh_connection_id(boot: Callable[..., Device]) -> None:
    pid, dn, psk = QCLOUD
    got = run_calls(boot, {
        "default": call("qcloud", pid, dn, psk),
        "again": call("qcloud", pid, dn, psk),
        "sha1": call("qcloud", pid, dn, psk, "sha1", 1700000000, "99999"),
        "upper": call("qcloud", pid, dn, psk, "SHA256", 1700000000),
    })
    conn_ids = []
    for name, method, appid, ts in (("default", "sha256", "12010126", FAR_FUTURE),
                                    ("again", "sha256", "12010126", FAR_FUTURE),
                                    ("sha1", "sha1", "99999", 1700000000),
                                    ("upper", "sha256", "12010126", 1700000000)):
        client_id, username, password = got[name]
        assert client_id == pid + dn
        m = re.fullmatch(rf"{pid}{dn};{appid};([a-z]{{5}});{ts}", username)
        assert m, username
        conn_ids.append(m[1])
        assert password == qcloud_password(username, psk, method)
    assert len(set(conn_ids)) > 1  # random per call (26^5 choices)


def test_tuya_and_baidu_match_their_signing(boot: Callable[..., Device]) -> None:
    did, secret = TUYA
    core, key, bsecret = BAIDU
    got = run_calls(boot, {
        "tuya_default": call("tuya", did, secret),
        "tuya_ts": call("tuya", did, secret, 1700000000),
        "baidu_default": call("baidu", core, key, bsecret),
        "baidu_md5_ts": call("baidu", core, key, bsecret, "md5", 1700000000),
        "baidu_sha256": call("baidu", core, key, bsecret, "SHA256"),
        "baidu_sha256_ts": call("baidu", core, key, bsecret, "sha256", 1700000000),
        "baidu_numeric_string_ts": call("baidu", core, key, bsecret, "MD5", "1700000000"),
    })
    assert got["tuya_default"] == list(tuya_expected(did, secret, TUYA_DEFAULT))
    assert got["tuya_ts"] == list(tuya_expected(did, secret, 1700000000))
    assert got["baidu_default"] == list(baidu_expected(core, key, bsecret, "MD5", 0))
    assert got["baidu_md5_ts"] == list(baidu_expected(core, key, bsecret, "MD5", 1700000000))
    assert got["baidu_sha256"] == list(baidu_expected(core, key, bsecret, "SHA256", 0))
    assert got["baidu_sha256_ts"] == list(baidu_expected(core, key, bsecret, "SHA256",
                                                         1700000000))
    # luaL_optinteger converts a numeric string
    assert got["baidu_numeric_string_ts"] == got["baidu_md5_ts"]


def test_timestamps_from_os_time_follow_the_virtual_clock(boot: Callable[..., Device]) -> None:
    did, secret = TUYA
    pk, dn, ds = ALI
    got = run_calls(boot, {
        "now": "os.time()",
        "tuya": f"iotauth.tuya({lua_str(did)}, {lua_str(secret)}, os.time())",
        "aliyun": f"iotauth.aliyun({lua_str(pk)}, {lua_str(dn)}, {lua_str(ds)}, 'hmacsha256', "
                  "os.time())",
    }, prelude="sys.wait(3600 * 1000)")
    now = int(got["now"][0])
    assert EPOCH + 3600 <= now <= EPOCH + 3601  # an hour of virtual time after main started
    assert got["tuya"] == list(tuya_expected(did, secret, now))
    assert got["aliyun"] == list(aliyun_expected(pk, dn, ds, "hmacsha256", now))


def test_firmware_corners_cuts_nul_and_keys(boot: Callable[..., Device]) -> None:
    pk, dn, ds = ALI
    long_id = "d" * 90
    got = run_calls(boot, {
        # the signed text lives in a 100-byte buffer: cut to 99 bytes before the HMAC
        "tuya_long": call("tuya", long_id, "s3cret", 1700000000),
        # C strings: a byte 0 ends the argument
        "nul": f'iotauth.aliyun("{pk}\\0tail", "{dn}", "{ds}", "hmacmd5", 1700000000)',
        # a number where a string goes is converted, as luaL_checklstring does
        "number": 'iotauth.tuya(12345, 678, 1700000000)',
        # a key that is not base64 leaves the firmware's decoder with an empty key
        "bad_key": call("onenet", "P1", "d1", "not base64!", "sha256"),
    })
    content = f"deviceId={long_id},timestamp=1700000000,secureMode=1,accessType=1"[:99]
    assert got["tuya_long"][2] == hmac.new(b"s3cret", content.encode(), "sha256").hexdigest()
    assert got["tuya_long"][1].startswith(long_id + "|")
    assert got["nul"] == list(aliyun_expected(pk, dn, ds, "hmacmd5", 1700000000))
    assert got["number"] == list(tuya_expected("12345", "678", 1700000000))
    et, res = FAR_FUTURE, "products/P1/devices/d1"
    sign = base64.b64encode(hmac.new(b"", f"{et}\nsha256\n{res}\n2018-10-31".encode(),
                                     "sha256").digest()).decode()
    assert got["bad_key"][2] == (f"version=2018-10-31&res={quote(res, safe='')}&et={et}"
                                 f"&method=sha256&sign={quote(sign, safe='')}")


def test_unknown_methods_and_bad_arguments(boot: Callable[..., Device]) -> None:
    pk, dn, ds = ALI
    pid, qdn, psk = QCLOUD
    got = run_calls(boot, {
        "aliyun": call("aliyun", pk, dn, ds, "crc32"),
        "onenet": call("onenet", "P1", "d1", ONENET_KEY, "sha512"),
        "qcloud": call("qcloud", pid, qdn, psk, "md5"),
        "baidu": call("baidu", "c", "k", "s", "sha1"),
        "nil_key": f"pcall(iotauth.aliyun, nil, {lua_str(dn)}, {lua_str(ds)})",
        "table_secret": "pcall(iotauth.tuya, 'id', {})",
        "float_ts": "pcall(iotauth.qcloud, 'p', 'd', 'k', nil, 1.5)",
        "baidu_word_ts": "pcall(iotauth.baidu, 'c', 'k', 's', 'MD5', 'soon')",
        "bool_method": "pcall(iotauth.onenet, 'p', 'd', 'k', true)",
    })
    # what the firmware had not written yet stays empty
    assert got["aliyun"] == ["", "", ""]
    assert got["onenet"] == ["", "", ""]
    assert got["qcloud"][0] == pid + qdn and got["qcloud"][1].startswith(pid + qdn + ";")
    assert got["qcloud"][2] == ""
    assert got["baidu"] == ["c", "", ""]
    assert got["nil_key"] == ["false", "bad argument #1 to 'aliyun' (string expected, got nil)"]
    assert got["table_secret"] == ["false",
                                   "bad argument #2 to 'tuya' (string expected, got table)"]
    assert got["float_ts"] == ["false",
                               "bad argument #5 to 'qcloud' (number has no integer representation)"]
    assert got["baidu_word_ts"] == ["false",
                                    "bad argument #5 to 'baidu' (number expected, got string)"]
    assert got["bool_method"] == ["false",
                                  "bad argument #4 to 'onenet' (string expected, got boolean)"]


def test_unknown_method_is_logged_like_the_firmware(boot: Callable[..., Device]) -> None:
    dev = boot("""
PROJECT = "iotauth" VERSION = "1.0.0"
iotauth.aliyun("pk", "dn", "ds", "hmacsha512")
log.info("after", "ok")
""")
    dev.run_until("I/user.after", within="5s")
    assert "iotauth:not support: hmacsha512" in dev.lines()
    rec = next(r for r in dev.log if r.text == "not support: hmacsha512")
    assert (rec.level, rec.tag) == ("E", "iotauth")


@pytest.mark.parametrize("model", ["Air8101", "Air780E", "Air8000"])
def test_every_model_has_the_whole_module(boot: Callable[..., Device], model: str) -> None:
    dev = boot("""
PROJECT = "iotauth" VERSION = "1.0.0"
local names = {}
for _, f in ipairs({"aliyun", "onenet", "iotda", "qcloud", "tuya", "baidu"}) do
  names[#names + 1] = f .. "=" .. type(iotauth[f])
end
log.info("api", table.concat(names, ","))
""", model=model)
    dev.run_until("I/user.api", within="5s")
    assert ("I/user.api aliyun=function,onenet=function,iotda=function,qcloud=function,"
            "tuya=function,baidu=function") in dev.lines()


# -- the vendor's mqtt-demo pattern against a broker that checks the credentials -------------------

ALIYUN_HOST = "a1B2c3D4e5F.iot-as-mqtt.cn-shanghai.aliyuncs.com"

DEMO = f"""
PROJECT = "aliyun_mqtt" VERSION = "1.0.0"
local sys = require "sys"
local ProductKey, DeviceName, DeviceSecret = "{ALI[0]}", "{ALI[1]}", SECRET
sys.taskInit(function()
    wlan.init()
    wlan.connect("ap", "pw")
    sys.waitUntil("IP_READY")
    local ts = os.time()
    local client_id, user_name, password =
        iotauth.aliyun(ProductKey, DeviceName, DeviceSecret, "hmacsha256", ts)
    log.info("creds", ts)
    sys.wait(5000)
    local mqttc = mqtt.create(nil, "{ALIYUN_HOST}", 1883, false)
    mqttc:auth(client_id, user_name, password)
    mqttc:keepalive(240)
    mqttc:on(function(c, event, a, b)
        log.info("mqtt", event, a, b)
    end)
    log.info("connect", mqttc:connect())
end)
sys.run()
"""


@pytest.fixture
def checking_broker(tmp_path: Path) -> Iterator[MosquittoBroker]:
    """Mosquitto that admits only the users in its password file (written by the test)."""
    pw = tmp_path / "passwd"
    try:
        write_password_file(pw, {"placeholder": "unused"})
    except BrokerError as e:
        missing_dependency(str(e))
    base = tmp_path / "broker"
    base.mkdir()
    with broker_for_test(base, password_file=pw) as broker:
        yield broker


def _boot_demo(boot: Callable[..., Device], broker: MosquittoBroker, secret: str) -> Device:
    dev = boot(DEMO.replace("SECRET", lua_str(secret), 1))
    dev.net.map_address(f"{ALIYUN_HOST}:1883", f"127.0.0.1:{broker.port}")
    dev.net.reply_window_ms = 3000
    return dev


def test_aliyun_demo_logs_in_to_a_broker_checking_the_credentials(
        boot: Callable[..., Device], checking_broker: MosquittoBroker) -> None:
    pk, dn, ds = ALI
    dev = _boot_demo(boot, checking_broker, ds)
    ts = int(dev.run_until(r"I/user\.creds ", within="30s").text.split()[-1])
    client_id, user, password = aliyun_expected(pk, dn, ds, "hmacsha256", ts)
    # the cloud side knows the device's secret: it admits exactly these credentials
    assert checking_broker.password_file is not None
    write_password_file(checking_broker.password_file, {user: password})
    checking_broker.restart()
    dev.run_until(r"I/user\.mqtt conack", within="30s")
    assert "I/user.connect true" in dev.lines()
    log = checking_broker.log_text()
    assert f"as {client_id} " in log and f"u'{user}'" in log, log[-2000:]


def test_a_wrong_secret_is_refused_by_the_broker(
        boot: Callable[..., Device], checking_broker: MosquittoBroker) -> None:
    pk, dn, ds = ALI
    dev = _boot_demo(boot, checking_broker, "not-the-secret")
    ts = int(dev.run_until(r"I/user\.creds ", within="30s").text.split()[-1])
    _, user, password = aliyun_expected(pk, dn, ds, "hmacsha256", ts)
    assert checking_broker.password_file is not None
    write_password_file(checking_broker.password_file, {user: password})
    checking_broker.restart()
    dev.run_until(r"I/user\.mqtt error conack 5", within="30s")  # not authorised
    assert not any(ln.startswith("I/user.mqtt conack") for ln in dev.lines())
