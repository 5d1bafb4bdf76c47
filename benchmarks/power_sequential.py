"""Power of the Welch test and of the trial-level model, and a sequential design, by simulation.

Simulates Study A with the platform's own synthetic participants (`stats.synthetic`: a learning
rate per arm, calibrated so that the mean totals after 20 trials are the dissertation's Table 5.2,
participant rates spread log-normally around it, a difficulty per stimulus met in shuffled
order) and prints, per n per arm:

1. the power of the one-sided Welch test on the totals and of the trial-level model's learning-rate
   contrast (common-start GEE, `stats.trial_model`), on the same simulated studies, with 95%
   Wilson intervals, and the n each needs for 80% power (projected from the mean z);
2. a group-sequential design (`stats.sequential`, 5 looks, O'Brien–Fleming-type and Pocock-type
   Lan–DeMets spending, non-binding futility at z < 0): its power and expected n per arm at the
   dissertation's effect, and its type-I error and expected n under no effect.

    nice -n 10 python benchmarks/power_sequential.py            # >= 1000 studies per cell
    python benchmarks/power_sequential.py --quick               # smoke run, 100 per cell
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stats import power  # noqa: E402
from stats.sequential import SequentialPlan  # noqa: E402
from stats.synthetic import dissertation_curves  # noqa: E402


def _pct(x: float) -> str:
    return f"{100 * x:5.1f}%"


def _ci(ci) -> str:
    return f"[{100 * ci[0]:.1f}, {100 * ci[1]:.1f}]"


def _n(x) -> str:
    return "–" if x is None else f"{x:.0f}"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="100 studies per cell, fewer cells")
    ap.add_argument("--sims", type=int, default=None, help="studies per cell (default 1000; quick 100)")
    ap.add_argument("--alpha", type=float, default=0.05, help="one-sided alpha (default 0.05)")
    ap.add_argument("--seed", type=int, default=16)
    args = ap.parse_args(argv)
    sims = args.sims or (100 if args.quick else 1000)
    curves = dissertation_curves()
    null = {"A": curves["GCAM"], "B": curves["GCAM"]}
    alpha = args.alpha
    t0 = time.perf_counter()
    print(f"# Power by simulation: {sims} simulated studies per cell, one-sided alpha = {alpha:g}")
    print()
    print("Synthetic participants: p(t) = 0.9 - 0.45·exp(-rate·r·t), log r ~ N(0, 0.5²), stimulus "
          "difficulty N(0, 0.3²) on the log-odds scale, 20 trials; rates per arm "
          + ", ".join(f"{a} {c.rate:.4f}" for a, c in curves.items())
          + " (mean totals 9.71 / 10.33 / 10.67 as in Table 5.2).")
    print()
    grids = {
        ("CDeepEx", "GCAM"): [150, 300, 450] if args.quick else [150, 300, 450, 600],
        ("CDeepEx", "Control"): [25, 50, 100] if args.quick else [25, 50, 75, 100],
    }
    print("| comparison | n per arm | mean d | Welch power [95% CI] | trial model power [95% CI] "
          "| n for 80%: Welch | n for 80%: trial model |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for (a1, a2), ns in grids.items():
        for n in ns:
            r = power.simulate_power_trial_level(curves, a1, a2, n, n_sims=sims, alpha=alpha, seed=args.seed + n)
            print(f"| {a1} > {a2} | {n} | {r.d:.3f} | {_pct(r.welch_power)} {_ci(r.welch_ci)} | "
                  f"{_pct(r.trial_power)} {_ci(r.trial_ci)} | {_n(r.welch_n80)} | {_n(r.trial_n80)} |", flush=True)
    r = power.simulate_power_trial_level(null, "A", "B", 100, n_sims=sims, alpha=alpha, seed=args.seed)
    print(f"| no effect (type-I) | 100 | {r.d:.3f} | {_pct(r.welch_power)} {_ci(r.welch_ci)} | "
          f"{_pct(r.trial_power)} {_ci(r.trial_ci)} | – | – |", flush=True)
    print()
    print("# Sequential designs: 5 equally spaced looks, non-binding futility (stop at an interim look "
          "when z < 0) unless 'no futility'")
    print()
    print("| comparison | statistic | spending | max n per arm | truth | rejects H0 [95% CI] "
          "| expected n per arm | stopped early: efficacy / futility |")
    print("|---|---|---|---:|---|---:|---:|---:|")
    designs = [
        (("CDeepEx", "Control"), 100, "welch", "obrien_fleming", 0.0),
        (("CDeepEx", "Control"), 100, "trial", "obrien_fleming", 0.0),
        (("CDeepEx", "Control"), 100, "welch", "pocock", 0.0),
        (("CDeepEx", "Control"), 100, "welch", "obrien_fleming", None),
        (("CDeepEx", "Control"), 100, "trial", "obrien_fleming", None),
        (("CDeepEx", "Control"), 100, "welch", "pocock", None),
        (("CDeepEx", "GCAM"), 600, "welch", "obrien_fleming", 0.0),
        (("CDeepEx", "GCAM"), 600, "trial", "obrien_fleming", 0.0),
    ]
    if args.quick:
        designs = designs[:2]
    for (a1, a2), m, statistic, rule, futility in designs:
        for truth, cv, c1, c2 in (("dissertation effect", curves, a1, a2), ("no effect", null, "A", "B")):
            if truth == "no effect" and m > 100:
                continue  # the type-I error does not depend on n; the n = 100 rows give it
            plan = SequentialPlan((c1, c2, "greater"), look_every=m // 5, max_n_per_arm=m, spending=rule,
                                  alpha=alpha, futility_z=futility)
            s = power.simulate_sequential(cv, plan, statistic=statistic, n_sims=sims, seed=args.seed + m)
            print(f"| {a1} > {a2} | {'Welch' if statistic == 'welch' else 'trial model'} | "
                  f"{'OBF' if rule == 'obrien_fleming' else 'Pocock'}{'' if futility is not None else ', no futility'} | "
                  f"{m} | {truth} | "
                  f"{_pct(s.rejection_rate)} {_ci(s.rejection_ci)} | {s.expected_n_per_arm:.1f} | "
                  f"{_pct(s.stop_efficacy)} / {_pct(s.stop_futility)} |", flush=True)
    print()
    print(f"({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
