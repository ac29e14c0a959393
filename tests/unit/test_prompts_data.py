"""Prompts (medlib.data.prompts), record reading and row building (medlib.data), image loading (medlib.data.processing)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from medlib.data import RecordError, check_images, grpo_rows, prompts, read_records, sft_rows
from medlib.data.processing import load_image

RECORD = {"id": "r1", "dataset": "toy", "modality": "CT", "task": "vqa_closed", "images": ["img/a.png"],
          "question": "Is there a lesion?", "answer": " yes ", "choices": ["yes", "no"],
          "meta": {"rationale": "Bright spots are lesions."}}


def record(**changes) -> dict:
    return {**json.loads(json.dumps(RECORD)), **changes}


# ---- prompts ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("answer_format", "target"), [
    ("think_answer", "<think>Bright spots are lesions.</think><answer>yes</answer>"),
    ("answer_tags", "<answer>yes</answer>"),
    ("plain", "yes"),
])
def test_target_text_per_format(answer_format: str, target: str) -> None:
    assert prompts.target_text(RECORD, answer_format) == target


def test_think_target_without_rationale_has_empty_think() -> None:
    assert prompts.target_text(record(meta={}), "think_answer") == "<think></think><answer>yes</answer>"
    assert prompts.target_text({"answer": 3}, "think_answer") == "<think></think><answer>3</answer>"


def test_user_text_appends_the_format_instruction() -> None:
    assert prompts.user_text(RECORD, "plain") == "Is there a lesion?"
    tagged = prompts.user_text(RECORD, "answer_tags")
    assert tagged == "Is there a lesion?\n" + prompts.INSTRUCTIONS["answer_tags"]
    assert "<answer></answer>" in tagged
    assert "<think></think>" in prompts.user_text(RECORD, "think_answer")


@pytest.mark.parametrize("image_count", [0, 1, 3])
def test_image_placeholders_match_images_and_come_first(image_count: int) -> None:
    images = [f"img/{i}.png" for i in range(image_count)]
    content = prompts.user_message(record(images=images), "plain")["content"]
    assert len(content) == image_count + 1
    assert content[:image_count] == [{"type": "image"}] * image_count
    assert content[-1] == {"type": "text", "text": "Is there a lesion?"}


def test_prompt_and_training_messages() -> None:
    prompt = prompts.prompt_messages(RECORD, "answer_tags", system_prompt="Be brief.")
    assert [m["role"] for m in prompt] == ["system", "user"]
    assert prompt[0]["content"] == [{"type": "text", "text": "Be brief."}]
    assert [m["role"] for m in prompts.prompt_messages(RECORD, "answer_tags")] == ["user"]
    training = prompts.training_messages(RECORD, "answer_tags", system_prompt="Be brief.")
    assert training[:-1] == prompt
    assert training[-1] == {"role": "assistant", "content": [{"type": "text", "text": "<answer>yes</answer>"}]}


@pytest.mark.parametrize("build", [prompts.user_text, prompts.target_text, prompts.prompt_messages,
                                   prompts.training_messages])
def test_unknown_answer_format_is_named(build) -> None:
    with pytest.raises(ValueError, match="'xml'.*think_answer"):
        build(RECORD, "xml")


# ---- read_records ----------------------------------------------------------------------------------


def write_lines(path: Path, *lines: str | dict) -> Path:
    path.write_text("".join((line if isinstance(line, str) else json.dumps(line)) + "\n" for line in lines))
    return path


def test_read_records_reads_valid_lines_and_skips_blank_ones(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "ok.jsonl", record(), "", "   ", record(id="r2", images=[]))
    assert [r["id"] for r in read_records(path)] == ["r1", "r2"]
    assert read_records(path)[0]["answer"] == " yes "  # reading does not rewrite the reference


BAD_LINES = {
    "invalid_json": ('{"id": "r2", "task": ', ["not valid JSON"]),
    "not_an_object": ("[1, 2]", ["JSON object"]),
    "missing_field": ({k: v for k, v in record(id="r2").items() if k != "answer"}, ["'answer'", "missing"]),
    "wrong_type": (record(id="r2", images="img/a.png"), ["'images'", "list"]),
    "answer_not_text": (record(id="r2", answer=3), ["'answer'", "str"]),
    "bad_task": (record(id="r2", task="segmentation"), ["'task'", "segmentation"]),
    "parent_escape": (record(id="r2", images=["../x.png"]), ["'images'", "../x.png", "escapes"]),
    "absolute_path": (record(id="r2", images=["/abs.png"]), ["'images'", "/abs.png", "escapes"]),
    "empty_path": (record(id="r2", images=[""]), ["'images'"]),
    "bad_choices": (record(id="r2", choices="yes,no"), ["'choices'"]),
    "bad_meta": (record(id="r2", meta=["split"]), ["'meta'"]),
    "duplicate_id": (record(), ["'id'", "r1", "repeats"]),
}


@pytest.mark.parametrize("case", sorted(BAD_LINES))
def test_read_records_errors_name_file_line_and_field(tmp_path: Path, case: str) -> None:
    bad_line, fragments = BAD_LINES[case]
    path = write_lines(tmp_path / "records.jsonl", record(), "", bad_line, record(id="r9"))
    with pytest.raises(RecordError) as error:
        read_records(path)
    message = str(error.value)
    assert message.startswith(f"{path}:3: "), message
    for fragment in fragments:
        assert fragment in message, (fragment, message)


def test_read_records_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / "nope.jsonl"))):
        read_records(tmp_path / "nope.jsonl")


# ---- rows and images -------------------------------------------------------------------------------


@pytest.fixture
def data_root(tmp_path: Path) -> Path:
    (tmp_path / "img").mkdir()
    Image.new("L", (40, 30), 90).save(tmp_path / "img" / "a.png")
    Image.new("RGB", (30, 40), (10, 200, 30)).save(tmp_path / "img" / "prior.png")
    return tmp_path


TWO_RECORDS = [record(images=["img/a.png", "img/prior.png"]),
               record(id="r2", task="counting", question="How many?", answer="2", choices=None, meta={})]
TWO_RECORDS[1].pop("choices")


def test_sft_rows_prompt_completion(data_root: Path) -> None:
    rows = sft_rows(TWO_RECORDS, data_root, image_size=28, answer_format="answer_tags", system_prompt="S")
    assert [set(row) for row in rows] == [{"prompt", "completion", "images"}] * 2
    first = rows[0]
    assert [m["role"] for m in first["prompt"]] == ["system", "user"]
    assert first["prompt"][1]["content"][:2] == [{"type": "image"}, {"type": "image"}]
    assert first["completion"] == [{"role": "assistant",
                                    "content": [{"type": "text", "text": "<answer>yes</answer>"}]}]
    assert rows[1]["completion"][0]["content"][0]["text"] == "<answer>2</answer>"
    assert len(first["images"]) == 2 and len(rows[1]["images"]) == 1
    assert all(image.mode == "RGB" and image.size == (28, 28) for row in rows for image in row["images"])
    # the current image comes first: a.png is grey, prior.png is green
    assert first["images"][0].getpixel((5, 5)) == (90, 90, 90)
    assert first["images"][1].getpixel((5, 5)) == (10, 200, 30)


def test_sft_rows_messages_style(data_root: Path) -> None:
    rows = sft_rows(TWO_RECORDS, data_root, image_size=None, answer_format="plain", style="messages")
    assert [set(row) for row in rows] == [{"messages", "images"}] * 2
    assert rows[0]["messages"] == prompts.training_messages(TWO_RECORDS[0], "plain")
    assert rows[0]["images"][0].size == (40, 30)  # no resizing without image_size
    with pytest.raises(ValueError, match="'chat'"):
        sft_rows(TWO_RECORDS, data_root, image_size=None, style="chat")


def test_grpo_rows_carry_reward_columns(data_root: Path) -> None:
    rows = grpo_rows(TWO_RECORDS, data_root, image_size=16, answer_format="think_answer")
    assert [set(row) for row in rows] == [{"prompt", "images", "answer", "task", "choices", "id"}] * 2
    assert rows[0]["prompt"] == prompts.prompt_messages(TWO_RECORDS[0], "think_answer")
    assert [m["role"] for m in rows[0]["prompt"]] == ["user"]
    assert (rows[0]["answer"], rows[0]["task"], rows[0]["choices"], rows[0]["id"]) == (
        " yes ", "vqa_closed", ["yes", "no"], "r1")
    assert (rows[1]["answer"], rows[1]["task"], rows[1]["choices"], rows[1]["id"]) == ("2", "counting", None, "r2")
    assert rows[1]["images"][0].size == (16, 16)


def test_check_images_counts_missing_and_unreadable(data_root: Path) -> None:
    assert check_images(TWO_RECORDS, data_root) == {}
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    Image.fromarray(noise).save(data_root / "img" / "full.png")
    whole = (data_root / "img" / "full.png").read_bytes()
    (data_root / "img" / "truncated.png").write_bytes(whole[: len(whole) // 2])
    (data_root / "img" / "garbage.png").write_bytes(b"this is not an image at all")
    records = TWO_RECORDS + [
        record(id="r3", images=["img/truncated.png", "img/missing.png"]),
        record(id="r4", images=["img/garbage.png", "img/missing.png", "img/gone.png"]),
        record(id="r5", images=["img/full.png"]),
    ]
    assert check_images(records, data_root) == {"missing": 2, "unreadable": 2}


def saved(image: Image.Image, path: Path) -> Path:
    image.save(path)
    return path


def test_load_image_16_bit_is_stretched_to_8_bit(tmp_path: Path) -> None:
    depth = np.linspace(1000, 5000, 30 * 40).reshape(30, 40).astype(np.uint16)
    path = saved(Image.fromarray(depth), tmp_path / "ct.png")
    with Image.open(path) as raw:
        assert raw.mode == "I;16"
    image = load_image(path)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and pixels.dtype == np.uint8 and pixels.shape == (30, 40, 3)
    expected = ((depth - 1000.0) / 4000.0 * 255).astype(np.uint8)
    assert np.array_equal(pixels[..., 0], expected)
    assert np.array_equal(pixels[..., 0], pixels[..., 2])
    assert (pixels.min(), pixels.max()) == (0, 255)  # the full range, not clipped at 255
    flat = saved(Image.fromarray(np.full((8, 8), 700, dtype=np.uint16)), tmp_path / "flat.png")
    assert np.asarray(load_image(flat)).max() == 0  # a constant image does not divide by zero


def test_load_image_grey_palette_and_cmyk(tmp_path: Path) -> None:
    grey = np.arange(30 * 40, dtype=np.uint32).reshape(30, 40) % 256
    grey_path = saved(Image.fromarray(grey.astype(np.uint8), mode="L"), tmp_path / "grey.png")
    assert np.array_equal(np.asarray(load_image(grey_path)), np.repeat(grey[..., None], 3, axis=2))

    palette = Image.new("P", (10, 10), 0)
    palette.putpalette([255, 0, 0, 0, 0, 255] + [0] * (256 * 3 - 6))
    palette.paste(1, (5, 0, 10, 10))
    palette_image = load_image(saved(palette, tmp_path / "palette.png"))
    assert palette_image.mode == "RGB"
    assert (palette_image.getpixel((0, 0)), palette_image.getpixel((9, 9))) == ((255, 0, 0), (0, 0, 255))

    cmyk_path = saved(Image.new("CMYK", (10, 10), (255, 0, 0, 0)), tmp_path / "cyan.tif")
    with Image.open(cmyk_path) as raw:
        assert raw.mode == "CMYK"
    assert load_image(cmyk_path).getpixel((3, 3)) == (0, 255, 255)


@pytest.mark.parametrize("mode", ["I;16", "L", "P", "CMYK", "RGBA"])
def test_load_image_resizes_every_mode_to_square_rgb(tmp_path: Path, mode: str) -> None:
    source = Image.fromarray(np.full((30, 40), 3000, dtype=np.uint16)) if mode == "I;16" else Image.new(mode, (40, 30))
    path = saved(source, tmp_path / ("x.tif" if mode == "CMYK" else "x.png"))
    image = load_image(path, 24)
    assert (image.mode, image.size) == ("RGB", (24, 24))
    assert np.asarray(image).dtype == np.uint8
