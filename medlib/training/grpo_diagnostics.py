"""GRPO diagnostics: the logged series that say whether a run learns, a held-out curve, and their figure.

TRL logs per step the reward of each component and the weighted total, `frac_reward_zero_std` (groups whose
rewards are all equal: zero advantage, no learning signal), `kl` (only when beta > 0), the clip ratios, the
entropy and the completion lengths. `HeldOutCallback` adds greedy answers on a fixed validation slice every N
steps, scored by the same rewards and by the task metric (`heldout/...` keys), so a run shows whether the policy
improves on questions it does not train on; with `keep_best_heldout` the run ends on that curve's best step.
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

TOTAL_REWARD_KEY = "reward"  # TRL's key for the weighted total reward
HELDOUT_PREFIX = "heldout/"
# The trainable weights of the best held-out step, in the run folder: as of the last trainer checkpoint, and newer.
BEST_WEIGHTS_FILE = "heldout_best.safetensors"
PENDING_WEIGHTS_FILE = "heldout_best.pending.safetensors"
# TRL 1.16 GRPOTrainer log keys worth watching beside the rewards (absent ones are skipped).
DIAGNOSTIC_KEYS = ("reward_std", "frac_reward_zero_std", "kl", "entropy", "clip_ratio/region_mean",
                   "clip_ratio/low_mean", "clip_ratio/high_mean", "completions/mean_length",
                   "completions/clipped_ratio", "learning_rate", "grad_norm")


def wanted_key(key: str) -> bool:
    """Whether a log key is a reward, a diagnostic or a held-out score."""
    return ((key.startswith("rewards/") and key.endswith("/mean")) or key == TOTAL_REWARD_KEY
            or key in DIAGNOSTIC_KEYS or key.startswith(HELDOUT_PREFIX))


def diagnostic_series(log_history: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """Every wanted key of the log history as (steps, values), finite values only."""
    series: dict[str, tuple[list[int], list[float]]] = {}
    for entry in log_history:
        if "step" not in entry:
            continue
        for key, value in entry.items():
            if wanted_key(key) and isinstance(value, (int, float)) and math.isfinite(value):
                steps, values = series.setdefault(key, ([], []))
                steps.append(int(entry["step"]))
                values.append(float(value))
    return series


def smooth(values: Sequence[float], window: int | None = None) -> list[float]:
    """Trailing mean over `window` points (default: a fifth of the series, at least 1), same length as values."""
    if not values:
        return []
    window = window or max(1, len(values) // 5)
    out, total = [], 0.0
    for i, value in enumerate(values):
        total += value
        if i >= window:
            total -= values[i - window]
        out.append(total / min(i + 1, window))
    return out


def series_summary(series: dict[str, tuple[list[int], list[float]]], window: int = 5) -> dict[str, dict]:
    """Per series: mean of the first and last `window` points (at most a quarter of them), and the change."""
    summary = {}
    for key, (_, values) in series.items():
        span = min(window, max(1, len(values) // 4))  # a 5-point held-out curve compares its ends, not its mean
        head, tail = values[:span], values[-span:]
        first, last = sum(head) / len(head), sum(tail) / len(tail)
        summary[key] = {"first": first, "last": last, "change": last - first, "points": len(values)}
    return summary


def heldout_scores(model: Any, processor: Any, records: list[dict[str, Any]], data_root: str | Path,
                   reward_funcs: Sequence[Any], weights: Sequence[float], *, image_size: int | None,
                   answer_format: str, system_prompt: str | None, max_new_tokens: int,
                   batch_size: int = 32) -> dict[str, float]:
    """Greedy answers on `records` scored by each reward, the weighted total and the task metric (flat keys)."""
    from medlib.evaluation import inference, metrics
    from medlib.training.rewards.recipes import total_rewards

    predictions = inference.predict_records(
        model, processor, records, data_root, checkpoint="heldout", image_size=image_size,
        answer_format=answer_format, system_prompt=system_prompt, batch_size=batch_size,
        max_new_tokens=max_new_tokens, progress=False)
    completions = [p["raw"] for p in predictions]  # records with an unreadable image are skipped there
    columns = {"answer": [p["answer"] for p in predictions], "task": [p["task"] for p in predictions],
               "choices": [p.get("choices") for p in predictions]}
    scores = [list(function([None] * len(predictions), completions, **columns)) for function in reward_funcs]
    result: dict[str, float] = {}
    for function, values in zip(reward_funcs, scores, strict=True):
        scored = [v for v in values if v is not None]  # a reward scoped to other tasks returns None
        if scored:
            result[f"rewards/{function.__name__}/mean"] = sum(scored) / len(scored)
    totals = total_rewards(list(weights), scores)
    result[TOTAL_REWARD_KEY] = sum(totals) / len(totals)
    scored_predictions = metrics.score_predictions(predictions)
    result["accuracy"] = scored_predictions["overall"]["accuracy"]
    result["format_valid"] = scored_predictions["overall"]["format_valid"]
    for question_type, group in scored_predictions["by_question_type"].items():
        result[f"accuracy/{question_type}"] = group["accuracy"]
        if "mae" in group and math.isfinite(group["mae"]):
            result[f"mae/{question_type}"] = group["mae"]
    return {HELDOUT_PREFIX + key: float(value) for key, value in result.items()}


def trainable_weights(model: Any) -> dict[str, Any]:
    """The weights training changes (all of a full fine-tune, the adapter of a LoRA run), detached on the CPU."""
    return {name: parameter.detach().to("cpu").contiguous()
            for name, parameter in model.named_parameters() if parameter.requires_grad}


class BestHeldOutStep:
    """The held-out curve's best step so far (highest total reward, the earliest on ties) and its weights on disk.

    A new best is written as pending and committed when the trainer next saves a checkpoint: a run resumed from
    that checkpoint never keeps weights of steps it threw away. Step and reward travel in the file's metadata, and
    each file is replaced atomically.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self.step: int | None = None
        self.reward = -math.inf
        self.pending = False  # whether the best so far is newer than the last trainer checkpoint

    def load(self) -> None:
        """Pick up the committed best of an interrupted run; drop the pending one of the steps after its checkpoint."""
        (self.folder / PENDING_WEIGHTS_FILE).unlink(missing_ok=True)
        committed = self.folder / BEST_WEIGHTS_FILE
        if committed.exists():
            from safetensors import safe_open

            with safe_open(str(committed), framework="pt") as handle:
                metadata = handle.metadata() or {}
            self.step, self.reward = int(metadata["step"]), float(metadata["reward"])

    def offer(self, step: int, reward: float, model: Any) -> bool:
        """Keep the weights of `model` (pending) when `reward` beats the best so far; return whether it did."""
        if not (math.isfinite(reward) and reward > self.reward):
            return False
        from safetensors.torch import save_file

        self.folder.mkdir(parents=True, exist_ok=True)
        partial = self.folder / (PENDING_WEIGHTS_FILE + ".partial")
        save_file(trainable_weights(model), str(partial), metadata={"step": str(step), "reward": repr(reward)})
        os.replace(partial, self.folder / PENDING_WEIGHTS_FILE)
        self.step, self.reward, self.pending = step, reward, True
        return True

    def commit(self) -> None:
        """The trainer saved a checkpoint: the pending best is now one of the steps a resumed run keeps."""
        if self.pending:
            os.replace(self.folder / PENDING_WEIGHTS_FILE, self.folder / BEST_WEIGHTS_FILE)
            self.pending = False

    def restore(self, model: Any) -> None:
        """Copy the best step's weights into `model` (the same trainable parameters, by name)."""
        import torch
        from safetensors.torch import load_file

        path = self.folder / (PENDING_WEIGHTS_FILE if self.pending else BEST_WEIGHTS_FILE)
        saved = load_file(str(path))
        current = {name: parameter for name, parameter in model.named_parameters() if parameter.requires_grad}
        if set(saved) != set(current):
            raise RuntimeError(f"{path}: its weights do not match the model's trainable parameters "
                               f"({len(saved)} saved, {len(current)} trainable)")
        with torch.no_grad():
            for name, parameter in current.items():
                parameter.copy_(saved[name].to(parameter.device, parameter.dtype))

    def remove_files(self) -> None:
        """Delete every copy (committed, pending, half-written): the final checkpoint holds the kept weights."""
        for name in (BEST_WEIGHTS_FILE, PENDING_WEIGHTS_FILE):
            for path in (self.folder / name, self.folder / (name + ".partial")):
                path.unlink(missing_ok=True)


class HeldOutCallback(TrainerCallback):
    """Before training and every `every` steps: greedy answers on a fixed validation slice, logged as `heldout/*`;
    with `keep_best_in`, the weights of the best step are kept there and put back at the end of training."""

    def __init__(self, processor: Any, records: list[dict[str, Any]], data_root: str | Path,
                 reward_funcs: Sequence[Any], weights: Sequence[float], *, every: int, image_size: int | None,
                 answer_format: str, system_prompt: str | None, max_new_tokens: int,
                 keep_best_in: str | Path | None = None):
        self.processor, self.records, self.data_root = processor, records, data_root
        self.reward_funcs, self.weights, self.every = list(reward_funcs), list(weights), every
        self.options = {"image_size": image_size, "answer_format": answer_format, "system_prompt": system_prompt,
                        "max_new_tokens": max_new_tokens}
        self.best = BestHeldOutStep(keep_best_in) if keep_best_in is not None else None
        self.kept: dict[str, Any] | None = None  # what on_train_end did, for the run's summary

    def _evaluate(self, state: Any, model: Any) -> None:
        """Score the slice with the current weights and append one `heldout/*` entry to the log history."""
        unwrapped = getattr(model, "module", model)
        was_training = unwrapped.training
        # Greedy decoding draws no random numbers, so the training's sampling stream is untouched.
        scores = heldout_scores(unwrapped, self.processor, self.records, self.data_root, self.reward_funcs,
                                self.weights, **self.options)
        unwrapped.train(was_training)
        state.log_history.append({"step": state.global_step, **scores})
        if self.best is not None:
            self.best.offer(state.global_step, scores[HELDOUT_PREFIX + TOTAL_REWARD_KEY], unwrapped)

    def on_train_begin(self, args, state, control, model=None, **kwargs):
        """The starting point (step 0) of a fresh run; a resumed run's best step so far."""
        if self.best is not None and state.is_world_process_zero:
            self.best.load()
        if self.every > 0 and state.global_step == 0 and state.is_world_process_zero:
            self._evaluate(state, model)
        return control

    def on_save(self, args, state, control, **kwargs):
        """A checkpoint was written: commit the best step found up to it."""
        if self.best is not None and state.is_world_process_zero:
            self.best.commit()
        return control

    def on_step_end(self, args, state, control, model=None, **kwargs):
        """Every `every` steps and at the last step (main process only)."""
        due = state.global_step % self.every == 0 or state.global_step == state.max_steps if self.every > 0 else False
        if due and state.is_world_process_zero:
            self._evaluate(state, model)
        return control

    def on_train_end(self, args, state, control, model=None, **kwargs):
        """Put the best held-out step's weights back (main process, which saves the final checkpoint)."""
        if self.best is None or not state.is_world_process_zero:
            return control
        if self.best.step is None:
            print("[medlib] grpo: keep_best_heldout kept no step (no finite held-out reward was scored in this run); "
                  "the run ends on its last step", flush=True)
            return control
        unwrapped = getattr(model, "module", model)
        last = next((entry[HELDOUT_PREFIX + TOTAL_REWARD_KEY] for entry in reversed(state.log_history)
                     if HELDOUT_PREFIX + TOTAL_REWARD_KEY in entry), None)
        restored = self.best.step != state.global_step
        if restored:
            self.best.restore(unwrapped)
        self.kept = {"step": self.best.step, "heldout_reward": self.best.reward, "last_step": state.global_step,
                     "last_heldout_reward": last, "restored": restored}
        print(f"[medlib] grpo: keep_best_heldout ends on step {self.best.step} (held-out reward "
              f"{self.best.reward:.4f}; the last step, {state.global_step}, had {last})", flush=True)
        return control


def _panels(series: dict[str, tuple[list[int], list[float]]]) -> list[tuple[str, list[str]]]:
    """(title, keys) of each panel that has data: rewards, signal, KL/clip, entropy, length, held-out."""
    rewards = [TOTAL_REWARD_KEY] + sorted(k for k in series if k.startswith("rewards/"))
    heldout_rewards = [HELDOUT_PREFIX + TOTAL_REWARD_KEY] + sorted(
        k for k in series if k.startswith(HELDOUT_PREFIX + "rewards/"))
    heldout_metric = sorted(k for k in series if k.startswith((HELDOUT_PREFIX + "accuracy", HELDOUT_PREFIX + "mae")))
    wanted = [("training reward (sampled rollouts)", rewards),
              ("groups with all-equal rewards (no signal)", ["frac_reward_zero_std"]),
              ("KL to the reference", ["kl"]),
              ("clipped ratio (policy ratio outside 1±ε)", ["clip_ratio/region_mean", "clip_ratio/low_mean",
                                                            "clip_ratio/high_mean"]),
              ("entropy", ["entropy"]),
              ("completion length (tokens)", ["completions/mean_length"]),
              ("completions cut at max length", ["completions/clipped_ratio"]),
              ("held-out reward (greedy)", heldout_rewards),
              ("held-out task metric (greedy)", heldout_metric)]
    return [(title, [k for k in keys if k in series]) for title, keys in wanted if any(k in series for k in keys)]


def diagnostics_figure(series: dict[str, tuple[list[int], list[float]]], title: str = "GRPO diagnostics",
                       kept_step: int | None = None):
    """One panel per diagnostic: raw points (faint) with a trailing-mean line; held-out curves as points joined,
    with the step `keep_best_heldout` kept marked."""
    import matplotlib.pyplot as plt

    panels = _panels(series)
    columns = 3
    rows = max(1, math.ceil(len(panels) / columns))
    fig, axes = plt.subplots(rows, columns, figsize=(4.8 * columns, 3.3 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (panel_title, keys) in zip(axes.flat, panels):
        for index, key in enumerate(keys):
            steps, values = series[key]
            color = f"C{index}"
            label = key.removeprefix(HELDOUT_PREFIX)
            if key.startswith(HELDOUT_PREFIX):  # few points, each already an average over the slice
                ax.plot(steps, values, marker="o", markersize=3, color=color, label=label)
            else:
                ax.scatter(steps, values, s=6, alpha=0.3, color=color)
                ax.plot(steps, smooth(values), color=color, label=label)
        marks_kept = kept_step is not None and any(key.startswith(HELDOUT_PREFIX) for key in keys)
        if marks_kept:
            ax.axvline(kept_step, color="0.4", linestyle="--", linewidth=1, label=f"kept: step {kept_step}")
        ax.set_title(panel_title, fontsize=10)
        ax.set_xlabel("step")
        if len(keys) > 1 or marks_kept:
            ax.legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def heldout_callback(settings: Any, processor: Any, reward_funcs: Sequence[Any], weights: Sequence[float],
                     run_folder: str | Path | None = None) -> HeldOutCallback | None:
    """The held-out callback a GRPO run's parameters ask for (`generation_eval_steps` > 0), on the validation split;
    `keep_best_heldout` keeps its best step's weights in `run_folder`."""
    keep_best = settings.keep_best_heldout  # without generation_eval_steps: refused by GRPOParams.conflicts
    if keep_best and run_folder is None:
        raise ValueError("grpo.keep_best_heldout needs a run folder to keep the best step's weights in")
    if settings.generation_eval_steps <= 0:
        return None
    from medlib import data
    from medlib.pipeline import workspace

    path = workspace.split_path(settings.data_dir, "validation")
    if not Path(path).exists():
        raise FileNotFoundError(f"{path}: generation_eval_steps > 0 needs a validation split for the held-out curve")
    records = data.read_records(path)[:settings.generation_eval_samples]
    return HeldOutCallback(processor, records, settings.data_dir, reward_funcs, weights,
                           every=settings.generation_eval_steps, image_size=settings.image_size,
                           answer_format=settings.answer_format, system_prompt=settings.system_prompt or None,
                           max_new_tokens=settings.max_completion_length,
                           keep_best_in=run_folder if keep_best else None)
