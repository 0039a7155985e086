"""`run prefill --image-file`: a real image file as the request, decoded inside the timed preprocessing stage,
with the file's own size behind the token counts; a file that is missing or no image is one line, exit 2."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from nvila_bench.model import build_model, count_visual_tokens, get_preset
from nvila_bench.model.pipeline import Request, file_request, media_blocks
from nvila_bench.model.preprocess_tensor import decode_image
from PIL import Image

from nvila_bench.cli import main


@pytest.fixture(scope="module")
def jpeg(tmp_path_factory):
    path = tmp_path_factory.mktemp("images") / "street.jpg"
    rng = np.random.default_rng(0)
    coarse = rng.integers(0, 256, (45, 80, 3), dtype=np.uint8)  # smooth content: JPEG keeps it close
    Image.fromarray(coarse).resize((1280, 720), Image.BICUBIC).save(path, quality=92)
    return path


@pytest.mark.parametrize("preprocess", ["cpu", "gpu"])
def test_a_file_request_is_the_files_size_and_pixels(jpeg, preprocess):
    cfg = get_preset("nvila-tiny")
    model = build_model(cfg)
    served = file_request(cfg, (str(jpeg),), prompt_tokens=8, preprocess=preprocess)
    decoded = Request([Image.open(jpeg).convert("RGB")], None, served.input_ids, True, preprocess)
    with torch.inference_mode():
        ours, reference = media_blocks(model, served), media_blocks(model, decoded)
    assert [b.shape for b in ours] == [b.shape for b in reference]
    assert ours[0].shape[0] == count_visual_tokens(cfg, ((1280, 720),)).total_tokens
    assert all(torch.equal(a, b) for a, b in zip(ours, reference))  # the same decode, then the same preprocessing


def test_decode_image_gives_the_files_rgb_pixels(jpeg):
    pixels = decode_image(str(jpeg), "cpu")
    assert pixels.dtype == torch.uint8 and pixels.shape == (720, 1280, 3)
    assert np.array_equal(pixels.numpy(), np.array(Image.open(jpeg).convert("RGB")))


def test_prefill_of_an_image_file_records_its_size_and_path(jpeg, tmp_path, capsys):
    code = main(
        [
            "run",
            "prefill",
            "--preset",
            "nvila-tiny",
            "--image-file",
            str(jpeg),
            "--preprocess",
            "cpu",
            "--preprocess",
            "gpu",
            "--repeats",
            "1",
            "--warmup",
            "0",
            "--min-seconds",
            "0",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [(r["status"], r["config"]["preprocess"], r["config"]["images"]) for r in records] == [
        ("ok", "cpu", ["1280x720"]),
        ("ok", "gpu", ["1280x720"]),
    ]
    assert all(r["config"]["extra"] == {"image_file": str(jpeg.resolve())} for r in records)
    tokens = count_visual_tokens(get_preset("nvila-tiny"), ((1280, 720),)).total_tokens
    assert all(
        r["metrics"]["media_tokens"]["value"] == tokens and r["metrics"]["preprocess"]["value"] > 0 for r in records
    )


@pytest.mark.parametrize("case", ["missing", "not an image", "with --image"])
def test_a_bad_image_file_is_one_line_before_measuring(jpeg, tmp_path, capsys, case):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not a picture")
    args = {
        "missing": ["--image-file", str(tmp_path / "none.jpg")],
        "not an image": ["--image-file", str(bad)],
        "with --image": ["--image-file", str(jpeg), "--image", "448x448"],
    }[case]
    code = main(["run", "prefill", "--preset", "nvila-tiny", *args, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1
    expected = {
        "missing": f"--image-file {tmp_path / 'none.jpg'}: not a readable image (FileNotFoundError",
        "not an image": f"--image-file {bad}: not a readable image (UnidentifiedImageError",
        "with --image": "give --image-file or --image / --video-frames, not both",
    }[case]
    assert err.startswith(f"nvila-bench: error: {expected}"), err
    assert not (tmp_path / "out").exists()
