"""Synthetic participants for each of the field's protocols: planted effect, estimate, power at the paper's n.

For every protocol of `stats.protocols` this draws one synthetic study at the n the paper used
(seed 1), analyses it with the protocol's analysis, and prints the planted effect next to the
estimate with its 95% interval; then simulates `--sims` studies of the same design and prints the
power of the protocol's main test (two-sided alpha 0.05; HIVE distinction: one-sided binomial
test against chance) with its Monte Carlo interval, the share of simulated intervals that
covered the planted value, and the mean estimate.

    nice -n 10 python benchmarks/protocol_power.py             # 300 studies per protocol (~1 min)
    python benchmarks/protocol_power.py --sims 50              # smoke run
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from stats.protocols import bias, hive, metrics_people, reliance, simulation  # noqa: E402
from stats.protocols.estimates import Estimate, ProtocolPower  # noqa: E402


def _row(name: str, planted: float, est: Estimate, power: ProtocolPower) -> str:
    return (f"{name:<34} {planted:>8.3f} {est.estimate:>9.3f} [{est.ci_low:6.3f}, {est.ci_high:6.3f}]  "
            f"{power.design:<44} {100 * power.power:5.1f}% [{100 * power.power_ci[0]:4.1f}, "
            f"{100 * power.power_ci[1]:5.1f}]  {100 * power.coverage:5.1f}%  {power.mean_estimate:7.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sims", type=int, default=300, help="simulated studies per protocol")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    n, seed = args.sims, args.seed
    start = time.perf_counter()
    print(f"{'protocol: measure':<34} {'planted':>8} {'estimate':>9} {'95% interval':<17} "
          f"{'design (the paper n)':<44} {'power':<18} {'cover':>6} {'mean est':>8}")
    rows = []

    plan_s = simulation.SimulationPlan()
    est = simulation.analyse(simulation.simulate_participants(plan_s, seed=1)).effect("Explained")
    rows.append(_row("simulation: explanation effect", plan_s.planted_effect("Explained"), est,
                     simulation.power_at_paper_n(plan=plan_s, n_sims=n, seed=seed)))

    plan_r = reliance.ReliancePlan()
    est = reliance.analyse(reliance.simulate_participants(plan_r, seed=1), reference_arm="Control").comparison(
        "Explained", reliance.RAIR)
    rows.append(_row("reliance: RAIR difference", plan_r.planted_rair_difference("Explained", "Control"), est,
                     reliance.power_at_paper_n(plan=plan_r, n_sims=n, seed=seed)))

    plan_h = hive.HivePlan()
    result = hive.analyse(hive.simulate_participants(plan_h, seed=1))
    rows.append(_row("HIVE: confidence correct - wrong", plan_h.planted_difference(), result.difference(plan_h.arm),
                     hive.power_at_paper_n(task=hive.AGREEMENT, plan=plan_h, n_sims=n, seed=seed)))
    rows.append(_row("HIVE: distinction accuracy", plan_h.accuracy, result.accuracy(plan_h.arm),
                     hive.power_at_paper_n(task=hive.DISTINCTION, plan=plan_h, n_sims=n, seed=seed)))

    plan_b = bias.BiasPlan()
    res_b = bias.analyse(bias.simulate_participants(plan_b, seed=1), planted_cue=plan_b.planted_cue,
                         reference_arm="Control")
    rows.append(_row("bias: share found, difference", plan_b.planted_found_difference("Explained", "Control"),
                     res_b.found_difference("Explained"), bias.power_at_paper_n(plan=plan_b, n_sims=n, seed=seed)))

    plan_m = metrics_people.MetricsPlan()
    fit = metrics_people.fit(metrics_people.simulate_participants(plan_m, seed=1), outcome=plan_m.outcome,
                             metrics=list(plan_m.metrics))
    rows.append(_row("metrics-people: APEM slope", plan_m.planted_slope("apem"), fit.coefficient("apem"),
                     metrics_people.power_at_paper_n(plan=plan_m, n_sims=n, seed=seed)))

    for row in rows:
        print(row)
    print(f"\n{n} simulated studies per protocol, seed {seed}; estimate: one study at seed 1; "
          f"{time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
