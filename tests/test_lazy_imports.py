"""``import sb3_masked_attention`` and ``sb3ma --help`` load no torch, yet the policy aliases are registered with SB3 and
sb3-contrib whichever is imported first (each case in a fresh interpreter: the test process has them all loaded)."""

from __future__ import annotations

import subprocess
import sys

import pytest

ALIASES = """
from sb3_contrib import MaskablePPO, RecurrentPPO
from stable_baselines3 import A2C, PPO
assert "HeadMaskedTransformerPolicy" in PPO.policy_aliases and "HeadMaskedTransformerPolicy" in A2C.policy_aliases
assert {"HeadMaskedTransformerPolicy", "MultiScaleAttentionPolicy"} <= set(MaskablePPO.policy_aliases)
assert "MultiScaleAttentionPolicy" in PPO.policy_aliases
assert {"ForgetGateMlpLstmPolicy", "ForgetGateMultiInputLstmPolicy", "MlpGruPolicy"} <= set(RecurrentPPO.policy_aliases)
assert not [f for f in sys.meta_path if type(f).__name__ == "_RegisterAfterLoad"], "the finder outlived its work"
print("registered")
"""


def _python(code: str) -> str:
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    return result.stdout


def test_importing_the_package_loads_neither_torch_nor_sb3():
    out = _python(
        "import sys, sb3_masked_attention\n"
        "print(sorted(m for m in ('torch', 'stable_baselines3', 'sb3_contrib', 'pandas') if m in sys.modules))"
    )
    assert out.strip() == "[]"


@pytest.mark.parametrize(
    "first",
    [
        "import sb3_masked_attention",  # the package, then SB3
        "import stable_baselines3",  # SB3, then the package
        "import sb3_masked_attention; import sb3_contrib",  # sb3-contrib loads SB3 itself: registered once it is done
        "from sb3_masked_attention import HeadMaskedTransformerExtractor",  # our module loads SB3 half-way through
        "import sb3_masked_attention.extractors.multiscale",
        "import envs",  # rl-zoo's --gym-packages envs
        "import stable_baselines3.common.vec_env",  # a submodule only
    ],
)
def test_policy_aliases_are_registered_whatever_is_imported_first(first):
    assert _python(f"import sys\n{first}\nimport sb3_masked_attention\n{ALIASES}").strip() == "registered"


def test_the_public_names_load_on_first_use():
    import sb3_masked_attention
    from sb3_masked_attention.extractors.transformer import HeadMaskedTransformerExtractor

    assert sb3_masked_attention.HeadMaskedTransformerExtractor is HeadMaskedTransformerExtractor
    assert set(sb3_masked_attention.__all__) <= set(dir(sb3_masked_attention))
    with pytest.raises(AttributeError, match="no attribute 'Nope'"):
        sb3_masked_attention.Nope  # noqa: B018


def test_help_loads_no_feature():
    out = _python(
        "import contextlib, io, sys\n"
        "from sb3_masked_attention.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()) as help_text:\n"
        "    try:\n"
        "        main(['--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "assert 'train-multiscale' in help_text.getvalue()\n"
        "print(sorted(m for m in ('torch', 'stable_baselines3', 'pandas', 'rl_zoo3') if m in sys.modules))"
    )
    assert out.strip() == "[]"


def test_a_command_loads_only_its_own_feature():
    out = _python(
        "import contextlib, io, sys\n"
        "from sb3_masked_attention.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    try:\n"
        "        main(['zoo', 'train', '--help'])\n"
        "    except SystemExit:\n"
        "        pass\n"
        "print(sorted(m for m in sys.modules if m.startswith('sb3_masked_attention.')))"
    )
    assert "sb3_masked_attention.rl_zoo" in out and "sb3_masked_attention.training" not in out


def _imported(reference: str):
    import importlib

    module, _, qualname = reference.partition(":")
    value = importlib.import_module(module)
    for part in qualname.split("."):
        value = getattr(value, part)
    return value


def test_every_default_read_from_source_equals_the_imported_one():
    from sb3_masked_attention.cli import build_parser
    from sb3_masked_attention.cli_args import default_of
    from sb3_masked_attention.source_values import READS, source_constant

    build_parser()  # every command: every flag whose owner is named by reference is read
    assert len([1 for _, name in READS if name is not None]) >= 60 and len([1 for _, name in READS if name is None]) >= 5
    for reference, name in sorted(READS, key=str):
        imported = _imported(reference)
        if name is None:  # a constant; a table (dict) stands for its keys
            expected = tuple(imported) if isinstance(imported, dict) else imported
            assert tuple(source_constant(reference)) == tuple(expected), reference
        else:
            assert default_of(reference, name) == default_of(imported, name), (reference, name)


@pytest.mark.parametrize(
    ("reference", "name", "error"),
    [
        ("sb3_masked_attention.training:train", "conf_file", "PROJECT_PPO_CONFIG: the default Path.* is not a literal"),
        ("sb3_masked_attention.training:train", "nope", "no parameter with a default"),
        ("sb3_masked_attention.training:Nope", "x", "no definition 'Nope'"),
        ("os:path", "x", "is not a module of sb3_masked_attention"),
    ],
)
def test_a_default_that_is_not_a_literal_is_refused_by_name(reference, name, error):
    from sb3_masked_attention.source_values import source_default

    with pytest.raises(ValueError, match=error):
        source_default(reference, name)
