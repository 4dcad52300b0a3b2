"""The format seam: a document of another shape is converted before normalisation, keeps its lines,
and `owf convert` prints YAML that loads to the same workflow."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from owf_magics import ManifestError, OpenWorkflow
from owf_magics.errors import Diagnostic, DiagnosticBag
from owf_magics.formats import convert_documents, detect_format, formats, register_format
from owf_magics.formats.convert import convert_file
from owf_magics.manifest.loader import LMap, LSeq, SourceDocument

TOY = """\
toy_pipeline: shout
toy_steps:
  - {name: first, value: "{{ inputs.word }}"}
  - {name: second, value: "{{ 40 + 2 }}"}
"""


class ToyFormat:
    """A tiny format: `toy_steps` becomes a chain of transform steps."""

    name = "toy"

    def detect(self, data: Mapping[str, Any]) -> bool:
        return "toy_pipeline" in data and "toy_steps" in data

    def convert(self, doc: SourceDocument, bag: DiagnosticBag) -> list[SourceDocument]:
        src = doc.data
        steps = LSeq(pos=getattr(src.get("toy_steps"), "pos", None))
        for i, item in enumerate(src.get("toy_steps") or []):
            if not isinstance(item, Mapping) or "name" not in item:
                line = src["toy_steps"].item_pos[i][0] if isinstance(src["toy_steps"], LSeq) else None
                bag.add(Diagnostic("MISSING_REQUIRED_FIELD", "a toy step needs a name", file=doc.file, line=line))
                continue
            step = LMap({"id": item["name"], "type": "transform", "expression": item["value"]}, pos=item.pos)
            step.key_pos = {k: item.key_pos.get("name", item.pos) for k in step}
            steps.append(step)
            steps.item_pos.append(item.pos)
        wf = LMap(
            {
                "name": src["toy_pipeline"],
                "version": "1.0.0",
                "steps": steps,
                "inputs": {"word": {"type": "string", "default": ""}},
                "outputs": {"last": {"value": "{{ steps.%s.output }}" % (steps[-1]["id"] if steps else "none")}},
            },
            pos=src.pos,
        )
        return [SourceDocument(LMap({"workflows": LSeq([wf])}, pos=src.pos), doc.file, doc.index, doc.line)]


@pytest.fixture
def toy() -> Any:
    fmt = ToyFormat()
    register_format(fmt)
    yield fmt
    from owf_magics.formats import registry

    registry._registered[:] = [f for f in registry._registered if f.name != "toy"]


def test_a_registered_format_is_recognised_and_runs(toy: ToyFormat) -> None:
    assert detect_format({"toy_pipeline": "x", "toy_steps": []}) is toy
    assert detect_format({"workflows": []}) is None
    ow = OpenWorkflow(state=":memory:")
    ow.load(TOY)
    res = ow.workflow("shout").execute(inputs={"word": "hi"})
    assert res.status == "completed"
    assert res.steps["first"].output == {"result": "hi"}
    assert res.outputs == {"last": {"result": 42}}


def test_a_formats_diagnostics_keep_the_source_line(toy: ToyFormat, tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("toy_pipeline: p\ntoy_steps:\n  - {name: a, value: '{{ 1 }}'}\n  - {value: 2}\n")
    with pytest.raises(ManifestError) as err:
        OpenWorkflow().load(str(path))
    (d,) = err.value.diagnostics
    assert (d.code, d.file, d.line) == ("MISSING_REQUIRED_FIELD", str(path), 4)


def test_convert_prints_openworkflow_yaml_that_gives_the_same_outputs(toy: ToyFormat, tmp_path: Path) -> None:
    path = tmp_path / "toy.yaml"
    path.write_text(TOY)
    text = convert_file(path)
    assert text.startswith("# converted from toy")
    ow = OpenWorkflow(state=":memory:")
    ow.load(text)
    assert ow.workflow("shout").execute(inputs={"word": "yo"}).outputs == {"last": {"result": 42}}
    assert detect_format({"toy_pipeline": 1}) is None  # both keys are needed


def test_owf_convert_on_an_openworkflow_file_prints_it_back(tmp_path: Path) -> None:
    path = tmp_path / "wf.yaml"
    path.write_text(
        'workflows:\n  - name: w\n    version: 1.0.0\n    steps:\n      - {id: a, type: transform, expression: "{{ 1 }}"}\n'
    )
    out = subprocess.run(
        [sys.executable, "-m", "owf_magics.cli", "convert", str(path)], capture_output=True, text=True, check=False
    )
    assert out.returncode == 0, out.stderr
    ow = OpenWorkflow(state=":memory:")
    ow.load(out.stdout)
    assert ow.workflow("w").execute().steps["a"].output == {"result": 1}
    assert all(f.name != "toy" for f in formats())
    assert convert_documents([], DiagnosticBag()) == []
