"""The pretraining trunks' losses, as a table: reruns ``make pretraining-trunks``'s two commands (with the head masks
the committed trunks were trained with, ``specialized``: the default became ``none`` in 0.2.0) into a new folder and
reads each objective's training and validation loss at the first and the last logged update from TensorBoard.

    python bench/pretraining_losses.py [--out results/pretraining/losses]   # -> <out>/losses.csv, losses.md

The committed trunks' own TensorBoard logs were not kept; this rerun is the source of the loss figures quoted in the
docs (same commands, same seed; torch's thread count can move the last digits).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this script, however it is loaded
from folders import measuring_folder, out_option

from sb3_masked_attention.io import write_text_atomic

#: env -> the arguments of its `sb3ma pretrain` run in the Makefile's pretraining-trunks target.
RUNS = {
    "sb3ma/TMaze-v0": ["--env-kwargs", "corridor_length=20", "--history-len", "24"],
    "CartPoleNoVel-v1": ["--history-len", "16", "--normalize-keys", "obs,prev_reward", "--inverse-horizon", "2"],
}
COMMON = ["--steps", "2000", "--collect-steps", "20000", "--strategy", "specialized", "--no-progress"]


def losses(run_folder: Path) -> pd.DataFrame:
    """First and last value of every ``pretrain/*`` and ``val/*`` scalar in a run folder's TensorBoard logs."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(run_folder / "tensorboard"))
    events.Reload()
    rows = []
    for tag in sorted(events.Tags()["scalars"]):
        values = events.Scalars(tag)
        kind, _, objective = tag.partition("/")
        rows.append(
            {
                "split": "train" if kind == "pretrain" else "validation",
                "objective": objective,
                "first_update": values[0].step,
                "first": values[0].value,
                "last_update": values[-1].step,
                "last": values[-1].value,
            }
        )
    return pd.DataFrame(rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    out_option(parser, "results/pretraining/losses")
    out = measuring_folder(parser.parse_args().out, "pretraining_losses", "results/pretraining/losses")
    tables = []
    for env_id, arguments in RUNS.items():
        trunk = out / f"{env_id.replace('/', '-')}.pt"
        command = [sys.executable, "-m", "sb3_masked_attention.cli", "pretrain", "--env", env_id, *arguments, *COMMON]
        if not trunk.exists():  # a finished rerun is kept (a killed one resumes from its run folder)
            subprocess.run([*command, "--out", str(trunk)], check=True)
        tables.append(losses(trunk.with_suffix(".run")).assign(env=env_id))
    table = pd.concat(tables, ignore_index=True)[["env", "split", "objective", "first_update", "first", "last_update", "last"]]
    write_text_atomic(out / "losses.csv", table.to_csv(index=False))
    lines = [
        "# Pretraining losses (a rerun of `make pretraining-trunks`)",
        "",
        f"Command: `python bench/pretraining_losses.py --out {out}`: `sb3ma pretrain --env ENV ... {' '.join(COMMON)}` "
        "per env (the Makefile's arguments, `specialized` masks as the committed trunks). Loss at the first and the "
        "last logged update; validation every 250 updates on held-out windows.",
        "",
        "| env | split | objective | first (update) | last (update) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {r.env} | {r.split} | {r.objective} | {r.first:.3f} ({r.first_update}) | {r.last:.3f} ({r.last_update}) |"
        for r in table.itertuples()
    ]
    write_text_atomic(out / "losses.md", "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
