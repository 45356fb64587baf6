"""The project's Markdown pages as the tests read them: README.md and docs/*.md, their fenced code blocks
and the ``python -m study.*`` commands in them (read as a shell reads them), their headings' anchors
(GitHub's rule)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

FENCE = re.compile(r"^(```|~~~)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def pages() -> list[Path]:
    """The front page and the reference: README.md, then docs/*.md by name."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def split_fences(text: str) -> tuple[list[tuple[int, str]], list[tuple[int, str]]]:
    """(prose lines, code lines), each as (line number from 1, line): a fenced block's lines (not its fences)
    are code, everything else prose."""
    prose, code, inside = [], [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line.lstrip()):
            inside = not inside
            continue
        (code if inside else prose).append((number, line))
    return prose, code


def fenced_blocks(text: str) -> list[tuple[int, str, str]]:
    """Each fenced code block as (line number of its first line, its language or "", its text)."""
    blocks, current, start, language = [], None, 0, ""
    for number, line in enumerate(text.splitlines(), start=1):
        fence = FENCE.match(line.lstrip())
        if fence and current is None:
            current, start, language = [], number + 1, line.lstrip()[3:].strip()
        elif fence:
            blocks.append((start, language, "\n".join(current)))
            current = None
        elif current is not None:
            current.append(line)
    return blocks


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: its text (links read as their text, no backticks or emphasis),
    lower case, every character that is not a letter, digit, underscore, space or hyphen dropped, and each
    space a hyphen (github-slugger's rule)."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    """Every heading's anchor on a page; a repeated heading gets -1, -2, ... as GitHub numbers them."""
    seen: dict[str, int] = {}
    out = set()
    prose, _ = split_fences(text)
    for _, line in prose:
        match = HEADING.match(line)
        if not match:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        out.add(base if count == 0 else f"{base}-{count}")
    return out


SHELL_OPERATORS = {"&&", "||", ";", "|", "&", ">", ">>", "<", "2>", ")", "("}
ELISION = "..."  # a transcript's "more flags, left out": not an argument
NOT_SHELL = {"text", "python", "yaml", "json", "xml", "toml"}  # a layout drawn in ```text is not a command
LOOP = re.compile(r"\bfor (\w+) in ([^;]+); do\b")


def shell_lines(block: str) -> list[str]:
    """A block's lines with backslash continuations joined and a transcript's ``$ `` prompt taken off."""
    joined = block.replace("\\\n", " ")
    return [line.strip().removeprefix("$ ") for line in joined.splitlines()]


def with_loop_values(block: str) -> str:
    """``$VAR`` of a ``for VAR in A B C; do`` loop read as its first value, A, as the loop's first pass runs it."""
    for name, values in LOOP.findall(block):
        block = re.sub(rf"\$\{{{name}\}}|\${name}\b", shlex.split(values)[0], block)
    return block


def study_commands(block: str) -> list[tuple[str, list[str]]]:
    """(module, argv) of every ``python -m study.X ...`` in a block, wherever it stands on its line (after
    ``VAR=1``, ``&&`` or ``ray job submit ... --``), up to a shell operator or a comment."""
    out = []
    for line in shell_lines(with_loop_values(block)):
        if "python -m study." not in line:
            continue
        lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
        lexer.whitespace_split = True  # keep `--set data.split=patient` and `results/NAME` whole
        tokens = list(lexer)  # comments (`# ...`) are dropped by the lexer
        for i in range(len(tokens) - 2):
            if tokens[i] == "python" and tokens[i + 1] == "-m" and tokens[i + 2].startswith("study."):
                argv = []
                for token in tokens[i + 3:]:
                    if token in SHELL_OPERATORS:
                        break
                    if token != ELISION:
                        argv.append(token)
                out.append((tokens[i + 2], argv))
    return out


def documented_commands() -> list[tuple[Path, int, str, list[str]]]:
    """(page, line of its block, module, argv) of every ``python -m study.*`` command the pages show in a
    code block that is not declared as something other than shell (```text, ```python, ...)."""
    out = []
    for page in pages():
        for line, language, block in fenced_blocks(page.read_text()):
            if language not in NOT_SHELL:
                out += [(page, line, module, argv) for module, argv in study_commands(block)]
    return out
