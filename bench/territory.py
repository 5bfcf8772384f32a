"""TerritoryControl speed (single process, one core, observation included) and a picture of what the agent sees.

    python bench/territory.py speed     # steps/s per map size and bot count -> <out>/territory_speed.csv, territory.md
    python bench/territory.py picture   # <out>/territory_control.png: the map and the three observation maps
    python bench/territory.py report    # <out>/territory.md from the CSV (--out, default results/benchmarks)

``speed`` and ``picture`` write into a new folder unless ``--out`` names one (the committed ones: ``--out
results/benchmarks``, ``--out results/envs``).

The agent plays the ``hard`` scripted level or picks uniformly among valid actions
(``envs.territory_policies.reference_policy``); resets (fixed map seed) are counted in the time.
The first episode of each configuration compiles/warms the numba kernels and is not timed.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

sys.path.insert(0, str(ROOT / "bench"))
from folders import measuring_folder, out_option  # noqa: E402

from envs.territory import TerritoryControlEnv  # noqa: E402
from envs.territory_policies import reference_policy  # noqa: E402
from sb3_masked_attention.io import append_row, read_rows, save_figure, write_text_atomic  # noqa: E402

OUT = ROOT / "results" / "benchmarks"
#: (map size, bots, target steps/s)
CONFIGS = [(256, 4, 3000), (1024, 10, 500), (64, 2, None), (512, 8, None), (2048, 64, None)]


def measure(map_size: int, num_bots: int, policy: str, steps: int, seed: int = 0) -> dict:
    # 128x128 maps and a 64x64 tactical map (the full preset's observations) at every size, one tick per step, as the
    # targets were set.
    env = TerritoryControlEnv(
        map_size=map_size,
        num_bots=num_bots,
        map_seed=seed,
        max_steps=1000,
        map_resolution=128,
        tactical_size=64,
        action_interval=1,
    )
    choose = reference_policy(policy, seed=seed)

    def act() -> np.ndarray:
        return choose(env)

    env.reset(seed=seed)
    for _ in range(200):  # warm-up: numba kernels compiled or loaded from cache
        env.step(act())
    env.reset(seed=seed + 1)
    episodes, start = 0, time.perf_counter()
    for _ in range(steps):
        _, _, terminated, truncated, _ = env.step(act())
        if terminated or truncated:
            env.reset()
            episodes += 1
    elapsed = time.perf_counter() - start
    return {
        "map_size": map_size,
        "num_bots": num_bots,
        "policy": policy,
        "steps": steps,
        "episodes_ended": episodes,
        "steps_per_s": round(steps / elapsed, 1),
        "ms_per_step": round(1000 * elapsed / steps, 3),
    }


def _machine() -> str:
    from sb3_masked_attention.machine import cpu_name

    return f"{cpu_name()}; one process, one core; Python {platform.python_version()}, numpy {np.__version__}"


def speed(steps: int, out: Path) -> None:
    write_text_atomic(out / "territory_machine.txt", _machine() + "\n")  # the report names the measuring machine
    for map_size, num_bots, _ in CONFIGS:
        for policy in ("hard", "random"):
            row = measure(map_size, num_bots, policy, steps if map_size <= 1024 else steps // 4)
            append_row(out / "territory_speed.csv", row)
            print(row)
    report(out)


def picture(out: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    env = TerritoryControlEnv(
        map_size=512,
        num_bots=8,
        map_seed=3,
        local_view_size=256,
        map_resolution=128,
        tactical_size=64,
        render_mode="rgb_array",
    )
    play = reference_policy("hard")
    obs, _ = env.reset(seed=3)
    for _ in range(220):
        obs, _, terminated, truncated, info = env.step(play(env))
        if terminated or truncated:
            break

    def composite(maps: np.ndarray) -> np.ndarray:
        # red = own, green = enemy, grey = neutral, blue = water, white = own border
        colours = np.array([(0.9, 0.1, 0.1), (0.2, 0.65, 0.25), (0.78, 0.78, 0.74), (0.16, 0.31, 0.63)])
        fractions = maps[:4].astype(float) / 255  # (4, H, W)
        rgb = np.einsum("chw,cd->hwd", fractions, colours)
        border = maps[4].astype(float)[..., None] / 255
        return np.clip(rgb * (1 - border) + border, 0, 1)

    fig, axes = plt.subplots(1, 4, figsize=(16, 4.4))
    panels = [
        (env.render(), f"render(): 512x512 map, 8 bots, step {env._steps}"),
        (composite(obs["global_map"]), "global_map (6x128x128): whole map"),
        (composite(obs["local_map"]), "local_map: 256-tile window on the agent"),
        (composite(obs["tactical_map"]), "tactical_map (6x64x64): contested border"),
    ]
    for ax, (image, title) in zip(axes, panels):
        ax.imshow(image, interpolation="nearest")
        ax.set_title(title, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(
        "sb3ma/TerritoryControl-v0 (agent red in the render; maps: own red, enemy green, neutral grey, water "
        "blue, own border white); "
        f"agent share {info['territory_share']:.2f}, rank {info['rank']}",
        fontsize=10,
    )
    fig.tight_layout()
    save_figure(fig, out / "territory_control.png", dpi=90)
    print(f"wrote {out / 'territory_control.png'}")


def report(out: Path) -> None:
    table = read_rows(out / "territory_speed.csv")
    machine = out / "territory_machine.txt"
    lines = [
        "# TerritoryControl speed",
        "",
        f"Machine: {machine.read_text().strip() if machine.exists() else 'not recorded'}. "
        "Command: `python bench/territory.py speed --out results/benchmarks`.",
        "",
        "Steps per second of `env.step` including the observation (all three maps and the vector), "
        "action masks and resets (fixed map seed, 1000-step cap), the bots playing the `medium` level; observations "
        "of 128x128 maps and a 64x64 tactical map at every size. The agent plays the `hard` scripted level or "
        "uniformly random valid actions (`envs.territory_policies.reference_policy`; the random agent is eliminated "
        "early, so more resets). The previous rules' figures are in `territory_speed_previous_rules.csv`.",
        "",
        "| map | bots | policy | steps/s | ms/step | target | met |",
        "|---|---|---|---|---|---|---|",
    ]
    targets = {(m, b): t for m, b, t in CONFIGS}
    for row in table.itertuples():
        target = targets.get((row.map_size, row.num_bots))
        met = "" if target is None else ("yes" if row.steps_per_s >= target else "no")
        lines.append(
            f"| {row.map_size}x{row.map_size} | {row.num_bots} | {row.policy} | {row.steps_per_s:,.0f} | "
            f"{row.ms_per_step} | {'' if target is None else f'>= {target}'} | {met} |"
        )
    write_text_atomic(out / "territory.md", "\n".join(lines) + "\n")
    print(f"wrote {out / 'territory.md'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    speed_parser = commands.add_parser("speed")
    speed_parser.add_argument("--steps", type=int, default=3000)
    out_option(speed_parser)
    out_option(commands.add_parser("picture"), "results/envs")
    out_option(commands.add_parser("report"))
    args = parser.parse_args()
    if args.command == "report":
        report(args.out or OUT)
    elif args.command == "speed":
        speed(args.steps, measuring_folder(args.out, "territory"))
    else:
        picture(measuring_folder(args.out, "territory-picture", "results/envs"))


if __name__ == "__main__":
    main()
