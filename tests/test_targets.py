"""Target URLs: what parses, what each part becomes, and the errors for what does not."""

from __future__ import annotations

import pytest

from telephony import TargetError, parse_target


def test_webrtc_target() -> None:
    t = parse_target("webrtc://127.0.0.1:7860/api/offer")
    assert (t.channel, t.host, t.port, t.path) == ("webrtc", "127.0.0.1", 7860, "/api/offer")
    assert t.http_url == "http://127.0.0.1:7860/api/offer"
    assert t.is_loopback


def test_secure_webrtc_target_defaults_to_443_and_keeps_the_query() -> None:
    t = parse_target("webrtcs://agent.example.com/bots/dental/api/offer?token=abc")
    assert t.channel == "webrtc" and t.secure
    assert t.http_url == "https://agent.example.com:443/bots/dental/api/offer?token=abc"
    assert not t.is_loopback


def test_ipv6_loopback_and_default_path() -> None:
    t = parse_target("webrtc://[::1]:9000")
    assert t.http_url == "http://[::1]:9000/api/offer"
    assert t.is_loopback


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:7860/api/offer", "unknown channel"),
        ("webrtc:///api/offer", "no host"),
        ("webrtc://127.0.0.1/api/offer", "no port"),
        ("webrtc://127.0.0.1:99999/api/offer", "invalid port"),
    ],
)
def test_bad_targets_say_what_is_wrong(url: str, message: str) -> None:
    with pytest.raises(TargetError, match=message):
        parse_target(url)
