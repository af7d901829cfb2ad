"""Dump -> warehouse throughput: our pipeline against DuckDB's own limit and the pandas tutorial.

All three contenders read the same synthetic comments dump, generated at the start of the same
run (generation is not timed), so the ratios hold on any machine however noisy. Each contender
runs in its own subprocess, so its peak RSS (the kernel's VmHWM for that process, every thread
included) is its own and one contender's heap cannot inflate another's.

- ours:   stage_dump (processing as it stages) -> run_models -> load_duckdb, the plain
          functions the flow calls with the DuckDB engine, on a LocalLake in the work dir.
          No Prefect flow or server is started, so no start-up time is measured;
          decompressing the .zst dump IS measured (it is our job).
- duckdb: one COPY (read_json of the already-decompressed NDJSON -> Parquet): the engine's
          limit for parsing and writing the same JSON, with no pipeline around it.
- pandas: pd.read_json(lines=True) + df.to_csv on the decompressed NDJSON, the tutorial way.

    .venv/bin/python bench/process_bench.py --records 1000000 --codec gzip --repeat 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

import zstandard  # noqa: E402
from synthetic import write_dump  # noqa: E402

GIB = 1024**3
TARGET_VS_DUCKDB = 0.5
TARGET_VS_PANDAS = 10.0
TARGET_RSS = 1 * GIB
DUMP_NAME = "RC_2024-01.zst"


@dataclass
class Measured:
    """One contender's run: seconds per step, and its peak RSS as the kernel saw it."""

    name: str
    records: int
    steps: dict[str, float]
    rss_bytes: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return sum(self.steps.values())

    @property
    def rate(self) -> float:
        return self.records / self.seconds if self.seconds else 0.0


# ---------------------------------------------------------------- child roles (subprocesses)


def _role_ours(work: Path, run_dir: Path, codec: str, chunk_bytes: int | None) -> dict[str, object]:
    """Our pipeline on the dump, stage by stage, through the functions the flow calls; its
    lake and warehouse go in `run_dir`, a folder no earlier run used."""
    started = time.perf_counter()
    from tasks import settings
    from tasks.extract.stage import Window, stage_dump
    from tasks.lake.local import LocalLake
    from tasks.load.duckdb_engine import load_duckdb
    from tasks.model.duckdb_engine import run_models
    from tasks.process.duckdb_engine import ProcessResult

    imports = time.perf_counter() - started
    rss_after_imports = _self_rss()
    lake = LocalLake(run_dir / "lake")
    warehouse = run_dir / "warehouse.duckdb"
    steps: dict[str, float] = {}

    step_rss: dict[str, int] = {}
    _reset_peak()

    t = time.perf_counter()
    staged = stage_dump(
        work / DUMP_NAME, lake, Window(), codec, chunk_bytes or settings.CHUNK_BYTES, process=True
    )
    steps["stage+process"] = time.perf_counter() - t
    step_rss["stage+process"] = _reset_peak()
    processed = [ProcessResult.combine(kind, [staged.processed]) for kind in settings.KINDS]

    t = time.perf_counter()
    modeled = run_models(lake, sorted(set().union(*(p.dts for p in processed))))
    steps["model"] = time.perf_counter() - t
    step_rss["model"] = _reset_peak()

    t = time.perf_counter()
    loaded = load_duckdb(warehouse, lake, modeled.curated_keys)
    steps["load"] = time.perf_counter() - t
    step_rss["load"] = _reset_peak()

    return {
        "steps": steps,
        "step_rss": step_rss,
        "peak_before_reset": max([rss_after_imports, *step_rss.values()]),
        "imports_s": imports,
        "rss_after_imports": rss_after_imports,
        "staged": sum(staged.staged.values()),
        "quarantined": staged.quarantined,
        "raw_bytes": staged.raw_bytes,
        "raw_files": len(staged.raw_keys),
        "processed_rows": sum(p.rows for p in processed),
        "loaded": loaded.inserted_totals(),
    }


def _role_duckdb(work: Path) -> dict[str, object]:
    import duckdb

    con = duckdb.connect()
    source, out = work / "dump.ndjson", work / "duckdb_out.parquet"
    t = time.perf_counter()
    con.execute(
        f"copy (select * from read_json('{source}', format = 'newline_delimited')) "
        f"to '{out}' (format parquet)"
    )
    seconds = time.perf_counter() - t
    rows = con.execute(f"select count(*) from read_parquet('{out}')").fetchone()
    out.unlink()
    return {"steps": {"copy": seconds}, "rows": rows[0] if rows else 0}


def _role_pandas(work: Path, source: str) -> dict[str, object]:
    import pandas as pd

    out = work / "pandas_out.csv"
    t = time.perf_counter()
    df = pd.read_json(work / source, lines=True)
    read = time.perf_counter() - t
    t = time.perf_counter()
    df.to_csv(out, index=False)
    write = time.perf_counter() - t
    rows = len(df)
    out.unlink()
    return {"steps": {"read_json": read, "to_csv": write}, "rows": rows}


def _reset_peak() -> int:
    """This process's peak RSS since the last reset, then reset it (clear_refs 5 sets VmHWM to
    the current RSS), so each step's peak is its own. Returns 0 where that is not possible."""
    peak = _self_rss()
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return 0
    return peak


def _self_rss() -> int:
    """This process's peak RSS so far. VmHWM belongs to the process's own address space, which
    exec replaces; ru_maxrss would not do: Linux carries the parent's peak at fork into it."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# ---------------------------------------------------------------- parent


def _run_child(args: list[str], env: dict[str, str]) -> tuple[dict[str, object], int]:
    """Run one role in a fresh interpreter; its result comes back as JSON on stdout, with its
    own peak RSS (every thread, DuckDB's included, shares the one address space)."""
    proc = subprocess.run(
        [sys.executable, __file__, *args], stdout=subprocess.PIPE, env=env, text=True, check=False
    )
    if proc.returncode != 0:
        raise RuntimeError(f"bench role {args[:2]} failed with exit code {proc.returncode}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    return out, int(out.pop("peak_rss"))


def prepare(work: Path, records: int) -> dict[str, float]:
    """The dump and its plain NDJSON, made once per work dir (none of this is timed)."""
    dump, ndjson, marker = work / DUMP_NAME, work / "dump.ndjson", work / "records.txt"
    if marker.exists() and marker.read_text() == str(records) and ndjson.exists():
        print(f"reusing the dump in {work}", flush=True)
        return {}
    t = time.perf_counter()
    write_dump(dump, records)
    generated = time.perf_counter() - t
    t = time.perf_counter()
    with dump.open("rb") as src, ndjson.open("wb") as dst:
        reader = zstandard.ZstdDecompressor(max_window_size=2**31).stream_reader(src)
        shutil.copyfileobj(reader, dst, 4 * 1024 * 1024)
    marker.write_text(str(records))
    return {"generate_s": generated, "decompress_s": time.perf_counter() - t}


def pandas_input(work: Path, records: int, cap: int) -> tuple[str, int]:
    """The NDJSON pandas reads: the whole dump, or its first `cap` lines when N is larger,
    because pandas needs several bytes of RAM per byte of JSON (the result is extrapolated)."""
    if records <= cap:
        return "dump.ndjson", records
    name = f"head_{cap}.ndjson"
    if not (work / name).exists():
        with (work / "dump.ndjson").open("rb") as src, (work / name).open("wb") as dst:
            for _, line in zip(range(cap), src, strict=False):
                dst.write(line)
    return name, cap


def measure(args: argparse.Namespace, work: Path) -> dict[str, list[Measured]]:
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect"),
        "DO_NOT_TRACK": "1",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    results: dict[str, list[Measured]] = {"ours": [], "duckdb": [], "pandas": []}
    # Each run writes a new lake, and earlier runs' lakes are deleted only after the last
    # timed run: on ext4, creating thousands of files right after deleting thousands is
    # ~1.4 s slower for the stage step (measured), a cost of the bench's cleanup, not of
    # a pipeline run. Moving them aside is one rename each.
    trash = work / f"trash-{uuid.uuid4().hex[:8]}"
    for stale in ("runs", "lake", "warehouse.duckdb"):
        if (work / stale).exists():
            trash.mkdir(exist_ok=True)
            (work / stale).rename(trash / stale)
    try:
        _measure_runs(args, work, env, results)
    finally:
        shutil.rmtree(trash, ignore_errors=True)
    return results


def _measure_runs(
    args: argparse.Namespace, work: Path, env: dict[str, str], results: dict[str, list[Measured]]
) -> None:
    for attempt in range(args.repeat):
        run_dir = work / "runs" / str(attempt)
        role = ["--role", "ours", "--work-dir", str(work), "--run-dir", str(run_dir)]
        role += ["--codec", args.codec]
        if args.chunk_bytes:
            role += ["--chunk-bytes", str(args.chunk_bytes)]
        out, rss = _run_child(role, env)
        steps = out.pop("steps")
        results["ours"].append(Measured("ours", args.records, steps, rss, out))
        _report(results["ours"][-1], attempt)

        out, rss = _run_child(["--role", "duckdb", "--work-dir", str(work)], env)
        results["duckdb"].append(Measured("duckdb", args.records, out.pop("steps"), rss, out))
        _report(results["duckdb"][-1], attempt)

        if not args.skip_pandas:
            source, rows = pandas_input(work, args.records, args.pandas_max_records)
            out, rss = _run_child(
                ["--role", "pandas", "--work-dir", str(work), "--pandas-source", source], env
            )
            out["measured_records"] = rows
            results["pandas"].append(Measured("pandas", rows, out.pop("steps"), rss, out))
            _report(results["pandas"][-1], attempt)


def _report(m: Measured, attempt: int) -> None:
    steps = ", ".join(f"{k} {v:.2f}s" for k, v in m.steps.items())
    step_rss = m.extra.get("step_rss")
    if isinstance(step_rss, dict) and all(step_rss.values()):
        steps += "; peak RSS " + ", ".join(f"{k} {v / 2**20:.0f}" for k, v in step_rss.items())
    print(
        f"  run {attempt + 1} {m.name:<7} {m.records:>10,} records  {m.seconds:7.2f}s "
        f"{m.rate:>10,.0f} rec/s  peak RSS {m.rss_bytes / 2**20:7.0f} MiB  ({steps})",
        flush=True,
    )


def _best(runs: list[Measured]) -> Measured | None:
    """The fastest run: on a shared machine noise only ever adds time."""
    return min(runs, key=lambda m: m.seconds) if runs else None


def summarize(args: argparse.Namespace, results: dict[str, list[Measured]]) -> bool:
    ours, duck, pandas = (_best(results[k]) for k in ("ours", "duckdb", "pandas"))
    assert ours is not None and duck is not None
    n = args.records
    print()
    print(f"=== dump -> warehouse, {n:,} comments, raw codec {args.codec} (best of {args.repeat})")
    print(f"{'contender':<44}{'seconds':>9}{'records/s':>12}{'peak RSS':>12}")
    rows = [("ours: stage+process+model+load", ours.seconds, ours.rate, ours.rss_bytes, "")]
    rows += [(f"  {k}", v, n / v, None, "") for k, v in ours.steps.items()]
    rows.append(("duckdb: COPY read_json -> parquet", duck.seconds, duck.rate, duck.rss_bytes, ""))
    if pandas is not None:
        scale = n / pandas.records
        note = "" if scale == 1 else f"  (measured on {pandas.records:,}; x{scale:g} linear)"
        rows.append(
            (
                "pandas: read_json + to_csv",
                pandas.seconds * scale,
                pandas.rate,
                pandas.rss_bytes * scale,
                note,
            )
        )
    for label, seconds, rate, rss, note in rows:
        rss_text = f"{rss / 2**20:9.0f} MiB" if rss is not None else ""
        print(f"{label:<44}{seconds:9.2f}{rate:12,.0f}{rss_text:>12}{note}")
    print(
        "(ours runs the plain task functions without Prefect: no flow, no server start-up; "
        f"its interpreter + imports take {ours.extra['rss_after_imports'] / 2**20:.0f} MiB "
        "of the RSS above and are counted)"
    )
    print()
    checks = [
        (
            f"ours/duckdb throughput >= {TARGET_VS_DUCKDB}",
            ours.rate / duck.rate,
            ours.rate / duck.rate >= TARGET_VS_DUCKDB,
        ),
        (
            "ours peak RSS < 1 GiB",
            ours.rss_bytes / GIB,
            ours.rss_bytes < TARGET_RSS,
        ),
    ]
    if pandas is not None:
        ratio = ours.rate / pandas.rate
        checks.insert(1, (f"ours/pandas throughput >= {TARGET_VS_PANDAS:g}", ratio, ratio >= 10))
    ok = True
    for label, value, passed in checks:
        ok &= passed
        print(f"{'PASS' if passed else 'MISS'}  {label:<36} {value:8.2f}")
    loaded = ours.extra.get("loaded", {})
    if isinstance(loaded, dict) and loaded.get("comments") != n:
        print(f"WARNING: the warehouse got {loaded.get('comments')} new comments, expected {n}")
        ok = False
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--codec", choices=("gzip", "zstd"), default="gzip")
    parser.add_argument(
        "--chunk-bytes", type=int, default=None, help="stage chunk size (default: settings')"
    )
    parser.add_argument("--repeat", type=int, default=1, help="runs per contender; best counts")
    parser.add_argument("--skip-pandas", action="store_true")
    parser.add_argument(
        "--pandas-max-records",
        type=int,
        default=1_000_000,
        help="pandas reads at most this many lines; beyond, its time and RSS are extrapolated "
        "linearly (and the output says so)",
    )
    parser.add_argument("--work-dir", type=Path, help="reuse this dir (and its dump) if given")
    parser.add_argument("--keep", action="store_true", help="keep the work dir")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--role", choices=("ours", "duckdb", "pandas"), help=argparse.SUPPRESS)
    parser.add_argument("--run-dir", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--pandas-source", default="dump.ndjson", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.role:
        work = args.work_dir
        if args.role == "ours":
            out = _role_ours(work, args.run_dir, args.codec, args.chunk_bytes)
        elif args.role == "duckdb":
            out = _role_duckdb(work)
        else:
            out = _role_pandas(work, args.pandas_source)
        # The whole run's peak: the steps' peaks (VmHWM is reset between them) and what came after.
        out["peak_rss"] = max(_self_rss(), int(out.pop("peak_before_reset", 0)))
        print(json.dumps(out))
        return 0

    keep = args.keep or args.work_dir is not None
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="process-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    try:
        print(f"work dir {work}; generating {args.records:,} comments (not timed) ...", flush=True)
        prep = prepare(work, args.records)
        size = (work / "dump.ndjson").stat().st_size
        print(
            f"dump {(work / DUMP_NAME).stat().st_size / 2**20:.0f} MiB zstd, "
            f"{size / 2**20:.0f} MiB NDJSON ({size / args.records:.0f} B/line)"
            + "".join(f", {k} {v:.1f}s" for k, v in prep.items()),
            flush=True,
        )
        results = measure(args, work)
        ok = summarize(args, results)
        if args.json:
            args.json.write_text(
                json.dumps(
                    {
                        "when": datetime.now(UTC).isoformat(timespec="seconds"),
                        "cpus": os.cpu_count(),
                        "args": {k: str(v) for k, v in vars(args).items()},
                        "ndjson_bytes": size,
                        "runs": {k: [asdict(m) for m in v] for k, v in results.items()},
                    },
                    indent=1,
                )
            )
    finally:
        if keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
