"""Reports of the TerritoryControl learning study (multiscale_study.py): the final evaluation's tables (per run, the
targets, the curriculum), the curriculum's source models, learning curves, rliable reports, the pre-registered tests,
and pictures of a trained model (attention at a front line, a held-out game). Its commands are those of ``python
bench/multiscale.py`` (``final-eval``, ``curriculum-sources``, ``plot``, ``rliable``, ``tests``, ``attention``, ``game``).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the study module beside this one, however this is loaded

import multiscale_study as study

from sb3_masked_attention.io import atomic_path, read_rows, save_figure, write_text_atomic


def final_eval(preset: str, games: int, workers: int) -> None:
    """Every finished run's final model on ``games`` held-out games, greedy and sampled, against the preset's bots and
    any others of :data:`study.LADDER_BOTS` -> {preset}/final_eval.csv, rewritten after each run (runs already there are
    kept, not replayed: a killed evaluation resumes)."""
    path = study.RESULTS / preset / "final_eval.csv"
    have = study.evaluated_runs(preset)
    jobs = [(preset, m, s, str(f), games) for m, _, s, f in study.finished_runs(preset) if (m, s) not in have]
    study.play_held_out(path, jobs, workers)
    table = read_rows(path)
    text = f"# {preset}: final evaluation ({games} held-out games per run)\n\n{final_table(table)}\n\n"
    text += f"## Targets (greedy)\n\n{target_table(preset, table)}\n"
    if table["method"].str.contains(" from ").any():  # curriculum runs (``learn --init-from``)
        text += f"\n## Curriculum (descriptive)\n\n{curriculum_table(preset, table, study.load_evaluations(preset))}\n"
    write_text_atomic(study.RESULTS / preset / "final_eval.md", text)
    print(text)


def curriculum_sources(preset: str, workers: int) -> None:
    """The models the curriculum runs of ``preset`` started from, where they are here, on the same held-out games as
    :func:`final_eval` -> {source}/curriculum_sources.csv (runs already there are kept) and .md: each source's win
    rates beside those of the archived run of the same seed. They differ where a lost source was trained again
    (:func:`study.check_regenerated`): the curriculum then starts from that model, not from the one of the results."""
    methods = read_rows(study.RESULTS / preset / "final_eval.csv")
    methods = methods[methods["method"].str.contains(" from ")] if len(methods) else methods
    starts = sorted({(*method.split(" from "), int(seed)) for method, seed in zip(methods["method"], methods["seed"])})
    if not starts:
        raise SystemExit(f"no curriculum run of the {preset} preset: run `python bench/multiscale.py learn --init-from`")
    sources = sorted({source for _, source, _ in starts})
    if len(sources) > 1:
        raise SystemExit(f"curriculum runs of {preset} start from several presets {sources}: expected one")
    source = sources[0]
    path = study.RESULTS / source / "curriculum_sources.csv"
    have = study.evaluated_runs(source, path.name)
    jobs = [
        (source, f"{extractor} (curriculum source)", seed, str(study.run_dir(source, extractor, seed)), study.FINAL_GAMES)
        for extractor, _, seed in starts
        if (study.run_dir(source, extractor, seed) / "final_model.zip").exists()
        and (f"{extractor} (curriculum source)", seed) not in have
    ]
    study.play_held_out(path, jobs, workers)
    table = pd.concat([read_rows(study.RESULTS / source / "final_eval.csv"), read_rows(path)], ignore_index=True)
    table = table[table["bots"] == study.preset_bots(source)]
    rates = table.groupby(["method", "actions", "seed"])["won"].mean()
    lines = [
        "| extractor | seed | greedy: archived run | greedy: curriculum source | sampled: archived run | "
        "sampled: curriculum source |",
        "|---|---|---|---|---|---|",
    ]
    columns = [(actions, method) for actions in ("greedy", "sampled") for method in ("", " (curriculum source)")]
    per_run = pd.DataFrame(
        [
            [rates.get((extractor + method, actions, seed), np.nan) for actions, method in columns]
            for extractor, _, seed in starts
        ],
        index=pd.MultiIndex.from_tuples([(extractor, seed) for extractor, _, seed in starts]),
    )
    for extractor, runs in per_run.groupby(level=0, sort=False):
        entries = [(str(seed), values) for (_, seed), values in runs.iterrows()]
        entries.append((f"mean of {len(runs)}", runs.mean()))  # each column over the runs it has
        for label, values in entries:
            cells = " | ".join("-" if pd.isna(value) else f"{value:.2f}" for value in values)
            lines.append(f"| {extractor} | {label} | {cells} |")
    text = (
        f"# {source}: the models the {preset} curriculum runs started from\n\n"
        f"Command: `python bench/multiscale.py curriculum-sources --preset {preset}`. Win rate over the "
        f"{study.FINAL_GAMES} held-out games of `final-eval` against the {source} preset's bots, of the archived run "
        "(`final_eval.csv`, the results) and of the model in the run folder the curriculum run started from (trained "
        "again where it had been lost: `regenerated_models.csv`).\n\n" + "\n".join(lines) + "\n"
    )
    write_text_atomic(study.RESULTS / source / "curriculum_sources.md", text)
    print(text)


def final_table(table: pd.DataFrame) -> str:
    """Markdown: per bots, method and actions, each run's win rate and share, then their mean and spread over seeds."""
    per_run = table.groupby(["bots", "method", "actions", "seed"]).agg(win=("won", "mean"), share=("territory_share", "mean"))
    lines = [
        "| bots | method | actions | seeds | win rate per seed | win rate: mean ± sd over seeds | land share: mean ± sd |",
        "|---|---|---|---|---|---|---|",
    ]
    for (bots, method, actions), runs in per_run.groupby(level=[0, 1, 2]):
        wins = " ".join(f"{w:.2f}" for w in runs["win"])
        lines.append(
            f"| {bots} | {method} | {actions} | {len(runs)} | {wins} | {runs['win'].mean():.2f} ± {runs['win'].std():.2f} | "
            f"{runs['share'].mean():.3f} ± {runs['share'].std():.3f} |"
        )
    return "\n".join(lines)


#: The targets (results/multiscale/README.md, amendment 2), per preset: (bots, reference, comparison). A reference
#: is a number or a scripted level whose greedy win rate on the ladder against the same bots sets it.
TARGETS: dict[str, list[tuple[str | None, str | float, str]]] = {
    "small": [("easy", 0.8, ">="), (None, "hard", ">")],
    "medium": [(None, "hard", ">")],
}


def target_table(preset: str, table: pd.DataFrame) -> str:
    """Markdown: per target and method (greedy held-out win rate), the mean over runs, the target, the gap, whether it
    is met, and k/n runs that reach it on their own; then the difference between the extractors the runs detect at
    80% power (pooled within-method spread of the per-run win rates, normal approximation)."""
    from sb3_masked_attention.evaluation.inference import detectable_difference

    ladder = read_rows(study.RESULTS / "reference_policies.csv")
    greedy = table[table["actions"] == "greedy"]
    per_run = greedy.groupby(["bots", "method", "seed"])["won"].mean().reset_index(name="win")
    lines = [
        "| bots | method | runs | win rate: mean | target | gap | met | runs reaching it |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for bots, reference, comparison in TARGETS.get(preset, []):
        bots = bots or study.preset_bots(preset)
        if isinstance(reference, str):
            rows = ladder[(ladder["preset"] == preset) & (ladder["bot_level"] == bots) & (ladder["policy"] == reference)]
            target = float(rows["is_success"].mean())
            label = f"{comparison} {reference} ({target:.2f})"
        else:
            target, label = float(reference), f"{comparison} {reference:.2f}"
        for method, runs in per_run[per_run["bots"] == bots].groupby("method"):
            reached = runs["win"] >= target if comparison == ">=" else runs["win"] > target
            mean = runs["win"].mean()
            met = mean >= target if comparison == ">=" else mean > target
            lines.append(
                f"| {bots} | {method} | {len(runs)} | {mean:.2f} | {label} | {mean - target:+.2f} | "
                f"{'yes' if met else 'no'} | {int(reached.sum())}/{len(runs)} |"
            )
    lines += ["", "| bots | runs per method | pooled sd of win rate | detectable difference |", "|---|---|---|---|"]
    for bots, runs in per_run[per_run["method"].isin(list(study.EXTRACTORS))].groupby("bots"):
        sizes = runs.groupby("method").size()
        pooled = float(np.sqrt(runs.groupby("method")["win"].var().mean()))
        detectable = detectable_difference(pooled, int(sizes.min()))
        lines.append(f"| {bots} | {sizes.min()} | {pooled:.3f} | {detectable:.3f} |")
    return "\n".join(lines)


def curriculum_table(preset: str, table: pd.DataFrame, curves: pd.DataFrame) -> str:
    """Markdown, descriptive (no test; results/multiscale/README.md): per extractor, the runs from scratch and those
    started from a smaller preset's model (``--init-from``): greedy held-out win rate, and the training steps until a
    run's training evaluation first reaches the scratch runs' final level (their mean last evaluation), median over the
    runs that reach it, with k/n."""
    greedy = table[(table["actions"] == "greedy") & (table["bots"] == study.preset_bots(preset))]
    per_run = greedy.groupby(["method", "seed"])["won"].mean()
    lines = [
        "| extractor | start | runs | win rate: mean ± sd | scratch's final level | steps to reach it (median) | reached |",
        "|---|---|---|---|---|---|---|",
    ]
    for extractor in study.EXTRACTORS:
        scratch = curves[curves["method"] == extractor]
        if scratch.empty:
            continue
        level = float(scratch.sort_values("timesteps").groupby("seed")["mean_is_success"].last().mean())
        for method in sorted(m for m in curves["method"].unique() if m.split(" from ")[0] == extractor):
            runs = curves[curves["method"] == method].sort_values("timesteps")
            first = [run.loc[run["mean_is_success"] >= level, "timesteps"].min() for _, run in runs.groupby("seed")]
            reached = [step for step in first if pd.notna(step)]
            wins = per_run.loc[method] if method in per_run.index.get_level_values(0) else pd.Series(dtype=float)
            start = method.partition(" from ")[2] or "scratch"
            median = f"{int(np.median(reached)):,}" if reached else "-"
            lines.append(
                f"| {extractor} | {start} | {len(first)} | {wins.mean():.2f} ± {wins.std():.2f} | {level:.2f} | {median} | "
                f"{len(reached)}/{len(first)} |"
            )
    return "\n".join(lines)


def front_line_picture(preset: str, seed: int = 0) -> None:
    """What a trained attention extractor looks at where its land meets a bot's: the first step of a held-out game
    (after step 20) at which the agent borders a bot and is attacking it or under attack -> {preset}/attention_front.png."""
    from stable_baselines3.common.preprocessing import preprocess_obs

    from envs.territory import GLOBAL_FEATURES, TerritoryControlEnv
    from sb3_masked_attention.analysis.multiscale_plot import plot_multiscale_attention
    from sb3_masked_attention.extractors.multiscale import MultiScaleExtractorWithAttention
    from sb3_masked_attention.multiscale_play import load_multiscale_model

    path = study.run_dir(preset, "attention", seed) / "final_model.zip"
    env = TerritoryControlEnv(preset=preset)
    model = load_multiscale_model(path, env)
    attacking, attacked = GLOBAL_FEATURES.index("troops_attacking"), GLOBAL_FEATURES.index("under_attack")
    obs, _ = env.reset(seed=study.HELD_OUT_SEED)
    for step in range(env.max_steps):
        borders_bot = env.action_masks()[2 : env.num_bots + 2].any()
        if step > 20 and borders_bot and (obs["global"][attacking] > 0 or obs["global"][attacked] > 0):
            break
        action, _ = model.predict(obs, deterministic=True, action_masks=env.action_masks())
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            raise SystemExit(f"no front line in game {study.HELD_OUT_SEED}: the game ended at step {step + 1}")
    obs_tensor, _ = model.policy.obs_to_tensor(obs)
    with torch.no_grad():
        processed = preprocess_obs(obs_tensor, model.observation_space)  # uint8 maps to [0, 1], as the policy does
        extractor = model.policy.features_extractor
        assert isinstance(extractor, MultiScaleExtractorWithAttention)
        assert isinstance(processed, dict)  # a Dict space preprocesses to a dict of tensors
        _, maps = extractor.forward_with_attention(processed)
    out = study.RESULTS / preset / "attention_front.png"
    title = (
        f"{preset} preset, attention extractor seed {seed}:\nstep {step} of held-out game {study.HELD_OUT_SEED}, at a front"
    )
    plot_multiscale_attention(obs, maps, out, title=title)
    print(f"wrote {out}")


def record_game(preset: str, seed: int = 0, game: int = 0) -> None:
    """A held-out game of the attention model (seed ``seed``) as an animated GIF -> {preset}/game.gif."""
    from envs.territory import TerritoryControlEnv
    from sb3_masked_attention.multiscale_play import load_multiscale_model, play_game, save_gif

    env = TerritoryControlEnv(preset=preset, render_mode="rgb_array")
    model = load_multiscale_model(study.run_dir(preset, "attention", seed) / "final_model.zip", env)
    info, frames = play_game(model, env, seed=study.HELD_OUT_SEED + game, frame_every=max(1, env.max_steps // 50))
    save_gif(frames, study.RESULTS / preset / "game.gif")
    outcome = "won" if info["is_success"] else "lost"
    print(f"wrote {study.RESULTS / preset / 'game.gif'}: {outcome}, share {info['territory_share']:.3f}")


def plot(preset: str) -> None:
    """Learning curves (greedy win rate and land share in the training evaluations) against steps and against
    training wall-clock, every seed thin and the mean thick -> {preset}/learning_curves.png. The curves are those of
    the run folders here and those ``learn`` archived in {preset}/evaluations.csv (which this does not rewrite)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    table = study.load_evaluations(preset)
    if table.empty:
        raise SystemExit(f"no finished runs at the {preset} preset: run `python bench/multiscale.py learn --preset {preset}`")
    ladder = read_rows(study.RESULTS / "reference_policies.csv")
    ladder = (
        ladder[(ladder["preset"] == preset) & (ladder["bot_level"] == study.preset_bots(preset))] if len(ladder) else ladder
    )
    fig, axes = plt.subplots(2, 2, figsize=(13, 8.5))
    colours = {"attention": "tab:red", "plain": "tab:orange"}  # per extractor; curriculum runs (``X from P``) dashed
    for row, (column, label) in enumerate((("mean_is_success", "win rate"), ("mean_territory_share", "land share"))):
        for col, (x, xlabel) in enumerate(
            (("timesteps", "environment steps"), ("training_seconds", "training wall-clock (s)"))
        ):
            ax = axes[row, col]
            for method, group in table.groupby("method"):
                extractor, _, source = method.partition(" from ")
                colour, style = colours.get(extractor, "tab:blue"), "--" if source else "-"
                runs = list(group.groupby("seed"))
                for _, run in runs:
                    ax.plot(run[x], run[column], color=colour, linestyle=style, alpha=0.25, linewidth=1)
                by_step = group.groupby("timesteps")
                # the mean over every seed only: a resumed run can have an evaluation the others lack
                mean = by_step[[x, column]].mean()[by_step.size() == len(runs)]
                name = f"{method} ({len(runs)} seeds)"
                ax.plot(mean[x], mean[column], color=colour, linestyle=style, linewidth=2.5, label=name)
            if len(ladder):
                metric = "is_success" if column == "mean_is_success" else "territory_share"
                for policy, dash in (("random", ":"), ("constant", "-."), ("hard", "--")):
                    value = ladder.loc[ladder["policy"] == policy, metric].mean()
                    ax.axhline(value, color="grey", linestyle=dash, linewidth=1.2, label=f"scripted {policy} (50 games)")
            ax.set_xlabel(xlabel)
            ax.set_ylabel(f"{label} (greedy, training evaluations)")
            ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8, loc="best")
    eval_freq, games = study.EVALUATION[preset]
    fig.suptitle(
        f"MaskablePPO on TerritoryControl-{preset}: evaluation every {eval_freq:,} steps on {games} greedy games; "
        "thin = seeds, thick = mean"
    )
    fig.tight_layout()
    save_figure(fig, study.RESULTS / preset / "learning_curves.png", dpi=100)
    print(f"wrote {study.RESULTS / preset / 'learning_curves.png'}")


def rliable_report(preset: str) -> None:
    """rliable reports (IQM with CIs, probability of improvement, profiles) of the greedy held-out win rate and land
    share, one per metric (per-seed scores from final_eval.csv): the extractors from scratch, the registered comparison
    -> {preset}/report_{metric}/; with curriculum runs, every method -> {preset}/report_curriculum_{metric}/, marked
    descriptive (the curriculum is registered without a test, so its p-values are not the study's tests)."""
    from sb3_masked_attention.evaluation.report import write_report

    table = read_rows(study.RESULTS / preset / "final_eval.csv")
    if not len(table):
        raise SystemExit(f"no final evaluation at the {preset} preset: run `python bench/multiscale.py final-eval` first")
    greedy = table[(table["actions"] == "greedy") & (table["bots"] == study.preset_bots(preset))]
    groups = {"": greedy[greedy["method"].isin(list(study.EXTRACTORS))]}
    if greedy["method"].str.contains(" from ").any():
        groups["curriculum_"] = greedy
    for metric, column in (("win_rate", "won"), ("land_share", "territory_share")):
        for prefix, runs in groups.items():
            scores = runs.groupby(["method", "seed"])[column].mean().reset_index(name="score")
            scores.insert(1, "env", f"TerritoryControl-{preset} ({metric.replace('_', ' ')}, greedy)")
            path = study.RESULTS / preset / f"scores_{prefix}{metric}.csv"
            with atomic_path(path) as tmp:
                scores.to_csv(tmp, index=False)
            out = study.RESULTS / preset / f"report_{prefix}{metric}"
            write_report(os.path.relpath(path), out)  # the report names its scores file as typed
            if prefix:
                text = (out / "report.md").read_text()
                note = (
                    "**Descriptive.** The curriculum runs are registered without a test (results/multiscale/README.md); "
                    "the p-values and intervals below describe these runs and are not tests of the study. The "
                    f"registered comparison of the extractors is in `report_{metric}/` and `primary_tests.md`.\n\n"
                )
                title, _, rest = text.partition("\n\n")
                write_text_atomic(out / "report.md", f"{title}\n\n{note}{rest}")
            print(f"wrote {out}")


def primary_tests() -> str:
    """The pre-registered tests (results/multiscale/README.md): per preset (small, medium from scratch) the greedy
    held-out win rate of attention vs plain, Welch's t-test Holm-corrected over the two presets, and P(attention >
    plain) with its CI -> primary_tests.md. Runs only when every pre-registered run has its final evaluation."""
    from sb3_masked_attention.evaluation.report import probability_of_improvement, significance, to_markdown
    from sb3_masked_attention.evaluation.scores import score_matrices

    frames = []
    for preset in ("small", "medium"):
        table = read_rows(study.RESULTS / preset / "final_eval.csv")
        if len(table):
            own = (table["actions"] == "greedy") & (table["bots"] == study.preset_bots(preset))
            table = table[own & table["method"].isin(list(study.EXTRACTORS))]
        runs = table.groupby(["method", "seed"])["won"].mean().reset_index(name="score") if len(table) else pd.DataFrame()
        have = set(zip(runs["method"], runs["seed"])) if len(runs) else set()
        missing = [f"{preset} {e} seed {s}" for e in study.EXTRACTORS for s in study.SEEDS if (e, s) not in have]
        if missing:
            raise SystemExit("the primary tests wait for every final evaluation; missing: " + ", ".join(missing))
        frames.append(runs.assign(env=preset))
    scores = pd.concat(frames, ignore_index=True)[["method", "env", "seed", "score"]]
    tests = significance(scores)
    improvement = []
    for preset, group in scores.groupby("env"):
        matrices, _ = score_matrices(group)
        pairs = probability_of_improvement(matrices)
        improvement.append(pairs[pairs["method_x"] == "attention"].assign(preset=preset))
    text = (
        "# TerritoryControl: primary tests (pre-registered in README.md)\n\n"
        "Greedy win rate over 50 held-out games, one number per run; Welch's t-test, Holm over the two presets.\n\n"
        + to_markdown(tests)
        + "\n\nP(attention > plain), rliable, 95% CI:\n\n"
        + to_markdown(pd.concat(improvement, ignore_index=True))
        + "\n"
    )
    write_text_atomic(study.RESULTS / "primary_tests.md", text)
    return text
