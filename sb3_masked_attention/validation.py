"""Argument checks shared by every public entry: a bad value raises ValueError naming it and what is allowed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def check_int(name: str, value: Any, minimum: int = 1) -> int:
    """Return ``value`` as an int if it is an integer >= ``minimum`` (bools are not integers here)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name}={value!r} is invalid: expected an integer >= {minimum}")
    return int(value)


def check_fraction(name: str, value: Any) -> float:
    """Return ``value`` as a float if it is finite and in ``[0, 1)``."""
    try:
        fraction = float(value)
    except (TypeError, ValueError):
        fraction = math.nan
    if not (math.isfinite(fraction) and 0.0 <= fraction < 1.0):
        raise ValueError(f"{name} {value!r} is invalid: expected a finite value in [0, 1)")
    return fraction


def check_keywords(target: Any, kwargs: dict[str, Any], what: str, exclude: tuple[str, ...] = ("self",)) -> None:
    """Raise ValueError naming the keys of ``kwargs`` that ``target`` (a class or function) does not take.

    :param what: what the keywords are, for the message (``"--ppo-kwargs"``, ``"env_kwargs"``).
    :param exclude: parameters that are not the user's to give (``self``, ``env``, ``policy``).
    """
    import inspect

    try:
        parameters = inspect.signature(target).parameters  # a class: its constructor's, without self
    except (TypeError, ValueError):  # no signature to read (a builtin): the callee checks
        return
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values()):
        return
    allowed = [
        name for name, p in parameters.items() if name not in exclude and p.kind is not inspect.Parameter.VAR_POSITIONAL
    ]
    unknown = sorted(set(kwargs) - set(allowed))
    if unknown:
        raise ValueError(f"{what} {unknown} not accepted by {getattr(target, '__name__', target)}: expected some of {allowed}")


def check_render_mode(render_mode: Any, allowed: tuple[str, ...] = ("rgb_array",)) -> str | None:
    """Return ``render_mode`` if it is None or one of ``allowed``."""
    if render_mode is not None and render_mode not in allowed:
        raise ValueError(f"render_mode={render_mode!r} is unsupported: expected None or one of {list(allowed)}")
    return render_mode
