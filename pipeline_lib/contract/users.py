"""Web accounts as the `users` collection holds them: the scopes a user can hold, and the
password hash (argon2id) that the CLI, the demo and the web app's sign-in all agree on."""

from __future__ import annotations

import secrets

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

SCOPES = {
    "submit": "submit records through the API",
    "results:read": "read the results",
    "analyst": "see raw records, quarantine, runs and per-school detail",
    "admin": "manage users and schools",
}
_hasher = PasswordHasher()  # argon2id with the library's current recommended parameters


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password: str, password_hash: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


# Verifying against this when the user does not exist keeps the answer time the same.
DUMMY_HASH = hash_password(secrets.token_urlsafe(16))
