"""Chains of `after` lines that meet again: a pasted duplicate line is left out with a warning,
a follower reached along two paths (a diamond) is listed once after all of its upstreams, and
reading and expanding a schedule stay linear in its lines, whatever their shape."""

from __future__ import annotations

import itertools

import pytest

from pipeline_lib.runs.schedule import Job, ScheduleError, parse_schedule


def _steps(text: str, *notebooks: str, at_most: int = 10_000) -> list[tuple[int, int, str]]:
    """(depth, line, command) of the chain; cut short, so a chain that multiplies fails fast."""
    chain = parse_schedule(text, "crontab").chain(notebooks)
    return [(depth, job.line, job.command) for depth, job in itertools.islice(chain, at_most)]


def _duplicated_ladder(depth: int) -> str:
    """The audit's file: each `after` line of a chain written twice (a paste)."""
    lines = ["0 * * * * n0"]
    for i in range(1, depth + 1):
        lines += [f"after n{i - 1} n{i}"] * 2
    return "\n".join(lines)


def _diamond_ladder(depth: int) -> list[str]:
    """n0 followed by a{i} and b{i}, each followed by n{i}: a diamond at each of `depth` levels."""
    lines = ["0 * * * * n0"]
    for i in range(1, depth + 1):
        lines += [f"after n{i - 1} a{i}", f"after n{i - 1} b{i}", f"after a{i} n{i}", f"after b{i} n{i}"]
    return lines


def test_a_pasted_duplicate_after_line_is_left_out_naming_both_lines() -> None:
    """Refused, it stopped a schedule that ran before; a follower runs once per run of its chain
    however often it is written (review), so the repeat is left out with a warning."""
    line = "after process report -p seed 3"
    text = f"5 * * * * process\n{line}\n# pasted again:\n{line.replace(' ', '  ')}\n"
    schedule = parse_schedule(text, "crontab")
    assert [f.line for f in schedule.followers] == [2]
    assert schedule.ignored == [
        "crontab, line 4: `after process report -p seed 3` repeats line 2, so it is left out (remove it)"
    ]


def test_the_audited_ladder_of_duplicated_lines_runs_each_notebook_once() -> None:
    """Twenty rungs of `after n{i-1} n{i}` written twice listed 2,097,150 entries (audit)."""
    schedule = parse_schedule(_duplicated_ladder(20), "crontab")
    assert [job.notebook for _, job in schedule.chain(["n0"])] == [f"n{i}" for i in range(1, 21)]
    assert len(schedule.ignored) == 20


def test_a_follower_reached_along_two_paths_is_listed_once_under_the_last_of_them() -> None:
    diamond = "5 * * * * a\nafter a b\nafter a c\nafter b d\nafter c d\n"
    assert _steps(diamond, "a") == [(1, 2, "b"), (1, 3, "c"), (2, 5, "d")]


def test_a_follower_reached_along_two_paths_comes_after_the_longer_one() -> None:
    uneven = "5 * * * * a\nafter a b\nafter a c\nafter b d\nafter c e\nafter e d\n"
    assert _steps(uneven, "a") == [(1, 2, "b"), (1, 3, "c"), (2, 5, "e"), (3, 6, "d")]


def test_a_ladder_of_diamonds_lists_each_notebook_once_after_all_it_follows() -> None:
    lines = _diamond_ladder(20)
    steps = _steps("\n".join(lines), "n0")
    assert len(steps) == 60 and len({command for _, _, command in steps}) == 60
    position = {command: index for index, (_, _, command) in enumerate(steps)} | {"n0": -1}
    for line in lines[1:]:
        _, upstream, follower = line.split()
        assert position[upstream] < position[follower], line


def test_a_notebook_run_with_two_sets_of_options_runs_twice_and_its_follower_once() -> None:
    text = "5 * * * * a\nafter a d -p n 1\nafter a d -p n 2\nafter d e\n"
    assert _steps(text, "a") == [(1, 2, "d -p n 1"), (1, 3, "d -p n 2"), (2, 4, "e")]


def test_a_chain_of_a_thousand_and_more_lines_reads_and_expands() -> None:
    """Reading once took cubic time (5 s for 800 lines) and expanding recursed once per line."""
    text = "\n".join(["0 * * * * n0", *(f"after n{i - 1} n{i}" for i in range(1, 1200))])
    steps = _steps(text, "n0")
    assert [command for _, _, command in steps] == [f"n{i}" for i in range(1, 1200)]
    assert steps[-1][0] == 1199


def test_a_cycle_behind_a_diamond_is_still_refused_at_its_first_line() -> None:
    text = "5 * * * * process\nafter process a\nafter a b\nafter a c\nafter c b\nafter b a\n"
    with pytest.raises(
        ScheduleError, match=r"crontab, line 3: `after a b` makes a cycle of followers: a -> b -> a"
    ):
        parse_schedule(text, "crontab")


def test_a_start_notebook_that_a_follower_also_runs_releases_its_followers_after_that_follower() -> None:
    """`all` ran clean and process; `after clean process -p seed 3` runs process again: report,
    which follows process, runs once, after both."""
    text = "@yearly all\nafter clean process -p seed 3\nafter process report\n"
    assert _steps(text, "clean", "process") == [(1, 2, "process -p seed 3"), (2, 3, "report")]


def test_chain_lists_the_lines_as_jobs_of_the_schedule() -> None:
    schedule = parse_schedule("5 * * * * a\nafter a b\n")
    assert list(schedule.chain(["a"])) == [(1, Job(2, "", ("b",), after="a"))]
