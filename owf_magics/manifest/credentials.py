"""Literal credentials in manifests: a warning (``LITERAL_CREDENTIAL``) at the line of every field
named like a credential (``api_key``, ``token``, ``password``, ``client_secret``, an
``Authorization`` header, ...) whose value is written out in the text instead of read from a
secret (``{{ secrets.NAME }}``) or a stored source.

Every entry point loads through `OpenWorkflow.load`, so the CLI (``owf validate``, ``owf run``),
the notebook (``%%workflow``) and the service (start-up manifests, ``/workflows/validate``,
``POST /workflows``) all show it. A manifest kept in git or a notebook with a key in it leaks the
key; the service also refuses to store such a manifest without ``OWF_SECRET_KEY`` to encrypt it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from owf_magics.errors import Diagnostic, format_path
from owf_magics.manifest.loader import SourceDocument, position_of

CODE = "LITERAL_CREDENTIAL"
_NAME = re.compile(
    r"(^|_)(api_?key|access_?key|secret_?key|private_?key|token|access_?token|bearer|secret|client_?secret"
    r"|password|passwd|authorization|x_api_key)$",
    re.I,
)
#: Values that are clearly not a credential: placeholders and masks.
_PLACEHOLDERS = {"", "***", "changeme", "none", "null", "<redacted>"}


def is_credential_name(name: str) -> bool:
    """Whether a field named `name` holds a credential."""
    return bool(_NAME.search(name.replace("-", "_")))


def _literal(value: Any) -> bool:
    if not isinstance(value, str):
        return False
    text = value.strip()
    return not (text.lower() in _PLACEHOLDERS or "{{" in text or "${" in text)


def _walk(node: Any, path: tuple[str | int, ...]) -> Iterator[tuple[tuple[str | int, ...], str]]:
    if isinstance(node, Mapping):
        for key, value in node.items():
            if isinstance(key, str) and is_credential_name(key) and _literal(value):
                yield (*path, key), key
            elif isinstance(value, Mapping | list):
                yield from _walk(value, (*path, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            yield from _walk(value, (*path, i))


def literal_credentials(docs: Iterable[SourceDocument]) -> list[Diagnostic]:
    """A ``LITERAL_CREDENTIAL`` warning per literal credential in the parsed documents."""
    out: list[Diagnostic] = []
    for doc in docs:
        for path, key in _walk(doc.data, ()):
            pos = position_of(doc.data, path)
            out.append(
                Diagnostic(
                    CODE,
                    f"'{key}' holds a literal credential: anyone who reads the manifest can use it",
                    path=format_path(path),
                    file=doc.file,
                    line=pos[0] if pos else None,
                    column=pos[1] if pos else None,
                    hint="read it from a secret ({{ secrets.NAME }}), or keep it in a source stored through "
                    "the service's /sources (encrypted with OWF_SECRET_KEY)",
                    severity="warning",
                )
            )
    return out
