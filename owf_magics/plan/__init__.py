"""From loaded manifests to a frozen plan: validation (every problem at once, with file:line),
the neutral step graph, and the backend each step resolves to (step > agent > workflow > prefer > native).
"""
