"""The record schema (record.schema.json, shipped in the package) and the validator every record read goes
through: fastjsonschema, imported on first use (measuring never needs it; reading does)."""

from __future__ import annotations

import functools
import json
from pathlib import Path

_SCHEMA = Path(__file__).with_name("record.schema.json")


@functools.cache
def _validator():
    """The compiled schema, once (imported here: measuring never needs the validator, reading does)."""
    try:
        import fastjsonschema
    except ImportError:
        raise ValueError("reading results needs fastjsonschema (pip install fastjsonschema)") from None
    return fastjsonschema.compile(json.loads(_SCHEMA.read_text())), fastjsonschema.JsonSchemaValueException


def validate_record(d: dict) -> None:
    """ValueError of one line unless `d` matches record.schema.json: "invalid result record: what (where)"."""
    validator, invalid = _validator()
    try:
        validator(d)
    except invalid as e:
        where = ".".join(map(str, e.path[1:])) or "the record"
        what = f"{e.message[len(e.name) :].strip()}, got {repr(e.value)[:60]}"
        if e.rule == "required":
            what = "missing " + ", ".join(repr(k) for k in e.rule_definition if k not in e.value)
        raise ValueError(f"invalid result record: {what} ({where})") from None
