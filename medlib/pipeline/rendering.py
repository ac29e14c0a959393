"""Make executed notebooks publishable: secrets scrubbed, images shrunk, huge outputs cut, HTML rendered."""

from __future__ import annotations

import base64
import html
import io
import os
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from medlib.pipeline.results import atomic_write_text

# Environment variable names whose values must never reach a shared file.
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PASSWD|CREDENTIAL|PRIVATE|AUTH", re.IGNORECASE)
# Shorter values (`1`, `true`, a port) would redact ordinary text everywhere.
MIN_SECRET_LENGTH = 6
REDACTED = "[redacted]"
MAX_OUTPUT_CHARS = 20_000
MAX_IMAGE_SIDE = 1200
MIN_IMAGE_BYTES = 60_000
NOINPUT_SUFFIX = ".noinput.html"


def secret_values(environ: Mapping[str, str] | None = None) -> list[str]:
    """Values of secret-looking environment variables, longest first (so no secret is half-replaced)."""
    environ = os.environ if environ is None else environ
    values = {value for name, value in environ.items() if SECRET_NAME.search(name) and len(value) >= MIN_SECRET_LENGTH}
    return sorted(values, key=len, reverse=True)


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    """`text` with every secret (raw, HTML-escaped or JSON-escaped) replaced by `[redacted]`."""
    for secret in secrets:
        for form in {secret, html.escape(secret), html.escape(secret, quote=False), secret.replace('"', '\\"')}:
            text = text.replace(form, REDACTED)
    return text


def truncate_text(text: str, limit: int = MAX_OUTPUT_CHARS) -> str:
    """Head and tail of a long text with a note saying how much was cut."""
    if len(text) <= limit:
        return text
    keep = limit // 2
    cut = len(text) - 2 * keep
    return f"{text[:keep]}\n… [{cut} characters cut by medlib for the shared copy] …\n{text[-keep:]}"


def shrink_png(data: str, max_side: int = MAX_IMAGE_SIDE, min_bytes: int = MIN_IMAGE_BYTES) -> str:
    """A base64 PNG downscaled to `max_side` and re-encoded smaller (a 256-colour palette when that helps)."""
    raw = base64.b64decode(data)
    if len(raw) < min_bytes:
        return data
    from PIL import Image

    image = Image.open(io.BytesIO(raw))
    image.load()
    if max(image.size) > max_side:
        image.thumbnail((max_side, max_side))
    candidates = [raw]
    for variant in (image, _palette(image)):
        buffer = io.BytesIO()
        variant.save(buffer, format="PNG", optimize=True)
        candidates.append(buffer.getvalue())
    return base64.b64encode(min(candidates, key=len)).decode("ascii")


def _palette(image: Any) -> Any:
    """The image quantised to 256 colours: plots have few, and it often halves the file."""
    if image.mode not in ("RGB", "RGBA"):
        image = image.convert("RGBA")
    return image.quantize(256, method=2)  # FASTOCTREE: the method that accepts RGBA


def _joined(value: Any) -> str:
    """Notebook text fields may be a string or a list of lines."""
    return "".join(value) if isinstance(value, list) else str(value)


def publishable_output(output: dict[str, Any], secrets: list[str]) -> dict[str, Any]:
    """One cell output scrubbed, cut to size and with its PNG shrunk (changed in place and returned)."""
    if "text" in output:
        output["text"] = truncate_text(scrub_text(_joined(output["text"]), secrets))
    if "traceback" in output:
        output["traceback"] = [scrub_text(line, secrets) for line in output["traceback"]]
    if "evalue" in output:
        output["evalue"] = scrub_text(str(output["evalue"]), secrets)
    data = output.get("data")
    if isinstance(data, dict):
        for mime in list(data):
            if mime == "image/png":
                data[mime] = shrink_png(_joined(data[mime]))
            elif mime.startswith("text/") or mime.endswith("+xml") or mime == "application/javascript":
                text = scrub_text(_joined(data[mime]), secrets)
                # Cut HTML would break the page: fall back to the plain-text rendering.
                if mime == "text/html" and len(text) > MAX_OUTPUT_CHARS and "text/plain" in data:
                    del data[mime]
                    continue
                data[mime] = truncate_text(text)
    return output


def make_publishable(notebook: Any, secrets: list[str] | None = None) -> Any:
    """A notebook (nbformat node) with every source and output made publishable, in place."""
    secrets = secret_values() if secrets is None else secrets
    for cell in notebook.cells:
        cell.source = scrub_text(_joined(cell.source), secrets)
        for output in cell.get("outputs", []):
            publishable_output(output, secrets)
    return notebook


def render_publishable(notebook_path: Path | str, *, exclude_input: bool = False) -> Path:
    """Rewrite the executed notebook publishable, then render it to `.html` (or `.noinput.html`) beside it."""
    import nbformat
    from nbconvert import HTMLExporter

    notebook_path = Path(notebook_path)
    secrets = secret_values()
    notebook = make_publishable(nbformat.read(notebook_path, as_version=4), secrets)
    atomic_write_text(notebook_path, nbformat.writes(notebook))
    body, _ = HTMLExporter(exclude_input=exclude_input).from_notebook_node(notebook)
    target = notebook_path.with_suffix(NOINPUT_SUFFIX if exclude_input else ".html")
    return atomic_write_text(target, scrub_text(body, secrets))
