"""The web app's SVG bar chart: bars in the views' palette, a suppressed value said in words."""

from __future__ import annotations

from xml.etree import ElementTree

import pytest

from pipeline_lib.views.charts import bar_chart_svg, svg_data_url, text_px
from pipeline_lib.views.palette import OKABE_ITO


def test_bars_take_the_palette_blue_and_a_missing_value_reads_suppressed() -> None:
    svg = bar_chart_svg(["public", "private"], [2.5, None], "Mean <score>")
    assert svg.count(f'fill="{OKABE_ITO["blue"]}"') == 1
    assert ">suppressed</text>" in svg
    assert "Mean &lt;score&gt;" in svg


def _texts(svg: str) -> list[tuple[float, str, str]]:
    """Each bar row's text: (x, anchor, text), the SVG parsed as XML (so it must be well formed)."""
    root = ElementTree.fromstring(svg)
    return [
        (float(t.get("x", 0)), t.get("text-anchor", "start"), t.text or "")
        for t in root.iter("{http://www.w3.org/2000/svg}text")
        if t.get("font-size") == "13"
    ]


@pytest.mark.parametrize(
    "labels",
    [
        ["a school with a rather long name", "b"],
        ["W" * 30, "m" * 30],  # the widest letters
        ["学校" * 12],
        ["x" * 200],  # cut
    ],
)
def test_every_label_and_value_lies_inside_the_chart(labels: list[str]) -> None:
    values = [-1_234_567.0, *[1_234_567.0] * (len(labels) - 1)]
    svg = bar_chart_svg(labels, values, "Students", value_format="{:,.0f}")
    for x, anchor, text in _texts(svg):
        start, end = (x - text_px(text), x) if anchor == "end" else (x, x + text_px(text))
        assert start >= 0 and end <= 640, text


def test_a_label_longer_than_a_third_of_the_chart_is_cut_with_an_ellipsis() -> None:
    (_, _, label), _value = _texts(bar_chart_svg(["x" * 200], [1.0], "Students"))
    assert label.endswith("…") and set(label[:-1]) == {"x"} and text_px(label) <= 640 / 3 - 16


def test_characters_xml_cannot_hold_are_dropped() -> None:
    svg = bar_chart_svg(["a\x00b\x0bc\ud800d", "e"], [1.0, None], "T\x01itle", missing="hid\x1bden")
    assert [text for _, _, text in _texts(svg)] == ["abcd", "1", "e", "hidden"]
    assert "<title>Title</title>" in svg
    svg_data_url(svg)  # encodes


def test_values_take_the_format_given_and_a_missing_one_the_words_given() -> None:
    svg = bar_chart_svg(
        ["public", "private"], [19_654.0, None], "Students", value_format="{:,.0f}", missing="hidden"
    )
    assert ">19,654</text>" in svg and 'font-style="italic">hidden</text>' in svg


def test_by_default_whole_numbers_read_as_such_and_others_to_three_digits() -> None:
    assert ">19,654</text>" in bar_chart_svg(["a", "b"], [19_654.0, 3.0], "Students")
    assert ">0.123</text>" in bar_chart_svg(["a", "b"], [0.12345, 3.0], "Share")
