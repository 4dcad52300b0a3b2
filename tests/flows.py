"""Manifests several test files share."""

from __future__ import annotations

# a payment that needs a person's approval before it runs
APPROVAL = """
connector: {name: bank, kind: sdk, approval: {required: always}}
actions: [{name: pay, handler: {function: tests.handlers.echo}}]
---
name: payout
steps: [{id: pay, connector: bank, action: pay, input: {amount: 5}}]
outputs: {paid: {value: "{{ steps.pay.output.echo.amount }}"}}
"""

# the demo calculator as a connector (agents use it as a tool: calculator_add)
CALCULATOR = """
connector: {name: calculator, kind: sdk}
actions:
  - name: add
    description: Add two numbers
    input: {type: object, properties: {a: {type: number}, b: {type: number}}, required: [a, b]}
    handler: {function: owf_magics.demo_tools.calculator_add}
"""

# two echo agents and a handoff that picks one by the input's category
HANDOFF = """
agents:
  - {name: tech, model: {provider: echo}}
  - {name: general, model: {provider: echo}}
workflows:
  - name: route
    inputs: {category: {type: string}}
    steps:
      - id: go
        type: handoff
        selectAgent:
          - {condition: "{{ inputs.category == 'technical' }}", agent: tech}
          - {default: general}
        reason: routing
        context: {c: "{{ inputs.category }}"}
"""
