"""API keys: `igk_` (a user's) or `iga_` (an operator's, for the admin API) + 32 random
base62 characters + a 6-character checksum.

The prefix lets secret scanners and humans recognise a leaked key; the
checksum lets the authorizer turn away typos and junk without a database
lookup. Keys carry ~190 bits of entropy, so a plain SHA-256 is the right
hash to store: there is nothing to brute-force, and a lookup by hash stays
one indexed read.
"""

from __future__ import annotations

import hashlib
import secrets
import string
import zlib

PREFIX = "igk_"
ADMIN_PREFIX = "iga_"
_ALPHABET = string.digits + string.ascii_letters
_RANDOM_CHARS = 32
_CHECKSUM_CHARS = 6
KEY_LENGTH = len(PREFIX) + _RANDOM_CHARS + _CHECKSUM_CHARS


def _base62(number: int, width: int) -> str:
    chars = []
    for _ in range(width):
        number, digit = divmod(number, 62)
        chars.append(_ALPHABET[digit])
    return "".join(reversed(chars))


def _checksum(body: str) -> str:
    return _base62(zlib.crc32(body.encode()), _CHECKSUM_CHARS)


def new_api_key(prefix: str = PREFIX) -> str:
    body = "".join(secrets.choice(_ALPHABET) for _ in range(_RANDOM_CHARS))
    return prefix + body + _checksum(body)


def is_well_formed(key: str, prefix: str = PREFIX) -> bool:
    if len(key) != KEY_LENGTH or not key.startswith(prefix):
        return False
    body, checksum = key[len(prefix) : -_CHECKSUM_CHARS], key[-_CHECKSUM_CHARS:]
    return all(char in _ALPHABET for char in body) and secrets.compare_digest(checksum, _checksum(body))


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def shown_prefix(key: str) -> str:
    """The start of a key, enough to tell a user's keys apart and not enough to use one."""
    return key[: len(PREFIX) + 4]


def new_id(kind: str) -> str:
    """A public identifier such as `usr_…` or `key_…`: unguessable, not secret."""
    return f"{kind}_{secrets.token_hex(12)}"
