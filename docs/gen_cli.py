"""Write docs/cli.md: every `nvila-bench` command and its options, from click's own command tree.

    python docs/gen_cli.py            # print the page
    python docs/gen_cli.py --write    # write docs/cli.md

tests/test_docs.py checks that the committed page equals this output, so the page never drifts from the code.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import click

PAGE = Path(__file__).with_name("cli.md")
HEADER = """# Command-line reference

Every `nvila-bench` command and its options, generated from the commands themselves by `python docs/gen_cli.py
--write` (tests/test_docs.py checks the two agree). Every command also takes `-h` / `--help`. Bad input prints one
line `nvila-bench: error: ...` and exits with code 2. A "repeatable" option may be given several times: for a
measuring command each value is a sweep axis.
"""


def _text(help: str | None) -> str:
    """A help text on one line (click's `\\b` paragraph marks dropped)."""
    return re.sub(r"\s+", " ", (help or "").replace("\b", " ")).strip()


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _type(param: click.Parameter) -> str:
    kind = param.type
    if isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        return "flag"
    if isinstance(kind, click.Choice):
        return " \\| ".join(f"`{c}`" for c in kind.choices)
    if isinstance(kind, (click.IntRange, click.FloatRange)):
        number = "integer" if isinstance(kind, click.IntRange) else "number"
        low = "" if kind.min is None else f"{kind.min}"
        high = "" if kind.max is None else f"{kind.max:,}"
        return f"{number} {low}..{high}"
    if isinstance(kind, click.Path):
        return "path"
    names = {"STRING": "text", "INT": "integer", "FLOAT": "number", "BOOL": "flag", "FILENAME": "file"}
    return names.get(kind.name.upper(), kind.name)


def _default(param: click.Parameter) -> str:
    value = param.default
    if value is None or callable(value) or type(value).__name__ == "Sentinel" or value == () or value == []:
        return ""
    if isinstance(param, click.Option) and param.is_flag and not param.secondary_opts:
        return ""  # a lone flag is off until given, whatever value it stores (--no-temporal-pool stores False)
    if isinstance(value, (list, tuple)):
        return ", ".join(f"`{v}`" for v in value)
    return f"`{value}`"


def _name(param: click.Parameter) -> str:
    if isinstance(param, click.Argument):
        return f"`{param.human_readable_name}` (argument{', repeatable' if param.nargs == -1 else ''})"
    flags = " / ".join(f"`{o}`" for o in [*param.opts, *param.secondary_opts])
    notes = [n for n, on in (("repeatable", param.multiple), ("required", param.required)) if on]
    return flags + (f" ({', '.join(notes)})" if notes else "")


def _row(param: click.Parameter) -> str:
    help = getattr(param, "help", None) or ""
    return f"| {_name(param)} | {_type(param)} | {_default(param)} | {_cell(_text(help))} |"


def _params(command: click.Command) -> list[click.Parameter]:
    return [p for p in command.params if p.name not in ("help", "version")]


def _table(params: list[click.Parameter]) -> list[str]:
    if not params:
        return ["No options."]
    return ["| option | type | default | help |", "|---|---|---|---|", *(_row(p) for p in params)]


def _section(path: str, command: click.Command, ctx: click.Context, params: list, level: str = "##") -> list[str]:
    usage = " ".join([path, *command.collect_usage_pieces(ctx)])
    return [f"{level} `{path}`", "", _text(command.help), "", f"Usage: `{usage}`", "", *_table(params), ""]


def _metrics(suite: str) -> list[str]:
    """The metrics a suite declares (suites/*.py METRICS), as a table; none for a command that is no suite."""
    from nvila_bench.suites.registry import declared_outputs

    outputs = declared_outputs().get(suite)
    if outputs is None or not outputs.metrics:
        return []
    rows = [
        f"| `{m.name}` | {m.unit} | {m.better or ''} | {'yes' if m.gated else ''} | {'yes' if m.headline else ''} "
        f"| {_cell(_text(m.help))} |"
        for m in outputs.metrics
    ]
    header = ["| metric | unit | better | gated | headline | help |", "|---|---|---|---|---|---|"]
    return ["Metrics it declares (`gated`: compared by `nvila-bench gate` by default):", "", *header, *rows, ""]


def _walk(command: click.Command, ctx: click.Context, path: str):
    """(path, command, context) of every command under `command`, groups included, in click's order."""
    yield path, command, ctx
    if isinstance(command, click.Group):
        for name in command.list_commands(ctx):
            sub = command.get_command(ctx, name)
            yield from _walk(sub, click.Context(sub, info_name=name, parent=ctx), f"{path} {name}")


def _group(path: str, group: click.Group, commands: list) -> list[str]:
    """A group's section: the options all its subcommands share (the suites' common settings) once, then each
    subcommand with its own options (and, for `run`, the metrics its suite declares)."""
    subs = [(p, c, x) for p, c, x in commands if p.startswith(path + " ") and not isinstance(c, click.Group)]
    rows = [{_row(p) for p in _params(c)} for _, c, _ in subs]
    shared = [p for p in _params(subs[0][1]) if len(subs) > 1 and all(_row(p) in r for r in rows)] if subs else []
    lines = [f"## `{path}`", "", _text(group.help), ""]
    if shared:
        lines += ["Options every subcommand takes:", "", *_table(shared), ""]
    for sub_path, sub, ctx in subs:
        own = [p for p in _params(sub) if _row(p) not in {_row(q) for q in shared}]
        lines += _section(sub_path, sub, ctx, own, level="###")
        if path == "nvila-bench run":
            lines += _metrics(sub_path.rsplit(" ", 1)[1])
    return lines


def render() -> str:
    from nvila_bench.cli import cli

    commands = list(_walk(cli, click.Context(cli, info_name="nvila-bench"), "nvila-bench"))[1:]
    lines = [HEADER, "| command | what it does |", "|---|---|"]
    for path, command, _ in commands:
        if not isinstance(command, click.Group):
            lines.append(f"| [`{path}`](#{_anchor(path)}) | {_cell(_first_sentence(command.help))} |")
    lines.append("")
    for path, command, ctx in commands:
        if isinstance(command, click.Group):
            lines += _group(path, command, commands)
        elif path.count(" ") == 1:  # a subcommand of a group is in its group's section
            lines += _section(path, command, ctx, _params(command))
    return "\n".join(lines).rstrip() + "\n"


def _first_sentence(help: str | None) -> str:
    text = _text(help)
    match = re.search(r"(?<=\.)\s+(?=[A-Z(`])", text)
    return text[: match.start()] if match else text


def _anchor(path: str) -> str:
    """GitHub's anchor of a `## \\`path\\`` heading: lower case, spaces to dashes, punctuation dropped."""
    return re.sub(r"[^a-z0-9 _-]", "", path.lower()).replace(" ", "-")


if __name__ == "__main__":
    page = render()
    if sys.argv[1:] == ["--write"]:
        PAGE.write_text(page)
    elif sys.argv[1:]:
        sys.exit("usage: python docs/gen_cli.py [--write]")
    else:
        sys.stdout.write(page)
