"""Image ablation: the variants' images, the seeded derangement, and the paired ablation table."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from medlib import data
from medlib.data import synthetic
from medlib.evaluation import ablation
from medlib.evaluation.image_variants import derangement


@pytest.mark.parametrize("n", [2, 3, 7, 50])
def test_derangement_moves_every_index_and_is_seeded(n):
    order = derangement(n, seed=1)
    assert sorted(order) == list(range(n)) and all(order[i] != i for i in range(n))
    assert order == derangement(n, seed=1)
    with pytest.raises(ValueError, match="at least 2"):
        derangement(1, seed=0)


@pytest.fixture(scope="module")
def split(tmp_path_factory):
    """Eight synthetic records (presence and count) with their images."""
    root = tmp_path_factory.mktemp("ablation") / "data"
    return data.read_records(synthetic.make_split(root, "test", 8, question_types=["presence", "count"])), root


def test_blank_variant_keeps_questions_and_blanks_every_image(split, tmp_path):
    records, root = split
    blank, skipped = ablation.ablation_records(records, root, tmp_path / "blank", "blank", image_size=112, seed=0)
    assert skipped == {} and [r["id"] for r in blank] == [r["id"] for r in records]
    assert [r["question"] for r in blank] == [r["question"] for r in records]
    pixels = np.asarray(data.load_record_images(blank[0], tmp_path / "blank", 112)[0])
    assert pixels.shape == (112, 112, 3) and (pixels == ablation.BLANK_GREY).all()


def test_wrong_variant_gives_every_record_another_records_image(split, tmp_path):
    records, root = split
    wrong, skipped = ablation.ablation_records(records, root, tmp_path / "wrong", "wrong", image_size=112, seed=0)
    assert skipped == {} and len(wrong) == len(records)
    originals = [np.asarray(data.load_record_images(r, root, 112)[0]) for r in records]
    for record, variant in zip(records, wrong):
        shown = np.asarray(data.load_record_images(variant, tmp_path / "wrong", 112)[0])
        matches = [i for i, image in enumerate(originals) if np.array_equal(image, shown)]
        assert matches and records.index(record) not in matches  # someone else's image, never its own


def test_records_sharing_an_image_never_get_it_back():
    records = [{"id": str(i), "images": [f"{i // 2}.png"]} for i in range(6)]  # pairs of questions per image
    partners, unpaired = ablation.wrong_image_partners(records, seed=3)
    assert unpaired == 0
    for index, partner in partners.items():
        assert records[partner]["images"] != records[index]["images"]
    lonely = [{"id": "a", "images": ["x.png"]}, {"id": "b", "images": ["x.png", "y.png"]}]
    assert ablation.wrong_image_partners(lonely, seed=0) == ({}, 2)


def test_unknown_ablation_is_named():
    with pytest.raises(ValueError, match="'noise' is not one of blank, wrong"):
        ablation.check_ablations(["noise"])


def prediction(index, parsed, answer="yes", question_type="presence"):
    """A stored prediction of a yes/no question."""
    return {"id": str(index), "task": "vqa_closed", "parsed": parsed, "answer": answer, "raw": "",
            "meta": {"question_type": question_type}}


def test_ablation_table_hand_worked():
    # With the image: 20 of 20 right; blank: 10 of 20 right (the "no" answers to "no" questions).
    answers = ["yes", "no"] * 10
    clean = [prediction(i, a, a) for i, a in enumerate(answers)]
    blank = [prediction(i, "no", a) for i, a in enumerate(answers)]
    rows = ablation.ablation_table(clean, {"blank": blank}, n_resamples=200)
    overall = next(r for r in rows if r["question_type"] == "all")
    assert (overall["with_image"], overall["ablated"], overall["difference"]) == (1.0, 0.5, -0.5)
    assert overall["needs_image"] == 0.5 and overall["low"] <= -0.5 <= overall["high"] < 0
    presence = next(r for r in rows if r["question_type"] == "presence")
    assert presence["n"] == 20 and presence["task"] == "vqa_closed"


def test_image_ablation_writes_lossless_pngs(split, tmp_path):
    records, root = split
    blank, _ = ablation.ablation_records(records[:1], root, tmp_path / "b", "blank", image_size=112, seed=0)
    with Image.open(tmp_path / "b" / blank[0]["images"][0]) as image:
        assert image.format == "PNG"
