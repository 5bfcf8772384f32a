"""``sb3ma``: the command line of sb3-masked-attention.

Argument parsing only: every command calls a library function. User mistakes (unknown
strategy or env, bad number, missing file) exit with status 2 and one line, no traceback.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

import gymnasium as gym
import yaml

from sb3_masked_attention.strategies import (
    HEAD_MASK_STRATEGIES,
    HeadMaskStrategy,
    resolve_head_mask_strategy,
)

#: The demo: a T-maze whose cue must be remembered for 10 steps.
DEMO = dict(env_id="sb3ma/TMaze-v0", env_kwargs={"corridor_length": 10}, history_len=12, total_timesteps=20_000)


class UserError(Exception):
    """A mistake in the command line or its inputs: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message}")


def _strategy(text: str) -> HeadMaskStrategy:
    """A strategy name, or comma-separated fractions such as ``0,0.25,0.5,0.75``."""
    if "," not in text:
        return text
    try:
        return [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid fractions {text!r}: expected numbers separated by commas") from None


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: expected an integer >= 1")
    return value


def _key_value(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise argparse.ArgumentTypeError(f"invalid {text!r}: expected KEY=VALUE")
    return key, yaml.safe_load(value)


def _cmd_strategies(args: argparse.Namespace) -> None:
    for name, fractions in HEAD_MASK_STRATEGIES.items():
        print(f"{name:12s} " + " ".join(f"{p:.2f}" for p in fractions))


def _cmd_masks(args: argparse.Namespace) -> None:
    from sb3_masked_attention.analysis.masks_plot import plot_head_masks

    fractions = resolve_head_mask_strategy(args.strategy, len(args.strategy) if isinstance(args.strategy, list) else 8)
    name = args.strategy if isinstance(args.strategy, str) else "custom"
    plot_head_masks(
        fractions,
        args.history_len,
        args.out,
        title=f"'{name}' head masks, {args.history_len}-step history (blue = may attend)",
    )
    print(f"wrote {args.out}")


def _train(env_id: str, env_kwargs: dict[str, Any], args: argparse.Namespace) -> None:
    from sb3_masked_attention.training import evaluate, register_envs, train_head_masked_ppo

    register_envs()
    gym.spec(env_id)  # unknown ids fail here, before anything is built
    print(
        f"Training PPO + HeadMaskedTransformerPolicy ({args.strategy}) on {env_id} {env_kwargs or ''} "
        f"for {args.total_timesteps} steps, history {args.history_len}, seed {args.seed}"
    )
    model = train_head_masked_ppo(
        env_id,
        head_mask_strategy=args.strategy,
        history_len=args.history_len,
        total_timesteps=args.total_timesteps,
        n_envs=args.n_envs,
        seed=args.seed,
        env_kwargs=env_kwargs,
        output_dir=args.output_dir,
        progress_bar=not args.no_progress,
    )
    result = evaluate(model, env_id, history_len=args.history_len, n_episodes=args.eval_episodes, env_kwargs=env_kwargs)
    print(f"Evaluation on {env_id}: {result}")
    if args.output_dir:
        print(f"Model and TensorBoard logs in {args.output_dir}")


def _cmd_train(args: argparse.Namespace) -> None:
    _train(args.env, dict(args.env_kwargs), args)


def _cmd_demo(args: argparse.Namespace) -> None:
    _train(DEMO["env_id"], DEMO["env_kwargs"], args)
    print("A memoryless policy cannot beat a mean return of 0 here (50% success); remembering the cue gives 1.")


def _cmd_train_multiscale(args: argparse.Namespace) -> None:
    import torch

    from sb3_masked_attention.multiscale_training import train_multiscale

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    extractor = "MultiScaleExtractor" if args.no_attention else "MultiScaleExtractorWithAttention"
    print(
        f"Training {args.algo} + {extractor} on sb3ma/TerritoryControl-v0 ({args.map}, {args.map_size}x{args.map_size}, "
        f"{args.num_bots} bots) for {args.total_timesteps} steps into {args.output_dir}"
    )
    model = train_multiscale(
        args.output_dir,
        map_name=args.map,
        map_size=args.map_size,
        num_bots=args.num_bots,
        max_steps=args.max_steps,
        local_view_size=args.local_view_size,
        total_timesteps=args.total_timesteps,
        n_envs=args.n_envs,
        batch_size=args.batch_size,
        n_steps=args.n_steps,
        attention=not args.no_attention,
        algo=args.algo,
        device=args.device,
        seed=args.seed,
        checkpoint_freq=args.checkpoint_freq,
        eval_freq=args.eval_freq,
        eval_episodes=args.eval_episodes,
        attention_log_freq=args.attention_log_freq,
        ppo_kwargs=dict(args.ppo_kwargs),
        subprocess_envs=not args.no_subprocess,
        progress_bar=not args.no_progress,
        verbose=0 if args.no_progress else 1,
    )
    print(
        f"Done: {model.num_timesteps} steps; final_model.zip, best_model.zip, evaluations.csv and TensorBoard "
        f"logs in {args.output_dir}"
    )


def _cmd_report(args: argparse.Namespace) -> None:
    from sb3_masked_attention.evaluation.report import write_report

    summary = write_report(args.scores, args.out, reps=args.reps, seed=args.seed, normalize=args.normalize)
    for row in summary.itertuples():
        print(
            f"{row.method:24s} IQM {row.iqm:.3f} [{row.iqm_low:.3f}, {row.iqm_high:.3f}]  mean {row.mean:.3f}  runs {row.runs}"
        )
    print(f"wrote {args.out}/report.md, summary.csv, probability_of_improvement.csv, significance.csv and the plots")


def _cmd_study_run(args: argparse.Namespace) -> None:
    from sb3_masked_attention.evaluation.study import run_study

    scores = run_study(
        args.study, args.dir, backend=args.backend, workers=args.workers, address=args.address, progress=not args.no_progress
    )
    finished = scores.groupby(["method", "env", "seed"]).ngroups if len(scores) else 0
    print(f"{finished} runs finished; scores in {args.dir or 'runs/<name>'}/scores.csv")


def _cmd_study_report(args: argparse.Namespace) -> None:
    from pathlib import Path

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
        env_kwargs=dict(args.env_kwargs),
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


def _cmd_ad_collect(args: argparse.Namespace) -> None:
    from sb3_masked_attention.ad.data import collect_histories, save_histories

    histories = collect_histories(
        args.env,
        episodes=args.episodes,
        runs_per_goal=args.runs_per_goal,
        source=args.source,
        env_kwargs=dict(args.env_kwargs),
        seed=args.seed,
        progress=not args.no_progress,
    )
    save_histories(histories, args.out)
    curve = histories.episode_returns().mean(axis=0)
    print(
        f"wrote {args.out}: {histories.n_runs} learning runs x {histories.actions.shape[1]} steps; "
        f"source return per episode {curve[0]:.2f} (first) -> {curve[-1]:.2f} (last)"
    )


def _cmd_ad_train(args: argparse.Namespace) -> None:
    import torch

    from sb3_masked_attention.ad.train import train_ad

    if args.torch_threads:
        torch.set_num_threads(args.torch_threads)
    train_ad(
        args.dataset,
        args.out,
        updates=args.updates,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        seed=args.seed,
        checkpoint_every=args.checkpoint_every,
        progress=not args.no_progress,
        context_len=args.context_len,
        d_model=args.d_model,
        n_heads=args.n_heads,
        n_layers=args.n_layers,
        head_mask_strategy=args.strategy,
        dropout=args.dropout,
    )
    print(f"wrote {args.out}/model.pt (checkpoints and TensorBoard logs beside it)")


def _cmd_ad_eval(args: argparse.Namespace) -> None:
    from sb3_masked_attention.ad.evaluate import evaluate_ad
    from sb3_masked_attention.analysis.compression import parse_compressor

    compress = parse_compressor(args.compress) if args.compress else None
    summary = evaluate_ad(
        args.model,
        args.out,
        episodes=args.episodes,
        split=args.goals,
        seed=args.seed,
        greedy=args.greedy,
        use_cache=not args.no_cache and compress is None,
        source_runs=args.source_runs,
        last=args.last,
        compress=compress,
        label="AD" if compress is None else f"AD ({compress.name})",
    )
    last = f"last_{args.last}_episodes"
    print(
        f"{summary['goals']} {args.goals} goals, {args.episodes} episodes: AD return "
        f"{summary['first_episode']:.2f} (first) -> "
        f"{summary[last]:.2f} (last {args.last}) = {100 * summary['fraction_of_optimal']:.0f}% of optimal "
        f"{summary['optimal']:.2f}; "
        f"source {summary['source_first_episode']:.2f} -> {summary['source_' + last]:.2f}; "
        f"{1000 * summary['seconds_per_step']:.2f} ms per step"
    )
    print(f"wrote {args.out}/in_context.csv, in_context.png, summary.csv")


def _goal(text: str) -> tuple[int, int]:
    try:
        x, y = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid goal {text!r}: expected X,Y") from None
    return x, y


def _cmd_attention_capture(args: argparse.Namespace) -> None:
    from pathlib import Path

    from sb3_masked_attention.analysis.capture import capture_ad, capture_sb3

    if Path(args.model).suffix == ".zip":
        if not args.env:
            raise UserError("sb3ma attention capture: --env is required for an SB3 model (.zip)")
        recorder = capture_sb3(
            args.model,
            args.env,
            args.out,
            args.steps,
            algo=args.algo,
            env_kwargs=dict(args.env_kwargs),
            stride=args.stride,
            full_samples=args.full_samples,
            seed=args.seed,
        )
    else:
        recorder = capture_ad(
            args.model,
            args.out,
            args.steps,
            goal=args.goal,
            stride=args.stride,
            full_samples=args.full_samples,
            seed=args.seed,
        )
    print(
        f"wrote {args.out}: {recorder.count} steps, {recorder.last_query.shape[1]} layers x "
        f"{recorder.last_query.shape[2]} heads "
        f"x {recorder.context} context, {len(recorder.full_steps)} full matrices ({recorder.nbytes / 2**20:.1f} MiB in memory)"
    )


def _cmd_attention_analyze(args: argparse.Namespace) -> None:
    from sb3_masked_attention.analysis.analyze import analyze_capture

    analyze_capture(args.capture, args.out)
    from pathlib import Path

    print((Path(args.out) / "compression_recommendations.txt").read_text(), end="")
    print(f"wrote {args.out}: attention_heatmap_step*.png, attention_analysis_comprehensive.png, layer_head_analysis.png")


def _cmd_attention_compress(args: argparse.Namespace) -> None:
    from sb3_masked_attention.ad.evaluate import compare_compression

    table = compare_compression(
        args.model, args.out, args.compress, episodes=args.episodes, split=args.goals, seed=args.seed, repeats=args.repeats
    )
    for r in table.itertuples():
        print(
            f"{r.setting if r.setting != '-' else r.strategy:28s} return {r.mean_return:6.2f} ({r.return_change_pct:+6.1f}%)  "
            f"{r.ms_per_step:6.2f} ms/step  {r.speedup_vs_recomputed:5.2f}x vs recomputed, "
            f"{r.speedup_vs_cached:5.2f}x vs cached"
        )
    print(f"wrote {args.out}/compression.csv, compression.md, compression.png")


def _cmd_pretrain(args: argparse.Namespace) -> None:
    from sb3_masked_attention.pretrain.train import pretrain

    if args.env is None and args.dataset is None:
        raise UserError("sb3ma pretrain: give --env (collect windows) or --dataset (saved windows)")
    if args.env is not None:
        from sb3_masked_attention.training import register_envs

        register_envs()
        gym.spec(args.env)
    objectives = tuple(name.strip() for name in args.objectives.split(",") if name.strip())
    extractor_kwargs = {
        "d_model": args.d_model,
        "n_heads": args.n_heads,
        "n_layers": args.n_layers,
        "head_mask_strategy": args.strategy,
    }
    pretrain(
        args.out,
        env_id=args.env,
        objectives=objectives,
        updates=args.steps,
        collect_steps=args.collect_steps,
        history_len=args.history_len,
        env_kwargs=dict(args.env_kwargs),
        model_path=args.model,
        dataset=args.dataset,
        save_data=args.save_data,
        extractor_kwargs=extractor_kwargs,
        batch_size=args.batch_size,
        objective_options={"inverse_dynamics": {"horizon": args.inverse_horizon}},
        normalize_keys=tuple(key for key in args.normalize_keys.split(",") if key),
        learning_rate=args.learning_rate,
        seed=args.seed,
        progress=not args.no_progress,
    )
    print(
        f"wrote {args.out} (TensorBoard: {args.out}.tensorboard); fine-tune with "
        f"policy_kwargs=dict(pretrained_extractor='{args.out}') or load_pretrained_extractor(model, '{args.out}')"
    )


def _cmd_events_synth(args: argparse.Namespace) -> None:
    from sb3_masked_attention.sequence.events import save_events, synthesize_sessions

    log = synthesize_sessions(args.sessions, seed=args.seed, duration=args.duration, prefix=args.prefix)
    save_events(log, args.out)
    print(f"wrote {args.out}: {len(log.sessions)} sessions, {log.n_events} events")


def _window_config(args: argparse.Namespace) -> Any:
    from sb3_masked_attention.sequence.data import WindowConfig

    return WindowConfig(
        history_seconds=args.history_seconds,
        max_history=args.max_history,
        max_actions=args.max_actions,
        pause=args.pause,
        screen=tuple(args.screen),
    )


def _cmd_events_train(args: argparse.Namespace) -> None:
    from sb3_masked_attention.sequence.train import train_sequence_model

    model_kwargs = {"input_dim": args.width, "n_layers": args.n_layers}
    if args.arch == "attention":
        model_kwargs.update(n_heads=args.n_heads, head_mask_strategy=args.strategy)
    train_sequence_model(
        args.events,
        args.out,
        arch=args.arch,
        epochs=args.epochs,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        val_fraction=args.val_fraction,
        seed=args.seed,
        window=_window_config(args),
        progress=not args.no_progress,
        **model_kwargs,
    )
    print(f"wrote {args.out}/model.pt (lowest validation loss; per-epoch losses in {args.out}/training.csv)")


def _load_event_models(paths: Sequence[str]) -> dict:
    from sb3_masked_attention.sequence.train import load_sequence_model

    models = {}
    for path in paths:
        model, arch = load_sequence_model(path)
        name = arch if arch not in models else f"{arch}:{path}"
        models[name] = model
    return models


def _cmd_events_eval(args: argparse.Namespace) -> None:
    from sb3_masked_attention.sequence.evaluate import evaluate_event_models, markdown_table

    table = evaluate_event_models(_load_event_models([args.model, *args.compare]), args.events, out=args.out, seed=args.seed)
    print(markdown_table(table), end="")
    if args.out:
        print(f"wrote {args.out}/metrics.csv, metrics.md, timing_distribution.png")


def _cmd_events_generate(args: argparse.Namespace) -> None:
    from sb3_masked_attention.sequence.evaluate import generate_after

    model = next(iter(_load_event_models([args.model]).values()))
    rows = generate_after(model, args.history, greedy=args.greedy, seed=args.seed)
    if args.out:
        from sb3_masked_attention.io import atomic_path

        with atomic_path(args.out) as tmp:
            rows.to_csv(tmp, index=False)
        print(f"wrote {args.out}: {len(rows)} generated events")
    else:
        print(rows.to_csv(index=False), end="")


def _add_report_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--reps", type=_positive_int, default=2000, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--normalize", default="none", help="none, min-max (documented random/optimal returns) or an env,low,high CSV"
    )


def _add_training_options(parser: argparse.ArgumentParser, history_len: int, total_timesteps: int) -> None:
    parser.add_argument(
        "--strategy", type=_strategy, default="specialized", help="head-mask strategy name or comma-separated fractions"
    )
    parser.add_argument("--history-len", type=_positive_int, default=history_len, help="steps in the history window")
    parser.add_argument("--total-timesteps", type=_positive_int, default=total_timesteps)
    parser.add_argument("--n-envs", type=_positive_int, default=8)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-episodes", type=_positive_int, default=50)
    parser.add_argument("--output-dir", default=None, help="write model.zip and TensorBoard logs here")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="sb3ma", description="Head-masked attention for Stable-Baselines3.")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    commands.add_parser("strategies", help="list the named head-mask strategies").set_defaults(func=_cmd_strategies)

    masks = commands.add_parser("masks", help="draw each head's mask as a PNG")
    masks.add_argument("--strategy", type=_strategy, default="specialized")
    masks.add_argument("--history-len", type=_positive_int, default=16)
    masks.add_argument("--out", required=True, help="output PNG")
    masks.set_defaults(func=_cmd_masks)

    train = commands.add_parser("train", help="train PPO + HeadMaskedTransformerPolicy on a gymnasium id and evaluate it")
    train.add_argument("--env", required=True, help="gymnasium id, e.g. sb3ma/TMaze-v0 or CartPoleNoVel-v1")
    train.add_argument("--env-kwargs", type=_key_value, nargs="*", default=[], metavar="KEY=VALUE")
    _add_training_options(train, history_len=16, total_timesteps=100_000)
    train.set_defaults(func=_cmd_train)

    multiscale = commands.add_parser(
        "train-multiscale", help="train (or resume) PPO with the multi-scale extractors on sb3ma/TerritoryControl-v0"
    )
    multiscale.add_argument("--map", default="plains", help="plains, islands, continents, or a .png/.npy map file")
    multiscale.add_argument("--map-size", type=_positive_int, default=1024)
    multiscale.add_argument("--num-bots", type=int, default=10)
    multiscale.add_argument("--max-steps", type=_positive_int, default=1000, help="episode length")
    multiscale.add_argument("--local-view-size", type=_positive_int, default=256)
    multiscale.add_argument("--total-timesteps", type=_positive_int, default=1_000_000)
    multiscale.add_argument("--n-envs", type=_positive_int, default=8)
    multiscale.add_argument("--batch-size", type=_positive_int, default=128)
    multiscale.add_argument("--n-steps", type=_positive_int, default=128, help="rollout steps per env per update")
    multiscale.add_argument(
        "--no-attention", action="store_true", help="MultiScaleExtractor instead of MultiScaleExtractorWithAttention"
    )
    multiscale.add_argument("--algo", choices=["maskable_ppo", "ppo"], default="maskable_ppo")
    multiscale.add_argument("--output-dir", required=True, help="run directory (resumed if it holds checkpoints)")
    multiscale.add_argument("--device", default="auto")
    multiscale.add_argument("--seed", type=int, default=0)
    multiscale.add_argument("--checkpoint-freq", type=_positive_int, default=50_000, help="env steps between checkpoints")
    multiscale.add_argument("--eval-freq", type=_positive_int, default=25_000, help="env steps between evaluations")
    multiscale.add_argument("--eval-episodes", type=_positive_int, default=5)
    multiscale.add_argument(
        "--attention-log-freq", type=_positive_int, default=10_000, help="env steps between TensorBoard attention logs"
    )
    multiscale.add_argument(
        "--ppo-kwargs",
        type=_key_value,
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="PPO arguments, e.g. n_epochs=2 learning_rate=1e-4",
    )
    multiscale.add_argument(
        "--torch-threads", type=_positive_int, default=None, help="torch CPU threads (one per run when runs share a machine)"
    )
    multiscale.add_argument("--no-subprocess", action="store_true", help="DummyVecEnv instead of SubprocVecEnv")
    multiscale.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    multiscale.set_defaults(func=_cmd_train_multiscale)

    report = commands.add_parser(
        "report", help="rliable statistics, tables and plots from a scores CSV (method,env,seed,score[,timesteps])"
    )
    report.add_argument("scores", help="scores CSV")
    report.add_argument("--out", required=True, help="output directory")
    _add_report_options(report)
    report.set_defaults(func=_cmd_report)

    evaluate = commands.add_parser(
        "evaluate", help="evaluate a saved model over seeds; --ablate-heads: return drop per zeroed head"
    )
    evaluate.add_argument("model", help="saved model (.zip)")
    evaluate.add_argument("--env", required=True, help="gymnasium id")
    evaluate.add_argument("--env-kwargs", type=_key_value, nargs="*", default=[], metavar="KEY=VALUE")
    evaluate.add_argument("--algo", choices=["ppo", "a2c", "maskable_ppo", "ppo_lstm"], default="ppo")
    evaluate.add_argument("--episodes", type=_positive_int, default=20, help="episodes per seed")
    evaluate.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    evaluate.add_argument("--vecnormalize", default=None, help="VecNormalize statistics (rl-zoo vecnormalize.pkl)")
    evaluate.add_argument("--ablate-heads", action="store_true", help="also evaluate with each head's output zeroed in turn")
    evaluate.add_argument("--out", default=None, help="CSV of every (seed, ablated head, layer) evaluation")
    evaluate.set_defaults(func=_cmd_evaluate)

    study = commands.add_parser(
        "study", help="resumable studies: every (method, env, seed) run of a study file"
    ).add_subparsers(dest="study_command", required=True, parser_class=_Parser)
    study_run = study.add_parser("run", help="run (or resume) a study")
    study_run.add_argument("study", help="study YAML file")
    study_run.add_argument("--dir", default=None, help="study directory (default runs/<name>)")
    study_run.add_argument("--backend", choices=["local", "ray"], default="local")
    study_run.add_argument("--workers", type=_positive_int, default=2, help="parallel runs (one torch thread each)")
    study_run.add_argument("--address", default=None, help="Ray cluster address (backend ray; default: a local Ray)")
    study_run.add_argument("--no-progress", action="store_true")
    study_run.set_defaults(func=_cmd_study_run)
    study_report = study.add_parser("report", help="`sb3ma report` on a study's scores.csv")
    study_report.add_argument("dir", help="study directory")
    study_report.add_argument("--out", default=None, help="output directory (default DIR/report)")
    _add_report_options(study_report)
    study_report.set_defaults(func=_cmd_study_report)

    ad = commands.add_parser("ad", help="Algorithm Distillation on Dark Room: collect, train, eval").add_subparsers(
        dest="ad_command", required=True, parser_class=_Parser
    )
    collect = ad.add_parser("collect", help="record a source algorithm's learning runs on the training goals")
    collect.add_argument("--env", default="sb3ma/Darkroom-v0", help="Dark Room id")
    collect.add_argument("--env-kwargs", type=_key_value, nargs="*", default=[], metavar="KEY=VALUE")
    collect.add_argument("--source", choices=["q-learning", "ppo"], default="q-learning")
    collect.add_argument("--episodes", type=_positive_int, default=60, help="episodes per learning run")
    collect.add_argument("--runs-per-goal", type=_positive_int, default=16)
    collect.add_argument("--seed", type=int, default=0)
    collect.add_argument("--out", required=True, help="dataset .npz")
    collect.add_argument("--no-progress", action="store_true")
    collect.set_defaults(func=_cmd_ad_collect)
    ad_train = ad.add_parser("train", help="train (or resume) the causal transformer on a dataset")
    ad_train.add_argument("--dataset", required=True, help="dataset .npz from `sb3ma ad collect`")
    ad_train.add_argument("--out", required=True, help="run directory (resumed if it holds a checkpoint)")
    ad_train.add_argument("--updates", type=_positive_int, default=3000)
    ad_train.add_argument("--batch-size", type=_positive_int, default=16)
    ad_train.add_argument("--learning-rate", type=float, default=1e-3)
    ad_train.add_argument(
        "--context-len", type=_positive_int, default=400, help="tokens (transitions) per window (20 episodes)"
    )
    ad_train.add_argument("--d-model", type=_positive_int, default=64)
    ad_train.add_argument("--n-heads", type=_positive_int, default=8)
    ad_train.add_argument("--n-layers", type=_positive_int, default=4)
    ad_train.add_argument("--strategy", type=_strategy, default="none", help="head-mask strategy name or fractions")
    ad_train.add_argument("--dropout", type=float, default=0.1, help="dropout while training (none at evaluation)")
    ad_train.add_argument("--checkpoint-every", type=_positive_int, default=250)
    ad_train.add_argument("--seed", type=int, default=0)
    ad_train.add_argument("--torch-threads", type=_positive_int, default=None)
    ad_train.add_argument("--no-progress", action="store_true")
    ad_train.set_defaults(func=_cmd_ad_train)
    ad_eval = ad.add_parser("eval", help="in-context evaluation on held-out goals (no weight updates) vs the source")
    ad_eval.add_argument("model", help="model.pt or its run directory")
    ad_eval.add_argument("--out", required=True, help="output directory")
    ad_eval.add_argument(
        "--episodes", type=_positive_int, default=100, help="consecutive episodes per goal (AD learns slower than its source)"
    )
    ad_eval.add_argument("--goals", choices=["test", "train", "all"], default="test")
    ad_eval.add_argument("--greedy", action="store_true", help="most likely action instead of sampling")
    ad_eval.add_argument("--no-cache", action="store_true", help="recompute the context every step")
    ad_eval.add_argument("--source-runs", type=_positive_int, default=3, help="source learning runs per goal for its curve")
    ad_eval.add_argument("--last", type=_positive_int, default=5, help="episodes averaged for the final return")
    ad_eval.add_argument("--seed", type=int, default=0)
    ad_eval.add_argument("--compress", default=None, help="window:W[:M], topk:K[:A] or hierarchy:R:M[:r1[:r2]]")
    ad_eval.set_defaults(func=_cmd_ad_eval)

    attention = commands.add_parser("attention", help="capture, analyse and compress attention").add_subparsers(
        dest="attention_command", required=True, parser_class=_Parser
    )
    capture = attention.add_parser("capture", help="record attention while a model acts (AD model.pt or SB3 .zip)")
    capture.add_argument("--model", required=True, help="AD model.pt (or its directory) or an SB3 model .zip")
    capture.add_argument("--env", default=None, help="gymnasium id (SB3 models; AD models use their training env)")
    capture.add_argument("--env-kwargs", type=_key_value, nargs="*", default=[], metavar="KEY=VALUE")
    capture.add_argument("--algo", choices=["ppo", "a2c", "maskable_ppo"], default="ppo", help="SB3 models")
    capture.add_argument("--goal", type=_goal, default=None, help="AD: goal X,Y (default: the first held-out goal)")
    capture.add_argument("--steps", type=_positive_int, default=500, help="steps recorded")
    capture.add_argument("--stride", type=_positive_int, default=1, help="record every k-th step (long runs)")
    capture.add_argument("--full-samples", type=int, default=6, help="steps whose full query-by-key matrices are kept")
    capture.add_argument("--seed", type=int, default=0)
    capture.add_argument("--out", required=True, help="output .npz")
    capture.set_defaults(func=_cmd_attention_capture)
    analyze = attention.add_parser("analyze", help="plots and compression recommendations from a capture")
    analyze.add_argument("capture", help="capture .npz")
    analyze.add_argument("--out", required=True, help="output directory")
    analyze.set_defaults(func=_cmd_attention_analyze)
    compress = attention.add_parser("compress", help="return and speed of context-compression settings (AD models)")
    compress.add_argument("--model", required=True, help="AD model.pt or its directory")
    compress.add_argument(
        "--compress", nargs="+", required=True, help="settings: window:W[:M] topk:K[:A] hierarchy:R:M[:r1[:r2]]"
    )
    compress.add_argument("--episodes", type=_positive_int, default=40)
    compress.add_argument("--goals", choices=["test", "train", "all"], default="test")
    compress.add_argument("--repeats", type=_positive_int, default=1, help="action-sampling seeds per setting")
    compress.add_argument("--seed", type=int, default=0)
    compress.add_argument("--out", required=True, help="output directory")
    compress.set_defaults(func=_cmd_attention_compress)

    pre = commands.add_parser("pretrain", help="self-supervised pretraining of the head-masked transformer trunk")
    pre.add_argument("--env", default=None, help="gymnasium id to collect history windows from")
    pre.add_argument("--env-kwargs", type=_key_value, nargs="*", default=[], metavar="KEY=VALUE")
    pre.add_argument(
        "--objectives",
        default="inverse_dynamics,masked_reconstruction,forward_dynamics",
        help="comma-separated: inverse_dynamics, masked_reconstruction, forward_dynamics (losses summed)",
    )
    pre.add_argument("--steps", type=_positive_int, default=2000, help="gradient updates")
    pre.add_argument(
        "--inverse-horizon",
        type=_positive_int,
        default=1,
        help="predict a_t at step t+H (2 for Euler-integrated physics such as CartPole)",
    )
    pre.add_argument("--collect-steps", type=_positive_int, default=20_000, help="environment steps (windows) to collect")
    pre.add_argument("--history-len", type=_positive_int, default=16, help="must match the PPO model's")
    pre.add_argument(
        "--normalize-keys", default="", help="window keys standardised like the PPO run's VecNormalize, e.g. obs,prev_reward"
    )
    pre.add_argument("--model", default=None, help="collect with this SB3 model (.zip) instead of random actions")
    pre.add_argument("--dataset", default=None, help="train on windows saved with --save-data instead of collecting")
    pre.add_argument("--save-data", default=None, help="also save the collected windows (.npz)")
    pre.add_argument("--d-model", type=_positive_int, default=64)
    pre.add_argument("--n-heads", type=_positive_int, default=8)
    pre.add_argument("--n-layers", type=_positive_int, default=2)
    pre.add_argument("--strategy", type=_strategy, default="specialized", help="head-mask strategy (masks have no weights)")
    pre.add_argument("--batch-size", type=_positive_int, default=64)
    pre.add_argument("--learning-rate", type=float, default=3e-4)
    pre.add_argument("--seed", type=int, default=0)
    pre.add_argument("--out", required=True, help="saved trunk (.pt)")
    pre.add_argument("--no-progress", action="store_true")
    pre.set_defaults(func=_cmd_pretrain)

    events = commands.add_parser(
        "events", help="action-sequence decoder on input-event logs: synth, train, eval, generate"
    ).add_subparsers(dest="events_command", required=True, parser_class=_Parser)
    synth = events.add_parser("synth", help="write synthetic human-like sessions (clicks, drags, key presses) as CSV")
    synth.add_argument("--sessions", type=_positive_int, required=True)
    synth.add_argument("--out", required=True, help="CSV file")
    synth.add_argument("--duration", type=float, default=60.0, help="seconds per session")
    synth.add_argument("--seed", type=int, default=0)
    synth.add_argument("--prefix", default="s", help="session ids are PREFIX0000, PREFIX0001, ...")
    synth.set_defaults(func=_cmd_events_synth)
    ev_train = events.add_parser("train", help="train (or resume) a decoder; validation split by session")
    ev_train.add_argument("--events", required=True, help="CSV: session,t,event,x,y[,enumerated columns]")
    ev_train.add_argument("--out", required=True, help="run directory")
    ev_train.add_argument("--arch", choices=["attention", "gru"], default="attention", help="gru: the no-attention baseline")
    ev_train.add_argument("--epochs", type=_positive_int, default=30)
    ev_train.add_argument("--batch-size", type=_positive_int, default=64)
    ev_train.add_argument("--learning-rate", type=float, default=1e-3)
    ev_train.add_argument("--val-fraction", type=float, default=0.1, help="share of sessions for validation")
    ev_train.add_argument("--width", type=_positive_int, default=64, help="model width (input_dim)")
    ev_train.add_argument("--n-heads", type=_positive_int, default=8)
    ev_train.add_argument("--n-layers", type=_positive_int, default=2)
    ev_train.add_argument(
        "--strategy", type=_strategy, default="diversified", help="head-mask strategy of the history attention"
    )
    ev_train.add_argument("--history-seconds", type=float, default=6.0)
    ev_train.add_argument("--max-history", type=_positive_int, default=64, help="most history events kept")
    ev_train.add_argument("--max-actions", type=_positive_int, default=8)
    ev_train.add_argument("--pause", type=float, default=1.0, help="a longer gap (s) ends a sequence")
    ev_train.add_argument("--screen", type=float, nargs=2, default=[1920.0, 1080.0], metavar=("WIDTH", "HEIGHT"))
    ev_train.add_argument("--seed", type=int, default=0)
    ev_train.add_argument("--no-progress", action="store_true")
    ev_train.set_defaults(func=_cmd_events_train)
    ev_eval = events.add_parser("eval", help="timing/length/event/coordinate metrics vs repeat-last (and --compare models)")
    ev_eval.add_argument("--model", required=True, help="run directory or model.pt")
    ev_eval.add_argument("--compare", nargs="*", default=[], help="more trained models in the same table (e.g. the GRU)")
    ev_eval.add_argument("--events", required=True, help="held-out sessions (CSV)")
    ev_eval.add_argument("--out", default=None, help="write metrics.csv, metrics.md and timing_distribution.png here")
    ev_eval.add_argument("--seed", type=int, default=0, help="sampling seed of the generated timing distribution")
    ev_eval.set_defaults(func=_cmd_events_eval)
    generate = events.add_parser("generate", help="generate the next action sequence after each session of a history CSV")
    generate.add_argument("--model", required=True)
    generate.add_argument("--history", required=True, help="CSV; each session's last event is the decision point")
    generate.add_argument("--out", default=None, help="CSV of generated events (default: print)")
    generate.add_argument("--greedy", action="store_true", help="most likely values instead of sampling")
    generate.add_argument("--seed", type=int, default=0)
    generate.set_defaults(func=_cmd_events_generate)

    demo = commands.add_parser("demo", help="train on a 10-step T-maze (about half a minute) and print the evaluation")
    _add_training_options(demo, history_len=DEMO["history_len"], total_timesteps=DEMO["total_timesteps"])
    demo.set_defaults(func=_cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        args.func(args)
    except UserError as error:
        print(error, file=sys.stderr)
        return 2
    except (ValueError, FileNotFoundError, gym.error.Error) as error:
        print(f"sb3ma: error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
