"""Play TerritoryControl with a model of ``sb3ma train-multiscale``: load it safely, play games, record one as a GIF.

``sb3ma play-multiscale MODEL --preset small --out game.gif`` plays one game of the model against the preset's
bots and writes an animated GIF of the whole map (one frame every ``--every`` steps, a caption with the step and
every player's share of the land). Models are read weights-only (:func:`load_multiscale_model`): nothing in the file
runs.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from sb3_contrib import MaskablePPO

from sb3_masked_attention.io import atomic_path
from sb3_masked_attention.validation import check_int
from sb3_masked_attention.weights import load_weights, saved_policy_kwargs

CAPTION_HEIGHT = 22  # one caption line; each further line adds LINE_HEIGHT
LINE_HEIGHT = 14


def load_multiscale_model(path: str | os.PathLike, env: Any) -> MaskablePPO:
    """A MaskablePPO model of ``sb3ma train-multiscale`` rebuilt from the plain settings in its ``.zip`` (the
    network's ``policy_kwargs``) for ``env``, with its weights (weights only: nothing unpickled).

    :param env: a TerritoryControl env (or VecEnv) with the spaces the model was trained on: the same
        observation resolution and number of bots.
    :raises ValueError: not such a model, or one trained on other spaces (naming what differs).
    """
    kwargs = saved_policy_kwargs(path)
    model = MaskablePPO("MultiScaleAttentionPolicy", env, policy_kwargs=kwargs, device="cpu", n_steps=8, batch_size=8)
    try:
        load_weights(model, path)
    except ValueError as error:
        raise ValueError(
            f"{error}: the env must have the spaces the model was trained on "
            f"(here observations {model.observation_space}, actions {model.action_space})"
        ) from None
    return model


def play_game(
    model: MaskablePPO,
    env: Any,
    seed: int,
    deterministic: bool = True,
    frame_every: int | None = None,
    on_step: Callable[[Any, np.ndarray, np.ndarray], None] | None = None,
) -> tuple[dict[str, Any], list[np.ndarray]]:
    """One game of ``model`` in the agent's seat (valid actions only).

    :param env: a TerritoryControl env (not vectorised); ``render_mode="rgb_array"`` if frames are wanted.
    :param seed: the game's seed (map, spawns, bots, and the sampled actions' draws; the caller's torch RNG is left
        as it was).
    :param deterministic: greedy actions (else sampled, as in training).
    :param frame_every: keep a captioned frame every this many steps, and the last (None: no frames).
    :param on_step: called as ``on_step(obs, action_masks, action)`` before each step (e.g. to record the policy's
        choices); it must not draw from torch's RNG, or the sampled game changes.
    :return: the final ``info`` with ``return`` and ``steps`` added, and the frames.
    """
    if frame_every is not None:
        check_int("frame_every", frame_every)
    obs, _ = env.reset(seed=seed)
    frames: list[np.ndarray] = []
    total, steps, done, info = 0.0, 0, False, {}
    with torch.random.fork_rng(devices=[]):  # a sampled game is a function of its seed, whatever ran before it
        torch.manual_seed(seed)
        while not done:
            if frame_every is not None and steps % frame_every == 0:
                frames.append(captioned_frame(env, steps))
            masks = env.action_masks()
            action, _ = model.predict(obs, deterministic=deterministic, action_masks=masks)
            if on_step is not None:
                on_step(obs, masks, action)
            obs, reward, terminated, truncated, info = env.step(action)
            total, steps, done = total + float(reward), steps + 1, terminated or truncated
    if frame_every is not None:
        frames.append(captioned_frame(env, steps))
    return {**info, "return": total, "steps": steps}, frames


def captioned_frame(env: Any, step: int, scale: int | None = None) -> np.ndarray:
    """``env.render()`` enlarged to about 256 pixels (whole pixels per tile), under a caption: the step and each
    player's land share in its colour (the agent first), on as many lines as the width needs."""
    from PIL import Image, ImageDraw

    picture = env.render()
    if picture is None:
        raise ValueError("the env renders nothing: expected render_mode='rgb_array'")
    scale = scale or max(1, 256 // picture.shape[0])
    image = Image.fromarray(np.kron(picture, np.ones((scale, scale, 1), dtype=np.uint8)))
    shares, colours = env.land_shares(), env.player_colours()
    entries = [(f"step {step}", f"step {env.max_steps}", None)] + [
        (f"{name} {100 * share:.0f}%", f"{name} 100%", tuple(int(c) for c in colour))
        for name, share, colour in zip(["you"] + [f"bot{k}" for k in range(1, len(shares))], shares, colours)
    ]
    # Slots sized for the widest label each can hold, so every frame of a game has the same caption height.
    places, x, line = [], 3, 0
    for label, widest, colour in entries:
        width = 6 * len(widest) + (12 if colour else 0) + 4  # the default bitmap font is about 6 pixels a character
        if x + width > image.width and x > 3:
            x, line = 3, line + 1
        places.append((x, 5 + LINE_HEIGHT * line, label, colour))
        x += width
    caption = CAPTION_HEIGHT + LINE_HEIGHT * line
    canvas = Image.new("RGB", (image.width, image.height + caption), (255, 255, 255))
    canvas.paste(image, (0, caption))
    draw = ImageDraw.Draw(canvas)
    for x, y, label, colour in places:
        if colour is not None:
            draw.rectangle((x, y + 1, x + 9, y + 10), fill=colour, outline=(0, 0, 0))
            x += 12
        draw.text((x, y), label, fill=(0, 0, 0))
    return np.asarray(canvas)


def save_gif(frames: list[np.ndarray], path: str | os.PathLike, fps: float = 8.0, hold_last: int = 12) -> None:
    """Write ``frames`` as a looping animated GIF (atomically); the last frame shows ``hold_last`` times longer."""
    from PIL import Image

    if not frames:
        raise ValueError("frames is empty: expected at least one frame")
    if not fps > 0:
        raise ValueError(f"fps={fps!r} is invalid: expected a positive number")
    images = [Image.fromarray(frame) for frame in frames]
    durations = [int(1000 / fps)] * len(images)
    durations[-1] *= hold_last
    with atomic_path(path, suffix=".gif") as tmp:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=durations, loop=0)
