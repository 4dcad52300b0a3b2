"""Errors and diagnostics: one exception tree with stable codes.

The tree::

    OWFError(Exception)              .code .message .details .to_dict()
    ├── ManifestError                code VALIDATION; .diagnostics, every problem found
    ├── UnavailableError             code UNAVAILABLE; a backend or provider is missing
    ├── BackendError                 code BACKEND_ERROR; a backend failed while running
    ├── StepTimeoutError             code TIMEOUT
    └── CanceledError                code CANCELED

`OWFError.code` is one of the SDK contract's codes (`ERROR_CODES`). A `Diagnostic` is one problem
in a manifest; its `code` is one of `DIAGNOSTIC_CODES` and it names the file, line, path and step.
Warnings are diagnostics with ``severity="warning"``: they are collected, never raised.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

ERROR_CODES = ("VALIDATION", "UNAVAILABLE", "BACKEND_ERROR", "TIMEOUT", "CANCELED", "INTERNAL_ERROR")

#: Every diagnostic code, with the one-line meaning shown by ``owf validate --help`` and docs/errors.md.
DIAGNOSTIC_CODES: dict[str, str] = {
    "YAML_SYNTAX": "the text is not valid YAML or JSON",
    "UNSAFE_YAML": "a YAML tag asks to construct a Python object or another non-data type",
    "DUPLICATE_KEY": "a mapping repeats a key",
    "UNKNOWN_MANIFEST": "a document is not an agent, connector or workflow manifest",
    "MISSING_REQUIRED_FIELD": "a required field is absent",
    "UNKNOWN_FIELD": "a field is not part of the canonical model",
    "INVALID_TYPE": "a value has the wrong type",
    "INVALID_VALUE": "a value has the right type but is not allowed",
    "DUPLICATE_STEP_ID": "two steps of one workflow share an id",
    "DUPLICATE_MANIFEST": "one load defines the same manifest and version twice",
    "UNKNOWN_REFERENCE": "a reference names an agent, connector, action, workflow, step or input that does not exist",
    "INVALID_REFERENCE": "a reference is not of the form type:namespace/name@version",
    "TEMPLATE_SYNTAX": "a {{ template }} does not parse",
    "SECRET_USE": "a template applies an operation to a secret, or puts one outside a credential field",
    "CIRCULAR_DEPENDENCY": "steps depend on each other in a cycle",
    "INVALID_BACKEND": "a backend name is not known",
    "MISSING_RUNTIME": "the langchain backend is requested without a runtime",
    "INVALID_VERSION": "a version is not a semantic version",
    "INVALID_VERSION_RANGE": "a version range does not parse",
    "INVALID_DURATION": "a duration is not like 30s, 10m, 1h or 2d",
    "INVALID_SCHEMA": "an embedded JSON Schema is not valid",
    "INTERNAL": "loading stopped on an unexpected error (a bug; the diagnostic names the exception)",
    "TYPE_MISMATCH": "a typed output is bound to a typed input of another type",
    "AMBIGUOUS_EXIT": "an edge leaves an inlined workflow that has several exit steps",
    "LITERAL_CREDENTIAL": "a field named like a credential (api_key, token, password...) holds a literal value"
    " (a warning)",
    # OpenFlow flows (formats/openflow): the protocol's validator codes
    "INVALID_FORMAT": "a name, version, id or pattern of an OpenFlow flow is not in the required form",
    "DUPLICATE_NODE_ID": "two nodes of an OpenFlow flow share an id",
    "DUPLICATE_VARIABLE_ID": "two variables of an OpenFlow flow share an id",
    "INVALID_NODE_TYPE": "an OpenFlow node's type is not a known (or supported) node type",
    "MISSING_DEPENDENCY": "an OpenFlow reference names a node the flow does not have",
    "INVALID_VARIABLE_REFERENCE": "an OpenFlow reference, input or output names an undeclared variable",
    "FORWARD_REFERENCE": "an OpenFlow node reads a node that runs after it in the same sequential block",
    "UNKNOWN_PROVIDER": "an OpenFlow LLM node names a provider that is not known",
    "MISSING_PROVIDER_CONFIG": "an OpenFlow LLM node lacks its provider configuration",
    "INVALID_OUTPUT_SCHEMA": "an OpenFlow LLM node's output schema is malformed",
    "MISSING_OUTPUT_PROPERTY": "an OpenFlow reference reads an LLM output property the node does not declare",
    "HANDLER_NOT_ALLOWED": "a connector uses a handler kind the registry does not allow (allow_handlers)",
    # warnings
    "ALIAS": "an accepted alias spelling was normalised to the canonical one",
    "VERSION_MISMATCH": "an installed framework version is outside a declared compatibility range",
    "SCOPE": "a template reads a name that is only defined in some scopes",
    "COMPLEXITY": "an OpenFlow flow has more than 10 (medium) or 20 (high complexity) nodes",
    "URL_HOST_FROM_INPUT": "an http handler's URL lets an input set its host, so every request will be refused",
}

Severity = Literal["error", "warning"]


def format_path(path: Sequence[str | int]) -> str:
    """Render a path tuple as ``workflows[0].steps[2].agent``."""
    out: list[str] = []
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif out:
            out.append(f".{part}")
        else:
            out.append(str(part))
    return "".join(out)


@dataclass(frozen=True, slots=True)
class Diagnostic:
    """One problem (or warning) found in a manifest.

    Attributes:
        code: A stable code from `DIAGNOSTIC_CODES`.
        message: What is wrong, what was expected and what was found.
        path: Where in the document, e.g. ``workflows[0].steps[2].agent``.
        file: The file (or ``<string>``/``<cell>``) the manifest came from.
        line: 1-based line of the offending node, when known.
        column: 1-based column, when known.
        step_id: The step the problem is in, when it is in one.
        hint: How to fix it.
        severity: ``"error"`` or ``"warning"``.
    """

    code: str
    message: str
    path: str = ""
    file: str | None = None
    line: int | None = None
    column: int | None = None
    step_id: str | None = None
    hint: str | None = None
    severity: Severity = "error"

    @property
    def location(self) -> str:
        """``file:line`` (or as much of it as is known)."""
        where = self.file or "<manifest>"
        if self.line is not None:
            where += f":{self.line}"
        return where

    def format(self) -> str:
        """One line as printed by ``owf validate``: ``file:line: CODE message (fix)``."""
        text = f"{self.location}: {self.code} {self.message}"
        extras = []
        if self.path:
            extras.append(f"at {self.path}")
        if self.step_id:
            extras.append(f"step '{self.step_id}'")
        if extras:
            text += f" [{', '.join(extras)}]"
        if self.hint:
            text += f" Fix: {self.hint}"
        return text

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return self.format()


class OWFError(Exception):
    """Base of every error this package raises on purpose.

    Args:
        message: Human-readable description, with the fix when there is one.
        code: One of `ERROR_CODES`.
        details: Structured, JSON-serialisable facts about the error.
    """

    default_code = "INTERNAL_ERROR"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        """The SDK contract's error envelope."""
        return {"status": "error", "code": self.code, "message": self.message, "details": self.details}

    def __repr__(self) -> str:
        return f"{type(self).__name__}(code={self.code!r}, message={self.message!r})"


class ManifestError(OWFError):
    """Every problem found while loading or validating manifests, raised once.

    Attributes:
        diagnostics: The errors, in file and line order.
        warnings: Warnings collected alongside (they did not cause the error).
    """

    default_code = "VALIDATION"

    def __init__(self, diagnostics: Iterable[Diagnostic], warnings: Iterable[Diagnostic] = ()):
        self.diagnostics: list[Diagnostic] = sort_diagnostics(diagnostics)
        self.warnings: list[Diagnostic] = sort_diagnostics(warnings)
        n = len(self.diagnostics)
        head = f"{n} problem{'s' if n != 1 else ''} found in the manifest{'s' if n != 1 else ''}"
        body = "\n".join(f"  {d.format()}" for d in self.diagnostics)
        super().__init__(
            f"{head}:\n{body}" if body else head,
            details={"diagnostics": [d.to_dict() for d in self.diagnostics]},
        )

    @property
    def codes(self) -> list[str]:
        return [d.code for d in self.diagnostics]


class UnavailableError(OWFError):
    """A backend, provider or optional package is not installed or not registered."""

    default_code = "UNAVAILABLE"


class BackendError(OWFError):
    """A backend failed while executing a step."""

    default_code = "BACKEND_ERROR"


class StepTimeoutError(OWFError):
    """A step or run exceeded its deadline."""

    default_code = "TIMEOUT"


class CanceledError(OWFError):
    """A run or step was canceled."""

    default_code = "CANCELED"


def sort_diagnostics(diags: Iterable[Diagnostic]) -> list[Diagnostic]:
    """Stable order: by file, then line, then code."""
    return sorted(diags, key=lambda d: (d.file or "", d.line or 0, d.column or 0, d.code, d.path))


def did_you_mean(word: str, candidates: Iterable[str], *, cutoff: float = 0.6) -> str | None:
    """The closest candidate to `word`, or None when nothing is close."""
    pool = [c for c in candidates if c]
    match = difflib.get_close_matches(word, pool, n=1, cutoff=cutoff)
    if match:
        return match[0]
    lowered = {c.lower(): c for c in pool}
    return lowered.get(word.lower())


def suggestion(word: str, candidates: Iterable[str], *, cutoff: float = 0.6) -> str:
    """`` Did you mean 'x'?`` or the empty string."""
    best = did_you_mean(word, candidates, cutoff=cutoff)
    return f" Did you mean '{best}'?" if best else ""


@dataclass(slots=True)
class DiagnosticBag:
    """Collects diagnostics while a load or validation runs."""

    errors: list[Diagnostic] = field(default_factory=list)
    warnings: list[Diagnostic] = field(default_factory=list)

    def add(self, diag: Diagnostic) -> None:
        (self.warnings if diag.severity == "warning" else self.errors).append(diag)

    def extend(self, diags: Iterable[Diagnostic]) -> None:
        for d in diags:
            self.add(d)

    def raise_if_errors(self) -> None:
        if self.errors:
            raise ManifestError(self.errors, self.warnings)
