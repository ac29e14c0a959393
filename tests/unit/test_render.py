"""Rendered notebooks are publishable: no secrets from the environment, small images, cut outputs."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import nbformat
import numpy as np
from PIL import Image

from medlib.pipeline.rendering import (
    MAX_OUTPUT_CHARS,
    REDACTED,
    make_publishable,
    scrub_text,
    secret_values,
    shrink_png,
    truncate_text,
)
from medlib.pipeline.runner import run_experiment

KERNELSPEC = {"name": "python3", "display_name": "Python 3", "language": "python"}
TOKEN = "hf_Zq8LrT1xWv4NpY7sKd2"
PASSWORD = "correct-horse-battery"


def test_secret_values_pick_secret_names_and_skip_short_values() -> None:
    environ = {"HF_TOKEN": TOKEN, "WANDB_API_KEY": "0123456789abcdef", "DB_PASSWORD": PASSWORD,
               "GITHUB_TOKEN": "1", "HOME": "/root", "PATH": "/usr/bin"}
    assert set(secret_values(environ)) == {TOKEN, "0123456789abcdef", PASSWORD}


def test_scrub_text_removes_raw_and_escaped_forms() -> None:
    secret = 'a<b>&"c123'
    text = f"raw {secret} html {secret.replace('&', '&amp;').replace('<', '&lt;').replace('>', '&gt;')}"
    scrubbed = scrub_text(text, [secret])
    assert "a<b>" not in scrubbed and "a&lt;b&gt;" not in scrubbed and scrubbed.count(REDACTED) == 2


def test_truncate_keeps_head_and_tail() -> None:
    text = "A" * 30_000 + "B" * 30_000
    cut = truncate_text(text)
    assert len(cut) < MAX_OUTPUT_CHARS + 200 and cut.startswith("A") and cut.endswith("B")
    assert "40000 characters cut" in cut
    assert truncate_text("short") == "short"


def _png(width: int, height: int) -> str:
    """A noisy RGB PNG (hard to compress) as base64."""
    pixels = np.random.default_rng(0).integers(0, 255, (height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def test_shrink_png_downscales_big_images_and_leaves_small_ones() -> None:
    big = _png(2400, 1600)
    shrunk = shrink_png(big)
    image = Image.open(io.BytesIO(base64.b64decode(shrunk)))
    assert max(image.size) == 1200 and len(shrunk) < len(big) / 3
    small = _png(40, 40)
    assert shrink_png(small) == small


def test_make_publishable_cuts_html_tables_and_stream_floods() -> None:
    notebook = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("show()")
    cell.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="line\n" * 20_000),
        nbformat.v4.new_output("display_data", data={"text/html": "<table>" + "<tr><td>x</td></tr>" * 5000,
                                                     "text/plain": "table"}),
    ]
    notebook.cells = [cell]
    make_publishable(notebook, [])
    stream, display = cell.outputs
    assert len(stream["text"]) < MAX_OUTPUT_CHARS + 200
    assert "text/html" not in display["data"] and display["data"]["text/plain"] == "table"


def test_a_notebook_printing_a_token_never_leaks_it(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("HF_TOKEN", TOKEN)
    monkeypatch.setenv("MEDLIB_TEST_PASSWORD", PASSWORD)
    notebook = nbformat.v4.new_notebook()
    notebook.metadata["kernelspec"] = KERNELSPEC
    parameters = nbformat.v4.new_code_cell('results_dir: str = "results/x"  # where results go')
    parameters.metadata["tags"] = ["parameters"]
    notebook.cells = [
        parameters,
        nbformat.v4.new_code_cell('import os\nprint("token is", os.environ["HF_TOKEN"])\n'
                                  'os.environ["MEDLIB_TEST_PASSWORD"]'),
    ]
    (tmp_path / "notebooks").mkdir()
    nbformat.write(notebook, tmp_path / "notebooks" / "10_leak.ipynb")
    params = tmp_path / "exp.yaml"
    params.write_text(f"common:\n  experiment: leak\n  results_dir: {tmp_path}/results\n")
    results = run_experiment(params, notebooks_dir=tmp_path / "notebooks", log_output=False)
    executed = (results / "10_leak.ipynb").read_text()
    rendered = (results / "10_leak.html").read_text()
    for text in (executed, rendered):
        assert TOKEN not in text and PASSWORD not in text
        assert REDACTED in text
    # The kernel really saw the token: the scrubbed line is the printed one.
    assert "token is [redacted]" in executed
