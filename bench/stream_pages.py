"""Streamed dataset -> pages: peak memory and digest agreement on a large local file.

Writes a parquet (or jsonl) file of at least --mb megabytes of text (the cached Shakespeare
corpus, paragraph by paragraph, cycled with a pass number so no two rows are equal), then runs
`--runs` independent processes, each with its own empty cache, that turn it into pages through
the production path (`--data.corpus hub:<file>`: `datasets` streaming, BPE trained on the
stream's first 8M characters, pages appended to a file) and report their wall time, peak RSS
and page-store digest.

    python -m bench.stream_pages --mb 50 --runs 2 --out bench/results/stream_pages_50mb.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import DEFAULT_CACHE, write_json

ROW_GROUP_ROWS = 2000


def paragraphs(cache_dir: Path) -> list[str]:
    from template.training.corpus import load_corpus_text

    return [p.strip() for p in load_corpus_text(cache_dir).split("\n\n") if p.strip()]


def make_dataset(path: Path, megabytes: float, cache_dir: Path) -> int:
    """A file of at least `megabytes` (on disk, compressed for parquet) of text rows, written a
    row group at a time; its size in bytes."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    source, target = paragraphs(cache_dir), megabytes * 1e6
    writer = pq.ParquetWriter(path, pa.schema([("text", pa.string())])) if path.suffix == ".parquet" else None
    handle = None if writer else path.open("w")
    turn = 0
    while path.stat().st_size < target:
        for start in range(0, len(source), ROW_GROUP_ROWS):
            rows = [f"[{turn}] {paragraph}" for paragraph in source[start:start + ROW_GROUP_ROWS]]
            if writer:
                writer.write_table(pa.table({"text": rows}))
            else:
                handle.write("".join(json.dumps({"text": r}) + "\n" for r in rows))
                handle.flush()
            if path.stat().st_size >= target:
                break
        turn += 1
    (writer or handle).close()
    return path.stat().st_size


def one_run(data: Path, preset: str, page_len: int, cache: Path) -> dict:
    """Pages of `data` in this process (the child side): what it took."""
    from template.training.workload import Workload

    t0 = time.perf_counter()
    work = Workload.build(preset, f"hub:{data}", cache, page_len=page_len)
    return {"seconds": round(time.perf_counter() - t0, 1), "pages": work.pages.num_pages,
            "tokens": work.pages.num_pages * work.pages.page_len, "digest": work.dataset_id,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def main(argv: list[str] | None = None) -> dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mb", type=float, default=50.0, help="size of the generated dataset")
    p.add_argument("--format", choices=("parquet", "jsonl"), default="parquet")
    p.add_argument("--runs", type=int, default=2, help="independent processes, each with an empty cache")
    p.add_argument("--preset", default="tiny")
    p.add_argument("--page-len", type=int, default=0, help="0: the preset's")
    p.add_argument("--cache-dir", default=str(DEFAULT_CACHE), help="where the Shakespeare corpus is cached")
    p.add_argument("--out", default="", help="write the figures here as JSON")
    p.add_argument("--child", default="", help=argparse.SUPPRESS)  # internal: one run, JSON on stdout
    a = p.parse_args(argv)
    if a.child:
        data, cache = a.child.split("|")
        print(json.dumps(one_run(Path(data), a.preset, a.page_len, Path(cache))))
        return {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / f"text.{a.format}"
        size = make_dataset(data, a.mb, Path(a.cache_dir).expanduser())
        print(f"stream_pages: {data.name} {size / 1e6:.1f} MB; {a.runs} independent runs")
        runs = []
        for i in range(a.runs):
            child = [sys.executable, "-m", "bench.stream_pages", "--preset", a.preset, "--page-len", str(a.page_len),
                     "--child", f"{data}|{Path(tmp) / f'cache{i}'}"]
            done = subprocess.run(child, capture_output=True, text=True, check=True)
            runs.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = runs[-1]
            print(f"  run {i}: {r['pages']:,} pages, {r['tokens'] / 1e6:.1f}M tokens in {r['seconds']}s "
                  f"({r['tokens'] / r['seconds'] / 1e3:.0f}k tok/s), peak RSS {r['peak_rss_mb']:.0f} MB, "
                  f"digest {r['digest']}")
    result = {"dataset_mb": round(size / 1e6, 1), "format": a.format, "preset": a.preset, "runs": runs,
              "same_digest": len({r["digest"] for r in runs}) == 1,
              "max_peak_rss_mb": max(r["peak_rss_mb"] for r in runs)}
    print(f"stream_pages: same digest on every run: {result['same_digest']}; "
          f"peak RSS at most {result['max_peak_rss_mb']:.0f} MB")
    if a.out:
        write_json(Path(a.out), result)
    return result


if __name__ == "__main__":
    main()
