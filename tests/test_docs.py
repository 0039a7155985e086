"""The docs stay true and short: docs/cli.md is what docs/gen_cli.py generates from the commands, the README is a
five-minute read, no sentence in README.md or docs/ runs over 45 words (split as the project's hook splits them),
and every relative link points to a file and heading that exist."""

import importlib.util
import re
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
MAX_WORDS = 45


def gen_cli():
    spec = importlib.util.spec_from_file_location("gen_cli", REPO / "docs" / "gen_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def paragraphs(text: str) -> list[str]:
    """The page's prose, one paragraph per item on one line: blank lines, table rows and code blocks end a
    paragraph; list items and headings do not (a list without blank lines between its items is one paragraph)."""
    out, lines, fenced = [], [], False
    for line in text.splitlines():
        stripped = line.strip()
        if stripped.startswith("```"):
            fenced = not fenced
        if fenced or stripped.startswith(("```", "|")) or not stripped:
            out.append(" ".join(lines))
            lines = []
        else:
            lines.append(stripped)
    return [p for p in (re.sub(r"\s+", " ", p).strip() for p in [*out, " ".join(lines)]) if p]


def sentences(text: str) -> list[str]:
    """Split where [.!?] is followed by a space and a capital, a backtick or a parenthesis."""
    return [s for p in paragraphs(text) for s in re.split(r"(?<=[.!?]) (?=[A-Z`(])", p)]


def test_the_cli_page_is_generated_from_the_commands():
    assert (REPO / "docs" / "cli.md").read_text() == gen_cli().render(), "run: python docs/gen_cli.py --write"


def test_the_cli_page_lists_every_command_and_suite():
    page = (REPO / "docs" / "cli.md").read_text()
    from nvila_bench.suites.registry import suite_names

    for command in ("tokens", "report", "gate", "dashboard", "profile", "estimate training-cost"):
        assert f"## `nvila-bench {command}`" in page
    for suite in suite_names():
        assert f"### `nvila-bench run {suite}`" in page
    assert "| `--engine` (repeatable) |" in page and "| `ttft` | s | lower | yes | yes |" in page


def test_the_readme_is_a_five_minute_read():
    assert len((REPO / "README.md").read_text().splitlines()) <= 150


def test_the_sentence_splitter_splits_sentences_not_names():
    text = "# Title\n\nOne `nvila_bench.cli` call. Then (e.g. this)\nmore:\n- An item.\n- Another.\n\n| a. B |\n"
    text += "```\nx. Y\n```\nEnd. 2 more."
    expected = [
        "# Title",
        "One `nvila_bench.cli` call.",
        "Then (e.g. this) more: - An item. - Another.",
        "End. 2 more.",
    ]
    assert sentences(text) == expected


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_no_sentence_runs_over_45_words(page):
    long = [s for s in sentences(page.read_text()) if len(s.split()) > MAX_WORDS]
    assert not long, f"{page.name}: {len(long)} sentence(s) over {MAX_WORDS} words, e.g. {long[0][:200]!r}"


LINK = re.compile(r"\]\(([^)\s]+)\)|(?:src|href)=\"([^\"]+)\"")


def anchors(page: Path) -> set[str]:
    """GitHub's anchors of a page's headings: lower case, punctuation dropped, spaces to dashes."""
    headings = re.findall(r"^#+ (.+)$", page.read_text(), flags=re.M)
    return {re.sub(r"[^a-z0-9 _-]", "", h.lower()).replace(" ", "-") for h in headings}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_relative_link_points_to_a_file_and_heading(page):
    targets = [a or b for a, b in LINK.findall(page.read_text())]
    relative = [t for t in targets if not re.match(r"[a-z]+:", t)]
    assert relative or page.name != "README.md"
    for target in relative:
        path, _, anchor = target.partition("#")
        linked = (page.parent / path) if path else page
        assert linked.exists(), f"{page.name} links to a missing file: {target}"
        if anchor and linked.suffix == ".md":
            assert anchor in anchors(linked), f"{page.name} links to a missing heading: {target}"


# Options of other tools the pages show: lmms-eval, pip, torchrun, git, huggingface-cli, tensorboard, ruff,
# docs/gen_cli.py, upstream VILA's scripts, and the placeholder of "Adding a setting".
OTHER_TOOLS = {
    "--include_path",
    "--extra-index-url",
    "--model",
    "--model_args",
    "--no-deps",
    "--no-build-isolation",
    "--check",
    "--logdir",
    "--binary",
    "--write",
    "--nproc-per-node",
    "--local-dir",
    "--chat_template",
    "--quantize_model",
    "--my-option",
}


def cli_options() -> set[str]:
    import click

    from nvila_bench.cli import cli

    found, todo = {"--help"}, [(cli, click.Context(cli, info_name="nvila-bench"))]
    while todo:
        command, ctx = todo.pop()
        found |= {o for p in command.params if isinstance(p, click.Option) for o in (*p.opts, *p.secondary_opts)}
        for name in command.list_commands(ctx) if isinstance(command, click.Group) else ():
            sub = command.get_command(ctx, name)
            todo.append((sub, click.Context(sub, parent=ctx, info_name=name)))
    return found


def test_every_option_a_page_names_exists():
    """An option renamed or removed in the code is caught in the prose too (cli.md is regenerated, pages are not)."""
    known = cli_options() | OTHER_TOOLS
    named = {(page.name, o) for page in PAGES for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9_-]*", page.read_text())}
    assert {"--engine", "--preset", "--processes"} <= {o for _, o in named}
    assert sorted(x for x in named if x[1] not in known) == []


def test_the_python_api_example_runs():
    """docs/models.md's API walk-through, executed as written: stage by stage, then 32 greedy tokens."""
    page = (REPO / "docs" / "models.md").read_text()
    code = re.search(r"## The Python API\n\n```python\n(.*?)```", page, re.S)[1]
    scope = {}
    exec(compile(code, "docs/models.md", "exec"), scope)
    assert tuple(scope["media"].all_pixels().shape) == (17, 3, 448, 448) and tuple(scope["tokens"].shape) == (1, 32)
