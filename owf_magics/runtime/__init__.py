"""What every runner speaks: the run context and host a step sees, results, durable-run records,
retry arithmetic, the backend contract and registry, and the display seam (see docs/architecture.md).
"""
