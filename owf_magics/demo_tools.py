"""Small, deterministic action handlers for the examples, notebooks and tests.

They stand in for real services so every demo runs offline: ``handler: {function:
owf_magics.demo_tools.calculator_add}`` in a connector calls them with the action input.
"""

from __future__ import annotations

import math
from typing import Any

from owf_magics.connectors.function import inline


@inline
def calculator_add(a: float, b: float) -> dict[str, float]:
    return {"result": a + b}


@inline
def calculator_subtract(a: float, b: float) -> dict[str, float]:
    return {"result": a - b}


@inline
def calculator_multiply(a: float, b: float) -> dict[str, float]:
    return {"result": a * b}


@inline
def calculator_divide(a: float, b: float) -> dict[str, float]:
    if b == 0:
        raise ZeroDivisionError("division by zero")
    return {"result": a / b}


@inline
def calculator_power(base: float, exponent: float) -> dict[str, float]:
    return {"result": base**exponent}


@inline
def calculator_sqrt(value: float) -> dict[str, float]:
    return {"result": math.sqrt(value)}


@inline
def calculator_percentage(value: float, percent: float) -> dict[str, float]:
    return {"result": value * percent / 100}


_CITIES = {
    "san francisco": (37.77, -122.42, 17.0, 12.0),
    "new york": (40.71, -74.01, 22.5, 9.0),
    "london": (51.51, -0.13, 14.0, 18.5),
    "paris": (48.86, 2.35, 16.5, 7.5),
    "tokyo": (35.68, 139.69, 24.0, 6.0),
}


@inline
def weather_current(location: str) -> dict[str, Any]:
    """Deterministic weather per city (unknown cities get a stable value from their name)."""
    key = location.strip().lower()
    if key in _CITIES:
        lat, lon, temp, wind = _CITIES[key]
    else:
        seed = sum(map(ord, key))
        lat, lon, temp, wind = (seed % 90, seed % 180, 10 + seed % 20, seed % 30)
    return {
        "location": location,
        "latitude": lat,
        "longitude": lon,
        "temperature": temp,
        "windspeed": wind,
        "status": "success",
    }


@inline
def weather_forecast(location: str, days: int = 7) -> dict[str, Any]:
    """A deterministic forecast: today's weather drifting by a fixed pattern."""
    now = weather_current(location)
    base = float(now["temperature"])
    forecast = [
        {
            "date": f"day-{d + 1}",
            "temperature_max": round(base + 3 + (d % 3), 1),
            "temperature_min": round(base - 4 - (d % 2), 1),
            "precipitation": float((d * 7) % 5),
            "weather_code": (d * 11) % 4,
        }
        for d in range(max(1, min(days, 7)))
    ]
    return {
        "location": location,
        "latitude": now["latitude"],
        "longitude": now["longitude"],
        "forecast": forecast,
        "status": "success",
    }


@inline
def text_stats(text: str) -> dict[str, Any]:
    words = text.split()
    return {"characters": len(text), "words": len(words), "longest": max(words, key=len) if words else ""}


@inline
def search_docs(query: str, limit: int = 3) -> dict[str, Any]:
    """A tiny offline 'search engine' over a fixed set of notes."""
    corpus = [
        ("OpenWorkflow", "An open specification for portable AI workflows: connectors, agents, workflows."),
        ("LangGraph", "A library for building stateful, multi-actor applications with LLMs as graphs."),
        ("Jupyter", "Notebooks that mix code, prose and rich outputs, run by kernels."),
        (
            "Backends",
            "Steps resolve to a backend: the step's, else the agent's, else the workflow's, else "
            "--prefer-backend, else native (sources: step, agent, workflow, prefer, default).",
        ),
    ]
    terms = [t for t in query.lower().split() if t]
    scored = []
    for title, body in corpus:
        text = f"{title} {body}".lower()
        score = sum(text.count(t) for t in terms)
        if score:
            scored.append((score, title, body))
    scored.sort(key=lambda s: (-s[0], s[1]))
    return {"results": [{"title": t, "snippet": b} for _, t, b in scored[:limit]], "query": query}
