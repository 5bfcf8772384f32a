"""The README's and the guides' commands, as written: the command table (docs/guide/command_line.md) against
`sb3ma --help`; the README's set-up, quickstart scripts, rl-zoo commands (training with a small step count, `-n 256`)
and study; the command-line and head-mask guides' inline commands."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from sb3_masked_attention.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
GUIDE = ROOT / "docs" / "guide"
BIN = Path(sys.executable).parent


def section(title: str, text: str = README) -> str:
    start = text.index(f"\n## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else None]


def guide(name: str) -> str:
    return (GUIDE / f"{name}.md").read_text()


def bash_commands(text: str) -> list[str]:
    """Commands of the ```bash blocks (continuation lines joined, comments dropped)."""
    commands = []
    for block in re.findall(r"```bash\n(.*?)```", text, flags=re.S):
        for command in block.replace("\\\n", " ").splitlines():
            command = command.split("  #")[0].strip()
            if command and not command.startswith("#"):
                commands.append(re.sub(r"\s+", " ", command))
    return commands


def subcommands(parser=None, prefix=()):
    """Every runnable command path of the parser, e.g. ("ad", "eval")."""
    parser = parser or build_parser()
    found = []
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction":
            for name, sub in action.choices.items():
                found += subcommands(sub, (*prefix, name)) or [(*prefix, name)]
    return found


def table_rows() -> list[tuple[tuple[str, ...], str]]:
    """(command path, row text) of each `sb3ma ...` row of the README's command table; `a|b` expands."""
    rows = []
    for line in guide("command_line").splitlines():
        if not line.startswith("| `sb3ma"):
            continue
        cell = line.split(" | ")[0].replace("\\|", "|")  # markdown escapes the | of `ad collect|train|eval`
        for first, second in re.findall(r"`sb3ma ([a-z][a-z\-]*)(?: ([a-z][a-z|\-]*))?", cell):
            for sub in second.split("|"):
                rows.append(((first, sub) if sub else (first,), line))
    return rows


def test_the_command_table_matches_sb3ma_help():
    table = {path for path, _ in table_rows()}
    parser_paths = set(subcommands())
    assert table == parser_paths, f"only in the README: {table - parser_paths}; only in sb3ma: {parser_paths - table}"


@pytest.mark.parametrize("path", subcommands(), ids=lambda p: " ".join(p))
def test_every_subcommand_help_runs_and_has_the_flags_the_table_names(path, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args([*path, "--help"])
    assert exit_.value.code == 0
    help_text = capsys.readouterr().out
    for row in (r for p, r in table_rows() if p == path):
        for flag in re.findall(r"(--[a-z][a-z\-]+)", row.split("|")[1]):
            assert flag in help_text, f"README names {flag} for sb3ma {' '.join(path)}, its --help does not"


def run(command: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    result = subprocess.run(command, shell=True, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{command!r} failed:\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
    return result


def test_setup_commands_as_written():
    commands = bash_commands(section("Set-up: two commands"))
    assert commands == ["make demo", "make test"]
    # `make test` is what CI runs around this very test; `make demo` prints the promised line.
    out = run("make demo", ROOT).stdout
    assert "Evaluation on sb3ma/TMaze-v0: mean return 1.000 ± 0.000 over 50 episodes (normalised score 1.000)" in out


def test_rl_zoo_commands_as_written(tmp_path):
    shutil.copytree(ROOT / "zoo_configs", tmp_path / "zoo_configs")
    block = next(b for b in re.findall(r"```bash\n(.*?)```", section("Quickstarts"), flags=re.S) if "rl_zoo3" in b)
    commands = bash_commands(f"```bash\n{block}```")
    assert len(commands) == 3 and "sb3ma zoo train --algo ppo_tx" in commands[1], commands
    for command in commands:
        run(command + (" -n 256" if " train " in command else ""), tmp_path)
    assert list((tmp_path / "logs" / "ppo").glob("sb3ma-TMaze-v0_1/sb3ma-TMaze-v0.zip"))
    assert list((tmp_path / "logs" / "ppo_tx").glob("sb3ma-TMaze-v0_1/sb3ma-TMaze-v0.zip"))


@pytest.mark.parametrize("index", [0, 1])
def test_quickstart_scripts_learn_and_print_their_evaluation(tmp_path, index):
    script = re.findall(r"```python\n(.*?)```", section("Quickstarts"), flags=re.S)[index]
    (tmp_path / "quickstart.py").write_text(script)
    out = run(f"{sys.executable} quickstart.py", tmp_path).stdout
    assert "mean return 1.000 over 50 episodes" in out, out


def test_study_quickstart_ends_in_a_report(tmp_path):
    shutil.copytree(ROOT / "studies", tmp_path / "studies")
    shutil.copytree(ROOT / "zoo_configs", tmp_path / "zoo_configs")
    block = next(b for b in re.findall(r"```bash\n(.*?)```", section("Quickstarts"), flags=re.S) if "study" in b)
    commands = bash_commands(f"```bash\n{block}```")
    assert [c.split()[:3] for c in commands] == [["sb3ma", "study", "run"], ["sb3ma", "study", "report"]]
    for command in commands:
        run(command + (" --no-progress" if " run " in command else ""), tmp_path)
    report = tmp_path / "runs" / "quickstart" / "report"
    assert (report / "report.md").exists() and (report / "aggregate_intervals.png").read_bytes()[:4] == b"\x89PNG"


def test_command_line_section_commands_as_written(tmp_path):
    text = guide("command_line") + guide("head_masks")
    inline = [c for c in re.findall(r"`(sb3ma [^`]*)`", text) if not re.search(r"\b[A-Z]+\b|\.\.\.|\[", c)]  # no placeholders
    assert "sb3ma strategies" in inline and any(c.startswith("sb3ma masks") for c in inline), inline
    for command in inline:
        run(command, tmp_path)
    assert (tmp_path / "masks.png").read_bytes()[:4] == b"\x89PNG"


GUIDE_SCRIPTS = [
    (path.stem, index, block)
    for path in sorted(GUIDE.glob("*.md"))
    for index, block in enumerate(re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.S))
]


@pytest.mark.parametrize(("page", "index", "script"), GUIDE_SCRIPTS, ids=[f"{p}-{i}" for p, i, _ in GUIDE_SCRIPTS])
def test_every_python_block_of_the_guides_runs(tmp_path, page, index, script):
    (tmp_path / "snippet.py").write_text(script)
    run(f"{sys.executable} snippet.py", tmp_path)


def _subparser(parser, words):
    """The parser of the longest command path at the start of ``words`` and the words after it."""
    for action in parser._actions:
        if action.__class__.__name__ == "_SubParsersAction" and words and words[0] in action.choices:
            return _subparser(action.choices[words[0]], words[1:])
    return parser, words


def test_every_sb3ma_command_of_the_guides_is_one_sb3ma_takes():
    """Every `sb3ma ...` command written in a guide names a subcommand that exists and only flags it takes (inline
    mentions may leave out required arguments); the guides' shell blocks parse whole. Placeholders (MODEL, DIR, ...)
    and alternatives are skipped; `sb3ma zoo` hands its flags to rl-zoo."""
    parser, checked = build_parser(), 0
    for path in sorted(GUIDE.glob("*.md")):
        text = path.read_text()
        blocks = [c for c in bash_commands(text) if c.startswith("sb3ma ")]
        for command in re.findall(r"`(sb3ma [^`]*)`", text) + blocks:
            if re.search(r"\b[A-Z]{2,}\b|\.\.\.|\[|<|\||\{", command) or command.split()[1] == "zoo":
                continue
            sub, rest = _subparser(parser, command.split()[1:])
            assert sub is not parser or rest == ["--help"], f"{path.name}: {command!r} names no sb3ma command"
            flags = {flag for action in sub._actions for flag in action.option_strings}
            unknown = [word.split("=")[0] for word in rest if word.startswith("--") and word.split("=")[0] not in flags]
            assert not unknown, f"{path.name}: {command!r}: sb3ma {sub.prog} does not take {unknown}"
            if command in blocks:
                parser.parse_args(command.split()[1:])
            checked += 1
    assert checked > 20, checked


def test_the_readme_is_short_and_every_link_resolves():
    assert len(README.splitlines()) <= 250
    links = [target.split("#")[0] for target in re.findall(r"\]\(([^)\s]+)\)", README) if not target.startswith("http")]
    assert links and not [link for link in links if link and not (ROOT / link).exists()]
