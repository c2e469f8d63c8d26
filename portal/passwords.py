"""Password hashing with scrypt from the standard library."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import secrets

_N, _R, _P = 2**14, 8, 1


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=_N, r=_R, p=_P, dklen=32)
    return f"scrypt${_N}${_R}${_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode(),
            salt=base64.b64decode(salt),
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual, expected)


# A hash to check unknown emails against, so "no such user" takes as long as "wrong password".
_DUMMY = hash_password(secrets.token_urlsafe(8))


async def check_password(password: str, stored: str | None) -> bool:
    # scrypt takes tens of milliseconds of CPU: keep it off the event loop
    ok = await asyncio.to_thread(verify_password, password, stored or _DUMMY)
    return ok and stored is not None
