"""`medlib train`'s inputs under torchrun: every rank prepares them at once, one at a time."""
from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from medlib.data import read_records
from medlib.training import command

ROOT = Path(__file__).resolve().parents[2]
SMALL = "data_exploration.synthetic_sizes={train: 200, validation: 4, test: 4}"


def _append_under_lock(folder: str, log: str, tag: str) -> None:
    """Write a start and an end line to `log` while holding the folder's lock."""
    with command.exclusive(Path(folder)):
        with open(log, "a") as handle:
            handle.write(f"{tag} start\n")
        time.sleep(0.3)
        with open(log, "a") as handle:
            handle.write(f"{tag} end\n")


def _prepare(data_dir: str, start) -> None:
    """What each torchrun rank does first in `medlib train`, once every party of `start` is there."""
    start.wait()
    command.prepare_inputs(str(ROOT / "params" / "tiny.yaml"), [f"common.data_dir={data_dir}", SMALL])


def test_the_lock_lets_one_process_in_at_a_time(tmp_path: Path) -> None:
    log = tmp_path / "log.txt"
    context = multiprocessing.get_context("spawn")
    workers = [context.Process(target=_append_under_lock, args=(str(tmp_path / "data"), str(log), tag))
               for tag in "ab"]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(60)
        assert worker.exitcode == 0
    lines = log.read_text().splitlines()
    # never interleaved: each start is followed by its own end
    assert [line.split()[1] for line in lines] == ["start", "end", "start", "end"]
    assert lines[0].split()[0] == lines[1].split()[0] and lines[2].split()[0] == lines[3].split()[0]


def test_preparing_the_inputs_waits_for_the_rank_that_holds_the_data_set(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    with command.exclusive(data_dir):
        worker = context.Process(target=_prepare, args=(str(data_dir), start))
        worker.start()
        start.wait(60)  # the worker is about to prepare
        time.sleep(3)  # unlocked, the small data set is written well within this
        assert not (data_dir / "synthetic.json").exists() and worker.is_alive()
    worker.join(120)
    assert worker.exitcode == 0 and (data_dir / "synthetic.json").exists()


def test_two_ranks_preparing_the_same_data_set_at_once_both_succeed(tmp_path: Path) -> None:
    """Without the lock one rank deleted the folder the other was writing ('Directory not empty')."""
    data_dir = tmp_path / "data"
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    workers = [context.Process(target=_prepare, args=(str(data_dir), start)) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(120)
        assert worker.exitcode == 0
    train, validation = read_records(data_dir / "train.jsonl"), read_records(data_dir / "validation.jsonl")
    assert (len(train), len(validation)) == (200, 4)
    assert all((data_dir / record["images"][0]).exists() for record in train + validation)
