"""SIP digest authentication, client side (RFC 3261 section 22, RFC 2617, RFC 8760).

Stage: call set-up.  When the agent's SIP peer answers an INVITE with 401 (or a
proxy with 407), ``authorization`` computes the ``Authorization`` (or
``Proxy-Authorization``) value from its challenge and the credentials in the
agent's configuration: MD5 or SHA-256, with or without ``qop=auth``.  The
password arrives as a ``SecretStr`` and is unwrapped only inside the hash.
"""

from __future__ import annotations

import hashlib
import re
import secrets

from pydantic import SecretStr

__all__ = ["DigestError", "authorization", "parse_challenge", "response_of"]

_HASHES = {"MD5": hashlib.md5, "SHA-256": hashlib.sha256}


class DigestError(ValueError):
    """A challenge loopcall cannot answer."""


def parse_challenge(value: str) -> dict[str, str]:
    """``Digest realm="x", nonce="y", qop="auth"`` -> {realm, nonce, qop, ...}."""
    scheme, _, rest = value.strip().partition(" ")
    if scheme.lower() != "digest":
        raise DigestError(f"the peer asks for {scheme or 'an unnamed'} authentication, not Digest")
    params: dict[str, str] = {}
    i = 0
    while i < len(rest):
        while i < len(rest) and rest[i] in " ,\t":
            i += 1
        eq = rest.find("=", i)
        if eq < 0:
            break
        name = rest[i:eq].strip().lower()
        i = eq + 1
        if i < len(rest) and rest[i] == '"':
            end = rest.find('"', i + 1)
            if end < 0:
                raise DigestError(f"unclosed quote in challenge {value!r}")
            params[name] = rest[i + 1 : end]
            i = end + 1
        else:
            end = rest.find(",", i)
            end = len(rest) if end < 0 else end
            params[name] = rest[i:end].strip()
            i = end
    if "nonce" not in params or "realm" not in params:
        raise DigestError(f"challenge without realm or nonce: {value!r}")
    return params


def authorization(
    challenge: dict[str, str],
    *,
    method: str,
    uri: str,
    username: str,
    password: SecretStr,
    nonce_count: int = 1,
    cnonce: str | None = None,
) -> str:
    """The credentials header value answering ``challenge`` for one request."""
    algorithm = challenge.get("algorithm", "MD5").upper()
    if algorithm not in _HASHES:
        raise DigestError(f"digest algorithm {algorithm} is not supported (MD5, SHA-256 are)")
    digest = _HASHES[algorithm]

    def h(text: str) -> str:
        return digest(text.encode("utf-8")).hexdigest()

    realm = challenge["realm"]
    nonce = challenge["nonce"]
    ha1 = h(f"{username}:{realm}:{password.get_secret_value()}")
    ha2 = h(f"{method}:{uri}")
    qops = [q.strip() for q in challenge.get("qop", "").split(",") if q.strip()]
    fields = [
        f'username="{username}"',
        f'realm="{realm}"',
        f'nonce="{nonce}"',
        f'uri="{uri}"',
    ]
    if qops:
        if "auth" not in qops:
            raise DigestError(f"digest qop {','.join(qops)} is not supported (auth is)")
        nc = f"{nonce_count:08x}"
        cn = cnonce or secrets.token_hex(8)
        response = h(f"{ha1}:{nonce}:{nc}:{cn}:auth:{ha2}")
        fields += [f'response="{response}"', "qop=auth", f"nc={nc}", f'cnonce="{cn}"']
    else:
        fields.append(f'response="{h(f"{ha1}:{nonce}:{ha2}")}"')
    fields.append(f"algorithm={algorithm}")
    if "opaque" in challenge:
        fields.append(f'opaque="{challenge["opaque"]}"')
    return "Digest " + ", ".join(fields)


def response_of(value: str) -> str | None:
    """The ``response`` hash of a credentials header value (a secret in its own right:
    it proves the password for this nonce, and invites a guess at the password)."""
    match = re.search(r'response="?([0-9a-fA-F]+)', value)
    return match.group(1) if match else None
