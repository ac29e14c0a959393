"""Live output of a running notebook for terminals and Slurm logs, and what to say when its kernel dies.

papermill's `log_output` logs every output message: one line per tqdm refresh when progress bars
are text, nothing at all when they are widgets or HTML displays (the Trainer's). This engine logs
ordinary output as it comes, secrets redacted, and progress — text bars, widget bars, the Trainer's
display — as one line every few seconds. It also watches the kernel process (its memory peak and
exit status) so a dead kernel can be explained.
"""

from __future__ import annotations

import html
import logging
import re
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from medlib.pipeline.rendering import scrub_text, secret_values

ENGINE_NAME = "medlib"
PROGRESS_INTERVAL_S = 5.0
logger = logging.getLogger("papermill")
# A tqdm meter or the Trainer's "[ 12/600 00:03 < 02:40, 3.6 it/s, Epoch 0.1/1]".
_PROGRESS = re.compile(r"\d+%\|.*\|\s*\d+/\d+|\[\s*\d+/\d+\s[^\]]*\]|^\s*\d+/\d+\s\[")
_TAG = re.compile(r"<[^>]+>")
_CGROUP_EVENTS = Path("/sys/fs/cgroup/memory.events")


def oom_kills() -> int | None:
    """The OOM-kill count of this cgroup (cgroup v2), or None where it cannot be read."""
    try:
        for line in _CGROUP_EVENTS.read_text().splitlines():
            key, _, value = line.partition(" ")
            if key == "oom_kill":
                return int(value)
    except (OSError, ValueError):
        pass
    return None


def _peak_rss_mib(pid: int) -> float | None:
    """A process's peak resident memory (VmHWM) in MiB, None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


@dataclass
class KernelWatch:
    """What the runner knows about one stage's kernel: its process, memory peak, current cell."""

    process: Any = None  # the kernel's Popen, from jupyter_client's local provisioner
    peak_mib: float | None = None
    cell_index: int | None = None
    cell_source: str = ""
    oom_before: int | None = field(default_factory=oom_kills)
    _stop: threading.Event = field(default_factory=threading.Event)

    def attach(self, process: Any) -> None:
        """Start sampling the kernel's peak memory once a second (the last sample survives its death)."""
        self.process = process
        threading.Thread(target=self._sample, daemon=True, name="medlib-kernel-watch").start()

    def _sample(self) -> None:
        while not self._stop.is_set() and self.process is not None:
            peak = _peak_rss_mib(self.process.pid)
            if peak is not None:
                self.peak_mib = max(self.peak_mib or 0.0, peak)
            self._stop.wait(1.0)

    def stop(self) -> None:
        """Stop sampling."""
        self._stop.set()

    def exit_reason(self) -> str:
        """Why the kernel is gone: the OOM killer, a signal, or an exit status (with its memory peak)."""
        code = None
        if self.process is not None:
            try:
                code = self.process.wait(timeout=5)
            except Exception:  # noqa: BLE001 - already reaped elsewhere, or still hanging
                code = self.process.returncode
        peak = f", memory peak {self.peak_mib:,.0f} MiB" if self.peak_mib else ""
        oom_now = oom_kills()
        if self.oom_before is not None and oom_now is not None and oom_now > self.oom_before:
            return f"killed by the OOM killer (out of memory{peak})"
        if code is None:
            return f"exit status unknown{peak}"
        if code < 0:
            number = -code
            try:
                name = signal.Signals(number).name
            except ValueError:
                name = "unknown signal"
            hint = (" — the OOM killer, a job's memory or time limit, or `kill -9`"
                    if number == signal.SIGKILL else "")
            return f"killed by signal {number} ({name}{hint}{peak})"
        return f"exited with status {code}{peak}"


class ProgressLog:
    """Log notebook output line by line; progress lines at most once per interval (the last one kept)."""

    def __init__(self, interval_s: float = PROGRESS_INTERVAL_S, secrets: list[str] | None = None) -> None:
        self.interval_s = interval_s
        self.secrets = secret_values() if secrets is None else secrets
        self._last_emit = -float("inf")
        self._pending: str | None = None

    def text(self, content: str, *, level: int = logging.INFO) -> None:
        """Stream text: `\\r`-refreshed segments count as progress, whole lines are logged."""
        lines: list[str] = []
        for line in content.split("\n"):
            segment = next((part for part in reversed(line.split("\r")) if part.strip()), "")
            if "\r" in line or _PROGRESS.search(line):
                self._log_lines(lines, level)
                self.progress(segment)
            elif line.strip():
                lines.append(line)
        self._log_lines(lines, level)

    def _log_lines(self, lines: list[str], level: int) -> None:
        """Log ordinary lines (after any pending progress line), then forget them."""
        if lines:
            self.flush()
            logger.log(level, scrub_text("\n".join(lines), self.secrets))
            lines.clear()

    def display(self, data: dict[str, Any]) -> None:
        """A rich display (update): its progress text if it has one, else its plain text."""
        markup = data.get("text/html")
        if markup:
            plain = " ".join(html.unescape(_TAG.sub(" ", "".join(markup))).split())
            match = _PROGRESS.search(plain)
            if match:
                self.progress(match.group(0))
                return
        text = "".join(data.get("text/plain", ""))
        if text and not text.startswith("<IPython.core.display"):
            self.text(text)

    def progress(self, line: str) -> None:
        """Keep the newest progress line; log it when the interval has passed or the bar is full."""
        line = " ".join(html.unescape(line).split())
        if not line:
            return
        self._pending = line
        if time.monotonic() - self._last_emit >= self.interval_s or _finished(line):
            self.flush()

    def flush(self) -> None:
        """Log the pending progress line, if any."""
        if self._pending is not None:
            logger.info("progress: %s", scrub_text(self._pending, self.secrets))
            self._last_emit = time.monotonic()
            self._pending = None


def _finished(line: str) -> bool:
    """Whether a progress line shows a full bar (100% or n/n)."""
    match = re.search(r"(\d+)/(\d+)", line)
    return "100%" in line or bool(match and match.group(1) == match.group(2))


_current_watch: KernelWatch | None = None


def _client_class():
    """papermill's notebook client with medlib's logging and kernel watching (built on first use)."""
    from nbclient import NotebookClient
    from nbclient.util import run_sync
    from papermill.clientwrap import PapermillNotebookClient

    class MedlibNotebookClient(PapermillNotebookClient):
        """Logs through ProgressLog and tells the KernelWatch the kernel process and current cell."""

        async def async_start_new_kernel_client(self):
            client = await super().async_start_new_kernel_client()
            process = getattr(getattr(self.km, "provisioner", None), "process", None)
            if _current_watch is not None and process is not None:
                _current_watch.attach(process)
            return client

        async def async_execute_cell(self, cell, cell_index, *args, **kwargs):
            if _current_watch is not None and cell.cell_type == "code":
                _current_watch.cell_index = cell_index
                _current_watch.cell_source = "".join(cell.source)
            result = await super().async_execute_cell(cell, cell_index, *args, **kwargs)
            self._medlib_log.flush()
            return result

        # nbclient's sync entry points wrap the base class's coroutines: rebind them to these overrides.
        start_new_kernel_client = run_sync(async_start_new_kernel_client)
        execute_cell = run_sync(async_execute_cell)

        def process_message(self, msg, cell, cell_index):
            output = NotebookClient.process_message(self, msg, cell, cell_index)
            if self.log_output:
                self._log_message(msg)
            return output

        @property
        def _medlib_log(self) -> ProgressLog:
            if not hasattr(self, "_progress_log"):
                self._progress_log = ProgressLog()
            return self._progress_log

        def _log_message(self, msg: dict[str, Any]) -> None:
            kind, content = msg["msg_type"], msg["content"]
            if kind == "stream":
                self._medlib_log.text(content.get("text", ""),
                                      level=logging.WARNING if content.get("name") == "stderr" else logging.INFO)
            elif kind in ("display_data", "update_display_data", "execute_result"):
                self._medlib_log.display(content.get("data", {}))
            elif kind == "comm_msg":
                state = (content.get("data") or {}).get("state") or {}
                value = " ".join(html.unescape(str(state.get("value", ""))).split())
                if _PROGRESS.search(value):
                    self._medlib_log.progress(value)
            elif kind == "error":
                self._medlib_log.text(f"{content.get('ename')}: {content.get('evalue')}", level=logging.ERROR)

    return MedlibNotebookClient


def register_engine() -> str:
    """Register the medlib engine with papermill (idempotent); return its name."""
    from papermill.engines import NBClientEngine, papermill_engines
    from papermill.utils import merge_kwargs, remove_args

    class MedlibEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(cls, nb_man, kernel_name, log_output=False, stdout_file=None,
                                     stderr_file=None, start_timeout=60, execution_timeout=None, **kwargs):
            kwargs = remove_args(["input_path"], **kwargs)
            safe_kwargs = remove_args(["timeout", "startup_timeout"], **kwargs)
            final_kwargs = merge_kwargs(safe_kwargs, timeout=execution_timeout or kwargs.get("timeout"),
                                        startup_timeout=start_timeout, kernel_name=kernel_name, log=logger,
                                        log_output=log_output, stdout_file=stdout_file, stderr_file=stderr_file)
            return _client_class()(nb_man, **final_kwargs).execute()

    papermill_engines.register(ENGINE_NAME, MedlibEngine)
    return ENGINE_NAME


def watching(watch: KernelWatch | None) -> None:
    """Make `watch` the one the next notebook execution reports to (the runner runs one at a time)."""
    global _current_watch
    _current_watch = watch


def redacting_filter() -> logging.Filter:
    """A logging filter that redacts secrets (environment values) in every record it passes."""
    secrets = secret_values()

    class Redact(logging.Filter):
        def filter(self, record: logging.LogRecord) -> bool:
            record.msg = scrub_text(record.getMessage(), secrets)
            record.args = ()
            return True

    return Redact()

