"""The machinery of typed results: a JSON object read into a dataclass (Typed), a whole result file with its
schema version (ResultFile); see mtp.result_types."""
import functools
import re
import typing
from dataclasses import dataclass, fields
from typing import ClassVar, Optional

SCHEMA_KEY = "schema_version"


class SchemaError(Exception):
    """A result dict does not match its class (a stage's bug) or a file is of a newer schema."""


@functools.cache
def _hints(cls):
    return typing.get_type_hints(cls)


def _typed(tp):
    return isinstance(tp, type) and issubclass(tp, Typed)


def _convert(tp, value, strict, where):
    if typing.get_origin(tp) is typing.Union:  # Optional[X]
        if value is None:
            return None
        tp = next(a for a in typing.get_args(tp) if a is not type(None))
    if _typed(tp):
        if isinstance(value, dict) or strict:
            return tp.from_json(value, strict, where)
        return None
    if typing.get_origin(tp) is dict and _typed(typing.get_args(tp)[1]):
        if not isinstance(value, dict):
            if strict:
                raise SchemaError(f"{where}: a JSON object expected, got {type(value).__name__}")
            return {}
        item = typing.get_args(tp)[1]
        return {k: item.from_json(x, strict, f"{where}.{k}") for k, x in value.items() if strict or isinstance(x, dict)}
    if typing.get_origin(tp) is list:
        if not isinstance(value, list):
            if strict:
                raise SchemaError(f"{where}: a list expected, got {type(value).__name__}")
            return []
        (item,) = typing.get_args(tp)
        if _typed(item):
            return [item.from_json(x, strict, f"{where}[{i}]") for i, x in enumerate(value)
                    if strict or isinstance(x, dict)]
    return value


class Typed:
    """A JSON object read into a dataclass (see the module docstring). Keys that carry a number (val_loss_head_3,
    naive_n4) match one of the class's KEYED patterns and are kept in its `keyed` field, read with at(). RENAMED:
    {name in an older schema: field}, applied when reading (a writer must use the field's name)."""
    KEYED: ClassVar[tuple] = ()
    RENAMED: ClassVar[dict] = {}

    @classmethod
    def from_json(cls, d, strict=False, where=None):
        where = where or cls.__name__
        if not isinstance(d, dict):
            raise SchemaError(f"{where}: a JSON object expected, got {type(d).__name__}")
        if not strict and cls.RENAMED:
            d = {cls.RENAMED.get(k, k): v for k, v in d.items()}
        names = [f.name for f in fields(cls) if f.name != "keyed"]
        keyed = {k: v for k, v in d.items() if any(re.fullmatch(p, k) for p in cls.KEYED)}
        if strict:
            unknown = sorted(set(d) - set(names) - set(keyed) - {SCHEMA_KEY})
            if unknown:
                raise SchemaError(f"{where}: {', '.join(unknown)} not a field of mtp.result_types.{cls.__name__} "
                                  "(add it there)")
        hints = _hints(cls)
        out = cls(**{k: _convert(hints[k], d[k], strict, f"{where}.{k}") for k in names if k in d})
        if cls.KEYED:
            out.keyed = keyed
        return out

    def at(self, key):
        """The value of a numbered key (one of KEYED), or None."""
        return self.keyed.get(key)


@dataclass
class ResultFile(Typed):
    """A whole result file: SCHEMA_VERSION is the layout it is written in, schema_version the file's own."""
    SCHEMA_VERSION: ClassVar[int] = 1
    schema_version: Optional[int] = None

    @classmethod
    def check(cls, data):
        """The stage's dict, checked against the class -> the dict stamped with SCHEMA_VERSION (what is written)."""
        cls.from_json(data, strict=True)
        return {**data, SCHEMA_KEY: cls.SCHEMA_VERSION}

    @classmethod
    def read(cls, data):
        """A file's JSON object -> an instance (tolerant of older files); SchemaError for a newer schema."""
        version = data.get(SCHEMA_KEY) if isinstance(data, dict) else None
        if isinstance(version, int) and version > cls.SCHEMA_VERSION:
            raise SchemaError(f"schema version {version}, newer than this mtp's {cls.SCHEMA_VERSION} "
                              "(update mtp or rerun the stage)")
        return cls.from_json(data)
