"""The dashboards' figure style: the warm-up that loads fonts and the renderer runs once a process."""

from __future__ import annotations

from tests.processes import python_output

WARMED_TWICE = """
from matplotlib.figure import Figure
from pipeline_lib.views import style

drawn = []
savefig = Figure.savefig
Figure.savefig = lambda self, *args, **kwargs: drawn.append(1) or savefig(self, *args, **kwargs)
style.warm_up()
style.warm_up()  # the next dashboard in the same kernel
print(len(drawn))
"""


def test_the_warm_up_draws_once_a_process() -> None:
    # A new process: the tests' own may have warmed up already.
    assert python_output(WARMED_TWICE).strip() == "1"
