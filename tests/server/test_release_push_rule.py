"""The release-push rule (releasepush.plan_release_push) without a server: offline devices,
sessions of another product, the per-device decision's refusals, and who is decided at all."""

from __future__ import annotations

from typing import Any

from luatos_fota.releasepush import PushSend, login_version, plan_release_push, session_ip

KEY = "pk"


def sessions(*logins: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"peer": "10.0.0.9:4000", **lg} for lg in logins]


class Decider:
    """Says yes with a fota_sn per device, except for the devices it is told to refuse."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.asked: list[str] = []

    def __call__(self, device_key: str, login: Any) -> tuple[str | None, str]:
        self.asked.append(device_key)
        if device_key in self.refuse:
            return None, self.refuse[device_key]
        return f"sn-{device_key}", ""


def test_wanted_devices_are_sent_skipped_or_offline_in_order() -> None:
    online = sessions({"device": "c8:c2:c6:00:00:01", "project_key": KEY},
                      {"device": "C8C2C6000002", "project_key": "other"},
                      {"device": "C8C2C6000003"},  # logged in without a project_key: decided
                      {"device": "C8C2C6000004", "project_key": KEY})
    decide = Decider(refuse={"C8C2C6000004": "code 27: already latest"})
    plan = plan_release_push(7, KEY, online, ["C8C2C6000001", "c8c2c6000002", "C8C2C6000003", "C8C2C6000004",
                                              "C8C2C60000FF"], decide)
    assert plan.product_id == 7
    assert list(plan.sends.values()) == [PushSend("C8C2C6000001", "c8:c2:c6:00:00:01", "sn-C8C2C6000001"),
                                         PushSend("C8C2C6000003", "C8C2C6000003", "sn-C8C2C6000003")]
    assert plan.skipped == {
        "C8C2C6000002": "logged in for project_key 'other', not this release's product",
        "C8C2C6000004": "code 27: already latest"}
    assert plan.offline == ["C8C2C60000FF"]
    # Neither the other product's session nor the offline device costs a decision (a counted serve).
    assert decide.asked == ["C8C2C6000001", "C8C2C6000003", "C8C2C6000004"]


def test_no_wanted_list_means_every_online_device() -> None:
    online = sessions({"device": "C8C2C6000001", "project_key": KEY}, {"device": "C8C2C6000002"})
    plan = plan_release_push(1, KEY, online, None, Decider())
    assert list(plan.sends) == ["C8C2C6000001", "C8C2C6000002"]
    assert plan.offline == [] and plan.skipped == {}


def test_a_device_wanted_twice_is_sent_once() -> None:
    decide = Decider()
    plan = plan_release_push(1, KEY, sessions({"device": "C8C2C6000001"}), ["C8C2C6000001", "c8c2c6000001"], decide)
    assert len(plan.sends) == 1


def test_nobody_online() -> None:
    decide = Decider()
    plan = plan_release_push(1, KEY, [], ["C8C2C6000001"], decide)
    assert plan.offline == ["C8C2C6000001"] and not plan.sends and decide.asked == []


def test_login_version_and_ip() -> None:
    assert login_version({"version": "001.000.001", "core": "V2001"}) == "2001.001.001"
    assert login_version({"version": "not.a.version", "core": "V2001"}) == "not.a.version"
    assert login_version({}) is None
    assert session_ip({"peer": "10.1.2.3:5555"}) == "10.1.2.3"
    assert session_ip({}) == ""
