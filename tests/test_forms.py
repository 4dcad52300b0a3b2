"""Every manifest form of the spec loads into the same canonical model."""

from __future__ import annotations

import json

import pytest

from owf_magics import ManifestError

FILE_FORM = """
workflows:
  - name: Daily
    steps:
      - name: fetch
        connector: connector:community/weather@1.0.0
        action: get_current_weather
        with:
          location: "{{ inputs.city }}"
    inputs:
      city: {type: string, default: Paris}
"""

NESTED_CONNECTOR = """
connector:
  type: connector
  kind: sdk
  name: weather
  namespace: community
  version: 1.0.0
  displayName: Weather
  description: Weather
actions:
  - name: get_current_weather
    description: now
    input: {type: object, properties: {location: {type: string}}, required: [location]}
    handler:
      function: owf_magics.demo_tools.weather_current
"""


def test_file_form_and_nested_connector(ow):
    ow.load(NESTED_CONNECTOR)
    [wf] = ow.load(FILE_FORM)
    step = wf.model.steps[0]
    assert step.id == "fetch" and step.input == {"location": "{{ inputs.city }}"}
    codes = [(w.code, w.path) for w in ow.warnings]
    assert ("ALIAS", "workflows[0].steps[0].id") in codes
    assert ("ALIAS", "workflows[0].steps[0].input") in codes
    alias = next(w for w in ow.warnings if w.path.endswith("steps[0].input"))
    assert "'input'" in alias.message and alias.line == 8


def test_registry_form_json_with_schema_version(ow):
    ow.load(NESTED_CONNECTOR)
    doc = {
        "schemaVersion": "0.1.0",
        "type": "workflow",
        "name": "daily-weather",
        "namespace": "smartify",
        "version": "1.0.0",
        "inputs": {"city": {"type": "string", "default": "Paris"}},
        "steps": [
            {
                "id": "get",
                "type": "action",
                "connector": "connector:community/weather@1.0.0",
                "action": "get_current_weather",
                "input": {"location": "{{ inputs.city }}"},
            }
        ],
        "outputs": {"temp": {"value": "{{ steps.get.output.temperature }}"}},
    }
    [wf] = ow.load(json.dumps(doc, indent=2))
    assert wf.ref == "workflow:smartify/daily-weather@1.0.0"
    assert ow.warnings == []


def test_both_agent_shapes(ow):
    registry_shape = """
type: agent
name: triage-bot
namespace: smartify
version: 0.2.0
model: {provider: echo}
systemPrompt: You triage issues.
execution: {backend: native, runtimeHint: python}
"""
    schema_shape = """
agent: {id: "agent:acme/helper@2.0.0"}
model: {provider: echo, name: tiny}
instructions: {system: Be brief., goals: [help]}
tools: []
runtime: langchain
"""
    [a] = ow.load(registry_shape)
    assert a.model.personality.systemPrompt == "You triage issues."
    assert a.model.execution.runtime == "python"
    [b] = ow.load(schema_shape)
    assert (b.namespace, b.name, b.version) == ("acme", "helper", "2.0.0")
    assert b.model.model.id == "tiny"
    assert b.model.execution.backend == "langchain" and b.model.execution.runtime == "python"
    assert b.model.personality.goals == ["help"]
    assert {w.code for w in ow.warnings} == {"ALIAS"}


def test_combined_form_multi_document_and_singular_workflow(ow):
    text = (
        NESTED_CONNECTOR
        + "\n---\n"
        + """
workflow:
  name: Hybrid
  steps:
    - name: local_step
      plugin: weather
      action: get_current_weather
      execution: local
      input: {location: Paris}
"""
    )
    items = ow.load(text)
    assert [i.kind for i in items] == ["connector", "workflow"]
    step = items[1].model.steps[0]
    assert step.connector == "weather" and step.execution.placement == "local"
    messages = " ".join(w.message for w in ow.warnings)
    assert "'connector'" in messages and "execution.placement" in messages


def test_inline_forms_normalise(ow):
    ow.load(NESTED_CONNECTOR)
    [wf] = ow.load("""
workflows:
  - name: Inline
    inputs: {cities: {type: array}}
    steps:
      - id: each
        connector: weather
        action: get_current_weather
        for_each: "{{ inputs.cities }}"
        parallel: true
        input: {location: "{{ item }}"}
        retry: {max_attempts: 4, backoff_factor: 3}
        continue_on_error: true
        backend: native
      - id: fan
        parallel:
          - id: a
            type: transform
            template: "x"
          - id: b
            type: wait
            duration: 1s
      - id: loop2
        type: loop
        items: [1, 2]
        steps:
          - {id: inner, type: transform, expression: "{{ item }}"}
""")
    each, fan, loop2 = wf.model.steps
    assert each.forEach.items == "{{ inputs.cities }}" and each.forEach.parallel is True
    assert each.retry.maxAttempts == 4 and each.retry.backoffFactor == 3
    assert each.continueOnError is True and each.execution.backend == "native"
    assert fan.type == "parallel" and set(fan.branches) == {"a", "b"}
    assert fan.branches["a"][0].language == "template"
    assert loop2.type == "forEach"
    canon = {w.message.split("canonical spelling is ")[1] for w in ow.warnings}
    assert {"'maxAttempts'", "'backoffFactor'", "'continueOnError'", "'execution.backend'", "'type: forEach'"} <= canon


def test_triggers_shorthand(ow):
    [wf] = ow.load("""
name: T
triggers: [manual, {schedule: "0 8 * * *"}]
steps: [{id: a, type: transform, expression: x}]
""")
    assert [t.type for t in wf.model.triggers] == ["manual", "schedule"]
    assert wf.model.triggers[1].cron == "0 8 * * *"


def test_unknown_field_has_did_you_mean(ow):
    with pytest.raises(ManifestError) as err:
        ow.load("name: w\nsteps:\n  - id: a\n    type: transform\n    expresion: x\n")
    codes = {(d.code, d.line) for d in err.value.diagnostics}
    assert ("UNKNOWN_FIELD", 5) in codes
    d = next(d for d in err.value.diagnostics if d.code == "UNKNOWN_FIELD")
    assert "expression" in (d.hint or "") and d.step_id == "a"


def test_open_maps_accept_anything(ow):
    ow.load("""
type: agent
name: a
model: {provider: echo, providerConfig: {anything: [1, 2], base_url: "http://127.0.0.1:1"}}
execution: {backend: native, config: {whatever: true}}
metadata: {free: form}
""")


def test_literals_in_templates_are_not_names(ow):
    ow.load(
        "name: a\nsteps: [{id: x, type: transform, expression: '{{ true }}'}, {id: y, type: if, condition: '{{ none }}', then: []}]"
    )


def test_plural_type_is_an_alias(ow):
    [wf] = ow.load("type: workflows\nname: b\nsteps: [{id: x, type: transform, expression: y}]")
    assert wf.model.type == "workflow"
    assert [w.code for w in ow.warnings] == ["ALIAS"]


def test_step_inherits_workflow_runtime(ow):
    ow.load(
        "name: c\nexecution: {runtime: python}\nsteps: [{id: x, type: transform, expression: y, execution: {backend: langchain}}]"
    )
    assert ow.workflow("c").plan()["x"].runtime == "python"


def test_for_each_on_a_loop_step_means_items(ow):
    [wf] = ow.load(
        "name: d\nsteps: [{id: x, type: loop, for_each: [1, 2], steps: [{id: y, type: transform, expression: '{{ item }}'}]}]"
    )
    assert wf.model.steps[0].items == [1, 2]
