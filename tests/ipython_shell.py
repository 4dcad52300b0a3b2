"""A real IPython shell with the extension loaded, for the magic tests.

`magic_shell` loads ``owf_magics`` into the process's `InteractiveShell`, sets ``%config OWF.*``
values, and on the way out unloads the extension, restores the view settings and clears the
shell, so no test sees another's registry or settings.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from IPython.core.interactiveshell import InteractiveShell

from owf_magics.notebook.views import SETTINGS


@contextmanager
def magic_shell(**config: Any) -> Iterator[InteractiveShell]:
    """The shell with ``%load_ext owf_magics`` and ``%config OWF.<name> = <value>`` for each of
    `config` (``state=":memory:"``, ``widgets="never"``...)."""
    ip = InteractiveShell.instance()
    saved = dataclasses.asdict(SETTINGS)
    ip.run_line_magic("load_ext", "owf_magics")
    try:
        for name, value in config.items():
            ip.run_line_magic("config", f"OWF.{name} = {value!r}")
        yield ip
    finally:
        ip.run_line_magic("unload_ext", "owf_magics")
        for key, value in saved.items():
            setattr(SETTINGS, key, value)
        InteractiveShell.clear_instance()
