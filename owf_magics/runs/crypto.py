"""Credentials at rest: texts sealed with Fernet (``cryptography``) under the key in ``OWF_SECRET_KEY``.

``OWF_SECRET_KEY`` holds one Fernet key (``owf keys generate`` prints one), or several separated by
commas: the first encrypts, every one decrypts (``MultiFernet``), so a key is rotated by putting
the new one first and running ``owf keys rotate``, which re-encrypts every stored credential under
it; the old key can then be dropped.

A sealed text reads ``fernet:<token>``; a text without the prefix was stored without a key (a
store used before a key was configured, or a manifest without credentials on a server without
one) and is returned as it is.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from owf_magics.errors import OWFError

#: The environment variable holding the key(s).
SECRET_KEY_ENV = "OWF_SECRET_KEY"
PREFIX = "fernet:"


def generate_key() -> str:
    """A new random Fernet key (32 bytes, url-safe base64)."""
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


class Keyring:
    """The keys credentials are sealed with (the first seals, every one opens).

    Args:
        keys: Fernet keys, newest first (none: `sealed` is False and `seal` refuses).

    Raises:
        OWFError: VALIDATION for a text that is not a Fernet key.
    """

    def __init__(self, keys: list[str]) -> None:
        self.count = len(keys)
        self._fernet: Any = None
        if keys:
            from cryptography.fernet import Fernet, MultiFernet

            try:
                self._fernet = MultiFernet([Fernet(k.strip().encode()) for k in keys])
            except ValueError as exc:
                raise OWFError(
                    f"{SECRET_KEY_ENV} must hold Fernet keys (32 url-safe base64-encoded bytes), comma-separated",
                    code="VALIDATION",
                    details={"suggestion": "owf keys generate"},
                ) from exc

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Keyring:
        """The keys in ``OWF_SECRET_KEY`` (none when it is unset or empty)."""
        text = (os.environ if environ is None else environ).get(SECRET_KEY_ENV, "")
        return cls([k for k in text.split(",") if k.strip()])

    @property
    def sealed(self) -> bool:
        """Whether there is a key to seal with."""
        return self._fernet is not None

    def seal(self, text: str) -> str:
        """`text` encrypted under the first key, as ``fernet:<token>``.

        Raises:
            OWFError: VALIDATION when there is no key.
        """
        if self._fernet is None:
            raise no_key()
        token: bytes = self._fernet.encrypt(text.encode())
        return PREFIX + token.decode()

    def open(self, text: str) -> str:
        """The plain text of a sealed one (a text stored without a key comes back as it is).

        Raises:
            OWFError: UNAVAILABLE when no key here opens it (a wrong or missing key).
        """
        if not text.startswith(PREFIX):
            return text
        if self._fernet is None:
            raise OWFError(
                f"a stored credential is encrypted and {SECRET_KEY_ENV} is not set",
                code="UNAVAILABLE",
                details={"suggestion": f"set {SECRET_KEY_ENV} to the key the store was written with"},
            )
        from cryptography.fernet import InvalidToken

        try:
            return str(self._fernet.decrypt(text[len(PREFIX) :].encode()).decode())
        except InvalidToken:
            raise OWFError(
                f"no key in {SECRET_KEY_ENV} opens a stored credential",
                code="UNAVAILABLE",
                details={"suggestion": f"put the key the store was written with in {SECRET_KEY_ENV} (comma-separated)"},
            ) from None

    def rotate(self, text: str) -> str:
        """`text` sealed under the first key (a plain text gets sealed; a sealed one re-sealed)."""
        return self.seal(self.open(text))


def no_key() -> OWFError:
    return OWFError(
        f"storing credentials needs a key: {SECRET_KEY_ENV} is not set",
        code="VALIDATION",
        details={"suggestion": f"export {SECRET_KEY_ENV}=$(owf keys generate) on every server"},
    )


def rotate_store(store: Any, keyring: Keyring) -> int:
    """Re-encrypt every credential in `store` under `keyring`'s first key; returns how many.

    Raises:
        OWFError: No key, or a stored text no key of `keyring` opens (nothing is written then).
    """
    if not keyring.sealed:
        raise no_key()
    rows = store.sealed_texts()
    fresh = [(table, key, keyring.rotate(text)) for table, key, text in rows]
    store.reseal(fresh)
    return len(fresh)
