"""Notebook benchmarks: what ``%load_ext owf_magics`` adds to a fresh shell and a fresh kernel, and
the time to display the plan of a 200-step workflow (graph in every form, and the resolution table).

Run by ``make bench`` after bench/run.py; prints medians and flags values over their targets.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

TARGETS = {
    "%load_ext owf_magics, fresh IPython shell": 0.300,
    "%load_ext owf_magics, fresh Jupyter kernel": 0.300,
}

_SHELL_CODE = """
import time
from IPython.core.interactiveshell import InteractiveShell
ip = InteractiveShell.instance()
t = time.perf_counter()
ip.run_line_magic("load_ext", "owf_magics")
print(time.perf_counter() - t)
"""


def load_ext_in_shell(repeat: int = 5) -> float:
    """Median seconds of ``%load_ext owf_magics`` in a fresh interpreter with IPython imported."""
    times = []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", _SHELL_CODE], capture_output=True, text=True, check=True)
        times.append(float(out.stdout.strip().splitlines()[-1]))
    return statistics.median(times)


def load_ext_in_kernel(repeat: int = 3) -> float | None:
    """Median seconds of ``%load_ext owf_magics`` measured inside fresh ipykernel kernels."""
    try:
        from jupyter_client.manager import start_new_kernel
    except ImportError:
        return None
    code = (
        "import time as _t\n_t0 = _t.perf_counter()\n"
        "get_ipython().run_line_magic('load_ext', 'owf_magics')\n"
        "print(_t.perf_counter() - _t0)"
    )
    times = []
    for _ in range(repeat):
        km, kc = start_new_kernel(kernel_name="python3")
        try:
            texts: list[str] = []

            def hook(msg: dict[str, Any], sink: list[str] = texts) -> None:
                if msg["msg_type"] == "stream":
                    sink.append(msg["content"]["text"])

            kc.execute_interactive(code, output_hook=hook, timeout=60)
            times.append(float("".join(texts).strip().splitlines()[-1]))
        finally:
            kc.stop_channels()
            km.shutdown_kernel(now=True)
    return statistics.median(times)


def median(fn: Any, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def plan_display(n: int = 200) -> dict[str, float]:
    """Seconds to plan and render a generated `n`-step workflow, each form measured on its own."""
    from run import generated_workflow

    from owf_magics import OpenWorkflow
    from owf_magics.notebook.views import GraphView, ResolutionView, to_dot, to_mermaid, to_svg, to_text
    from owf_magics.notebook.views.graph import _svg_of, dot_available

    ow = OpenWorkflow()
    ow.load(generated_workflow(n))
    wf = ow.workflow("Big")
    plan = wf.plan()

    def display_all() -> None:
        _svg_of.cache_clear()  # a new plan is drawn by dot every time
        p = wf.plan()
        GraphView(p)._repr_mimebundle_()
        ResolutionView(p)._repr_mimebundle_()

    out = {
        f"display the plan of a {len(plan)}-step workflow (all forms)": median(display_all, 3),
        "  plan": median(wf.plan),
        "  mermaid text": median(lambda: to_mermaid(plan)),
        "  DOT text": median(lambda: to_dot(plan)),
        "  plain text": median(lambda: to_text(plan)),
        "  resolution table (HTML + text)": median(lambda: ResolutionView(plan)._repr_mimebundle_()),
    }
    if dot_available():

        def svg() -> None:
            _svg_of.cache_clear()
            to_svg(plan)

        out["  SVG through graphviz dot"] = median(svg, 3)
    return out


def run() -> dict[str, float]:
    results: dict[str, float] = {"%load_ext owf_magics, fresh IPython shell": load_ext_in_shell()}
    kernel = load_ext_in_kernel()
    if kernel is not None:
        results["%load_ext owf_magics, fresh Jupyter kernel"] = kernel
    results.update(plan_display())
    return results


def main() -> int:
    results = run()
    print()
    print(f"{'notebook':<62}{'median':>10}{'target':>10}")
    over = []
    for name, value in results.items():
        mark = ""
        target = TARGETS.get(name)
        if target is not None:
            mark = f"{target * 1000:>8.0f}ms"
            if value > target:
                over.append(name)
                mark += "  OVER"
        print(f"{name:<62}{value * 1000:>8.1f}ms{mark}")
    if over:
        print(f"over target: {', '.join(over)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
