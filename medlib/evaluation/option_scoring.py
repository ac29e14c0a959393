"""A confidence per closed-form answer from the model's own probabilities over the answer options.

Each option is scored as the continuation SFT trains on: the inference prompt (chat template with the
generation prompt, `medlib.data.prompts`), the model's own generated reasoning up to `<answer>` (or the
answer format's empty stem when it produced none), then the option and the rest of the training target
(`</answer><|im_end|>…`). The options of a question share one left-padded batch (one forward pass per
option set, several sets per call); the log-probability of an option is the sum over its tokens from
the first token where the options' sequences part, so the shared prefix cancels and tokenizer merges
across the `<answer>` boundary are handled. Softmax over the options gives the confidence of each; the
answer is the most probable option.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from medlib.data import load_record_images, prompts
from medlib.evaluation.parsing import answers_match, parse_answer

YES_NO = ("yes", "no")
ANSWER_OPEN = "<answer>"
# Counts are scored as options only over a short range (the tiny profile's 0-3); a cell count in the hundreds
# would need one forward pass per candidate and says little per option.
MAX_COUNT_OPTIONS = 10
_PLACEHOLDER = "\x00OPTION\x00"


def _is_letter_answer(answer: str, choices: list[str]) -> bool:
    """True when the reference is written as an option letter (A, B, …) rather than the choice text."""
    text = answer.strip().strip("().").upper()
    return len(text) == 1 and "A" <= text < chr(ord("A") + len(choices))


def option_set(record: dict[str, Any], labels: dict[tuple[str, str], list[str]] | None = None) -> list[str] | None:
    """The options of a closed-form question written as its reference is, or None for an open question.

    Multiple choice: the choice texts (or letters, when the reference is a letter); yes/no questions:
    yes/no (cased like the reference); classification without choices, and counting: the labels seen for its
    data set and question type (`labels`, from `label_sets`; counts only when they are at most
    MAX_COUNT_OPTIONS whole numbers).
    """
    answer, choices = str(record["answer"]).strip(), record.get("choices") or []
    if record["task"] == "counting":
        counts = (labels or {}).get(_label_key(record))
        return list(counts) if counts and 1 < len(counts) <= MAX_COUNT_OPTIONS else None
    if record["task"] not in ("vqa_closed", "classification"):
        return None
    if choices and not {c.strip().lower() for c in choices} <= set(YES_NO):
        return [chr(ord("A") + i) for i in range(len(choices))] if _is_letter_answer(answer, choices) else list(choices)
    if answer.lower() in YES_NO:
        return [o.capitalize() for o in YES_NO] if answer[:1].isupper() else list(YES_NO)
    options = (labels or {}).get(_label_key(record))
    return list(options) if options and len(options) > 1 else None


def _label_key(record: dict[str, Any]) -> tuple[str, str]:
    """(data set, question type) of a record, the scope of a classification label set."""
    return str(record.get("dataset")), (record.get("meta") or {}).get("question_type") or record["task"]


def label_sets(records: list[dict[str, Any]]) -> dict[tuple[str, str], list[str]]:
    """Distinct reference labels per (data set, question type) of classification questions without choices,
    and of counting questions whose references are all whole numbers (sorted by value)."""
    sets: dict[tuple[str, str], set[str]] = {}
    counting: set[tuple[str, str]] = set()
    for record in records:
        if (record["task"] == "classification" and not record.get("choices")) or record["task"] == "counting":
            sets.setdefault(_label_key(record), set()).add(str(record["answer"]).strip())
            if record["task"] == "counting":
                counting.add(_label_key(record))
    labels = {}
    for key, values in sets.items():
        if key not in counting:
            labels[key] = sorted(values)
        # "2" and "02" are one count: such a set is left unscored rather than given two options for one answer.
        elif all(v.isdigit() for v in values) and len({int(v) for v in values}) == len(values):
            labels[key] = sorted(values, key=int)
    return labels


def target_parts(record: dict[str, Any], answer_format: str) -> tuple[str, str]:
    """(stem, tail) of the training target around the answer, with an empty reasoning line."""
    target = prompts.target_text({**record, "answer": _PLACEHOLDER, "meta": {}}, answer_format)
    stem, _, tail = target.partition(_PLACEHOLDER)
    return stem, tail


def generated_stem(raw: str | None) -> str | None:
    """The model's own output up to and including `<answer>`, or None when it wrote no answer tag."""
    if not raw or ANSWER_OPEN not in raw:
        return None
    return raw[: raw.index(ANSWER_OPEN) + len(ANSWER_OPEN)]


def option_texts(processor: Any, record: dict[str, Any], options: list[str], *, answer_format: str,
                 system_prompt: str | None, raw: str | None) -> tuple[list[str], str]:
    """The full text of each option's sequence (prompt + stem + option + target tail + end of turn), and the stem source."""
    prompt_text = processor.apply_chat_template(prompts.prompt_messages(record, answer_format, system_prompt),
                                                add_generation_prompt=True, tokenize=False)
    template_stem, tail = target_parts(record, answer_format)
    stem = generated_stem(raw) if answer_format != "plain" else None
    source = "generated" if stem is not None else "template"
    texts = []
    for option in options:
        full = processor.apply_chat_template(
            prompts.training_messages({**record, "answer": option, "meta": {}}, answer_format, system_prompt),
            tokenize=False)
        if not full.startswith(prompt_text + template_stem + option + tail):
            raise ValueError(f"{record['id']}: the chat template does not render the training target after the "
                             "inference prompt; option scoring needs both to agree")
        end_of_turn = full[len(prompt_text + template_stem + option + tail):]
        texts.append(prompt_text + (stem if stem is not None else template_stem) + option + tail + end_of_turn)
    return texts, source


@torch.no_grad()
def score_option_batch(model: Any, processor: Any, groups: list[tuple[list[str], list]]) -> list[list[float]]:
    """Log-probability of each option sequence in one forward pass: groups of (texts, images) → per-group lists."""
    texts = [text for group_texts, _ in groups for text in group_texts]
    images = [list(imgs) for group_texts, imgs in groups for _ in group_texts]
    processor.tokenizer.padding_side = "left"
    inputs = processor(text=texts, images=images if any(images) else None, return_tensors="pt",
                       padding=True).to(model.device)
    ids, mask = inputs["input_ids"], inputs["attention_mask"].bool()
    rows, starts, row = [], [], 0
    for group_texts, _ in groups:
        sequences = [ids[r][mask[r]].tolist() for r in range(row, row + len(group_texts))]
        shared = 0
        while all(len(s) > shared for s in sequences) and len({s[shared] for s in sequences}) == 1:
            shared += 1
        rows.append(list(range(row, row + len(group_texts))))
        starts.extend(len(s) - shared for s in sequences)  # tokens scored, counted back from the end
        row += len(group_texts)
    keep = max(starts) + 1
    if keep < 2:  # every option is the same token sequence: nothing tells them apart
        return [[0.0] * len(group) for group in rows]
    logits = model(**inputs, logits_to_keep=keep).logits.float()
    log_probs = torch.log_softmax(logits[:, :-1], dim=-1)  # position j predicts token j+1 of the kept tail
    targets = ids[:, -keep + 1:]
    token_scores = log_probs.gather(-1, targets.unsqueeze(-1)).squeeze(-1)
    scores = [float(token_scores[r, token_scores.shape[1] - n:].sum()) if n else 0.0 for r, n in enumerate(starts)]
    return [[scores[r] for r in group] for group in rows]


def scored_item(record: dict[str, Any], options: list[str], log_probs: list[float], source: str,
                generated: object) -> dict[str, Any]:
    """One calibration item: options, their probabilities, the chosen option, its confidence and correctness."""
    values = torch.softmax(torch.tensor(log_probs, dtype=torch.float64), dim=0).tolist()
    best = max(range(len(options)), key=lambda i: values[i])
    choices = record.get("choices")
    chosen = parse_answer(record["task"], options[best], choices)[0]
    return {"id": record["id"], "task": record["task"], "dataset": record.get("dataset"),
            "question_type": (record.get("meta") or {}).get("question_type") or record["task"],
            "options": options, "log_probs": log_probs, "probabilities": values, "answer": record["answer"],
            "predicted": options[best], "confidence": values[best], "stem": source,
            "correct": answers_match(record["task"], chosen, record["answer"], choices),
            "generated_agrees": generated is not None and generated == chosen}


def score_options(model: Any, processor: Any, records: list[dict[str, Any]], data_root: str | Path, *,
                  image_size: int | None, answer_format: str = "think_answer", system_prompt: str | None = None,
                  predictions: list[dict[str, Any]] | None = None, batch_size: int = 16) -> dict[str, Any]:
    """Score the options of every closed-form record: {"items": [...], "skipped": {reason: count}}."""
    generated = {p["id"]: p for p in predictions or []}
    labels = label_sets(records)
    model.eval()
    items: list[dict[str, Any]] = []
    skipped: dict[str, int] = {}
    pending: list[tuple[dict[str, Any], list[str], list[str], str, list]] = []

    def flush() -> None:
        scores = score_option_batch(model, processor, [(texts, images) for _, _, texts, _, images in pending])
        for (record, options, _, source, _), log_probs in zip(pending, scores, strict=True):
            items.append(scored_item(record, options, log_probs, source, generated.get(record["id"], {}).get("parsed")))
        pending.clear()

    for record in records:
        options = option_set(record, labels)
        if options is None:
            reason = ("open-form task" if record["task"] not in ("vqa_closed", "classification", "counting")
                      else "counts not a short range of whole numbers" if record["task"] == "counting"
                      else "no option set")
            skipped[reason] = skipped.get(reason, 0) + 1
            continue
        raw = generated.get(record["id"], {}).get("raw")
        texts, source = option_texts(processor, record, options, answer_format=answer_format,
                                     system_prompt=system_prompt, raw=raw)
        if pending and sum(len(p[1]) for p in pending) + len(options) > batch_size:
            flush()
        pending.append((record, options, texts, source, load_record_images(record, data_root, image_size)))
    if pending:
        flush()
    return {"items": items, "skipped": skipped}
