"""GRPO diagnostics: series from TRL log history, smoothing, the held-out scores and callback, the figure."""
from __future__ import annotations

import math
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

from medlib.evaluation import inference
from medlib.training import grpo_diagnostics as gd
from medlib.training.rewards import build_reward_functions


def test_smooth_is_a_trailing_mean_of_the_same_length() -> None:
    assert gd.smooth([]) == []
    assert gd.smooth([2.0] * 7) == [2.0] * 7
    assert gd.smooth([0.0, 1.0, 2.0, 3.0], window=2) == [0.0, 0.5, 1.5, 2.5]
    assert len(gd.smooth(list(map(float, range(23))))) == 23


def test_diagnostic_series_keeps_rewards_diagnostics_and_heldout_only() -> None:
    history = [
        {"step": 1, "reward": 0.5, "rewards/format/mean": 1.0, "rewards/format/std": 0.0, "frac_reward_zero_std": 0.5,
         "loss": 0.1, "clip_ratio/region_mean": 0.0, "entropy": 0.3},
        {"step": 2, "reward": float("nan"), "kl": 0.01},
        {"train_runtime": 3.0},  # the final summary entry has no step
        {"step": 2, "heldout/accuracy": 0.75},
    ]
    series = gd.diagnostic_series(history)
    assert set(series) == {"reward", "rewards/format/mean", "frac_reward_zero_std", "clip_ratio/region_mean",
                           "entropy", "kl", "heldout/accuracy"}
    assert series["reward"] == ([1], [0.5])  # nan dropped
    assert series["heldout/accuracy"] == ([2], [0.75])
    summary = gd.series_summary({"reward": ([1, 2, 3, 4, 5, 6, 7, 8], [0.0, 0.0, 0.5, 0.5, 0.5, 0.5, 1.0, 1.0]),
                                 "heldout/accuracy": ([0, 10, 20, 30, 40], [0.5, 0.6, 0.6, 0.6, 0.9])}, window=2)
    assert summary["reward"] == {"first": 0.0, "last": 1.0, "change": 1.0, "points": 8}
    assert summary["heldout/accuracy"]["first"] == 0.5 and summary["heldout/accuracy"]["last"] == 0.9


RECORDS = [
    {"id": "a", "task": "counting", "dataset": "d", "answer": "2", "question": "How many?", "images": [],
     "meta": {"question_type": "count"}},
    {"id": "b", "task": "counting", "dataset": "d", "answer": "3", "question": "How many?", "images": [],
     "meta": {"question_type": "count"}},
    {"id": "c", "task": "vqa_closed", "dataset": "d", "answer": "yes", "choices": ["yes", "no"], "question": "Is?",
     "images": [], "meta": {"question_type": "presence"}},
]
RAWS = {"a": "<think>x</think><answer>2</answer>", "b": "<think>x</think><answer>1</answer>",
        "c": "<answer>yes</answer>"}


def _fake_predict(model, processor, records, data_root, **kwargs):
    """Canned greedy answers; asserts greedy decoding is what the held-out curve asks for."""
    assert not kwargs.get("do_sample", False)
    return [inference.prediction_from(r, RAWS[r["id"]], kwargs["checkpoint"]) for r in records]


def test_heldout_scores_use_the_rewards_and_the_task_metric(monkeypatch) -> None:
    monkeypatch.setattr(inference, "predict_records", _fake_predict)
    functions = build_reward_functions(["format", "accuracy"])
    scores = gd.heldout_scores(None, None, RECORDS, ".", functions, [0.2, 0.8], image_size=None,
                               answer_format="think_answer", system_prompt=None, max_new_tokens=24)
    # format: 1, 1, 0.5 (no think); accuracy: 1, 0 (off by two), 1
    assert math.isclose(scores["heldout/rewards/format_reward/mean"], 2.5 / 3)
    assert math.isclose(scores["heldout/rewards/accuracy_reward/mean"], 2 / 3)
    assert math.isclose(scores["heldout/reward"], (0.2 * 2.5 + 0.8 * 2) / 3)
    assert math.isclose(scores["heldout/accuracy"], 2 / 3)
    assert scores["heldout/accuracy/count"] == 0.5 and scores["heldout/accuracy/presence"] == 1.0
    assert math.isclose(scores["heldout/mae/count"], 1.0)


def test_heldout_callback_runs_at_start_every_n_steps_and_at_the_end(monkeypatch) -> None:
    monkeypatch.setattr(inference, "predict_records", _fake_predict)
    model = SimpleNamespace(training=True)
    model.train = lambda mode=True: setattr(model, "training", mode)
    callback = gd.HeldOutCallback(None, RECORDS, ".", build_reward_functions(["accuracy"]), [1.0], every=4,
                                  image_size=None, answer_format="think_answer", system_prompt=None, max_new_tokens=8)
    state = SimpleNamespace(global_step=0, max_steps=10, is_world_process_zero=True, log_history=[])
    callback.on_train_begin(None, state, None, model=model)
    for step in range(1, 11):
        state.global_step = step
        callback.on_step_end(None, state, None, model=model)
    assert [entry["step"] for entry in state.log_history] == [0, 4, 8, 10]
    assert model.training  # put back into training mode after each evaluation
    off = gd.HeldOutCallback(None, RECORDS, ".", [], [], every=0, image_size=None, answer_format="think_answer",
                             system_prompt=None, max_new_tokens=8)
    state.log_history.clear()
    off.on_train_begin(None, state, None, model=model)
    off.on_step_end(None, state, None, model=model)
    assert state.log_history == []


def test_diagnostics_figure_has_one_panel_per_available_diagnostic() -> None:
    steps = list(range(1, 21))
    series = {"reward": (steps, [0.1 * i for i in steps]), "rewards/accuracy/mean": (steps, [0.5] * 20),
              "frac_reward_zero_std": (steps, [0.5] * 20), "entropy": (steps, [0.2] * 20),
              "heldout/reward": ([0, 10, 20], [0.1, 0.2, 0.3]), "heldout/accuracy/count": ([0, 10, 20], [0.5] * 3)}
    titles = [title for title, _ in gd._panels(series)]
    assert titles == ["training reward (sampled rollouts)", "groups with all-equal rewards (no signal)", "entropy",
                      "held-out reward (greedy)", "held-out task metric (greedy)"]
    figure = gd.diagnostics_figure(series)
    assert len([ax for ax in figure.axes if ax.axison]) == 5


class _Scripted:
    """A held-out evaluation that returns the next scripted total reward (whatever the weights)."""

    def __init__(self, rewards: list[float]):
        self.rewards = list(rewards)

    def __call__(self, *args, **kwargs) -> dict[str, float]:
        return {"heldout/reward": self.rewards.pop(0)}


def _holds(model, value: float) -> bool:
    """Whether every weight of the model equals `value` (the step whose weights it carries)."""
    return all(float(v) == value for p in model.parameters() for v in p.detach().flatten())


def _train_with_best_kept(monkeypatch, tmp_path, rewards: list[float], *, stop_after: int | None = None,
                          model=None, state=None, save_at: tuple[int, ...] = ()):
    """Run the callback over 10 steps (evaluating at 0, 4, 8, 10; a checkpoint after each step of `save_at`),
    setting every weight to the step number."""
    import torch

    monkeypatch.setattr(gd, "heldout_scores", _Scripted(rewards))
    model = model or torch.nn.Linear(2, 1)
    callback = gd.HeldOutCallback(None, RECORDS, ".", [], [], every=4, image_size=None, answer_format="think_answer",
                                  system_prompt=None, max_new_tokens=8, keep_best_in=tmp_path)
    state = state or SimpleNamespace(global_step=0, max_steps=10, is_world_process_zero=True, log_history=[])
    if state.global_step == 0:
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(0.0)
    callback.on_train_begin(None, state, None, model=model)  # a resumed run (global_step > 0) evaluates nothing here
    for step in range(state.global_step + 1, (stop_after or 10) + 1):
        state.global_step = step
        with torch.no_grad():
            for parameter in model.parameters():
                parameter.fill_(float(step))
        callback.on_step_end(None, state, None, model=model)
        if step in save_at:
            callback.on_save(None, state, None, model=model)
    if stop_after is None:
        callback.on_train_end(None, state, None, model=model)
    return callback, model, state


def test_keep_best_heldout_ends_on_the_best_step_earliest_on_ties(monkeypatch, tmp_path) -> None:
    # Steps 0, 4, 8, 10 score 0.5, 0.7, 0.7, 0.6: step 4 is the best (step 8 only ties it).
    callback, model, _ = _train_with_best_kept(monkeypatch, tmp_path, [0.5, 0.7, 0.7, 0.6])
    assert _holds(model, 4.0)
    assert callback.kept == {"step": 4, "heldout_reward": 0.7, "last_step": 10, "last_heldout_reward": 0.6,
                             "restored": True}


def test_keep_best_heldout_keeps_the_start_when_nothing_beats_it(monkeypatch, tmp_path) -> None:
    callback, model, _ = _train_with_best_kept(monkeypatch, tmp_path, [0.9, 0.8, 0.9, 0.5])
    assert _holds(model, 0.0)  # the starting weights
    assert callback.kept["step"] == 0 and callback.kept["restored"]


def test_keep_best_heldout_leaves_the_last_step_alone_when_it_is_the_best(monkeypatch, tmp_path) -> None:
    callback, model, _ = _train_with_best_kept(monkeypatch, tmp_path, [0.1, 0.2, 0.3, 0.4])
    assert _holds(model, 10.0)
    assert callback.kept == {"step": 10, "heldout_reward": 0.4, "last_step": 10, "last_heldout_reward": 0.4,
                             "restored": False}


def test_keep_best_heldout_survives_an_interrupted_run(monkeypatch, tmp_path) -> None:
    import torch

    # The first run sees its best at step 4, saves checkpoint-8 and is killed after step 9; the rerun resumes at
    # step 8 and scores only step 10 (0.7): step 4 is still the best it knows.
    _train_with_best_kept(monkeypatch, tmp_path, [0.5, 0.9, 0.6], stop_after=9, save_at=(8,))
    resumed = SimpleNamespace(global_step=8, max_steps=10, is_world_process_zero=True, log_history=[])
    callback, model, _ = _train_with_best_kept(monkeypatch, tmp_path, [0.7], model=torch.nn.Linear(2, 1),
                                               state=resumed)
    assert callback.kept["step"] == 4 and callback.kept["heldout_reward"] == 0.9
    assert _holds(model, 4.0)


def test_keep_best_heldout_forgets_steps_after_the_checkpoint_a_run_resumes_from(monkeypatch, tmp_path) -> None:
    import torch

    # The first run saves checkpoint-4 (best so far: step 4, 0.6), then scores 0.95 at step 8 and is killed. The
    # rerun resumes from checkpoint-4, so step 8's first weights are gone: it chooses among 4 and its own 8, 10.
    _train_with_best_kept(monkeypatch, tmp_path, [0.5, 0.6, 0.95], stop_after=9, save_at=(4,))
    resumed = SimpleNamespace(global_step=4, max_steps=10, is_world_process_zero=True, log_history=[])
    callback, model, _ = _train_with_best_kept(monkeypatch, tmp_path, [0.65, 0.62], model=torch.nn.Linear(2, 1),
                                               state=resumed)
    assert callback.kept == {"step": 8, "heldout_reward": 0.65, "last_step": 10, "last_heldout_reward": 0.62,
                             "restored": True}
    assert _holds(model, 8.0)


def test_keep_best_heldout_refuses_weights_of_another_model(monkeypatch, tmp_path) -> None:
    import pytest
    import torch

    _train_with_best_kept(monkeypatch, tmp_path, [0.5, 0.9, 0.6], stop_after=9, save_at=(8,))
    with pytest.raises(RuntimeError, match="heldout_best.safetensors: its weights do not match"):
        gd.BestHeldOutStep(tmp_path).restore(torch.nn.Sequential(torch.nn.Linear(2, 1)))


def test_diagnostics_figure_marks_the_kept_step_on_the_heldout_panels() -> None:
    series = {"reward": ([1, 2, 3], [0.1, 0.2, 0.3]), "heldout/reward": ([0, 2], [0.5, 0.4])}
    figure = gd.diagnostics_figure(series, kept_step=0)
    labels = [[text.get_text() for text in ax.get_legend().get_texts()] if ax.get_legend() else []
              for ax in figure.axes if ax.axison]
    assert labels == [[], ["reward", "kept: step 0"]]
