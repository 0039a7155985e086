"""Synthetic image and video tasks that prove the accuracy pipeline offline: generated from a seed, tiny on
disk, with train / validation / test splits, in lmms-eval's task format (a YAML per task over local JSON
lines; see nvila_bench/tasks/).

- synthetic_colour: one large shape and smaller distractors; "What colour is the largest object?"
  (red, green, blue, yellow: chance 25%).
- synthetic_count: 1-4 identical shapes; "How many shapes are there?" (1-4: chance 25%).
- synthetic_frame: an 8-frame video, a red square in exactly one frame; "Which frame contains the
  square?" (1-8: chance 12.5%). Temporal pooling averages the frames away, so this task shows what TSP
  costs in accuracy for what it saves in tokens.

Images are 96 x 96 PNGs (the model's preprocessing resizes them to its tile size).
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 80, 220), "yellow": (235, 200, 30)}
SIZE = 96
FRAMES = 8
SPLITS = {"train": 600, "validation": 60, "test": 120}
TASKS = ("synthetic_colour", "synthetic_count", "synthetic_frame")
CHANCE = {"synthetic_colour": 0.25, "synthetic_count": 0.25, "synthetic_frame": 1 / FRAMES}
QUESTIONS = {
    "synthetic_colour": "What colour is the largest object? Answer with one word.",
    "synthetic_count": "How many shapes are there? Answer with a number.",
    "synthetic_frame": "Which frame contains the square? Answer with a number.",
}


@dataclass(frozen=True)
class Sample:
    id: str
    answer: str
    images: list[Image.Image]  # one image, or the frames of a video


def _shape(draw: ImageDraw.ImageDraw, kind: str, box: tuple[int, int, int, int], colour) -> None:
    if kind == "square":
        draw.rectangle(box, fill=colour)
    elif kind == "circle":
        draw.ellipse(box, fill=colour)
    else:
        x0, y0, x1, y1 = box
        draw.polygon([((x0 + x1) // 2, y0), (x1, y1), (x0, y1)], fill=colour)


def colour_sample(rng: random.Random, index: int) -> Sample:
    img = Image.new("RGB", (SIZE, SIZE), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    names = list(COLOURS)
    answer = rng.choice(names)
    big = rng.randint(44, 60)
    x, y = rng.randint(2, SIZE - big - 2), rng.randint(2, SIZE - big - 2)
    _shape(draw, rng.choice(["square", "circle", "triangle"]), (x, y, x + big, y + big), COLOURS[answer])
    for _ in range(rng.randint(0, 2)):  # smaller distractors of other colours
        s = rng.randint(8, 16)
        dx, dy = rng.randint(0, SIZE - s), rng.randint(0, SIZE - s)
        _shape(
            draw,
            rng.choice(["square", "circle"]),
            (dx, dy, dx + s, dy + s),
            COLOURS[rng.choice([n for n in names if n != answer])],
        )
    return Sample(f"colour-{index}", answer, [img])


def count_sample(rng: random.Random, index: int) -> Sample:
    img = Image.new("RGB", (SIZE, SIZE), (245, 245, 245))
    draw = ImageDraw.Draw(img)
    n = rng.randint(1, 4)
    cells = rng.sample(range(4), n)  # one shape per quadrant: they never overlap
    kind, colour = rng.choice(["square", "circle"]), COLOURS[rng.choice(list(COLOURS))]
    for cell in cells:
        s = rng.randint(22, 34)
        cx, cy = (cell % 2) * SIZE // 2, (cell // 2) * SIZE // 2
        x, y = cx + rng.randint(2, SIZE // 2 - s - 2), cy + rng.randint(2, SIZE // 2 - s - 2)
        _shape(draw, kind, (x, y, x + s, y + s), colour)
    return Sample(f"count-{index}", str(n), [img])


def frame_sample(rng: random.Random, index: int) -> Sample:
    target = rng.randrange(FRAMES)
    frames = []
    for f in range(FRAMES):
        img = Image.new("RGB", (SIZE, SIZE), (245, 245, 245))
        if f == target:
            s = rng.randint(30, 50)
            x, y = rng.randint(2, SIZE - s - 2), rng.randint(2, SIZE - s - 2)
            ImageDraw.Draw(img).rectangle((x, y, x + s, y + s), fill=COLOURS["red"])
        frames.append(img)
    return Sample(f"frame-{index}", str(target + 1), frames)


GENERATORS = {"synthetic_colour": colour_sample, "synthetic_count": count_sample, "synthetic_frame": frame_sample}


def generate(data_dir: str | Path, seed: int = 0, splits: dict[str, int] | None = None) -> Path:
    """Write every task's splits under `data_dir` (PNG files and `<task>/<split>.jsonl`); same seed, same
    bytes. Returns the directory. Skips the work when a matching manifest is already there."""
    root = Path(data_dir)
    splits = splits or SPLITS
    manifest = {"seed": seed, "splits": splits, "tasks": list(TASKS), "version": 1}
    done = root / "manifest.json"
    if done.is_file() and json.loads(done.read_text()) == manifest:
        return root
    for task in TASKS:
        for split, count in splits.items():
            rng = random.Random(f"{seed}-{task}-{split}")
            folder = root / task / split
            folder.mkdir(parents=True, exist_ok=True)
            rows = []
            for i in range(count):
                sample = GENERATORS[task](rng, i)
                paths = []
                for j, img in enumerate(sample.images):
                    name = f"{sample.id}.png" if len(sample.images) == 1 else f"{sample.id}-{j}.png"
                    img.save(folder / name)
                    paths.append(f"{task}/{split}/{name}")
                rows.append(
                    {
                        "id": sample.id,
                        "question": QUESTIONS[task],
                        "answer": sample.answer,
                        "media": paths,
                        "kind": "video" if task == "synthetic_frame" else "image",
                    }
                )
            tmp = root / task / f"{split}.jsonl.tmp"
            tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
            tmp.replace(root / task / f"{split}.jsonl")
    done.write_text(json.dumps(manifest))
    return root


def write_lmms_tasks(data_dir: str | Path, split: str = "test") -> Path:
    """lmms-eval task YAMLs over `split` (absolute paths: lmms-eval resolves data files against the working
    directory), the task functions beside them, and the `synthetic` group. Returns the include path."""
    import shutil

    root = Path(data_dir).resolve()
    tasks_dir = root / "lmms_tasks"
    tasks_dir.mkdir(exist_ok=True)
    shutil.copyfile(Path(__file__).with_name("lmms_tasks") / "utils.py", tasks_dir / "utils.py")
    names = []

    def head_of(task: str) -> str:  # the YAML lines naming a task's data file and split
        data = tasks_dir / f"{task}.{split}.jsonl"
        return f"dataset_path: json\ndataset_kwargs:\n  data_files:\n    {split}: {data}\ntest_split: {split}\n"

    for task in TASKS:
        rows = load_split(root, task, split)
        data = tasks_dir / f"{task}.{split}.jsonl"
        data.write_text("".join(json.dumps(r | {"media": [str(root / m) for m in r["media"]]}) + "\n" for r in rows))
        head = head_of(task)
        common = (
            "doc_to_visual: !function utils.doc_to_visual\ndoc_to_text: !function utils.doc_to_text\n"
            "metadata:\n  version: 1.0\n"
        )
        (tasks_dir / f"{task}.yaml").write_text(
            f"task: {task}\n{head}output_type: multiple_choice\n{common}"
            "doc_to_choice: !function utils.doc_to_choice\ndoc_to_target: !function utils.doc_to_target\n"
            "metric_list:\n  - metric: acc\n    aggregation: mean\n    higher_is_better: true\n"
        )
        names.append(task)
    # A free-form twin of the colour task: exercises generate_until (exact match on the generated word).
    gen = "synthetic_colour_gen"
    (tasks_dir / f"{gen}.yaml").write_text(
        f"task: {gen}\n{head_of('synthetic_colour')}output_type: generate_until\n"
        "doc_to_visual: !function utils.doc_to_visual\n"
        "doc_to_text: !function utils.doc_to_text\ndoc_to_target: !function utils.doc_to_answer\n"
        'generation_kwargs:\n  max_new_tokens: 4\n  do_sample: false\n  until: ["\\n"]\n'
        "metric_list:\n  - metric: exact_match\n    aggregation: mean\n    higher_is_better: true\n"
        "    ignore_case: true\n    ignore_punctuation: true\nmetadata:\n  version: 1.0\n"
    )
    names.append(gen)
    (tasks_dir / "synthetic.yaml").write_text(
        "group: synthetic\ntask:\n" + "".join(f"  - {n}\n" for n in names) + "metadata:\n  version: 1.0\n"
    )
    return tasks_dir


def load_split(data_dir: str | Path, task: str, split: str) -> list[dict]:
    path = Path(data_dir) / task / f"{split}.jsonl"
    if not path.is_file():
        raise ValueError(f"missing synthetic data {path}: run `nvila-bench synthetic-data --out {data_dir}`")
    return [json.loads(line) for line in path.read_text().splitlines()]


def open_media(data_dir: str | Path, row: dict) -> list[Image.Image]:
    return [Image.open(Path(data_dir) / p).convert("RGB") for p in row["media"]]
