"""Benchmark — a modelled fleet: what cold starts, preemptions and the tail cost, per way of launching.

A discrete-event model (``_fleet_sim.py``: no process, machine or store is real) of one run of
1,000 chunks on a quota of 20 spot GPUs, driven by the launcher's own decisions
(``chunkpilot.control.reconcile.decide`` every poll, ``chunkpilot.claims.decide_take`` for every claim,
``chunkpilot.splits.slowest_first`` / ``split_target`` for every split), for three ways of
launching: one managed job per chunk (the old model), 20 pulling workers as managed jobs, and
the same 20 workers on a warm SkyPilot pool. Prints every assumption, then cold starts, GPU-hours
(working, cold, lost to preemption, idle), wall time and modelled dollars; each mode is run with
``--seeds`` seeds (preemption times and chunk sizes) and the table shows medians.

    python benchmarks/bench_fleet.py
    python benchmarks/bench_fleet.py --preemptions-per-gpu-hour 0.5 --no-notice --json /tmp/fleet.json
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from dataclasses import asdict, replace
from pathlib import Path

from _util import REPO, table, write_json  # noqa: F401  (REPO: puts the repository on sys.path)
from _fleet_sim import Fleet, Sim

CATALOG = REPO / "tests" / "data" / "sky_catalog" / "aws" / "vms.csv"
MODES = (("one job per chunk (old model)", "per-chunk"), ("20 pulling workers (managed jobs)", "pulling"),
         ("20 pulling workers on a warm pool", "pool"))


def catalog_price(path: Path, gpu: str) -> tuple[float, float, str]:
    """(spot, on-demand, where) for one ``gpu`` from a SkyPilot vms.csv: the cheapest spot row."""
    rows = [r for r in csv.DictReader(path.open()) if r["AcceleratorName"] == gpu and r["AcceleratorCount"] == "1"
            and r["SpotPrice"]]
    if not rows:
        raise SystemExit(f"{path} has no {gpu}:1 row: pass --spot-price-per-hour")
    best = min(rows, key=lambda r: float(r["SpotPrice"]))
    return float(best["SpotPrice"]), float(best["Price"]), f"{best['InstanceType']} {best['Region']}/{best['AvailabilityZone']}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--chunks", type=int, default=1000)
    ap.add_argument("--gpus", type=int, default=20)
    ap.add_argument("--tokens-per-chunk", type=float, default=256_000)
    ap.add_argument("--tokens-per-second", type=float, default=1500.0, help="one engine on one GPU (an assumption)")
    ap.add_argument("--cold-minutes", type=float, default=6.0, help="managed job: setup + model download + engine build")
    ap.add_argument("--exec-cold-minutes", type=float, default=1.5, help="a job exec'd onto a warm pool worker")
    ap.add_argument("--preemptions-per-gpu-hour", type=float, default=0.1)
    ap.add_argument("--lost-seconds", type=float, default=60.0, help="work thrown away per preemption")
    ap.add_argument("--no-notice", action="store_true", help="preemptions kill outright: claims stay held until their lease runs out")
    ap.add_argument("--gpu", default="L4", help="the accelerator priced from --catalog")
    ap.add_argument("--catalog", type=Path, default=CATALOG)
    ap.add_argument("--spot-price-per-hour", type=float, default=None, help="instead of the catalog's")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    if args.spot_price_per_hour is not None:
        spot, on_demand, where = args.spot_price_per_hour, None, "--spot-price-per-hour"
    else:
        spot, on_demand, where = catalog_price(args.catalog, args.gpu)
        where = f"{args.catalog.relative_to(REPO) if args.catalog.is_relative_to(REPO) else args.catalog}: {where}"
    base = Fleet(mode="pulling", chunks=args.chunks, gpus=args.gpus, workers=args.gpus, tokens_per_chunk=args.tokens_per_chunk,
                 tokens_per_second=args.tokens_per_second, cold_seconds=args.cold_minutes * 60,
                 exec_cold_seconds=args.exec_cold_minutes * 60, preemptions_per_gpu_hour=args.preemptions_per_gpu_hour,
                 lost_seconds=args.lost_seconds, notice=not args.no_notice)
    work_hours = args.chunks * args.tokens_per_chunk / args.tokens_per_second / 3600
    print("model (every figure an input of the model, not a measurement):")
    for k, v in asdict(base).items():
        if k not in ("mode", "seed"):
            print(f"  {k:26} {v}")
    print(f"  {'spot $/h (one GPU)':26} {spot} ({args.gpu}, {where})" + (f"; on demand {on_demand}" if on_demand else ""))
    print(f"  {'work':26} {work_hours:.1f} GPU-hours of answering ({args.chunks} chunks x {args.tokens_per_chunk:,.0f} "
          f"tokens / {args.tokens_per_second:g} tok/s)")
    print(f"  {'seeds':26} {args.seeds} (preemption times and chunk sizes); medians shown")

    rows, raw = [], {}
    for title, mode in MODES:
        fleet = replace(base, mode=mode, workers=args.chunks if mode == "per-chunk" else args.gpus,
                        splits=mode != "per-chunk")
        runs, took = [], []
        for seed in range(args.seeds):
            started = time.perf_counter()
            runs.append(Sim(replace(fleet, seed=seed)).run())
            took.append(time.perf_counter() - started)
        med = {k: statistics.median(getattr(b, k) for b in runs)
               for k in ("cold", "working", "lost", "idle", "total", "cold_starts", "restarts", "preemptions", "launches", "splits",
                         "hung_cancels", "wall")}
        raw[mode] = {"fleet": asdict(fleet), "runs": [asdict(b) | {"total": b.total} for b in runs], "median": med,
                     "seconds_to_model": took}
        h = 3600
        rows.append([title, f"{med['launches']:.0f}", f"{med['cold_starts']:.0f} + {med['restarts']:.0f}", f"{med['working'] / h:.1f}",
                     f"{med['cold'] / h:.1f}", f"{med['lost'] / h:.1f}", f"{med['idle'] / h:.1f}", f"{med['total'] / h:.1f}",
                     f"{med['preemptions']:.0f}", f"{med['splits']:.0f}", f"{med['hung_cancels']:.0f}", f"{med['wall'] / h:.2f}",
                     f"${med['total'] / h * spot:,.2f}", f"{sum(took) / len(took):.2f}"])
    print()
    print(table(["launching", "launches", "cold starts + restarts", "working GPU-h", "cold GPU-h", "lost to preemption GPU-h",
                 "idle GPU-h", "billed GPU-h", "preemptions", "splits", "hung cancels", "wall h", "spot $", "s to model"], rows))
    if args.json:
        write_json(args.json, {"spot_per_hour": spot, "price_source": where, "modes": raw})


if __name__ == "__main__":
    main()
