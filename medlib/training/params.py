"""Parameters of notebooks 20 (SFT) and 30 (GRPO): one declaration each, over what both share.

Fields named as in TRL's `SFTConfig`/`GRPOConfig` pass straight through to them
(`medlib.training.trl_config`); the LoRA fields are peft/Unsloth names (`medlib.models.lora`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from medlib.models.lora import LoraParams
from medlib.pipeline.common_params import ModelParams
from medlib.pipeline.declaration import param, retune

BEST_METRICS = ("eval_loss", "task_accuracy")


@dataclass
class TrainingParams(LoraParams, ModelParams):
    """What every training stage has: model loading, LoRA, memory, checkpoints, processes."""

    report_to: str = param("none", "none | tensorboard | wandb | trackio")
    finetune_mode: str = param("lora", "lora | full | none")
    load_in_4bit: bool = param(False, "QLoRA: 4-bit base weights (bitsandbytes, CUDA)")
    gradient_checkpointing: bool = param(True, "trade compute for memory")
    vision_cache_gib: float = param(4.0, "memory for the features of a frozen vision tower, each image encoded once (0: off)")
    weight_decay: float = param(0.0, "AdamW weight decay")
    optim: str = param("adamw_torch_fused", "optimizer (transformers' names; Unsloth's own default would be adamw_8bit)")
    max_seq_length: int = param(8192, "longest row in tokens, image tokens included: Unsloth loads and truncates at this length, so a longer row is an error on every backend")
    max_train_samples: int = param(-1, "cap on training questions (-1: all)")
    train_datasets: list[str] = param([], "data sets trained on (empty: all in data_dir)")
    train_tasks: list[str] = param([], "task types trained on (empty: all)")
    dataset_mix: dict[str, float] = param({}, "sampling ratios per data set, e.g. {\"VQA-RAD\": 1, \"SLAKE\": 2} (empty: as they come)")
    resume: bool = param(True, "continue from the newest complete checkpoint of this stage if there is one")
    num_processes: int = param(1, "training processes (GPUs); more than 1 launches torchrun")
    learning_rate: float = param(1e-4, "peak learning rate")
    lr_scheduler_type: str = param("cosine", "cosine | linear | constant ...")
    warmup_steps: float = param(0.1, "warm-up: steps, or a fraction of all steps if < 1")
    max_steps: int = param(-1, "optimizer steps (-1: use num_train_epochs)")
    per_device_train_batch_size: int = param(2, "batch size per device")
    gradient_accumulation_steps: int = param(8, "steps accumulated per optimizer step")
    logging_steps: int = param(10, "log the loss every N steps")
    save_steps: int = param(200, "checkpoint every N steps (0: never)")


@dataclass
class SFTParams(TrainingParams):
    """notebooks/20_sft.ipynb: one run of supervised fine-tuning (the schedule defaults are TrainingParams')."""

    num_train_epochs: float = param(1.0, "epochs (ignored when max_steps > 0)")
    dataloader_num_workers: int = param(0, "processes preparing batches (images → pixels) beside training (0: in the training loop)")
    eval_steps: int = param(200, "evaluate on the validation slice every N steps (0: never)")
    save_total_limit: int = param(2, "checkpoints kept on disk")
    max_eval_samples: int = param(200, "validation questions used for eval loss")
    curriculum: str = param("none", "none | shuffle | open_first (MEDICO: open-ended, then closed) | closed_first")
    early_stopping_patience: int = param(0, "stop after N evaluations without a better eval loss (0: off)")
    best_metric: str = param("eval_loss", "eval_loss | task_accuracy (from generations on a validation slice)")
    generation_eval_steps: int = param(0, "generate on the validation slice every N steps and log task accuracy (0: off)")
    generation_eval_samples: int = param(64, "validation questions generated at each such evaluation")
    save_merged: bool = param(False, "also save a merged 16-bit model next to the adapter")

    def conflicts(self) -> list[str]:
        """'field: why' for settings that cannot work together (refused when the profile is read)."""
        found = []
        if self.best_metric not in BEST_METRICS:
            found.append(f"best_metric: {self.best_metric!r} is not one of {', '.join(BEST_METRICS)}")
        if self.best_metric == "task_accuracy" and self.generation_eval_steps <= 0:
            found.append("best_metric: task_accuracy needs generation_eval_steps > 0 (it is scored on those "
                         "generations)")
        if self.early_stopping_patience > 0 and self.best_metric != "eval_loss":
            found.append("early_stopping_patience: stops on eval_loss only; with best_metric "
                         f"{self.best_metric!r} it would be ignored")
        if self.early_stopping_patience > 0 and self.eval_steps <= 0:
            found.append("early_stopping_patience: needs eval_steps > 0 (it counts evaluations)")
        elif self.early_stopping_patience > 0 and (self.save_steps <= 0 or self.save_steps % self.eval_steps):
            # It ends on the best evaluated checkpoint, so transformers needs one saved at every evaluation.
            found.append(f"save_steps: early stopping needs save_steps a multiple of eval_steps ({self.eval_steps}), "
                         f"got {self.save_steps}")
        return found


@dataclass
class GRPOParams(TrainingParams):
    """notebooks/30_grpo.ipynb: one GRPO run from the SFT checkpoint (or `init_checkpoint`)."""

    init_checkpoint: str = param("", "checkpoint to start from (empty: runs/<experiment>/sft/final; base: the base model, no SFT as in Med-R1)")
    reward_functions: list[str] = param(["format", "accuracy"], "names from medlib.training.rewards (the recipe of every task)")
    reward_weights: list[float] = param([0.2, 0.8], "one weight per reward function")
    reward_recipes: dict | str = param({}, "per-task recipes {task: {reward: weight}} that replace the default for that task, or a named recipe")
    # RL updates a model that already answers well: a tenth of SFT's rate, no decay, one group per step.
    learning_rate: float = retune(TrainingParams, "learning_rate", 1e-5)
    lr_scheduler_type: str = retune(TrainingParams, "lr_scheduler_type", "constant")
    warmup_steps: float = retune(TrainingParams, "warmup_steps", 0.0)
    max_steps: int = retune(TrainingParams, "max_steps", 500, "optimizer steps")
    per_device_train_batch_size: int = retune(TrainingParams, "per_device_train_batch_size", 8,
                                              "completions per device per step (× processes × accumulation: whole groups of num_generations)")
    gradient_accumulation_steps: int = retune(TrainingParams, "gradient_accumulation_steps", 1)
    num_generations: int = param(4, "completions per prompt (the group)")
    max_completion_length: int = param(256, "new tokens per completion")
    temperature: float = param(1.0, "sampling temperature of the rollouts")
    beta: float = param(0.0, "KL coefficient (0: no reference model)")
    loss_type: str = param("dapo", "grpo | dr_grpo | dapo | bnpo")
    epsilon: float = param(0.2, "lower clip of the policy ratio: 1 - epsilon")
    epsilon_high: float = param(0.2, "upper clip of the policy ratio: 1 + epsilon_high (TRL: as epsilon; DAPO: 0.28)")
    mask_truncated_completions: bool = param(False, "completions cut at max_completion_length add no loss (DAPO; Unsloth's default for an explicit dapo)")
    scale_rewards: str = param("group", "group | batch | none: divide advantages by the reward std (dr_grpo needs none)")
    importance_sampling_level: str = param("token", "token | sequence (GSPO)")
    logging_steps: int = retune(TrainingParams, "logging_steps", 5, "log rewards every N steps")
    save_steps: int = retune(TrainingParams, "save_steps", 100)
    rollout_engine: str = param("eager", "eager (TRL generate; Unsloth's own on that backend) | compiled (static KV cache + torch.compile, hf backend)")
    rollout_batch_steps: int = param(0, "generate the rollouts of this many optimizer steps in one batch (0: every step)")
    generation_eval_steps: int = param(50, "greedy answers on a fixed validation slice every N steps, scored by the rewards and the task metric: the held-out curve (0: off)")
    generation_eval_samples: int = param(64, "validation questions in that slice")
    keep_best_heldout: bool = param(False, "end on the held-out curve's best step (highest held-out reward, the earliest on ties; step 0 is the starting checkpoint), not the last")

    def conflicts(self) -> list[str]:
        """'field: why' for settings that cannot work together (refused when the profile is read)."""
        from medlib.training.rewards.recipes import recipe_from_params

        found = []
        try:
            recipe_from_params(self.reward_functions, self.reward_weights, self.reward_recipes)
        except ValueError as error:  # its messages start with the field they are about
            found.append(str(error))
        if self.num_generations < 2:
            found.append(f"num_generations: needs at least 2 (advantages compare completions of one prompt), "
                         f"got {self.num_generations}")
        elif self.rollout_batch_steps < 0:
            found.append(f"rollout_batch_steps: must be >= 0 (0: one generation per step), got {self.rollout_batch_steps}")
        else:
            # TRL samples whole groups: one generation batch spans the processes, micro-batches and rollout steps.
            factors = {"per_device_train_batch_size": self.per_device_train_batch_size,
                       "num_processes": max(self.num_processes, 1),
                       "gradient_accumulation_steps": self.gradient_accumulation_steps,
                       **({"rollout_batch_steps": self.rollout_batch_steps} if self.rollout_batch_steps else {})}
            generation_batch = math.prod(factors.values())
            if generation_batch % self.num_generations:
                product = " × ".join(f"{name} {value}" for name, value in factors.items())
                found.append(f"num_generations: {self.num_generations} does not divide the generation batch "
                             f"({generation_batch} completions = {product}); TRL samples whole groups")
        if self.loss_type == "dr_grpo" and self.scale_rewards not in ("none", False):  # False: TRL's old "none"
            found.append(f"scale_rewards: loss_type dr_grpo needs scale_rewards: none, got {self.scale_rewards!r}")
        if self.keep_best_heldout and self.generation_eval_steps <= 0:
            found.append("keep_best_heldout: needs generation_eval_steps > 0 (it chooses among the held-out "
                         "curve's steps)")
        return found
