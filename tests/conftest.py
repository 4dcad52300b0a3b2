from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def ow():
    from owf_magics import OpenWorkflow

    return OpenWorkflow(state=":memory:")
