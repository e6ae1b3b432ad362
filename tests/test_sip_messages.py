"""SIP message parsing and building, SDP offer/answer, digest answers, sip: targets."""

from __future__ import annotations

import pytest
from pydantic import SecretStr

from telephony import TargetError, parse_target
from telephony.sip.digest import DigestError, authorization, parse_challenge
from telephony.sip.message import (
    SipMessage,
    SipParseError,
    parse_message,
    parse_name_addr,
    split_stream,
)
from telephony.sip.sdp import SdpError, build_sdp, negotiate, parse_sdp

INVITE = (
    b"INVITE sip:agent@127.0.0.1:5080 SIP/2.0\r\n"
    b"Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK1;rport, "
    b"SIP/2.0/UDP 10.0.0.1;branch=z9hG4bK0\r\n"
    b'f: "Loop Call" <sip:loopcall@127.0.0.1:5070>;tag=abc\r\n'
    b"t: <sip:agent@127.0.0.1:5080>\r\n"
    b"i: call-1@127.0.0.1\r\n"
    b"CSeq: 7 INVITE\r\n"
    b"X-Loopcall-Run-Id: run-1\r\n"
    b"Subject: a folded\r\n  header\r\n"
    b"c: application/sdp\r\n"
    b"l: 4\r\n"
    b"\r\n"
    b"v=0\r\nextra bytes beyond the length"
)


def test_parse_request_expands_compact_headers_and_honours_content_length() -> None:
    message = parse_message(INVITE)
    assert message.method == "INVITE"
    assert message.uri == "sip:agent@127.0.0.1:5080"
    assert message.call_id == "call-1@127.0.0.1"
    assert message.cseq == (7, "INVITE")
    assert message.from_.display == "Loop Call"
    assert message.from_.tag == "abc"
    assert message.to.tag is None
    assert message.branch == "z9hG4bK1"
    assert len(message.get_all("Via")) == 2
    assert message.get("x-loopcall-run-id") == "run-1"
    assert message.get("Subject") == "a folded header"
    assert message.body == b"v=0\r"


def test_bytes_round_trip_writes_canonical_names_and_length() -> None:
    message = parse_message(INVITE)
    again = parse_message(bytes(message))
    assert again.headers == message.headers[:-1] + [("Content-Length", "4")]
    assert b"Call-ID: call-1@127.0.0.1\r\n" in bytes(message)
    assert bytes(message).endswith(b"\r\n\r\nv=0\r")


@pytest.mark.parametrize(
    ("data", "complaint"),
    [
        (b"SIP/2.0 2x0 OK\r\nVia: x\r\n\r\n", "bad status line"),
        (b"HELLO\r\n\r\n", "bad request line"),
        (INVITE.replace(b"CSeq: 7 INVITE", b"CSeq: seven INVITE"), "bad CSeq"),
        (INVITE.replace(b"CSeq: 7 INVITE", b"CSeq: 7 BYE"), "does not match"),
        (INVITE.replace(b"i: call-1@127.0.0.1\r\n", b""), "no Call-ID"),
        (INVITE.replace(b"l: 4", b"l: 400"), "Content-Length 400"),
        (INVITE.replace(b"X-Loopcall-Run-Id:", b"X Loopcall:"), "bad header line"),
        (b"INVITE sip:a@b SIP/2.0\r\nVia: x", "no blank line"),
    ],
)
def test_malformed_messages_say_what_is_wrong(data: bytes, complaint: str) -> None:
    with pytest.raises(SipParseError, match=complaint):
        parse_message(data)


def test_response_and_name_addr() -> None:
    response = parse_message(
        b"SIP/2.0 486 Busy Here\r\nVia: SIP/2.0/UDP h;branch=z9hG4bKx\r\nFrom: <sip:a@b>;tag=1\r\n"
        b"To: sip:c@d;tag=2\r\nCall-ID: x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
    assert (response.status, response.reason) == (486, "Busy Here")
    assert response.summary() == "486 Busy Here"
    assert response.to.uri == "sip:c@d"
    assert response.to.tag == "2"
    assert str(parse_name_addr("<sip:a@b>").with_tag("t")) == "<sip:a@b>;tag=t"


def test_split_stream_frames_by_content_length() -> None:
    one = bytes(SipMessage(method="OPTIONS", uri="sip:a@b", headers=[("Via", "v")], body=b"xy"))
    buffer = bytearray(b"\r\n\r\n" + one + one[:10])
    assert split_stream(buffer) == one
    assert split_stream(buffer) is None
    buffer += one[10:]
    assert split_stream(buffer) == one
    with pytest.raises(SipParseError, match="no Content-Length"):
        split_stream(bytearray(b"OPTIONS sip:a@b SIP/2.0\r\nVia: v\r\n\r\n"))


def test_sdp_offer_parses_back_and_negotiates_in_the_offerers_order() -> None:
    offer = parse_sdp(build_sdp("127.0.0.1", 40000, codecs=(8, 0)))
    assert (offer.host, offer.port) == ("127.0.0.1", 40000)
    assert offer.payload_types == (8, 0, 101)
    assert offer.dtmf_pt == 101
    assert offer.ptime == 20
    assert negotiate(offer) == (8, 101)


def test_sdp_peer_without_telephone_event_or_common_codec() -> None:
    sipp = (
        b"v=0\r\no=- 1 1 IN IP4 10.0.0.2\r\ns=-\r\nc=IN IP4 10.0.0.2\r\n"
        b"t=0 0\r\nm=audio 6000 RTP/AVP 0\r\n"
    )
    offer = parse_sdp(sipp)
    assert negotiate(offer) == (0, None)
    g729 = sipp.replace(b"RTP/AVP 0", b"RTP/AVP 18\r\na=rtpmap:18 G729/8000")
    with pytest.raises(SdpError, match="no common codec: the peer offers G729"):
        negotiate(parse_sdp(g729))
    with pytest.raises(SdpError, match="no audio"):
        parse_sdp(b"v=0\r\nc=IN IP4 1.2.3.4\r\nm=video 5000 RTP/AVP 96\r\n")


def test_digest_matches_rfc_2617_example() -> None:
    challenge = parse_challenge(
        'Digest realm="testrealm@host.com", qop="auth,auth-int", '
        'nonce="dcd98b7102dd2f0e8b11d0f600bfb0c093", opaque="5ccc069c403ebaf9f0171e9517f40e41"'
    )
    value = authorization(
        challenge,
        method="GET",
        uri="/dir/index.html",
        username="Mufasa",
        password=SecretStr("Circle Of Life"),
        cnonce="0a4f113b",
    )
    assert 'response="6629fae49393a05397450978507c4ef1"' in value
    assert "nc=00000001" in value
    assert 'opaque="5ccc069c403ebaf9f0171e9517f40e41"' in value


def test_digest_refuses_what_it_cannot_answer() -> None:
    with pytest.raises(DigestError, match="Basic"):
        parse_challenge('Basic realm="x"')
    with pytest.raises(DigestError, match="SHA-512"):
        authorization(
            {"realm": "r", "nonce": "n", "algorithm": "SHA-512"},
            method="INVITE",
            uri="sip:a@b",
            username="u",
            password=SecretStr("p"),
        )


def test_sip_targets() -> None:
    target = parse_target("sip:agent@127.0.0.1:5080;transport=tcp")
    assert (target.channel, target.user, target.host, target.port) == (
        "sip",
        "agent",
        "127.0.0.1",
        5080,
    )
    assert target.transport == "tcp"
    assert target.sip_uri == "sip:agent@127.0.0.1:5080;transport=tcp"
    plain = parse_target("sip:1000@pbx.example.com")
    assert (plain.port, plain.transport) == (5060, "udp")
    v6 = parse_target("sip:bot@[::1]:5090")
    assert v6.host == "::1"
    assert v6.sip_uri == "sip:bot@[::1]:5090"
    with pytest.raises(TargetError, match="TLS"):
        parse_target("sips:bot@example.com")
    with pytest.raises(TargetError, match="transport=ws"):
        parse_target("sip:bot@example.com;transport=ws")
    with pytest.raises(TargetError, match="not a SIP URI"):
        parse_target("sip:bot@host:port")
