"""The notebook layer: `%%workflow` and `%workflow`, the live run view, the graph and table views,
short cell errors, settings, the headless notebook runner and completion. Nothing below imports it."""
