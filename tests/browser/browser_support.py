"""Helpers of the browser tests: the system Chromium, free ports, servers started and stopped, CLI overrides."""
from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "params" / "tiny.yaml"
# The flags that work on these machines: no sandbox as root, and no background connections (the network
# is closed, and Chromium would otherwise retry Google's hosts at every start).
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"]


def chromium_path() -> str | None:
    """The system Chromium (Debian's `chromium` package), or None."""
    for name in (os.environ.get("MEDLIB_CHROMIUM", ""), "chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name) if name else None
        if found:
            return found
    return None


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], url: str, log: Path, *, env: dict[str, str] | None = None,
            timeout: float = 180) -> Iterator[subprocess.Popen]:
    """Start a server process, wait until `url` answers, and stop it (and its children) afterwards."""
    with open(log, "w") as handle:
        process = subprocess.Popen(command, cwd=ROOT, env={**os.environ, **(env or {})}, stdout=handle,
                                   stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise AssertionError(f"{command[2:4]} exited with {process.returncode}:\n{log.read_text()[-3000:]}")
            try:
                urllib.request.urlopen(url, timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"{url} did not answer in {timeout:.0f} s:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.5)
        yield process
    finally:
        # The process leads its own session: its group is this server and the kernels it started.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def medlib_command(*args: str) -> list[str]:
    """`python -m medlib ARGS` with this interpreter (the venv's)."""
    return [sys.executable, "-m", "medlib", *args]


def isolated(tmp: Path) -> list[str]:
    """Overrides that keep a tiny run's data, model, checkpoints and results inside `tmp`."""
    return [f"common.runs_dir={tmp}/runs", f"common.data_dir={tmp}/runs/data",
            f"common.model_id={tmp}/runs/base-model", f"common.results_dir={tmp}/results"]


def with_set(overrides: list[str]) -> list[str]:
    """`--set a --set b ...` for the CLI."""
    return [part for override in overrides for part in ("--set", override)]


def save_small_png(png: bytes, path: Path, width: int = 1000) -> Path:
    """A screenshot for the README: scaled to `width` and reduced to 128 colours (tens of kB, not hundreds)."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(png)) as image:
        image = image.convert("RGB")
        if image.width > width:
            image = image.resize((width, round(image.height * width / image.width)), Image.Resampling.LANCZOS)
        image.quantize(colors=128, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
    return path
