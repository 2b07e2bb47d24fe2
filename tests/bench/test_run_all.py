"""bench/run_all.py's verdicts: a goal on the ratio, on ours, or either of two."""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))

import run_all


def test_a_goal_checks_the_ratio_or_ours() -> None:
    assert run_all.met({"ratio": 0.9, "goal": ">= 0.95"}) == "**no**"
    assert run_all.met({"ratio": 1.2, "goal": "<= 1.5"}) == "yes"
    assert run_all.met({"ours": 0.4, "goal": "ours <= 0.5 s"}) == "yes"
    assert run_all.met({"ours": 0.4, "goal": "context"}) == ""


def test_two_goals_joined_by_or_are_met_by_either() -> None:
    goal = "ours <= 2 s or <= 1.5"
    assert run_all.met({"ours": 1.9, "ratio": 2.4, "goal": goal}) == "yes"  # within 2 s
    assert run_all.met({"ours": 2.6, "ratio": 1.4, "goal": goal}) == "yes"  # a slow machine, within 1.5x
    assert run_all.met({"ours": 2.6, "ratio": 2.4, "goal": goal}) == "**no**"
    assert run_all.met({"ours": 2.6, "ratio": None, "goal": goal}) == ""  # one part unreadable: no verdict
