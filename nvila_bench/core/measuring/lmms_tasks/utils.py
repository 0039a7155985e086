"""lmms-eval task functions for the synthetic tasks (copied next to the generated task YAMLs)."""

from PIL import Image

CHOICES = {
    "colour": ["red", "green", "blue", "yellow"],
    "count": ["1", "2", "3", "4"],
    "frame": [str(i) for i in range(1, 9)],
}


def doc_to_visual(doc):
    frames = [Image.open(path).convert("RGB") for path in doc["media"]]
    return [frames] if doc["kind"] == "video" else frames  # a video is one nested list of frames


def doc_to_text(doc, lmms_eval_specific_kwargs=None):
    return doc["question"]


def doc_to_choice(doc):
    return CHOICES[doc["id"].split("-")[0]]


def doc_to_target(doc):
    return doc_to_choice(doc).index(doc["answer"])


def doc_to_answer(doc):
    return doc["answer"]
