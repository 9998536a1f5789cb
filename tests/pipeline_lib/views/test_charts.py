"""The web app's SVG bar chart: bars in the views' palette, a suppressed value said in words."""

from __future__ import annotations

from pipeline_lib.views.charts import bar_chart_svg
from pipeline_lib.views.palette import OKABE_ITO


def test_bars_take_the_palette_blue_and_a_missing_value_reads_suppressed() -> None:
    svg = bar_chart_svg(["public", "private"], [2.5, None], "Mean <score>")
    assert svg.count(f'fill="{OKABE_ITO["blue"]}"') == 1
    assert ">suppressed</text>" in svg
    assert "Mean &lt;score&gt;" in svg


def test_labels_get_room_up_to_half_the_chart_and_are_cut_past_it() -> None:
    svg = bar_chart_svg(["a school with a long name", "b"], [3.0, 4.0], "Students", width=640)
    # 25 characters of 7.5 px (188), 16 px to spare, the label's end 8 px before its bar.
    assert f'x="{188 + 16 - 8}" text-anchor="end">a school with a long name<' in svg
    cut = bar_chart_svg(["x" * 100], [1.0], "Students", width=640)
    assert "x" * 100 not in cut and "…</text>" in cut
    fits = int((320 - 16) / 7.5)
    assert f">{'x' * (fits - 1)}…</text>" in cut


def test_values_take_the_format_given_and_a_missing_one_the_words_given() -> None:
    svg = bar_chart_svg(
        ["public", "private"], [19_654.0, None], "Students", value_format="{:,.0f}", missing="hidden"
    )
    assert ">19,654</text>" in svg and 'font-style="italic">hidden</text>' in svg
