"""`inspect-otel compare BASELINE CANDIDATE`: is the candidate really better, or worse?

Exit codes: 0 done; 1 with ``--fail-on-regression`` when a scorer is significantly worse after
Holm's correction; 2 for input that cannot be compared (one line on stderr, no traceback).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import sys

from ._types import CompareError

PROG = "inspect-otel compare"


def add_arguments(p: argparse.ArgumentParser) -> None:
    side = ("an Inspect log (.eval/.json), or an MLflow task run written by the inspect-otel "
            "receiver: run id, runs:/<id> or the run's URL")
    p.add_argument("baseline", help=f"the reference: {side}")
    p.add_argument("candidate", help=f"the change under test: {side}")
    p.add_argument("--scorer", action="append", dest="scorers", metavar="NAME",
                   help="test only this scorer (repeatable; 'name' also selects its 'name/key' "
                        "parts); default: every scorer, which must be on both sides")
    p.add_argument("--alpha", type=float, default=0.05,
                   help="significance level (default 0.05: 95%% intervals)")
    p.add_argument("--cluster", metavar="METADATA_KEY",
                   help="clustered standard errors over this sample metadata key")
    p.add_argument("--lower-is-better", action="append", default=[], metavar="NAME",
                   help="a scorer where lower is better (repeatable; default: higher is better)")
    p.add_argument("--json", metavar="PATH",
                   help="write the full result (scorers, per-sample rows, unmatched samples) as "
                        "JSON; '-' prints it instead of the table")
    p.add_argument("--plot", metavar="PATH", help="write the forest plot (PNG)")
    p.add_argument("--mlflow", action="store_true",
                   help="log the comparison as an MLflow run in the candidate's experiment")
    p.add_argument("--experiment", metavar="NAME",
                   help="experiment for --mlflow (default: the candidate's; for two logs "
                        "MLFLOW_EXPERIMENT_NAME, else inspect_ai)")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI (default: a run URL's server, then "
                        "MLFLOW_TRACKING_URI)")
    p.add_argument("--fail-on-regression", action="store_true",
                   help="exit 1 when any scorer is significantly worse after correction")
    p.add_argument("--top", type=int, default=5, metavar="N",
                   help="samples listed as most regressed / improved per scorer (default 5)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    p.add_argument("--resamples", type=int, default=2000,
                   help="bootstrap resamples (default 2000)")


def _missing_extra(plot: bool) -> str | None:
    needed = ["scipy", "statsmodels"] + (["matplotlib"] if plot else [])
    missing = [m for m in needed if importlib.util.find_spec(m) is None]
    if missing:
        return (f"needs the compare extra ({', '.join(missing)} missing): "
                "pip install 'inspect-otel[compare]'")
    return None


def _fail(message: str) -> int:
    print(f"{PROG}: {message}", file=sys.stderr)
    return 2


def main(args: argparse.Namespace) -> int:
    missing = _missing_extra(plot=bool(args.plot or args.mlflow))
    if missing:
        return _fail(missing)
    if args.mlflow and importlib.util.find_spec("mlflow") is None:
        return _fail("--mlflow needs the mlflow extra: pip install 'inspect-otel[mlflow]'")
    from . import compare_evals
    from ._readers import _check_reachable, parse_run_reference
    from ._report import render

    if args.mlflow:  # before any work: the table would be printed and the run never logged
        uri = args.tracking_uri or os.environ.get("MLFLOW_TRACKING_URI")
        if not uri and not any(parse_run_reference(str(ref))
                               for ref in (args.baseline, args.candidate)):
            return _fail("--mlflow needs a tracking URI: neither side is an MLflow run (pass "
                         "--tracking-uri or set MLFLOW_TRACKING_URI)")
        try:
            if uri:
                _check_reachable(uri)
        except CompareError as e:
            return _fail(str(e))
    try:
        comparison = compare_evals(
            args.baseline, args.candidate, scorers=args.scorers, alpha=args.alpha,
            cluster=args.cluster, tracking_uri=args.tracking_uri,
            lower_is_better=args.lower_is_better, seed=args.seed, resamples=args.resamples,
        )
    except CompareError as e:
        return _fail(str(e))

    if args.json == "-":
        print(json.dumps(comparison.to_dict(), indent=2))
    else:
        print(render(comparison, top=args.top))
    problems = []
    if args.json and args.json != "-":
        try:
            with open(args.json, "w", encoding="utf-8") as f:
                json.dump(comparison.to_dict(), f, indent=2)
        except OSError as e:
            problems.append(f"cannot write {args.json}: {e.strerror or e}")
    if args.plot:
        from ._mlflow_log import forest_plot

        try:
            forest_plot(comparison, args.plot)
            print(f"\nForest plot: {args.plot}", file=sys.stderr if args.json == "-" else sys.stdout)
        except OSError as e:
            problems.append(f"cannot write {args.plot}: {e.strerror or e}")
    if args.mlflow:
        from ._mlflow_log import log_comparison

        try:
            url = log_comparison(comparison, tracking_uri=args.tracking_uri,
                                 experiment=args.experiment)
            print(f"\nMLflow comparison run: {url}",
                  file=sys.stderr if args.json == "-" else sys.stdout)
        except CompareError as e:
            problems.append(str(e))
    regressed = bool(args.fail_on_regression and comparison.regressions)
    if regressed:
        names = ", ".join(r.scorer for r in comparison.regressions)
        print(f"{PROG}: regression: {names} significantly worse after Holm's correction",
              file=sys.stderr)
    for problem in problems:
        print(f"{PROG}: {problem}", file=sys.stderr)
    # A regression is the gate's answer even if an output could not be written.
    return 1 if regressed else (2 if problems else 0)
