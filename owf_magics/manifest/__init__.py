"""Manifests as data: loading with positions, normalising every spelling, the strict models,
references and version ranges, the template sandbox, and the catalog of what is loaded.

The bottom layer: it imports nothing of the package but `errors`.
"""
