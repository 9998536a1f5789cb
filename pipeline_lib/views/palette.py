"""The colours of every view: the Okabe-Ito palette (distinguishable with every common
colour-vision deficiency), the cycle for unnamed groups and one fixed colour per known group.

Plain strings, no matplotlib: the web app's SVG charts use them without loading a plotting library.
"""

from __future__ import annotations

# Okabe & Ito (2008), "Color Universal Design".
OKABE_ITO = {
    "orange": "#E69F00",
    "sky_blue": "#56B4E9",
    "bluish_green": "#009E73",
    "yellow": "#F0E442",
    "blue": "#0072B2",
    "vermillion": "#D55E00",
    "reddish_purple": "#CC79A7",
    "black": "#000000",
}
GREY = "#8C8C8C"  # suppressed or out-of-focus marks
# Yellow is left out of the cycle: too light on white for thin lines and small markers.
CYCLE = [OKABE_ITO[c] for c in ("blue", "orange", "bluish_green", "vermillion", "reddish_purple", "sky_blue")]
# The same group keeps its colour on every view.
GROUP_COLOURS: dict[str, dict[str, str]] = {
    "sector": {
        "public": OKABE_ITO["blue"],
        "catholic": OKABE_ITO["orange"],
        "private": OKABE_ITO["bluish_green"],
        "all": OKABE_ITO["black"],
    },
    "sex": {
        "female": OKABE_ITO["reddish_purple"],
        "male": OKABE_ITO["sky_blue"],
        "other": OKABE_ITO["vermillion"],
    },
    "minority": {"True": OKABE_ITO["vermillion"], "False": OKABE_ITO["blue"]},
}


def colour(group: str, value: object, index: int = 0) -> str:
    """A group's colour: fixed for known groups, else the cycle by position."""
    return GROUP_COLOURS.get(group, {}).get(str(value), CYCLE[index % len(CYCLE)])
