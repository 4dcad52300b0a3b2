"""Published workflows (issue 24): two real `owf serve` processes on one SQLite store. A workflow
published on one runs on the other; the same version again is 409; `name@^1` keeps running 1.x
after 2.0.0 is published; another tenant gets 404; a token without `workflows:write` gets 403;
a deleted version is gone while its runs keep their snapshot."""

from __future__ import annotations

import pytest

from tests.service_server import ALL_SCOPES, start, token

pytest.importorskip("fastapi")

WRITE = f"{ALL_SCOPES} workflows:write"


def greeter(version: str, word: str) -> str:
    return f"""
name: greeter
version: {version}
description: says {word}
inputs: {{who: {{type: string, default: world}}}}
steps:
  - {{id: say, type: transform, expression: "{word} {{{{ inputs.who }}}}"}}
outputs: {{text: {{value: "{{{{ steps.say.output.result }}}}"}}}}
"""


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    folder = tmp_path_factory.mktemp("publish")
    state = folder / "runs.db"
    a = start(folder, state=state, name="a")
    b = start(folder, state=state, name="b")
    yield a, b
    for s in (a, b):
        s.stop()


def test_published_on_one_server_runs_on_the_other_by_range(servers):
    a, b = servers
    acme = token(tenant="acme", scope=WRITE)
    with a.client(acme) as ca, b.client(acme) as cb:
        r = ca.post("/workflows", json={"manifest": greeter("1.0.0", "hello")})
        assert r.status_code == 201, r.text
        assert r.json()["workflows"] == [{"name": "greeter", "version": "1.0.0"}]
        again = cb.post("/workflows", json={"manifest": greeter("1.0.0", "other")})
        assert again.status_code == 409 and again.json()["code"] == "CONFLICT"
        assert again.json()["details"] == {"name": "greeter", "version": "1.0.0"}

        run = cb.post("/workflows/execute", json={"workflow": "greeter", "inputs": {"who": "b"}})
        assert run.status_code == 200, run.text
        assert run.json()["outputs"] == {"text": "hello b"}

        assert ca.post("/workflows", json={"manifest": greeter("2.0.0", "hi")}).status_code == 201
        old = cb.post("/workflows/execute", json={"workflow": "greeter@^1", "inputs": {"who": "x"}}).json()
        new = cb.post("/workflows/execute", json={"workflow": "greeter", "inputs": {"who": "x"}}).json()
        assert old["outputs"] == {"text": "hello x"} and new["outputs"] == {"text": "hi x"}
        assert cb.get(f"/runs/{old['execution_id']}").json()["workflow_version"] == "1.0.0"
        assert cb.get(f"/runs/{new['execution_id']}").json()["workflow_version"] == "2.0.0"

        (summary,) = [w for w in cb.get("/workflows").json() if w["name"] == "greeter"]
        assert (summary["version"], summary["published"]) == ("2.0.0", True)
        listed = cb.get("/workflows/greeter/versions").json()
        assert [v["version"] for v in listed] == ["2.0.0", "1.0.0"]
        assert listed[0]["published_by"] == "alice"
        detail = ca.get("/workflows/greeter", params={"version": "^1"}).json()
        assert detail["version"] == "1.0.0" and detail["description"] == "says hello"
        assert ca.get("/workflows/greeter").json()["version"] == "2.0.0"
        assert ca.get("/workflows/greeter", params={"version": "^3"}).status_code == 404
        bad = ca.get("/workflows/greeter", params={"version": "not a range!"})
        assert bad.status_code == 422 and bad.json()["status"] == "error"

        # deleting 1.0.0: gone for new runs, its runs keep what they ran
        assert ca.delete("/workflows/greeter/1.0.0").status_code == 204
        assert cb.delete("/workflows/greeter/1.0.0").status_code == 404
        gone = cb.post("/workflows/execute", json={"workflow": "greeter@^1", "inputs": {}})
        assert gone.status_code == 404 and gone.json()["details"]["published"] == ["2.0.0"]
        assert cb.get(f"/runs/{old['execution_id']}").json()["outputs"] == {"text": "hello x"}


def test_other_tenants_and_missing_scope(servers):
    a, b = servers
    with a.client(token(tenant="initech", scope=WRITE)) as ca:
        assert ca.post("/workflows", json={"manifest": greeter("7.0.0", "yo")}).status_code == 201
    with b.client(token(tenant="globex", scope=WRITE)) as other:
        r = other.post("/workflows/execute", json={"workflow": "greeter", "inputs": {}})
        assert r.status_code == 404 and r.json()["code"] == "NOT_FOUND"
        assert other.post("/workflows/execute", json={"workflow": "greeter@^7", "inputs": {}}).status_code == 404
        assert other.get("/workflows/greeter/versions").status_code == 404
        assert other.get("/workflows/greeter").status_code == 404
        assert other.delete("/workflows/greeter/7.0.0").status_code == 404
        # the same name and version in another tenant is theirs to publish
        assert other.post("/workflows", json={"manifest": greeter("7.0.0", "hey")}).status_code == 201
        assert other.post("/workflows/execute", json={"workflow": "greeter"}).json()["outputs"] == {"text": "hey world"}
    with a.client(token(tenant="initech", scope=ALL_SCOPES)) as reader:
        r = reader.post("/workflows", json={"manifest": greeter("8.0.0", "no")})
        assert r.status_code == 403 and r.json()["details"]["required"] == "workflows:write"
        assert reader.delete("/workflows/greeter/7.0.0").status_code == 403
        assert reader.post("/workflows/execute", json={"workflow": "greeter"}).json()["outputs"] == {"text": "yo world"}


def test_a_manifest_with_problems_is_not_published(servers):
    a, _ = servers
    with a.client(token(tenant="acme", scope=WRITE)) as c:
        r = c.post("/workflows", json={"manifest": "name: broken\nversion: 1.0.0\nsteps: [{id: a, type: transfrom}]"})
        assert r.status_code == 422 and r.json()["code"] == "VALIDATION"
        assert r.json()["details"]["errors"][0]["line"] == 3
        assert c.get("/workflows/broken/versions").status_code == 404
        r = c.post("/workflows", json={"manifest": greeter("one", "x")})
        assert r.status_code == 422 and "semantic version" in r.json()["message"]


def test_owf_publish_and_ow_publish(servers, tmp_path):
    import os
    import subprocess
    import sys

    from owf_magics import OpenWorkflow
    from owf_magics.errors import OWFError
    from tests.conftest import ROOT

    a, b = servers
    bearer = token(tenant="umbrella", scope=WRITE)
    (tmp_path / "flows").mkdir()
    (tmp_path / "flows" / "greeter.yaml").write_text(greeter("3.1.0", "ahoy"))
    env = {**os.environ, "OWF_TOKEN": bearer, "PYTHONPATH": str(ROOT)}
    command = [sys.executable, "-m", "owf_magics.cli", "publish", str(tmp_path / "flows"), "--server", a.url]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "published greeter@3.1.0" in done.stdout
    again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert again.returncode == 1 and "CONFLICT" in again.stderr
    (tmp_path / "flows" / "broken.yaml").write_text("name: broken\nsteps: [{id: a, type: transfrom}]\n")
    bad = subprocess.run(command, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert bad.returncode == 1 and "broken.yaml:2" in bad.stderr  # checked here, nothing sent

    ow = OpenWorkflow(state=False)
    ow.load(greeter("3.2.0", "howdy"))
    answer = ow.publish("greeter", server=b.url, token=bearer)
    assert answer["workflows"] == [{"name": "greeter", "version": "3.2.0"}]
    with pytest.raises(OWFError) as exc:
        ow.publish("greeter", server=b.url, token=bearer)
    assert exc.value.code == "CONFLICT" and exc.value.details["status"] == 409
    with pytest.raises(OWFError) as exc:
        ow.publish("greeter", server=b.url, token=token(tenant="umbrella", scope=ALL_SCOPES))
    assert exc.value.code == "FORBIDDEN"
    with a.client(bearer) as c:
        assert [v["version"] for v in c.get("/workflows/greeter/versions").json()] == ["3.2.0", "3.1.0"]
        assert c.post("/workflows/execute", json={"workflow": "greeter"}).json()["outputs"] == {"text": "howdy world"}


def test_two_servers_on_one_postgresql_store(tmp_path, postgres_url):
    pytest.importorskip("psycopg")
    a = start(tmp_path, state=postgres_url, name="pg-a")
    b = start(tmp_path, state=postgres_url, name="pg-b")
    try:
        acme = token(tenant="acme", scope=WRITE)
        with a.client(acme) as ca, b.client(acme) as cb:
            assert ca.post("/workflows", json={"manifest": greeter("1.0.0", "hello")}).status_code == 201
            assert cb.post("/workflows", json={"manifest": greeter("1.0.0", "again")}).status_code == 409
            assert cb.post("/workflows", json={"manifest": greeter("2.0.0", "hi")}).status_code == 201
            old = ca.post("/workflows/execute", json={"workflow": "greeter@^1", "inputs": {"who": "pg"}})
            assert old.json()["outputs"] == {"text": "hello pg"}
            assert cb.post("/workflows/execute", json={"workflow": "greeter"}).json()["outputs"] == {"text": "hi world"}
        with b.client(token(tenant="globex", scope=WRITE)) as other:
            assert other.post("/workflows/execute", json={"workflow": "greeter"}).status_code == 404
    finally:
        a.stop()
        b.stop()


WAITER = """
name: waiter
version: {version}
steps:
  - {{id: w, type: wait, until: {{event: go}}}}
  - {{id: after, type: transform, expression: "{word} {{{{ steps.w.output.eventReceived.n }}}}", needs: [w]}}
outputs: {{said: {{value: "{{{{ steps.after.output.result }}}}"}}}}
"""


def test_a_published_run_resumes_on_the_other_server_with_its_snapshot_after_delete(servers):
    a, b = servers
    acme = token(tenant="hooli", scope=WRITE)
    with a.client(acme) as ca, b.client(acme) as cb:
        assert ca.post("/workflows", json={"manifest": WAITER.format(version="1.0.0", word="first")}).status_code == 201
        waiting = ca.post("/workflows/execute", json={"workflow": "waiter"}).json()
        assert waiting["status"] == "waiting_approval", waiting
        assert ca.delete("/workflows/waiter/1.0.0").status_code == 204
        assert (
            cb.post("/workflows", json={"manifest": WAITER.format(version="1.0.0", word="second")}).status_code == 201
        )
        done = cb.post(f"/runs/{waiting['execution_id']}/resume", json={"event": {"n": 7}})
        assert done.status_code == 200, done.text
        assert done.json()["outputs"] == {"said": "first 7"}  # the snapshot it started with
    with b.client(token(tenant="globex", scope=WRITE)) as other:
        assert other.post(f"/runs/{waiting['execution_id']}/resume", json={"event": {"n": 1}}).status_code == 404
