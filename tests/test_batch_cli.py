"""`owf map FILE --inputs inputs.jsonl` and `%workflow map NAME --inputs VAR`: thin layers over ow.map."""

from __future__ import annotations

import json

import pytest
from IPython.core.error import UsageError

from owf_magics.cli import main
from tests.test_batch import CONNECTOR, PICKY
from tests.test_magics import cell, shell  # noqa: F401 - the IPython shell fixture


def test_owf_map_runs_each_line_and_reports_failures(tmp_path, capsys):
    flow = tmp_path / "picky.yaml"
    flow.write_text(CONNECTOR + "---\n" + PICKY, encoding="utf-8")
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text("\n".join(json.dumps({"n": n}) for n in range(1, 10)) + "\n\n", encoding="utf-8")
    code = main(["map", str(flow), "--inputs", str(inputs), "--state", str(tmp_path / "runs.db"), "--json"])
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == 1  # n = 7 failed, the batch finished
    assert [r["index"] for r in rows] == list(range(9))
    assert [r["status"] for r in rows] == ["completed"] * 6 + ["failed"] + ["completed"] * 2
    assert rows[0]["n"] == 1 and rows[6]["error_code"] is not None


def test_owf_map_points_at_a_bad_line(tmp_path, capsys):
    flow = tmp_path / "picky.yaml"
    flow.write_text(CONNECTOR + "---\n" + PICKY, encoding="utf-8")
    inputs = tmp_path / "inputs.jsonl"
    inputs.write_text('{"n": 1}\n{"n": 2\n', encoding="utf-8")
    assert main(["map", str(flow), "--inputs", str(inputs), "--state", ":memory:"]) == 2
    assert f"{inputs}:2" in capsys.readouterr().err


def test_the_magic_maps_over_a_namespace_list(shell):  # noqa: F811
    result, _ = cell(shell, "", CONNECTOR + "---\n" + PICKY)
    assert result.success
    shell.user_ns["rows"] = [{"n": n} for n in (1, 2, 7)]
    batch = shell.run_line_magic("workflow", "map picky --inputs rows -o b")
    assert shell.user_ns["b"] is batch
    assert [r.status for r in batch.results] == ["completed", "completed", "failed"]
    with pytest.raises(UsageError, match="no such variable"):
        shell.run_line_magic("workflow", "map picky --inputs missing")
