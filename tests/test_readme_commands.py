"""Every auwild command the README shows is one the CLIs accept, and its walkthrough runs.

Fast: each `auwild-manifest` / `auwild-extract` / `auwild-train` command in a fenced
bash / sh / console block is parsed by its CLI's own parser (`build_parser()`), so a renamed
option or sub-command fails here, naming the README line. Documentation notation is understood:
`[--json]` (checked with and without it) and `...` (an elided tail: missing required options are
then not a finding, unknown ones still are).

Slow: the section between `<!-- walkthrough:start -->` and `<!-- walkthrough:end -->` is run
verbatim, command by command, with `bash -e` in an empty folder and the venv's bin first on PATH;
every command must exit 0. The walkthrough is small by construction (synthetic data, tiny models,
a couple of epochs), so nothing here shrinks it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import re
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
START, END = "<!-- walkthrough:start -->", "<!-- walkthrough:end -->"
SHELL_LANGS = ("bash", "sh", "shell", "console")
# console script -> module with build_parser() (pyproject [project.scripts])
OUR_COMMANDS = {
    "auwild-manifest": "data_manifest.cli",
    "auwild-extract": "extract.cli",
    "auwild-train": "train.cli",
}
MODULES = {"data_manifest": "auwild-manifest", "extract": "auwild-extract", "train": "auwild-train"}
WRAPPERS = ("docker", "sudo", "nice", "nohup", "timeout", "env", "srun", "apptainer", "singularity")
ELLIPSIS = ("...", "…")
# argparse findings that are not about the command line's grammar: a file the README names
# exists on the reader's machine, not here
NOT_GRAMMAR = ("file not found",)


@dataclass(frozen=True)
class Command:
    """One shell command from a markdown file: its text (continuations joined) and where it starts."""

    text: str
    line: int  # 1-based line in the markdown file
    file: Path

    def where(self) -> str:
        return f"{self.file.name}:{self.line}"


def shell_blocks(markdown: str) -> list[tuple[str, int, list[str]]]:
    """(language, line of the first body line, body lines) of every fenced block."""
    out, lines, i = [], markdown.splitlines(), 0
    while i < len(lines):
        m = re.match(r"^\s*(`{3,}|~{3,})\s*([\w+-]*)", lines[i])
        if not m:
            i += 1
            continue
        fence, lang, body, j = m.group(1), m.group(2).lower(), [], i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j])
            j += 1
        out.append((lang, i + 2, body))
        i = j + 1
    return out


def split_commands(lang: str, first_line: int, body: list[str], file: Path) -> list[Command]:
    """Commands of one block: `\\` continuations joined, blank and comment-only lines dropped;
    in console blocks only `$ ` lines are commands (the rest is output)."""
    out: list[Command] = []
    pending, start = "", 0
    for k, raw in enumerate(body):
        line = raw.rstrip()
        if not pending:
            stripped = line.lstrip()
            if stripped.startswith("$ "):
                line = stripped[2:]
            elif lang == "console":
                continue
            start = first_line + k
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        text = (pending + line).strip()
        pending = ""
        if text and not text.startswith("#"):
            out.append(Command(text, start, file))
    if pending.strip():
        out.append(Command(pending.strip(), start, file))
    return out


def commands_in(path: Path, section: tuple[str, str] | None = None) -> list[Command]:
    """Shell commands of the markdown file `path` (only between the `section` markers if given)."""
    text = path.read_text(encoding="utf-8")
    offset = 0
    if section is not None:
        a, b = text.find(section[0]), text.find(section[1])
        if a < 0 or b < a:
            return []
        offset = text[:a].count("\n")
        text = text[a:b]
    out = []
    for lang, line, body in shell_blocks(text):
        if lang in SHELL_LANGS:
            out.extend(split_commands(lang, line + offset, body, path))
    return out


def simple_commands(text: str) -> list[list[str]]:
    """Words of each simple command in a shell line (split at ; && || | & and `do`/`then`),
    leading VAR=value assignments dropped; comments dropped."""
    lex = shlex.shlex(text, posix=True, punctuation_chars=";&|")
    lex.whitespace_split = True
    lex.commenters = "#"
    out, words = [], []
    for tok in lex:
        if tok and set(tok) <= set(";&|"):
            out.append(words)
            words = []
            continue
        words.append(tok)
    out.append(words)
    cleaned = []
    for words in out:
        while words and (
            words[0] in ("do", "then", "else", "time", "exec")
            or re.match(r"^[A-Za-z_][A-Za-z0-9_]*=", words[0])
        ):
            words = words[1:]
        if words:
            cleaned.append(words)
    return cleaned


def notation_variants(args: list[str]) -> tuple[list[list[str]], bool]:
    """Argument lists a documented command stands for: without its `[optional]` parts and with
    them; plus whether it was elided (`...`)."""
    without, with_, depth, elided = [], [], 0, False
    for tok in args:
        opens = depth == 0 and tok.startswith("[")
        t = tok[1:] if opens else tok
        if opens:
            depth = 1
        closes = depth == 1 and t.endswith("]")
        if closes:
            t = t[:-1]
        if t in ELLIPSIS or t.endswith(ELLIPSIS):
            elided = True
            t = t.rstrip(".…")
        if t:
            with_.append(t)
            if depth == 0:
                without.append(t)
        if closes:
            depth = 0
    variants = [without] if without == with_ else [without, with_]
    return variants, elided


def our_invocations(cmd: Command) -> list[tuple[str, list[str]]]:
    """(console script, its arguments) for each of our commands in `cmd`."""
    out = []
    for words in simple_commands(cmd.text):
        if words[0] in OUR_COMMANDS:
            out.append((words[0], words[1:]))
        elif words[0] in WRAPPERS:  # docker run ... IMAGE auwild-extract ..., nice -n 5 ...
            at = next((i for i, w in enumerate(words) if w in OUR_COMMANDS), None)
            if at is not None:
                out.append((words[at], words[at + 1 :]))
        elif "-m" in words[:-1] and words[words.index("-m") + 1] in MODULES:  # python/torchrun -m
            at = words.index("-m") + 1
            out.append((MODULES[words[at]], words[at + 1 :]))
    return out


def exact(parser: argparse.ArgumentParser, elided: bool = False) -> argparse.ArgumentParser:
    """The parser and its sub-parsers with abbreviations off: the README spells options out
    (`--stor` works today and breaks the day another option starts with it). For an elided
    command, options are not required (argparse would report that before an unknown option)."""
    parser.allow_abbrev = False
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                exact(sub, elided)
        elif elided and action.option_strings:
            action.required = False
    return parser


def parse_problem(script: str, args: list[str]) -> str | None:
    """None when `script args` parses with the CLI's own parser, else argparse's message."""
    import importlib

    from data_manifest.cli_options import _settle_store

    variants, elided = notation_variants(args)
    parser = exact(importlib.import_module(OUR_COMMANDS[script]).build_parser(), elided)
    for argv in variants:
        err = io.StringIO()
        try:
            with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
                ns = parser.parse_args(argv)
                _settle_store(parser, ns)
        except SystemExit as exc:
            if not exc.code:  # --help / --version
                continue
            message = err.getvalue().strip().splitlines()[-1] if err.getvalue().strip() else ""
            if any(s in message for s in NOT_GRAMMAR):
                continue
            if elided and "give the store" in message:
                continue
            return f"`{script} {shlex.join(argv)}`: {message}"
    return None


def readme_invocations(path: Path = README) -> list[tuple[Command, str, list[str]]]:
    return [(c, s, a) for c in commands_in(path) for s, a in our_invocations(c)]


# -- the harness checks itself ------------------------------------------------------------------

SAMPLE = """\
Some text `auwild-train fit` inline is not a command.

```bash
# a comment
auwild-extract inspect /data/features.zarr [--json]   # trailing comment
for i in 0 1; do
  CUDA_VISIBLE_DEVICES=$i auwild-extract run --manifest m.parquet \\
      --store s.zarr --shard $i/2 --no-progress &
done; wait
docker run --rm -v /d:/d auwild auwild-extract verify /d/s.zarr
torchrun --nproc-per-node 4 -m train fit ...
```

```console
$ auwild-train eval runs/x --split val
mean F1 0.41
```

```python
auwild-train not shell
```
"""


def test_harness_reads_blocks_continuations_prompts_and_notation(tmp_path):
    md = tmp_path / "doc.md"
    md.write_text(SAMPLE)
    cmds = commands_in(md)
    assert [c.line for c in cmds] == [5, 6, 7, 9, 10, 11, 15]
    assert cmds[2].text.endswith("--shard $i/2 --no-progress &")
    found = [(c.line, s, a) for c in cmds for s, a in our_invocations(c)]
    assert found == [
        (5, "auwild-extract", ["inspect", "/data/features.zarr", "[--json]"]),
        (
            7,
            "auwild-extract",
            [
                "run",
                "--manifest",
                "m.parquet",
                "--store",
                "s.zarr",
                "--shard",
                "$i/2",
                "--no-progress",
            ],
        ),  # fmt: skip
        (10, "auwild-extract", ["verify", "/d/s.zarr"]),
        (11, "auwild-train", ["fit", "..."]),
        (15, "auwild-train", ["eval", "runs/x", "--split", "val"]),
    ]
    assert notation_variants(["report", "r", "[--split", "val]", "[--track", "ID", "...]"]) == (
        [["report", "r"], ["report", "r", "--split", "val", "--track", "ID"]],
        True,
    )
    for _, script, args in found:
        assert parse_problem(script, args) is None
    assert "--jsn" in parse_problem("auwild-extract", ["inspect", "s.zarr", "--jsn"])
    assert "invalid choice" in parse_problem("auwild-extract", ["inspekt", "s.zarr"])
    bad = tmp_path / "bad.md"
    bad.write_text("text\n\n```sh\n$ auwild-extract verify s.zarr \\\n    --jsn\n```\n")
    [(cmd, script, args)] = readme_invocations(bad)
    assert cmd.where() == "bad.md:4" and "unrecognized arguments: --jsn" in parse_problem(
        script, args
    )
    # an elided command may leave required options out, never misspell one
    assert parse_problem("auwild-train", ["fit", "--store", "s.zarr", "..."]) is None
    assert parse_problem("auwild-train", ["fit", "--stores", "s.zarr", "..."]) is not None
    assert "--stor" in parse_problem("auwild-train", ["fit", "--stor", "s.zarr", "..."])


# -- the README -----------------------------------------------------------------------------------


def _readme_params() -> list:
    found = readme_invocations()
    if not found:
        return [pytest.param(None, None, None, marks=pytest.mark.skip(reason="no commands"))]
    return [pytest.param(c, s, a, id=f"{c.where()}:{s}") for c, s, a in found]


@pytest.mark.parametrize("cmd,script,args", _readme_params())
def test_readme_command_parses(cmd, script, args):
    problem = parse_problem(script, args)
    assert problem is None, f"README.md line {cmd.line}: {problem}"


def walkthrough_env() -> dict[str, str]:
    """The environment the walkthrough runs in: this checkout's code and the venv's scripts."""
    env = dict(os.environ)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH", "")]))
    return env


def run_walkthrough(path: Path, cwd: Path, timeout: float = 900) -> list[tuple[Command, float]]:
    """Run the walkthrough section of `path` verbatim in `cwd`, command by command with
    `bash -e`; fails naming the first command that does not exit 0. Returns (command, seconds)."""
    cmds = commands_in(path, (START, END))
    if not cmds:
        pytest.skip(f"{path.name} has no {START} ... {END} section yet")
    env, ran = walkthrough_env(), []
    for cmd in cmds:
        t0 = time.perf_counter()
        proc = subprocess.run(
            ["bash", "-e", "-o", "pipefail", "-c", cmd.text],
            cwd=cwd,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        ran.append((cmd, time.perf_counter() - t0))
        if proc.returncode != 0:
            done = "\n".join(f"  ok {c.where()} ({s:.0f} s)" for c, s in ran[:-1])
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-15:])
            pytest.fail(
                f"{cmd.where()}: exit {proc.returncode}: {cmd.text}\n{tail}\nran before it:\n{done}"
            )
    print("\n".join(f"ok {c.where()} ({s:.0f} s): {c.text[:80]}" for c, s in ran))
    return ran


@pytest.mark.slow
def test_readme_walkthrough_runs(tmp_path):
    ran = run_walkthrough(README, tmp_path)
    assert len(ran) == 13  # every step of the flow, synth to export
    assert (tmp_path / "features.h5").is_file()
    assert (tmp_path / "submission" / "predictions.txt").is_file()
    assert (tmp_path / "runs" / "abaw10" / "report.html").is_file()
    csv = (tmp_path / "aus" / "video000.csv").read_text().splitlines()
    assert csv[0].startswith("frame,timestamp,face,success,AU01_r") and len(csv) == 1 + 60
