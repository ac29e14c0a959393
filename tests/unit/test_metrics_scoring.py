"""`medlib score` and the scoring engine: grouping, counts, CIs, comparison, files and errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from medlib.cli import main
from medlib.evaluation.metrics import scoring


def _write(path: Path, records: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def _records(counting_outputs: list[str], closed_outputs: list[str]) -> list[dict]:
    rows = []
    for i, raw in enumerate(counting_outputs):
        rows.append({"id": f"c{i}", "task": "counting", "dataset": "d1", "raw": f"<answer>{raw}</answer>",
                     "answer": str(i % 3)})  # fmt: skip
    for i, raw in enumerate(closed_outputs):
        rows.append({"id": f"v{i}", "task": "vqa_closed", "dataset": "d2", "raw": f"<answer>{raw}</answer>",
                     "answer": "yes" if i % 2 == 0 else "no"})  # fmt: skip
    return rows


def test_score_records_groups_counts_and_cis() -> None:
    records = _records(["0", "1", "5", "n/a"], ["yes", "no", "yes", "maybe"])
    scores = scoring.score_records(records, n_resamples=200)
    counting, closed = scores["groups"]
    assert (counting["dataset"], counting["task"], counting["n"], counting["n_unparsed"]) == ("d1", "counting", 4, 1)
    assert counting["metrics"]["mae"] == pytest.approx(3 / 3)  # |0-0| + |1-1| + |5-2| over 3 parsed
    assert counting["ci"]["mae"]["low"] <= 1.0 <= counting["ci"]["mae"]["high"]
    assert closed["metrics"]["exact_match"] == pytest.approx(0.75)
    assert closed["metrics"]["answer_tag_accuracy"] == pytest.approx(0.75)


def test_report_generation_group_has_text_metrics() -> None:
    records = [{"id": f"r{i}", "task": "report_generation", "dataset": "d", "raw": raw, "answer": ref}
               for i, (raw, ref) in enumerate([("No effusion.", "No pleural effusion."),
                                               ("Stable small effusion.", "Small effusion, unchanged.")])]  # fmt: skip
    group = scoring.score_records(records, n_resamples=50, options=scoring.ScoringOptions(coco=False))["groups"][0]
    assert group["primary"] == "flare_report_score"
    for name in ("flare_report_score", "clinical_efficacy", "flare_bleu", "libra_rouge_l", "libra_temporal_f1",
                 "libra_bleu4", "sacrebleu4"):
        assert name in group["metrics"]
    assert set(group["metrics"]["conventions"]) == {"flare", "libra", "sacrebleu", "coco"}
    assert not any(name.startswith("coco_") for name in group["metrics"])  # not asked for
    assert set(group["ci"]) >= {"flare_report_score", "libra_rouge_l", "libra_temporal_f1"}


def test_cli_writes_json_and_markdown_with_comparison(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    candidate = _write(tmp_path / "sft.jsonl", _records(["0", "1", "2", "0"], ["yes", "no", "yes", "no"]))
    baseline = _write(tmp_path / "base.jsonl", _records(["2", "2", "0", "2"], ["no", "yes", "no", "yes"]))
    assert main(["score", str(candidate), "--against", str(baseline), "--resamples", "100", "--no-coco"]) == 0
    saved = json.loads((tmp_path / "sft.metrics.json").read_text())
    rows = {row["task"]: row for row in saved["comparison"]}
    assert rows["vqa_closed"]["baseline"] == 0.0 and rows["vqa_closed"]["candidate"] == 1.0
    assert rows["counting"]["improvement_percent"] == pytest.approx(100.0)
    table = (tmp_path / "sft.metrics.md").read_text()
    assert "| d2 | vqa_closed | 4 | 0 | 0 | 0 | exact_match | 1.0000 |" in table
    assert "improvement %" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("line", "message"),
    [("{not json", "line|:1: not valid JSON"), ('{"id": 1, "task": "counting", "raw": "3"}', "missing field 'answer'"),
     ('{"id": 1, "task": "segmentation", "raw": "", "answer": ""}', "field 'task'")],
)  # fmt: skip
def test_cli_bad_input_names_file_and_field(tmp_path: Path, capsys: pytest.CaptureFixture, line: str,
                                            message: str) -> None:
    path = tmp_path / "bad.jsonl"
    path.write_text(line + "\n")
    assert main(["score", str(path)]) == 1
    error = capsys.readouterr().err
    assert str(path) in error and any(part in error for part in message.split("|"))


def test_report_generation_is_compared_item_by_item() -> None:
    references = ["Findings: small left pleural effusion. Impression: effusion.",
                  "Findings: no pneumothorax. Impression: normal chest.",
                  "Findings: cardiomegaly. Impression: enlarged heart."]
    weak = ["Findings: normal. Impression: normal."] * 3
    baseline = [{"id": f"r{i}", "task": "report_generation", "dataset": "d", "raw": raw, "answer": ref}
                for i, (raw, ref) in enumerate(zip(weak, references))]
    candidate = [{**record, "raw": record["answer"]} for record in baseline]  # the references themselves
    row = scoring.compare_records(baseline, candidate, n_resamples=200)[0]
    expected_a = sum(scoring.report_item_scores(references, weak)) / 3
    expected_b = sum(scoring.report_item_scores(references, references)) / 3
    assert row["task"] == "report_generation" and row["metric"] == "flare_report_score" and row["n"] == 3
    assert row["baseline"] == pytest.approx(expected_a) and row["candidate"] == pytest.approx(expected_b)
    assert row["difference"] == pytest.approx(expected_b - expected_a) and row["difference"] > 0
    assert row["low"] <= row["difference"] <= row["high"]


def test_cli_model_metrics_are_checked_and_need_radeval(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    reports = _write(tmp_path / "r.jsonl", [{"id": "r", "task": "report_generation", "raw": "Normal.",
                                             "answer": "Normal chest."}])
    assert main(["score", str(reports), "--no-coco", "--model-metrics", "radgraf"]) == 1
    assert "unknown ['radgraf']" in capsys.readouterr().err
    from medlib.evaluation.metrics.model_based import radeval_available

    if radeval_available():
        pytest.skip("RadEval is installed: its weights decide the rest")
    assert main(["score", str(reports), "--no-coco", "--model-metrics", "radgraph"]) == 1
    assert "RadEval" in capsys.readouterr().err


def test_convention_table_has_a_row_per_metric_and_a_column_per_checkpoint() -> None:
    records = [{"id": "r", "task": "report_generation", "dataset": "iu", "raw": "No effusion.", "answer": "No effusion."}]
    options = scoring.ScoringOptions(coco=False)
    task_scores = {name: scoring.score_records(records, n_resamples=10, options=options) for name in ("base", "sft")}
    table = scoring.convention_table(task_scores)
    assert list(table.columns) == ["base", "sft"]
    assert table.loc[("iu", "libra", "libra_bleu1"), "sft"] == pytest.approx(1.0)
    assert {convention for _, convention, _ in table.index} == {"flare", "libra", "sacrebleu"}  # coco not asked for
    assert scoring.convention_table({"base": scoring.score_records(_records(["1"], []), n_resamples=10)}).empty
