"""An offline, learnable synthetic lesion data set covering every task type: the answer is determined by the image.

`presence`, `count` and `side` keep their original generator and random stream (the tiny profile's
learning result depends on them); the other types draw from the same stream only when they are asked for.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

DATASET_NAME = "synthetic_lesions"
QUESTION_TYPES = ("presence", "count", "side", "findings", "detect", "instances", "size", "location", "report",
                  "temporal", "choice")
ORIGINAL_TYPES = ("presence", "count", "side")
SPLIT_OFFSETS = {"train": 0, "validation": 1, "test": 2}


@dataclass(frozen=True)
class Question:
    """A question template of one type with its task, wording and fixed reasoning line."""

    task: str
    text: str
    rationale: str
    choices: tuple[str, ...] | None


QUESTIONS = {
    "presence": Question("vqa_closed", "Is there a lesion in this image? Answer yes or no.",
                         "Bright round spots are lesions.", ("yes", "no")),
    "count": Question("counting", "How many lesions are visible? Answer with a number.",
                      "I count the bright round spots.", None),
    "side": Question("classification", "Which side of the image is the lesion on? A) left B) right",
                     "I compare the left half with the right half.", ("left", "right")),
    "findings": Question("multi_label", "Which findings are present: mass, cyst, calcification? "
                         "Answer with every finding present, separated by commas.",
                         "Bright disks are masses, dark disks are cysts, bright squares are calcifications.", None),
    "detect": Question("detection", "Locate every lesion. Answer with bounding boxes [[x1, y1, x2, y2], ...] "
                       "in pixels.", "I box each bright round spot.", None),
    "instances": Question("instance_detection", "Locate each mass and each cyst. Answer with a JSON object "
                          "mapping the finding to its bounding boxes.",
                          "Bright disks are masses, dark disks are cysts.", None),
    "size": Question("regression", "What is the diameter of the lesion in pixels? Answer with a number.",
                     "I measure the bright disk across.", None),
    "location": Question("vqa_open", "Where is the lesion? Answer with the quadrant, e.g. upper left.",
                         "I check which quadrant holds the bright spot.", None),
    "report": Question("report_generation", "Write a short report with Findings and Impression sections.",
                       "I count the bright round spots and note where they are.", None),
    "temporal": Question("report_generation", "Compare the current image (first) with the prior image (second). "
                         "Write a short report with Findings and Impression sections.",
                         "I count the lesions on both images and compare.", None),
    # Multiple choice as OmniMedVQA/Med-R1 write it (`A)x, B)y, ...`, answer = the letter); options shuffled per question.
    "choice": Question("vqa_closed", "Which quadrant holds the lesion?", "I check which quadrant holds the bright spot.",
                       None),
}
FINDING_LEVELS = {"mass": 215.0, "cyst": 12.0, "calcification": 250.0}
QUADRANTS = ("upper left", "upper right", "lower left", "lower right")
CHANGES = ("new", "resolved", "increased", "decreased", "unchanged")


def _disk_centres(rng: np.random.Generator, count: int, size: int, radius: int,
                  side: str | None) -> list[tuple[int, int]]:
    """Place non-overlapping disk centres; a `side` restricts x to that half (away from the midline)."""
    centres: list[tuple[int, int]] = []
    margin = radius + 2
    while len(centres) < count:
        if side == "left":
            x = int(rng.integers(margin, size // 2 - radius))
        elif side == "right":
            x = int(rng.integers(size // 2 + radius, size - margin))
        else:
            x = int(rng.integers(margin, size - margin))
        y = int(rng.integers(margin, size - margin))
        if all((x - cx) ** 2 + (y - cy) ** 2 > (2 * radius + 4) ** 2 for cx, cy in centres):
            centres.append((x, y))
    return centres


def render_image(rng: np.random.Generator, count: int, size: int = 112, side: str | None = None) -> Image.Image:
    """Draw grey noise with `count` bright disks (lesions); returns an 8-bit greyscale image."""
    pixels = rng.normal(70, 18, (size, size))
    radius = max(4, size // 14)
    yy, xx = np.mgrid[0:size, 0:size]
    for cx, cy in _disk_centres(rng, count, size, radius, side):
        r = radius + int(rng.integers(-1, 2))
        pixels[(xx - cx) ** 2 + (yy - cy) ** 2 <= r * r] = rng.normal(215, 10)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def _answer_and_layout(rng: np.random.Generator, question_type: str, max_count: int) -> tuple[str, int, str | None]:
    """Draw the ground truth first (balanced), then the image layout that realises it."""
    if question_type == "presence":
        present = bool(rng.integers(0, 2))
        count = int(rng.integers(1, max_count + 1)) if present else 0
        return ("yes" if present else "no"), count, None
    if question_type == "count":
        count = int(rng.integers(0, max_count + 1))
        return str(count), count, None
    side = ("left", "right")[int(rng.integers(0, 2))]
    return ("A" if side == "left" else "B"), 1, side


@dataclass(frozen=True)
class Shape:
    """One drawn finding: its kind, centre and radius (half side for squares)."""

    kind: str
    x: int
    y: int
    r: int

    def box(self) -> list[int]:
        """Pixel bounding box [x1, y1, x2, y2] (inclusive) of the drawn shape."""
        return [self.x - self.r, self.y - self.r, self.x + self.r, self.y + self.r]


def _region_bounds(size: int, radius: int, region: str | None) -> tuple[int, int, int, int]:
    """x and y ranges that keep a shape inside the image and inside its quadrant (away from the midlines)."""
    low, high, mid = radius + 2, size - radius - 2, size // 2
    x_range, y_range = (low, high), (low, high)
    if region:
        x_range = (low, mid - radius - 1) if region.endswith("left") else (mid + radius + 1, high)
        y_range = (low, mid - radius - 1) if region.startswith("upper") else (mid + radius + 1, high)
    return (*x_range, *y_range)


def _place_shapes(rng: np.random.Generator, kinds: list[str], size: int, radii: list[int],
                  region: str | None = None) -> list[Shape]:
    """Non-overlapping shapes of the given kinds and radii, optionally inside one quadrant."""
    shapes: list[Shape] = []
    for kind, r in zip(kinds, radii, strict=True):
        x_low, x_high, y_low, y_high = _region_bounds(size, r, region)
        while True:
            x, y = int(rng.integers(x_low, x_high)), int(rng.integers(y_low, y_high))
            if all(max(abs(x - s.x), abs(y - s.y)) > r + s.r + 4 for s in shapes):
                shapes.append(Shape(kind, x, y, r))
                break
    return shapes


def draw_shapes(rng: np.random.Generator, shapes: list[Shape], size: int) -> Image.Image:
    """Grey noise with masses (bright disks), cysts (dark disks) and calcifications (bright squares)."""
    pixels = rng.normal(70, 18, (size, size))
    yy, xx = np.mgrid[0:size, 0:size]
    for shape in shapes:
        if shape.kind == "calcification":
            mask = (abs(xx - shape.x) <= shape.r) & (abs(yy - shape.y) <= shape.r)
        else:
            mask = (xx - shape.x) ** 2 + (yy - shape.y) ** 2 <= shape.r ** 2
        pixels[mask] = FINDING_LEVELS[shape.kind] + rng.normal(0, 4)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="L")


def _quadrant(shape: Shape, size: int) -> str:
    """The quadrant name of a shape's centre."""
    vertical = "upper" if shape.y < size / 2 else "lower"
    return f"{vertical} {'left' if shape.x < size / 2 else 'right'}"


def _lesion_report(shapes: list[Shape], size: int) -> tuple[str, str]:
    """Findings and impression sentences for bright lesions."""
    if not shapes:
        return "No focal lesion.", "Normal study."
    places = ", ".join(sorted(_quadrant(s, size) for s in shapes))
    noun = "lesion" if len(shapes) == 1 else "lesions"
    impression = "Single lesion." if len(shapes) == 1 else f"Multiple lesions ({len(shapes)})."
    return f"{len(shapes)} bright round {noun}: {places}.", impression


def _multiple_choice(rng: np.random.Generator, size: int, radius: int) -> tuple[str, list[Image.Image], dict]:
    """One lesion in a quadrant; the four quadrants as shuffled options (question and choices ride in the extras)."""
    quadrant = QUADRANTS[int(rng.integers(0, 4))]
    options = [QUADRANTS[i] for i in rng.permutation(len(QUADRANTS))]
    shapes = _place_shapes(rng, ["mass"], size, [radius], region=quadrant)
    letters = "ABCD"
    question = f"{QUESTIONS['choice'].text} " + ", ".join(f"{letters[i]}){text}" for i, text in enumerate(options))
    return (letters[options.index(quadrant)], [draw_shapes(rng, shapes, size)],
            {"quadrant": quadrant, "question": question, "choices": options})


def _generate(question_type: str, rng: np.random.Generator, size: int, max_count: int
              ) -> tuple[str, list[Image.Image], dict]:
    """Ground truth first, then the images that realise it: (answer, images current-first, meta extras)."""
    radius = max(4, size // 14)
    if question_type == "choice":
        return _multiple_choice(rng, size, radius)
    if question_type == "findings":
        present = [k for k, bit in zip(FINDING_LEVELS, f"{int(rng.integers(1, 8)):03b}") if bit == "1"]
        shapes = _place_shapes(rng, present, size, [radius] * len(present))
        return ", ".join(sorted(present)), [draw_shapes(rng, shapes, size)], {"findings": sorted(present)}
    if question_type == "detect":
        count = int(rng.integers(1, max_count + 1))
        shapes = sorted(_place_shapes(rng, ["mass"] * count, size, [radius] * count), key=lambda s: (s.x, s.y))
        boxes = [s.box() for s in shapes]
        return json.dumps(boxes), [draw_shapes(rng, shapes, size)], {"lesion_count": count}
    if question_type == "instances":
        kinds = ["mass"] * int(rng.integers(0, 3)) + ["cyst"] * int(rng.integers(0, 3)) or ["mass"]
        shapes = _place_shapes(rng, kinds, size, [radius] * len(kinds))
        found = {kind: sorted(s.box() for s in shapes if s.kind == kind) for kind in ("cyst", "mass")}
        answer = json.dumps({kind: boxes for kind, boxes in found.items() if boxes})
        return answer, [draw_shapes(rng, shapes, size)], {"lesion_count": len(shapes)}
    if question_type == "size":
        r = int(rng.integers(max(3, radius - 3), radius + 5))
        shapes = _place_shapes(rng, ["mass"], size, [r])
        return str(2 * r + 1), [draw_shapes(rng, shapes, size)], {"radius": r}
    if question_type == "location":
        quadrant = QUADRANTS[int(rng.integers(0, 4))]
        shapes = _place_shapes(rng, ["mass"], size, [radius], region=quadrant)
        return quadrant, [draw_shapes(rng, shapes, size)], {"quadrant": quadrant}
    if question_type == "report":
        count = int(rng.integers(0, max_count + 1))
        shapes = _place_shapes(rng, ["mass"] * count, size, [radius] * count)
        findings, impression = _lesion_report(shapes, size)
        return (f"Findings: {findings} Impression: {impression}", [draw_shapes(rng, shapes, size)],
                {"lesion_count": count})
    change = CHANGES[int(rng.integers(0, len(CHANGES)))]
    low = int(rng.integers(1, max_count))
    high = int(rng.integers(low + 1, max_count + 1))
    prior, current = {"new": (0, high), "resolved": (high, 0), "increased": (low, high),
                      "decreased": (high, low), "unchanged": (low, low)}[change]
    current_shapes = _place_shapes(rng, ["mass"] * current, size, [radius] * current)
    prior_shapes = _place_shapes(rng, ["mass"] * prior, size, [radius] * prior)
    images = [draw_shapes(rng, current_shapes, size), draw_shapes(rng, prior_shapes, size)]
    impression = {"new": "New lesion since the prior study.", "resolved": "Lesions resolved since the prior study.",
                  "increased": "Lesion count increased.", "decreased": "Lesion count decreased.",
                  "unchanged": "Unchanged lesions."}[change]
    answer = f"Findings: {current} lesion(s) now, {prior} on the prior image. Impression: {impression}"
    return answer, images, {"lesion_count": current, "prior_count": prior, "change": change}


def make_split(out_dir: str | Path, split: str, n: int, *, seed: int = 0, image_size: int = 112,
               question_types: tuple[str, ...] | list[str] = ("presence", "count"),
               max_count: int = 3) -> Path:
    """Write `n` records of one split as JSONL plus PNG images under out_dir; return the JSONL path."""
    unknown = sorted(set(question_types) - set(QUESTIONS))
    if unknown:
        raise ValueError(f"unknown synthetic question types {unknown}; known: {list(QUESTIONS)}")
    out_dir = Path(out_dir)
    image_dir = out_dir / "images" / split
    image_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, SPLIT_OFFSETS.get(split, 9)])
    records = []
    for index in range(n):
        question_type = question_types[index % len(question_types)]
        question = QUESTIONS[question_type]
        record_id = f"{split}-{index:05d}"
        image_rel = f"images/{split}/{record_id}.png"
        if question_type in ORIGINAL_TYPES:
            answer, count, side = _answer_and_layout(rng, question_type, max_count)
            render_image(rng, count, image_size, side).save(out_dir / image_rel)
            image_rels = [image_rel]
            extras = {"lesion_count": count, "side": side}
        else:
            answer, images, extras = _generate(question_type, rng, image_size, max_count)
            image_rels = [image_rel] + [f"images/{split}/{record_id}_prior.png" for _ in images[1:]]
            for rel, image in zip(image_rels, images, strict=True):
                image.save(out_dir / rel)
        # A question with per-record wording (multiple choice) brings its own text and options.
        text, choices = extras.pop("question", question.text), extras.pop("choices", question.choices)
        record = {
            "id": record_id, "dataset": DATASET_NAME, "modality": "synthetic", "task": question.task,
            "images": image_rels, "question": text, "answer": answer,
            "meta": {"split": split, "question_type": question_type, **extras,
                     "rationale": question.rationale, "source_file": f"{split}.jsonl"},
        }
        if choices:
            record["choices"] = list(choices)
        records.append(record)
    path = out_dir / f"{split}.jsonl"
    tmp = path.with_suffix(".jsonl.partial")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)
    return path


def ensure_dataset(out_dir: str | Path, *, sizes: dict[str, int], seed: int = 0, image_size: int = 112,
                   question_types: tuple[str, ...] | list[str] = ("presence", "count"),
                   max_count: int = 3) -> dict[str, Path]:
    """Generate every split unless an identical data set (same settings) already exists."""
    out_dir = Path(out_dir)
    settings = {"sizes": sizes, "seed": seed, "image_size": image_size,
                "question_types": list(question_types), "max_count": max_count}
    marker = out_dir / "synthetic.json"
    paths = {split: out_dir / f"{split}.jsonl" for split in sizes}
    if marker.exists() and json.loads(marker.read_text()) == settings and all(p.exists() for p in paths.values()):
        return paths
    if out_dir.exists():
        shutil.rmtree(out_dir)
    for split, n in sizes.items():
        make_split(out_dir, split, n, seed=seed, image_size=image_size,
                   question_types=question_types, max_count=max_count)
    marker.write_text(json.dumps(settings, indent=2))
    return paths


# Which FLARE modality folder each question type is filed under when written in the FLARE 2025 layout.
FLARE_MODALITIES = {"presence": "Xray", "count": "Microscopy", "side": "Ultrasound", "findings": "Mammography",
                    "detect": "Ultrasound", "instances": "Clinical", "size": "Dermatology", "location": "Endoscopy",
                    "report": "Xray", "temporal": "Xray", "choice": "Xray"}


def write_flare_layout(out_dir: str | Path, *, sizes: dict[str, int], seed: int = 0, image_size: int = 112,
                       question_types: tuple[str, ...] | list[str] = QUESTION_TYPES, max_count: int = 3) -> Path:
    """Generate the data set and write it in the FLARE 2025 layout (one data set per question type); return its root."""
    from medlib.data import read_records
    from medlib.data.readers import flare2025

    out_dir = Path(out_dir)
    staging = out_dir / ".staging"
    records = []
    for split, n in sizes.items():
        path = make_split(staging, split, n, seed=seed, image_size=image_size, question_types=question_types,
                          max_count=max_count)
        records += [{**r, "dataset": f"synthetic_{r['meta']['question_type']}",
                     "modality": FLARE_MODALITIES[r["meta"]["question_type"]]} for r in read_records(path)]
    root = flare2025.write(records, staging, out_dir)
    shutil.rmtree(staging)
    return root


def ensure_flare_dataset(out_dir: str | Path, *, sizes: dict[str, int], seed: int = 0, image_size: int = 112,
                         question_types: tuple[str, ...] | list[str] = QUESTION_TYPES,
                         max_count: int = 3) -> dict[str, Path]:
    """Write the synthetic set in the FLARE 2025 layout beside out_dir and read it back through its reader into
    out_dir, unless an identical set is there; the layout stays at `<out_dir>_flare2025/organized_dataset`."""
    from medlib.data.readers import convert

    out_dir = Path(out_dir)
    settings = {"sizes": sizes, "seed": seed, "image_size": image_size, "question_types": list(question_types),
                "max_count": max_count, "layout": "flare2025"}
    marker = out_dir / "synthetic.json"
    paths = {split: out_dir / f"{split}.jsonl" for split in sizes}
    if marker.exists() and json.loads(marker.read_text()) == settings and all(p.exists() for p in paths.values()):
        return paths
    source = flare_layout_dir(out_dir)
    shutil.rmtree(source, ignore_errors=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    root = write_flare_layout(source, sizes=sizes, seed=seed, image_size=image_size,
                              question_types=question_types, max_count=max_count)
    convert(root, out_dir, "flare2025", strict=True)
    missing = [str(path) for path in paths.values() if not path.exists()]
    if missing:
        raise FileNotFoundError(f"{root}: the FLARE 2025 reader wrote no records for {missing}")
    marker.write_text(json.dumps(settings, indent=2))
    return paths


def flare_layout_dir(out_dir: str | Path) -> Path:
    """Where ensure_flare_dataset writes the FLARE 2025 layout for records in out_dir."""
    out_dir = Path(out_dir)
    return out_dir.with_name(out_dir.name + "_flare2025")
