"""The web app's SVG bar chart: bars in the views' palette, a suppressed value said in words."""

from __future__ import annotations

from pipeline_lib.views.charts import bar_chart_svg
from pipeline_lib.views.palette import OKABE_ITO


def test_bars_take_the_palette_blue_and_a_missing_value_reads_suppressed() -> None:
    svg = bar_chart_svg(["public", "private"], [2.5, None], "Mean <score>")
    assert svg.count(f'fill="{OKABE_ITO["blue"]}"') == 1
    assert ">suppressed</text>" in svg
    assert "Mean &lt;score&gt;" in svg
