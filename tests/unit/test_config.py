"""Loading, merging and validating experiment files against generated notebooks."""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest
import yaml

from medlib.pipeline.config import (
    ConfigError,
    Experiment,
    coerce,
    discover_stages,
    load_experiment,
    notebook_parameters,
    resolved_parameters,
    stage_parameters,
    validate_experiment,
)

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}

PREP_PARAMETERS = """\
seed: int = 0  # random seed
model_id: str = "tiny"  # model to load
samples: int = 5  # records to show
"""

FIT_PARAMETERS = """\
seed: int = 0  # random seed
model_id: str = "tiny"  # model to load
learning_rate: float = 2e-4  # AdamW learning rate
max_steps: int = 100  # optimizer steps
bf16: bool = True  # bfloat16 training
tasks: list = ["vqa_closed"]  # task types
lora_targets: list[str] = ["q_proj"]  # modules to adapt
warmup_ratio: Optional[float] = None  # warm-up share
report_to: str | None = None  # tracker
prompt: str = "answer=short"  # a default with an equals sign
"""


def write_notebook(path: Path, parameters: str) -> Path:
    """A notebook with a title, a tagged parameters cell and one code cell."""
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = KERNELSPEC
    cell = nbformat.v4.new_code_cell(parameters)
    cell.metadata["tags"] = ["parameters"]
    notebook.cells = [
        nbformat.v4.new_markdown_cell("# A stage"),
        cell,
        nbformat.v4.new_code_cell("print('ran')"),
    ]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(notebook, path)
    return path


@pytest.fixture
def notebooks(tmp_path: Path) -> Path:
    """notebooks/ with two stages and files that are not stages."""
    directory = tmp_path / "notebooks"
    write_notebook(directory / "20_fit.ipynb", FIT_PARAMETERS)
    write_notebook(directory / "10_prep.ipynb", PREP_PARAMETERS)
    write_notebook(directory / "scratch.ipynb", "x: int = 1")
    write_notebook(directory / "3_short.ipynb", "x: int = 1")
    return directory


def write_params(tmp_path: Path, data: object) -> Path:
    """params/exp.yaml holding `data` (a str is written verbatim)."""
    path = tmp_path / "params" / "exp.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data), encoding="utf-8")
    return path


def load(tmp_path: Path, notebooks: Path, data: object, overrides: tuple[str, ...] = ()):
    """The experiment, its stages and the problems validation finds (empty when valid)."""
    stages = discover_stages(notebooks)
    experiment = load_experiment(write_params(tmp_path, data), overrides)
    try:
        validate_experiment(experiment, stages)
    except ConfigError as error:
        return experiment, stages, str(error).splitlines()
    return experiment, stages, []


def test_discover_stages_keeps_numbered_notebooks_sorted(notebooks: Path) -> None:
    stages = discover_stages(notebooks)
    assert [(s.stem, s.block, s.path.name) for s in stages] == [
        ("10_prep", "prep", "10_prep.ipynb"),
        ("20_fit", "fit", "20_fit.ipynb"),
    ]


def test_discover_stages_rejects_missing_dir_and_shared_blocks(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="not found"):
        discover_stages(tmp_path / "absent")
    write_notebook(tmp_path / "nb" / "20_fit.ipynb", "x: int = 1")
    write_notebook(tmp_path / "nb" / "25_fit.ipynb", "x: int = 1")
    with pytest.raises(ConfigError, match="20_fit and 25_fit"):
        discover_stages(tmp_path / "nb")


def test_notebook_parameters_reads_types_defaults_and_help(notebooks: Path) -> None:
    specs = notebook_parameters(notebooks / "20_fit.ipynb")
    assert list(specs)[:3] == ["seed", "model_id", "learning_rate"]
    assert specs["learning_rate"].type_name == "float"
    assert specs["learning_rate"].default == "2e-4"
    assert specs["learning_rate"].help == "AdamW learning rate"
    assert specs["warmup_ratio"].type_name == "Optional[float]"
    # papermill's regex drops these two; they come back from the cell's syntax tree.
    assert specs["report_to"].type_name == "str | None"
    assert specs["report_to"].help == "tracker"
    assert specs["prompt"].default == "'answer=short'"


def test_notebook_parameters_rereads_an_edited_notebook(notebooks: Path) -> None:
    path = notebooks / "10_prep.ipynb"
    assert "samples" in notebook_parameters(path)
    write_notebook(path, "seed: int = 0\nrows: int = 3  # rows to print, a longer line\n")
    assert list(notebook_parameters(path)) == ["seed", "rows"]


def test_common_and_block_merge_with_block_winning(tmp_path: Path, notebooks: Path) -> None:
    data = {
        "common": {"experiment": "exp", "seed": 1, "model_id": "m", "samples": 9},
        "fit": {"seed": 7, "max_steps": 5},
    }
    experiment, stages, problems = load(tmp_path, notebooks, data)
    assert problems == []
    exploration, fit = stages
    assert stage_parameters(experiment, exploration) == {"seed": 1, "model_id": "m", "samples": 9}
    assert stage_parameters(experiment, fit) == {"seed": 7, "model_id": "m", "max_steps": 5}
    resolved = resolved_parameters(experiment, stages)
    assert list(resolved) == ["10_prep", "20_fit"]
    # Notebook declaration order, not YAML order.
    assert list(resolved["20_fit"]) == ["seed", "model_id", "max_steps"]


def test_unknown_block_key_names_file_notebook_and_suggestion(
    tmp_path: Path, notebooks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    data = {"common": {"experiment": "exp"}, "fit": {"learing_rate": 0.1}}
    experiment = load_experiment(write_params(tmp_path, data))
    with pytest.raises(ConfigError) as raised:
        stage_parameters(experiment, discover_stages("notebooks")[1])
    assert str(raised.value) == (
        "params/exp.yaml: fit.learing_rate: unknown parameter for notebooks/20_fit.ipynb "
        "(did you mean learning_rate?)"
    )


@pytest.mark.parametrize(
    ("block", "message"),
    [
        ({"max_steps": "many"}, "fit.max_steps: expected int, got str ('many')"),
        ({"max_steps": True}, "fit.max_steps: expected int, got bool (True)"),
        ({"learning_rate": False}, "fit.learning_rate: expected float, got bool (False)"),
        ({"model_id": 3}, "fit.model_id: expected str, got int (3)"),
        ({"tasks": "vqa"}, "fit.tasks: expected list, got str ('vqa')"),
        ({"lora_targets": ["q", 1]}, "fit.lora_targets[1]: expected str, got int (1)"),
        ({"report_to": 3}, "fit.report_to: expected str, got int (3)"),
        ({"warmup_ratio": "soon"}, "fit.warmup_ratio: expected float, got str ('soon')"),
    ],
)
def test_wrong_types_name_key_expected_and_given(
    tmp_path: Path, notebooks: Path, block: dict, message: str
) -> None:
    _, _, problems = load(tmp_path, notebooks, {"common": {"experiment": "e"}, "fit": block})
    assert len(problems) == 1
    assert problems[0].endswith(message)
    assert "exp.yaml: " in problems[0]


def test_float_from_string_int_to_float_and_none_for_optional(
    tmp_path: Path, notebooks: Path
) -> None:
    text = "common:\n  experiment: e\nfit:\n  learning_rate: 1e-4\n  warmup_ratio: 1\n"
    assert yaml.safe_load(text)["fit"]["learning_rate"] == "1e-4"  # YAML 1.1 needs a dot
    experiment, stages, problems = load(tmp_path, notebooks, text)
    assert problems == []
    params = stage_parameters(experiment, stages[1])
    assert params["learning_rate"] == pytest.approx(1e-4)
    assert isinstance(params["warmup_ratio"], float)
    experiment, stages, problems = load(
        tmp_path, notebooks, text, ("fit.warmup_ratio=null", "fit.report_to=null")
    )
    assert problems == []
    assert stage_parameters(experiment, stages[1])["warmup_ratio"] is None


@pytest.mark.parametrize(
    ("type_name", "value", "expected"),
    [
        ("int", 3, 3),
        ("float", 2, 2.0),
        ("float", "3e-5", 3e-5),
        ("Optional[int]", None, None),
        ("int | None", 4, 4),
        ("Union[int, str]", "x", "x"),
        ("list[float]", [1, "2e-3"], [1.0, 2e-3]),
        ("dict[str, int]", {"a": 1}, {"a": 1}),
        ("dict", {"a": [1]}, {"a": [1]}),
        ("None", object, object),  # no annotation: anything goes
        ("Any", [1], [1]),
    ],
)
def test_coerce_accepts(type_name: str, value: object, expected: object) -> None:
    result = coerce(value, type_name)
    assert result == expected
    assert type(result) is type(expected)


def test_unknown_block_is_reported_with_suggestion(tmp_path: Path, notebooks: Path) -> None:
    data = {"common": {"experiment": "e"}, "fitt": {"max_steps": 1}}
    _, _, problems = load(tmp_path, notebooks, data)
    assert len(problems) == 1
    assert "fitt: no notebook stage has this block" in problems[0]
    assert "(did you mean fit?)" in problems[0]
    with pytest.raises(ConfigError, match="fitt"):
        load_experiment(write_params(tmp_path, data), stages=discover_stages(notebooks))


def test_unknown_common_key_and_duplicated_type_error(tmp_path: Path, notebooks: Path) -> None:
    data = {"common": {"experiment": "e", "sead": 1, "seed": "one"}}
    _, _, problems = load(tmp_path, notebooks, data)
    # seed is declared by both notebooks but its type error is reported once.
    assert len(problems) == 2
    assert problems[0].endswith(
        "common.sead: not a parameter of any of the stages (did you mean seed?)"
    )
    assert problems[1].endswith("common.seed: expected int, got str ('one')")


def test_all_problems_are_reported_at_once(tmp_path: Path, notebooks: Path) -> None:
    data = {
        "common": {"experiment": "e", "colour": "red"},
        "fit": {"max_steps": 1.5, "learing_rate": 1},
        "prep": {"samples": "all"},
        "grpo": {"beta": 0.0},
    }
    _, _, problems = load(tmp_path, notebooks, data)
    assert len(problems) == 5
    assert all(line.startswith(str(tmp_path / "params" / "exp.yaml")) for line in problems)
    joined = "\n".join(problems)
    for fragment in ("grpo:", "common.colour", "fit.learing_rate", "fit.max_steps", "samples"):
        assert fragment in joined


@pytest.mark.parametrize(
    ("override", "block", "key", "value"),
    [
        ("fit.max_steps=5", "fit", "max_steps", 5),
        ("common.seed=1", "common", "seed", 1),
        ("inference.tasks=[a,b]", "inference", "tasks", ["a", "b"]),
        ("fit.model_id=org/model=v2", "fit", "model_id", "org/model=v2"),
        ("fit.report_to=", "fit", "report_to", None),
    ],
)
def test_overrides_are_parsed_as_yaml(
    tmp_path: Path, override: str, block: str, key: str, value: object
) -> None:
    experiment = load_experiment(
        write_params(tmp_path, {"common": {"experiment": "e"}, "fit": {"max_steps": 9}}),
        [override],
    )
    target = experiment.common if block == "common" else experiment.blocks[block]
    assert target[key] == value


@pytest.mark.parametrize(
    "override", ["fit.max_steps", "max_steps=5", ".x=1", "fit.=1", "fit.a.b=1", "fit.x=[1"]
)
def test_malformed_overrides_are_rejected(tmp_path: Path, override: str) -> None:
    path = write_params(tmp_path, {"common": {"experiment": "e"}})
    with pytest.raises(ConfigError, match=r"exp\.yaml: override"):
        load_experiment(path, [override])


def test_override_can_rename_the_experiment(tmp_path: Path) -> None:
    path = write_params(tmp_path, {"common": {"experiment": "e"}})
    experiment = load_experiment(path, ["common.experiment=other"])
    assert isinstance(experiment, Experiment)
    assert experiment.name == "other"
    assert experiment.path == path


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("- a\n- b\n", "expected a mapping of blocks, got list"),
        ("fit:\n  max_steps: 1\n", "common: missing block"),
        ("common:\n  seed: 1\n", "common.experiment: missing"),
        ("common: [1]\n", "common: expected a mapping, got list"),
        ("common:\n  experiment: e\nfit: {}\nfit: {}\n", "duplicate key 'fit'"),
        ("common: {experiment: e\n", "invalid YAML"),
    ],
)
def test_malformed_files_are_rejected(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(ConfigError, match=message) as raised:
        load_experiment(write_params(tmp_path, text))
    assert "exp.yaml" in str(raised.value)


def test_missing_file_and_empty_block(tmp_path: Path, notebooks: Path) -> None:
    with pytest.raises(ConfigError, match="absent.yaml: experiment file not found"):
        load_experiment(tmp_path / "absent.yaml")
    experiment, stages, problems = load(tmp_path, notebooks, "common:\n  experiment: e\nfit:\n")
    assert problems == []
    assert experiment.blocks == {"fit": {}}
    assert stage_parameters(experiment, stages[1]) == {}
