"""First look at the opt-in ``partially_linear`` outcome model against the default candidates.

One replicate per call (the figures in docs/method.md, "An outcome model that extrapolates along
its slope", came from loops of such calls; their rows are in
``results_partially_linear_first_look.json``):

    python benchmarks/partially_linear_first_look.py simple-part 20000 pl      # leaf CIs, sd 1
    python benchmarks/partially_linear_first_look.py complex-all 20000 base --rmse --noise-sd 0.01

``pl`` puts ``partially_linear`` before ``linear_boosting`` in ``effects.auto_candidates``;
``base`` keeps the default list. Without ``--rmse`` it prints the adjusted estimate and 95% CI of
the indirect, direct and total effect in the true subgroup S (leaf 1) and outside it (leaf 0);
with ``--rmse`` the relative RMSE of the per-unit indirect and total effects
(``bench_accuracy._rel_rmse``). n = 5,000 by default. This is not the
coverage study (``bench_accuracy.py --sections coverage --candidates ... --tag ...`` is).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import bench_accuracy as B  # noqa: E402

from mlearner_dist.core.effects import cross_fit_effects  # noqa: E402
from mlearner_dist.core.learners import AUTO_CANDIDATES  # noqa: E402
from mlearner_dist.core.subgroup_effects import adjusted_subgroup_effects  # noqa: E402
from mlearner_dist.datasets import simulate  # noqa: E402

WITH_PL = tuple(
    c for base in AUTO_CANDIDATES for c in
    (("partially_linear", base) if base == "linear_boosting" else (base,))
)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("scenario")
    p.add_argument("seed", type=int)
    p.add_argument("variant", choices=["pl", "base"])
    p.add_argument("--n", type=int, default=5000)
    p.add_argument("--noise-sd", type=float, default=1.0)
    p.add_argument("--rmse", action="store_true")
    a = p.parse_args(argv)
    cands = WITH_PL if a.variant == "pl" else AUTO_CANDIDATES
    df = simulate(a.scenario, a.n, seed=a.seed, noise_sd=a.noise_sd)
    t = time.time()
    eff, diag = cross_fit_effects(
        df, B.SIM_ROLES, B._spec(auto_candidates=cands), n_folds=B.N_FOLDS, seed=a.seed
    )
    df = df.sort_values("unit_id").reset_index(drop=True)
    out = {"sec": round(time.time() - t, 1), "mu_y1m": diag["learner_choice"]["mu_y1m"]["chosen"]}
    if a.rmse:
        # bench_accuracy's relative RMSE (over the sd of the truth; the direct effect of
        # complex-all is 0 everywhere, so it has none)
        for k in ("indirect", "total"):
            est = B._aligned(eff, df, k)
            out[k] = round(B._rel_rmse(est, df[f"true_{k}"].to_numpy()), 4)
    else:
        leaf = df["in_subgroup"].astype(int).to_numpy()
        adj = adjusted_subgroup_effects(eff, leaf).set_index("leaf")
        for g in (0, 1):
            for k in ("indirect", "direct", "total"):
                out[f"{g}{k}"] = [
                    round(float(adj.loc[g, c]), 3)
                    for c in (k, f"{k}_ci_low", f"{k}_ci_high")
                ]
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
