"""Password hashing with argon2id (argon2-cffi's defaults, RFC 9106's low-memory profile)."""
from __future__ import annotations

from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from services.core.errors import Invalid

MIN_LENGTH = 10
MAX_LENGTH = 1000  # hashing is linear in the length: no megabyte passwords
_hasher = PasswordHasher()


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise Invalid(f'password: at least {MIN_LENGTH} characters')
    if len(password) > MAX_LENGTH:
        raise Invalid(f'password: at most {MAX_LENGTH} characters')


def hash_password(password: str) -> str:
    check_strength(password)
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    if len(password) > MAX_LENGTH:
        return False
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


@cache
def dummy_hash() -> str:
    """Verified against for unknown names: the same time as a real one. Made on first use, not at import (argon2
    takes a noticeable part of a second, which every CLI command and server start would pay)."""
    return _hasher.hash('spendgauge: no such user')
