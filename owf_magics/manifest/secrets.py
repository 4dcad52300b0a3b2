"""Opaque secrets and the declared environment, as templates see them.

A secret (``secrets.NAME``, or a declared environment variable whose name looks like a credential)
reaches a template as a `Secret`: an object that refuses every operation (attribute, method,
slice, iteration, comparison, ``len``, arithmetic, ``str``) except being rendered, whole, into a
credential field while `credential_field()` is active. Filters, operators and calls in the sandbox
check their arguments with `refuse_secrets`. Load-time checks (`plan.template_checks`) refuse
what can be seen statically, with file and line; this is the run-time half.

`EnvView` is ``env`` in templates: only the declared names (the manifest's
``runtime.environment`` and ``OpenWorkflow(env=[...])``), credential-like ones as `Secret`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any, NoReturn

from owf_magics.manifest.budget import ACTIVE, TemplateError

#: A declared environment variable whose name contains one of these is a secret.
SECRET_NAME_RE = re.compile(r"KEY|TOKEN|SECRET|PASSWORD|CREDENTIAL", re.I)

#: Field names (any segment of a field's path) that secrets may fill.
CREDENTIAL_FIELD_RE = re.compile(r"(header|auth|token|password|secret|key|credential)", re.I)

_CREDENTIAL: ContextVar[bool] = ContextVar("owf_credential_field", default=False)


def is_secret_name(name: str) -> bool:
    """Whether an environment variable's name makes it a secret (KEY, TOKEN, SECRET, ...)."""
    return bool(SECRET_NAME_RE.search(name))


@contextmanager
def credential_field(allowed: bool = True) -> Iterator[None]:
    """Within this block, a whole secret may be rendered (the field is a credential field)."""
    token = _CREDENTIAL.set(allowed)
    try:
        yield
    finally:
        _CREDENTIAL.reset(token)


class SecretUseError(TemplateError):
    """A template applied an operation to a secret, or put one where secrets may not go."""


def _refuse(what: str, name: str = "") -> NoReturn:
    label = f"secret '{name}'" if name else "a secret"
    raise SecretUseError(
        f"{what} {label} is not allowed: a secret is opaque and may only fill a credential field "
        "(auth, headers, token, password, key, secret, credential) whole",
        details={"secret": name, "refused": what},
    )


class Secret:
    """A secret value inside the sandbox: opaque except in a credential field."""

    __slots__ = ("_name", "_value")
    _name: str
    _value: str

    def __init__(self, name: str, value: str) -> None:
        object.__setattr__(self, "_name", name)
        object.__setattr__(self, "_value", value)

    def reveal(self) -> str:
        """The value, for a credential field; refused anywhere else."""
        if not _CREDENTIAL.get():
            _refuse("rendering", self._name)
        return self._value

    @property
    def name(self) -> str:
        return self._name

    def __str__(self) -> str:
        return self.reveal()

    def __repr__(self) -> str:
        return f"<secret {self._name}>"

    def __format__(self, spec: str) -> str:
        _refuse("formatting")

    def __setattr__(self, name: str, value: Any) -> None:
        _refuse("changing")

    def __bool__(self) -> bool:  # noqa: PLE0304
        _refuse("testing")

    def __len__(self) -> int:  # noqa: PLE0303
        _refuse("measuring")

    def __iter__(self) -> Iterator[Any]:
        _refuse("iterating over")

    def __contains__(self, item: Any) -> bool:
        _refuse("searching")

    def __getitem__(self, key: Any) -> Any:
        _refuse("slicing or indexing")

    def __eq__(self, other: object) -> bool:
        _refuse("comparing")

    def __ne__(self, other: object) -> bool:
        _refuse("comparing")

    def __lt__(self, other: object) -> bool:
        _refuse("comparing")

    def __le__(self, other: object) -> bool:
        _refuse("comparing")

    def __gt__(self, other: object) -> bool:
        _refuse("comparing")

    def __ge__(self, other: object) -> bool:
        _refuse("comparing")

    def __hash__(self) -> int:  # noqa: PLE0309
        _refuse("hashing")

    def __add__(self, other: Any) -> Any:
        _refuse("an operator on")

    __radd__ = __mul__ = __rmul__ = __mod__ = __rmod__ = __add__

    def __reduce__(self) -> Any:
        _refuse("serialising")


def refuse_secrets(args: Iterable[Any], what: str) -> None:
    """Refuse `what` (a filter, call or operator) when any argument is a secret."""
    for arg in args:
        if isinstance(arg, Secret):
            _refuse(what, arg.name)


def _mark() -> None:
    budget = ACTIVE.get()
    if budget is not None:
        budget.saw_secret = True


class SecretMap(Mapping[str, Any]):
    """``secrets`` in templates: each value a `Secret`."""

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = values

    def __getitem__(self, name: str) -> Secret:
        value = self._values[name]
        _mark()
        return Secret(name, value)

    def __iter__(self) -> Iterator[str]:
        return iter(self._values)

    def __len__(self) -> int:
        return len(self._values)

    def __repr__(self) -> str:
        return f"<secrets {', '.join(self._values)}>"

    __str__ = __repr__


class EnvView(Mapping[str, Any]):
    """``env`` in templates: only the declared variables that are set; credential-like ones opaque."""

    __slots__ = ("_names", "_source")

    def __init__(self, source: Mapping[str, str], names: Iterable[str]) -> None:
        self._source = source
        self._names = tuple(sorted({n for n in names if n in source}))

    def __getitem__(self, name: str) -> Any:
        if name not in self._names:
            raise KeyError(name)
        value = self._source[name]
        if is_secret_name(name):
            _mark()
            return Secret(name, value)
        return value

    def __iter__(self) -> Iterator[str]:
        return iter(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def __repr__(self) -> str:
        return repr(repr_dict(self))

    __str__ = __repr__


def repr_dict(env: EnvView) -> dict[str, str]:
    """The declared, set variables, credential-like ones as ``***`` (what ``{{ env }}`` shows)."""
    return {n: ("***" if is_secret_name(n) else env._source[n]) for n in env._names}


def reveal(value: Any) -> Any:
    """A rendered value with every `Secret` inside revealed (credential field) or refused."""
    if isinstance(value, Secret):
        return value.reveal()
    if isinstance(value, EnvView):
        return repr_dict(value)
    if isinstance(value, SecretMap):
        _refuse("reading all of")
    if isinstance(value, dict):
        return {k: reveal(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [reveal(v) for v in value]
    return value
