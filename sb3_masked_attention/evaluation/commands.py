"""``sb3ma report``, ``sb3ma study run|report`` and ``sb3ma evaluate`` (light to import: flag defaults are read from
their owners' source; each command imports what it runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from sb3_masked_attention.cli_args import Parser, UserError, command_parser, env_kwargs_option, option, positive_int
from sb3_masked_attention.source_values import source_constant

RUN_STUDY = "sb3_masked_attention.evaluation.study:run_study"
EVALUATE_MODEL = "sb3_masked_attention.evaluation.model_eval:evaluate_model"
WRITE_REPORT = "sb3_masked_attention.evaluation.report:write_report"


def add_subparsers(commands: Any) -> None:
    report = command_parser(commands, "report")
    report.add_argument("scores", help="scores CSV")
    report.add_argument("--out", required=True, help="output directory")
    _report_options(report)
    report.set_defaults(func=_cmd_report)

    study = command_parser(commands, "study")
    study_commands = study.add_subparsers(dest="study_command", required=True, parser_class=Parser)
    run = study_commands.add_parser("run", help="run (or resume) a study")
    run.add_argument("study", help="study YAML file")
    run.add_argument("--dir", default=None, help="study directory (default runs/<name>)")
    option(run, RUN_STUDY, "backend", choices=list(source_constant("sb3_masked_attention.evaluation.study:BACKENDS")))
    option(run, RUN_STUDY, "workers", type=positive_int, help="parallel runs (one torch thread each)")
    run.add_argument("--address", default=None, help="Ray cluster address (backend ray; default: a local Ray)")
    run.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    run.set_defaults(func=_cmd_study_run)
    study_report = study_commands.add_parser("report", help="`sb3ma report` on a study's scores.csv")
    study_report.add_argument("dir", help="study directory")
    study_report.add_argument("--out", default=None, help="output directory (default DIR/report)")
    _report_options(study_report)
    study_report.set_defaults(func=_cmd_study_report)

    evaluate = command_parser(commands, "evaluate")
    evaluate.add_argument(
        "model", help="an sb3ma train --output-dir (weights only: safe) or an SB3 model .zip (unpickled: trusted files only)"
    )
    evaluate.add_argument("--env", default=None, help="gymnasium id (default for an sb3ma train folder: its env)")
    env_kwargs_option(evaluate)
    option(evaluate, EVALUATE_MODEL, "algo", choices=list(source_constant("sb3_masked_attention.weights:ALGORITHMS")))
    option(evaluate, EVALUATE_MODEL, "episodes", type=positive_int, help="episodes per seed")
    option(evaluate, EVALUATE_MODEL, "seeds", type=int, nargs="+")
    evaluate.add_argument("--vecnormalize", default=None, help="VecNormalize statistics (rl-zoo vecnormalize.pkl)")
    evaluate.add_argument("--ablate-heads", action="store_true", help="also evaluate with each head's output zeroed in turn")
    evaluate.add_argument("--out", default=None, help="CSV of every (seed, ablated head, layer) evaluation")
    evaluate.set_defaults(func=_cmd_evaluate)


def _report_options(parser: argparse.ArgumentParser) -> None:
    option(parser, WRITE_REPORT, "reps", type=positive_int, help="bootstrap resamples")
    option(parser, WRITE_REPORT, "seed")
    option(parser, WRITE_REPORT, "normalize", help="none, min-max (documented random/optimal returns) or an env,low,high CSV")


def _cmd_report(args: argparse.Namespace) -> None:
    from sb3_masked_attention.evaluation.report import write_report

    summary = write_report(args.scores, args.out, reps=args.reps, seed=args.seed, normalize=args.normalize)
    for row in summary.itertuples():
        print(
            f"{row.method:24s} IQM {row.iqm:.3f} [{row.iqm_low:.3f}, {row.iqm_high:.3f}]  mean {row.mean:.3f}  runs {row.runs}"
        )
    print(f"wrote {args.out}/report.md, summary.csv, probability_of_improvement.csv, significance.csv and the plots")


def _cmd_study_run(args: argparse.Namespace) -> None:
    from sb3_masked_attention.evaluation.study import StudyFailed, run_study

    try:
        progress = not args.no_progress
        scores = run_study(args.study, args.dir, args.backend, args.workers, args.address, progress=progress)
    except StudyFailed as error:
        print(f"sb3ma study run: {error}", file=sys.stderr)
        raise SystemExit(1) from None
    finished = scores.groupby(["method", "env", "seed"]).ngroups if len(scores) else 0
    print(f"scores of {finished} finished runs in {args.dir or 'runs/<name>'}/scores.csv")


def _cmd_study_report(args: argparse.Namespace) -> None:
    scores = Path(args.dir) / "scores.csv"
    if not scores.is_file():
        raise UserError(f"sb3ma study report: {args.dir} has no scores.csv: run `sb3ma study run` first")
    args.scores, args.out = str(scores), args.out or str(Path(args.dir) / "report")
    _cmd_report(args)


def _cmd_evaluate(args: argparse.Namespace) -> None:
    from sb3_masked_attention.evaluation.model_eval import evaluate_model, summarize

    table = evaluate_model(
        args.model,
        args.env,
        episodes=args.episodes,
        seeds=args.seeds,
        algo=args.algo,
        env_kwargs=dict(args.env_kwargs) if args.env_kwargs else None,
        vecnormalize=args.vecnormalize,
        ablate_heads=args.ablate_heads,
        out=args.out,
    )
    for row in summarize(table).itertuples(index=False):
        head, layer, mean, std, drop, _ = row
        name = (
            "intact model" if head == -1 else f"head {head} zeroed ({'every layer' if layer == 'all' else f'layer {layer}'})"
        )
        print(f"{name:32s} mean return {mean:8.3f} ± {0.0 if std != std else std:.3f} over seeds   drop {drop:7.3f}")
    if args.out:
        print(f"wrote {args.out}")
