"""Benchmark: convert 20,000 synthetic FLARE 2025-layout questions to records (read, validate every image, write).

Run: .venv/bin/python bench/data_convert.py [--questions 20000] [--image-size 64]
The target is under 60 s on 2 CPU cores; it prints records/s for reading alone and for the full conversion.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from medlib.data.readers import convert, read_source
from medlib.data.synthetic import QUESTION_TYPES, write_flare_layout


def main() -> int:
    """Generate the layout (not timed), then time reading and the full conversion."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=20_000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--limit-s", type=float, default=60.0, help="fail (exit 1) above this many seconds")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="medlib-bench-") as tmp:
        source = Path(tmp) / "flare"
        started = time.perf_counter()
        write_flare_layout(source, sizes={"train": args.questions * 9 // 10, "validation": args.questions // 10},
                           seed=0, image_size=args.image_size, question_types=QUESTION_TYPES)
        print(f"generated {args.questions} questions in {time.perf_counter() - started:.1f} s (not timed)")

        started = time.perf_counter()
        result = read_source(source, "flare2025")
        read_s = time.perf_counter() - started
        started = time.perf_counter()
        report, written = convert(source, Path(tmp) / "records", "flare2025")
        convert_s = time.perf_counter() - started
    assert report.reconciles and len(report.records) == args.questions, report.table()
    print(f"read only:       {len(result.records):>6} records in {read_s:6.2f} s = {len(result.records) / read_s:9.0f} records/s")
    print(f"convert (full):  {len(report.records):>6} records in {convert_s:6.2f} s = "
          f"{len(report.records) / convert_s:9.0f} records/s  ({len(written)} files, every image opened)")
    print(f"target: < {args.limit_s:.0f} s → {'ok' if convert_s < args.limit_s else 'TOO SLOW'}")
    return 0 if convert_s < args.limit_s else 1


if __name__ == "__main__":
    raise SystemExit(main())
