"""The examples in the reward modules' docstrings are tests: every module of medlib.training.rewards runs them."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest

import medlib.training.rewards as rewards_package

MODULES = sorted(f"{rewards_package.__name__}.{info.name}" for info in pkgutil.iter_modules(rewards_package.__path__))


@pytest.mark.parametrize("name", MODULES)
def test_reward_module_doctests(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0


def test_every_reward_function_has_an_example() -> None:
    from medlib.training.rewards import OPTIONAL_REWARDS, REWARD_FUNCTIONS

    without = [name for name, function in REWARD_FUNCTIONS.items()
               if name not in OPTIONAL_REWARDS and ">>> " not in (function.__doc__ or "")]
    assert without == []


def test_the_evaluation_boxes_examples() -> None:
    assert doctest.testmod(importlib.import_module("medlib.evaluation.boxes")).failed == 0


def test_the_answer_probability_examples() -> None:
    result = doctest.testmod(importlib.import_module("medlib.evaluation.answer_probabilities"))
    assert result.attempted > 0 and result.failed == 0
