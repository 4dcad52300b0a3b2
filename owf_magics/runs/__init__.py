"""Runs beyond one call: the SQLite run store, the FIFO run queue, event callbacks and OpenTelemetry spans."""
