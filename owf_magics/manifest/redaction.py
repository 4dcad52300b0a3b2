"""Secret redaction: every secret value, and its common encodings, replaced by ``***``.

Defence in depth behind opaque secrets (templates may only put a secret into a credential field):
whatever a handler, a server or a template does with a secret, what the run reports and stores is
passed through `redact` first. Docs: docs/security.md, "Redaction".

What is matched, for each secret value ``s`` (its UTF-8 bytes for the byte encodings):

- ``s`` itself and ``s`` reversed, in any letter case (upper, lower, mixed);
- hex of ``s`` (any case), percent-encoding of ``s`` (``quote`` and ``quote_plus``, any case),
  and the JSON escapes of ``s`` (``\\/``, ``\\uXXXX``);
- base64 of ``s``, standard and URL-safe, with and without padding (case-sensitive, as base64
  is), and also where ``s`` sits inside a longer base64 text (``Basic base64(user:s)``): the
  characters that encode only bytes of ``s``, at each of the three byte alignments.
- for secrets of 8 characters or more, ``s`` with up to two characters cut from its ends
  (``s[1:]``, ``s[:-2]``, ``s[1:-1]``), ``s`` with a separator between its characters
  (``"-".join(s)``, `JOINS`), and a list of its characters (``s | list``).

Length decides where a match counts, so short secrets do not destroy unrelated text:

- 4 characters or more: anywhere inside any string (and dict key);
- 2 or 3 characters: a whole string value, or a whole token inside text (not next to a letter
  or digit: ``Bearer xy`` and ``token=xy`` lose it, ``xylophone`` keeps it);
- 1 character: only a whole string value (after trimming spaces).

Dict keys are structure: only the in-text forms count there (a short secret does not rename a key).

A number whose text is a secret (a PIN returned as an int) is replaced too. An object that is not
JSON-like data is kept unless its ``repr`` shows a secret, in which case it becomes that repr,
redacted (so a store writing reprs cannot leak it).
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any
from urllib.parse import quote, quote_plus

MASK = "***"
#: Secrets at least this long are redacted wherever they appear inside text.
MIN_SUBSTRING = 4
#: Secrets at least this long (and shorter than `MIN_SUBSTRING`) are redacted as whole tokens.
MIN_TOKEN = 2
#: A base64 fragment (the part of an unaligned encoding that depends on the secret only) shorter
#: than this is not matched inside text: it would match unrelated base64 by chance.
MIN_FRAGMENT = 6

#: Secrets at least this long are also matched with up to two characters cut from their ends
#: (``s[1:]``, ``s[:-1]``, ``s[1:-1]``...) and with their characters joined by a separator.
MIN_SLICED = 8
#: The separators a joined secret (``"-".join(s)``) is looked for with.
JOINS = ("-", " ", ",", ", ", "_", ".", "|", ":", "/", "+", "*")

_WORD = "0-9A-Za-z"


def _b64_forms(raw: bytes) -> tuple[set[str], set[str]]:
    """(whole encodings, fragments inside longer encodings), standard and URL-safe."""
    whole: set[str] = set()
    fragments: set[str] = set()
    for encode in (base64.b64encode, base64.urlsafe_b64encode):
        full = encode(raw).decode("ascii")
        whole.update((full, full.rstrip("=")))
        for k in range(3):  # the secret after k other bytes of a longer text
            enc = encode(b"\0" * k + raw).decode("ascii")
            start = -(-8 * k // 6)  # the first character made of the secret's bits only
            end = 8 * (k + len(raw)) // 6  # past the last one
            part = enc[start:end]
            if len(part) >= MIN_FRAGMENT:
                fragments.add(part)
    return whole, fragments


def variants(secret: str) -> tuple[set[str], set[str]]:
    """(forms matched in any letter case, forms matched exactly) of one secret value."""
    raw = secret.encode("utf-8")
    folded = {secret, secret[::-1], raw.hex(), quote(secret, safe=""), quote_plus(secret, safe="")}
    escaped = json.dumps(secret)[1:-1]
    folded.update({escaped, escaped.replace("/", "\\/"), json.dumps(secret, ensure_ascii=True)[1:-1]})
    if len(secret) >= MIN_SLICED:  # what `[1:]`, `[:-2]`, `| list | join('-')` make of it
        folded.update(secret[a : len(secret) - b] for a in range(3) for b in range(3 - a))
        folded.update(sep.join(secret) for sep in JOINS)
    whole, fragments = _b64_forms(raw)
    return {f for f in folded if f}, {f for f in whole | fragments if f}


@dataclass(frozen=True, slots=True)
class Redactor:
    """A compiled redaction for one set of secret values; call it on any JSON-like value."""

    pattern: re.Pattern[str] | None  # every form that counts inside text
    whole: frozenset[str]  # casefolded forms that count as a whole string value
    whole_exact: frozenset[str]  # base64 forms that count as a whole string value
    numbers: frozenset[str]  # secrets that look like numbers
    lowered: tuple[str, ...] = ()  # the in-text forms matched in any case, lower-cased (a prefilter)
    exact: tuple[str, ...] = ()  # the in-text forms matched exactly
    shortest: int = 0  # the length of the shortest in-text form

    def text(self, value: str) -> str:
        """`value` with every secret form replaced by ``***``."""
        stripped = value.strip()
        if stripped and (stripped.casefold() in self.whole or stripped in self.whole_exact):
            return MASK
        if self.pattern is None or len(value) < self.shortest:
            return value
        # substring tests run in C and most text holds no form: the regex only runs when one might match
        low = value.lower()
        if any(n in low for n in self.lowered) or any(n in value for n in self.exact):
            return self.pattern.sub(MASK, value)
        return value

    def _key(self, key: Any) -> Any:
        # keys are structure: only the in-text forms count (a short secret does not rename `a`)
        if self.pattern is None or not isinstance(key, str):
            return key
        return self.pattern.sub(MASK, key)

    def shows(self, value: str) -> bool:
        return self.text(value) != value

    def __call__(self, value: Any) -> Any:
        return self._walk(value, 0)

    def _walk(self, value: Any, depth: int) -> Any:
        if isinstance(value, str):
            return self.text(value)
        if value is None or isinstance(value, bool):
            return value
        if isinstance(value, int | float):
            return MASK if self.numbers and _number_text(value) in self.numbers else value
        if depth > 200:  # deeper than any JSON a run stores: checked as its text
            return self._object(value)
        if isinstance(value, dict):
            return {self._key(k): self._walk(v, depth + 1) for k, v in value.items()}
        if isinstance(value, list | tuple):
            if len(value) >= MIN_SLICED and all(isinstance(v, str) and len(v) <= 2 for v in value):
                joined = "".join(value)  # `secret | list`: one character an item
                if self.text(joined) != joined:
                    return [MASK]
            return [self._walk(v, depth + 1) for v in value]
        return self._object(value)

    def _object(self, value: Any) -> Any:
        try:
            shown = repr(value)
        except Exception:  # an object that cannot show itself cannot leak through its repr either
            return value
        return self.text(shown) if self.shows(shown) else value


def _number_text(value: int | float) -> str:
    try:
        return str(value)
    except ValueError:  # an integer past the digit limit is no secret anyone typed
        return ""


@lru_cache(maxsize=256)
def _compile(secrets: tuple[str, ...]) -> Redactor:
    pieces: list[tuple[int, str]] = []
    lowered: set[str] = set()
    exact_forms: set[str] = set()
    whole: set[str] = set()
    whole_exact: set[str] = set()
    numbers: set[str] = set()
    for secret in secrets:
        folded, exact = variants(secret)
        if secret.strip() and _looks_numeric(secret.strip()):
            numbers.add(secret.strip())
        whole.update(f.casefold() for f in folded)
        whole_exact.update(exact)
        if len(secret) >= MIN_TOKEN:
            lowered.update(f.lower() for f in folded)
            exact_forms.update(exact)
        if len(secret) >= MIN_SUBSTRING:
            pieces += [(len(f), f"(?i:{re.escape(f)})") for f in folded]
            pieces += [(len(f), re.escape(f)) for f in exact]
        elif len(secret) >= MIN_TOKEN:
            bound = f"(?<![{_WORD}])", f"(?![{_WORD}])"
            pieces += [(len(f), f"{bound[0]}(?i:{re.escape(f)}){bound[1]}") for f in folded]
            pieces += [(len(f), f"{bound[0]}{re.escape(f)}(?![{_WORD}+/=_-])") for f in exact]
    pieces.sort(key=lambda p: -p[0])  # the longest form wins where several start at one place
    pattern = re.compile("|".join(p for _, p in pieces)) if pieces else None
    shortest = min(map(len, lowered | exact_forms), default=0)
    return Redactor(
        pattern,
        frozenset(whole),
        frozenset(whole_exact),
        frozenset(numbers),
        tuple(lowered),
        tuple(exact_forms),
        shortest,
    )


def _looks_numeric(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def redactor(secrets: Mapping[str, Any] | Iterable[Any]) -> Redactor | None:
    """The compiled redaction for these secret values (a mapping's values), or None for none."""
    values = secrets.values() if isinstance(secrets, Mapping) else secrets
    texts = tuple(sorted({str(v) for v in values if v is not None and str(v) != ""}))
    return _compile(texts) if texts else None


def redact(value: Any, secrets: Mapping[str, Any] | Iterable[Any]) -> Any:
    """`value` with every secret value and its encodings replaced by ``***`` (see the module)."""
    if not secrets and isinstance(secrets, dict | list | tuple):  # nothing to hide: no compile, no walk
        return value
    fn = redactor(secrets)
    return value if fn is None else fn(value)
