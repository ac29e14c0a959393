"""Task instructions, answer formats and record → chat messages, shared by SFT, GRPO and inference."""
from __future__ import annotations

from typing import Any

ANSWER_FORMATS = ("think_answer", "answer_tags", "plain")

INSTRUCTIONS = {
    "think_answer": "Think briefly inside <think></think>, then give only the final answer inside "
                    "<answer></answer>.",
    "answer_tags": "Give only the final answer inside <answer></answer>.",
    "plain": "",
}


def _check_format(answer_format: str) -> None:
    """Raise a clear error for an unknown answer format."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"unknown answer_format {answer_format!r}; choose one of {ANSWER_FORMATS}")


def user_text(record: dict[str, Any], answer_format: str = "think_answer") -> str:
    """Return the user turn's text: the question, then the answer-format instruction."""
    _check_format(answer_format)
    instruction = INSTRUCTIONS[answer_format]
    return f"{record['question']}\n{instruction}" if instruction else record["question"]


def target_text(record: dict[str, Any], answer_format: str = "think_answer") -> str:
    """Return the assistant turn SFT teaches: reasoning line (if any) and the reference answer."""
    _check_format(answer_format)
    answer = str(record["answer"]).strip()
    if answer_format == "plain":
        return answer
    if answer_format == "answer_tags":
        return f"<answer>{answer}</answer>"
    rationale = (record.get("meta") or {}).get("rationale", "")
    return f"<think>{rationale}</think><answer>{answer}</answer>"


def user_message(record: dict[str, Any], answer_format: str = "think_answer") -> dict[str, Any]:
    """Return the user chat message: one image placeholder per image (current first), then the text."""
    content: list[dict[str, Any]] = [{"type": "image"} for _ in record.get("images", [])]
    content.append({"type": "text", "text": user_text(record, answer_format)})
    return {"role": "user", "content": content}


def prompt_messages(record: dict[str, Any], answer_format: str = "think_answer",
                    system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Return the conversation up to (not including) the assistant's answer."""
    messages: list[dict[str, Any]] = []
    if system_prompt:
        messages.append({"role": "system", "content": [{"type": "text", "text": system_prompt}]})
    messages.append(user_message(record, answer_format))
    return messages


def training_messages(record: dict[str, Any], answer_format: str = "think_answer",
                      system_prompt: str | None = None) -> list[dict[str, Any]]:
    """Return the full conversation SFT trains on: prompt plus the assistant target."""
    assistant = {"role": "assistant", "content": [{"type": "text", "text": target_text(record, answer_format)}]}
    return prompt_messages(record, answer_format, system_prompt) + [assistant]
