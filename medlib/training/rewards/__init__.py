"""GRPO rewards as plain functions with TRL's signature (one module per kind), the registry and per-task recipes."""
from medlib.training.rewards.answers import (
    NUMERIC_STEPS,
    OFF_BY_ONE_COUNT_REWARD,
    PERCENT_RANGE,
    accuracy_reward,
    choice_reward,
    exact_reward,
    math_verify_available,
    numeric_reward,
)
from medlib.training.rewards.columns import RewardFunction
from medlib.training.rewards.flare_task5 import flare_task5_reward
from medlib.training.rewards.format import (
    COPY_SIMILARITY,
    REPORT_WORDS,
    answer_format_reward,
    format_reward,
    report_format_reward,
)
from medlib.training.rewards.medr1 import medr1_accuracy_reward, medr1_format_nothink_reward, medr1_format_reward
from medlib.training.rewards.registry import (
    OPTIONAL_REWARDS,
    REWARD_BOUNDS,
    REWARD_FUNCTIONS,
    build_reward_functions,
)
from medlib.training.rewards.structured import (
    DETECTION_IOU_THRESHOLD,
    count_reward,
    detection_f1_reward,
    detection_iou_reward,
    multilabel_f1_reward,
)
from medlib.training.rewards.text import clinical_f1_reward, radgraph_available, radgraph_f1_reward, rouge_l_reward

__all__ = ["RewardFunction", "OFF_BY_ONE_COUNT_REWARD", "NUMERIC_STEPS", "PERCENT_RANGE", "REPORT_WORDS",
           "COPY_SIMILARITY", "DETECTION_IOU_THRESHOLD", "REWARD_FUNCTIONS", "REWARD_BOUNDS", "OPTIONAL_REWARDS",
           "format_reward", "answer_format_reward", "report_format_reward", "accuracy_reward", "choice_reward",
           "numeric_reward", "math_verify_available", "exact_reward", "multilabel_f1_reward", "detection_f1_reward",
           "detection_iou_reward", "count_reward", "rouge_l_reward", "clinical_f1_reward", "radgraph_available",
           "radgraph_f1_reward", "medr1_format_reward", "medr1_format_nothink_reward", "medr1_accuracy_reward",
           "flare_task5_reward", "build_reward_functions"]
