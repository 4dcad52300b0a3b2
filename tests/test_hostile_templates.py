"""The hostile-template corpus (issue 21): every payload ends, fast, and shows nothing it should not.

Each payload runs as a transform expression and as a workflow output in a fresh Python process
(`tests/hostile_worker.py`; a few payloads share one process, so the suite stays fast, and each
batch starts from nothing). Each must end within seconds as a ManifestError, a failed step or a
harmless value; no outcome may show the secret, an undeclared environment variable, a file's
contents or Python internals; the process may grow by less than 300 MB; and the SQLite store must
hold no run left `running`.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hostile_worker import SECRET

ROOT = Path(__file__).resolve().parent.parent
ENV_CANARY = "envcanary-4242-do-not-show"

PAYLOADS = [
    # unbounded work and memory (the issue's own list)
    "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}",
    "{{ ([0]*10**8) | length }}",
    "{{ lipsum(n=10**6) }}",
    "{{ 'a'*10**9 }}",
    "{{ '{0:>1000000000}'.format(1) }}",
    "{{ '%1000000000d' % 1 }}",
    "{{ 'a'|center(1000000000) }}",
    "{{ (2**(10**9)) > 1 }}",
    "{{ 10**5000 }}",
    "{{ 9**9**9 }}",
    "{{ 'a'.ljust(10**9) }}",
    "{{ ('a'*100000).replace('a', 'a'*1000) }}",
    "{{ ''.join(['a'*999999]*1000) }}",
    "{% macro m(n) %}{% if n %}{{ m(n-1) }}{{ m(n-1) }}{% endif %}{% endmacro %}{{ m(40) }}",
    "{% macro m() %}{{ m() }}{% endmacro %}{{ m() }}",
    "{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
    "{{ [1]|batch(10**9, 'x')|list }}",
    "{{ [1]|slice(10**9, 'x')|list }}",
    "{{ ('a\n'*1000)|indent(10**6) }}",
    "{{ 1|round(10**9) }}",
    "{% set ns = namespace(x='a') %}{% for i in range(64) %}{% set ns.x = ns.x ~ ns.x %}{% endfor %}{{ ns.x|length }}",
    "{{ range(10**9)|list }}",
    "{{ (range(100000)|list) * 100 }}",
    "{{ 'x'|wordwrap(0) }}",
    "{{ [[0]*100000]*100000|sum(start=[]) }}",
    "{{ '{:{}}'.format(1, 10**9) }}",
    "{{ '%*d' % (10**9, 1) }}",
    "{{ ([0]*10)|tojson(indent=10**9) }}",
    "{% filter upper %}{% for i in range(100000) %}{{ 'a'*1000 }}{% endfor %}{% endfilter %}",
    # class and mro walks, __globals__ through the globals, |attr, format tricks
    "{{ ''.__class__ }}",
    "{{ inputs|attr('__class__') }}",
    "{{ ''.__class__.__mro__[1].__subclasses__() }}",
    "{{ [].__class__.__base__.__subclasses__() }}",
    "{{ ().__class__.__bases__[0].__subclasses__() }}",
    "{{ dict(a=1).__class__ }}",
    "{{ cycler.__init__.__globals__.os.popen('id').read() }}",
    "{{ joiner.__init__.__globals__ }}",
    "{{ lipsum.__globals__['os'].popen('cat /etc/passwd').read() }}",
    "{{ namespace.__init__.__globals__ }}",
    "{{ lipsum|attr('__globals__') }}",
    "{{ cycler|attr('__init__')|attr('__globals__') }}",
    "{{ (lipsum|attr('__globals__')).get('os') }}",
    "{{ cycler(1, 2).next.__self__ }}",
    "{{ '{0.__class__}'.format(1) }}",
    "{{ '{0.__class__.__mro__}'.format('') }}",
    "{{ '%s' % (lipsum|attr('__globals__')) }}",
    "{{ lipsum }}",
    "x{{ cycler }}",
    # self, config, names that do not exist here, statements that load
    "{{ self }}",
    "{{ self.__init__.__globals__ }}",
    "{{ config }}",
    "{{ config.items() }}",
    "{{ request.application.__globals__ }}",
    "{{ __builtins__ }}",
    "{% import 'os' as os %}{{ os }}",
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
    "{% from 'x' import y %}{{ y }}",
    # secrets and the environment
    "{{ secrets.TOKEN | upper }}",
    "{{ secrets.TOKEN | reverse }}",
    "{{ secrets.TOKEN[1:] }}",
    "{{ secrets.TOKEN | list | join('-') }}",
    "{{ secrets.TOKEN | replace('a', 'b') }}",
    "{{ secrets.TOKEN }}",
    "{{ secrets }}",
    "{{ secrets['TOK' ~ 'EN'] }}",
    "{{ env }}",
    "{{ json(env) }}",
    "{{ env.OWF_HOSTILE_ENV }}",
    "{{ env['OWF_' ~ 'HOSTILE_ENV'] }}",
]

# what no outcome may contain: the secret, an undeclared variable, a file, Python internals
FORBIDDEN = [SECRET, ENV_CANARY, "root:x:0:0", "<code object", "__builtins__': ", "<module '", "uid="]

BATCH = 6
BATCHES = [PAYLOADS[i : i + BATCH] for i in range(0, len(PAYLOADS), BATCH)]


def test_the_corpus_is_large_enough():
    assert len(PAYLOADS) >= 50 and len(set(PAYLOADS)) == len(PAYLOADS)


@pytest.mark.parametrize("batch", BATCHES, ids=[f"batch{i}" for i in range(len(BATCHES))])
def test_hostile_templates_end_fast_and_show_nothing(batch, tmp_path):
    db = tmp_path / "runs.sqlite"
    env = {k: v for k, v in os.environ.items() if k != "OWF_CANARY_TOKEN"}
    env["OWF_HOSTILE_ENV"] = ENV_CANARY
    proc = subprocess.run(
        [sys.executable, "-m", "tests.hostile_worker", str(db)],
        check=False,
        input=json.dumps(batch),
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [(r["template"], r["mode"]) for r in rows] == [(t, m) for t in batch for m in ("transform", "output")]
    for row in rows:
        what = f"{row['mode']} {row['template']!r}"
        assert row["seconds"] < 10, f"{what} took {row['seconds']:.1f}s"
        assert row["rss_growth_mb"] < 300, f"{what} grew the process by {row['rss_growth_mb']:.0f} MB"
        assert row["kind"] in ("manifest_error", "failed", "completed"), what
        if row["kind"] == "failed":  # its step failed, or (an output) the run failed naming the output
            assert row["step"] == "failed" or (row["mode"] == "output" and row["failed_output"] == "o"), what
        leaked = [f for f in FORBIDDEN if f in row["text"]]
        assert not leaked, f"{what} showed {leaked}: {row['text'][:500]}"
    with sqlite3.connect(db) as con:
        statuses = [s for (s,) in con.execute("SELECT status FROM runs")]
    assert statuses and "running" not in statuses
    raw = db.read_bytes() + b"".join(p.read_bytes() for p in tmp_path.glob("runs.sqlite-*"))
    assert SECRET.encode() not in raw and ENV_CANARY.encode() not in raw


def test_budget_failures_name_the_limit():
    """The corpus' unbounded payloads fail for the right reason: a named limit, not a crash."""
    from owf_magics.manifest.render import TemplateError, render_string

    for template, limit in [
        ("{{ 'a'*10**9 }}", "max_string"),
        ("{{ ([0]*10**8) | length }}", "max_items"),
        ("{{ 10**5000 }}", "max_int_bits"),
        ("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}", "max_iterations"),
        ("{{ lipsum(n=10**6) }}", "max_string"),
    ]:
        with pytest.raises(TemplateError) as info:
            render_string(template, {}, "expression")
        assert info.value.details["limit"] == limit, template
        assert info.value.details["field"] == "expression"
        assert limit in info.value.message and "expression" in info.value.message
