"""Registration of the package's policy aliases with SB3 and sb3-contrib, without importing either.

``import sb3_masked_attention`` must stay light (``sb3ma --help`` answers in well under a second; torch alone takes
about one), yet ``PPO("HeadMaskedTransformerPolicy", env)`` must work whichever of the two a user imports first. The
aliases are set when :mod:`sb3_masked_attention.policies` is imported: at once if SB3 is already loaded, otherwise as
soon as it is. A finder on ``sys.meta_path`` wraps the loaders of SB3, sb3-contrib and this package's modules; after
each one runs, the policies module is imported if SB3 is loaded and no import of those is half done (the policies
module imports them: importing it from the middle of one of their imports would find them incomplete).
"""

from __future__ import annotations

import importlib
import sys
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import Any

#: Third-party packages whose loading can complete the registration.
WATCHED = ("stable_baselines3", "sb3_contrib")
PACKAGE = "sb3_masked_attention"


def _watched(name: str) -> bool:
    return name in WATCHED or name.startswith(PACKAGE + ".")


def _loading(name: str) -> bool:
    """Whether module ``name`` is being executed right now (importlib marks its spec until the module has run)."""
    module = sys.modules.get(name)
    return module is not None and bool(getattr(module.__spec__, "_initializing", False))


def _register(finished: str | None = None) -> bool:
    """Import the policies module (which registers the aliases) if SB3 is loaded and no watched module but
    ``finished`` (whose loader is returning) is half loaded. Returns whether it did."""
    if "stable_baselines3" not in sys.modules:
        return False
    if any(_loading(name) for name in list(sys.modules) if name != finished and _watched(name)):
        return False
    importlib.import_module(f"{PACKAGE}.policies")
    for finder in [finder for finder in sys.meta_path if isinstance(finder, _RegisterAfterLoad)]:
        sys.meta_path.remove(finder)
    return True


def _then_register(execute: Any, name: str) -> Any:
    """``execute`` (a loader's ``exec_module``, this spec's loader only), then the registration if it can be done."""

    def exec_module(module: ModuleType) -> None:
        execute(module)
        _register(finished=name)

    return exec_module


class _RegisterAfterLoad(MetaPathFinder):
    """Finds nothing itself: for a watched module it asks the other finders and wraps the loader they return."""

    def find_spec(self, name: str, path: Any, target: ModuleType | None = None) -> ModuleSpec | None:
        if not _watched(name):
            return None
        for finder in sys.meta_path:
            spec = None if finder is self or not hasattr(finder, "find_spec") else finder.find_spec(name, path, target)
            if spec is None:
                continue
            if spec.loader is not None and hasattr(spec.loader, "exec_module"):
                spec.loader.exec_module = _then_register(spec.loader.exec_module, name)  # type: ignore[method-assign]
            return spec
        return None


def register_policy_aliases() -> None:
    """Register the aliases now if SB3 is loaded, else as soon as it is."""
    if _register():
        return
    if not any(isinstance(finder, _RegisterAfterLoad) for finder in sys.meta_path):
        sys.meta_path.insert(0, _RegisterAfterLoad())
