"""Go's ``encoding/json`` for the embedded OSCAR's types: decode, encode and write as Gin does.

A Go struct is mirrored by a dataclass whose fields carry :func:`go` metadata: the JSON name,
``omitempty``, the ``binding`` rules Gin validates, and the release tags between which the field
exists (``since`` inclusive, ``until`` exclusive). The rules follow Go:

- decoding matches keys exactly, then case-insensitively; unknown keys are ignored; ``null``
  leaves a value field unchanged and makes a slice, map or pointer nil; a JSON value of the
  wrong kind is an ``UnmarshalTypeError`` (``json: cannot unmarshal string into Go struct field
  Service.cpu of type string``), nesting deeper than 10000 is ``exceeded max depth``;
- encoding keeps the struct's field order, sorts map keys, writes nil slices/maps/pointers as
  ``null`` and leaves out ``omitempty`` fields holding "", 0, false, nil or an empty slice/map
  (never a struct value);
- :func:`go_json_text` escapes ``<``, ``>``, ``&``, U+2028 and U+2029 as ``json.Marshal`` does.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass
from typing import Any, TypeVar

from airflow_provider_oscar.local.profiles import Release

T = TypeVar("T")
MAX_DEPTH = 10000  # encoding/json scanner.go maxNestingDepth


@dataclass(frozen=True)
class GoField:
    """What a Go struct tag says about a field, and the releases that have it."""

    json: str
    omitempty: bool = False
    required: bool = False
    max_len: int | None = None
    min_len: int | None = None
    go_type: str | None = None
    since: Release | None = None
    until: Release | None = None

    def exists_in(self, release: Release) -> bool:
        return (self.since is None or release >= self.since) and (
            self.until is None or release < self.until
        )


def go(
    json: str,
    default: Any = dataclasses.MISSING,
    *,
    factory: Any = dataclasses.MISSING,
    **tag: Any,
) -> Any:
    """A dataclass field mirroring a Go struct field (``tag`` feeds :class:`GoField`)."""
    if default is dataclasses.MISSING and factory is dataclasses.MISSING:
        default = None
    meta = {"go": GoField(json, **tag)}
    if factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


class GoJSONError(ValueError):
    """A body ``encoding/json`` refuses; ``str()`` is Go's error text."""


@dataclass(frozen=True)
class _Slot:
    name: str
    tag: GoField
    hint: Any


_SLOTS: dict[type, tuple[_Slot, ...]] = {}


def _slots(cls: type) -> tuple[_Slot, ...]:
    """The Go fields of a dataclass, with their resolved type hints (computed once)."""
    slots = _SLOTS.get(cls)
    if slots is None:
        hints = typing.get_type_hints(cls)
        slots = _SLOTS[cls] = tuple(
            _Slot(f.name, f.metadata["go"], hints[f.name])
            for f in dataclasses.fields(cls)
            if "go" in f.metadata
        )
    return slots


def check_depth(raw: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Refuse JSON nested deeper than Go's decoder allows (before Python recurses into it)."""
    depth, in_string, escaped = 0, False, False
    for char in raw if isinstance(raw, str) else raw.decode("utf-8", errors="replace"):
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                raise GoJSONError("exceeded max depth")
        elif char in "]}":
            depth -= 1


def parse(raw: bytes) -> Any:
    """``json.Decoder.Decode``'s view of a body: the value, or Go's error text."""
    if not raw.strip():
        raise GoJSONError("EOF")
    try:
        return json.loads(raw)
    except RecursionError:
        check_depth(raw)  # deeper than Go allows: Go's own message
        raise GoJSONError("nesting too deep for the embedded OSCAR's JSON parser") from None
    except json.JSONDecodeError as exc:
        raise GoJSONError(_syntax_error(exc)) from None
    except ValueError as exc:  # undecodable bytes
        raise GoJSONError(f"invalid character in string literal: {exc}") from None


def _syntax_error(exc: json.JSONDecodeError) -> str:
    """Go's wording for the most common syntax errors (scanner.go)."""
    if exc.pos >= len(exc.doc.rstrip()):
        return "unexpected EOF"
    char = exc.doc[exc.pos]
    if exc.msg.startswith("Extra data"):
        return f"invalid character '{char}' after top-level value"
    if exc.msg.startswith("Expecting value"):
        return f"invalid character '{char}' looking for beginning of value"
    return f"invalid character '{char}' {exc.msg[0].lower()}{exc.msg[1:]}"


def decode(cls: type[T], data: Any, release: Release) -> T:
    """Decode a parsed JSON value into ``cls`` as ``json.Unmarshal`` would at ``release``."""
    errors: list[str] = []
    if data is not None and not isinstance(data, dict):
        raise GoJSONError(
            f"json: cannot unmarshal {_kind(data)} into Go value of type types.{cls.__name__}"
        )
    value = _decode_struct(cls, data, release, (), cls(), errors)
    if errors:
        raise GoJSONError(errors[0])
    return value


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, float):
        return f"number {value:g}"
    if isinstance(value, int):
        return "number"
    if isinstance(value, str):
        return "string"
    return "array" if isinstance(value, list) else "object"


def _go_name(hint: Any) -> str:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        (inner,) = [a for a in typing.get_args(hint) if a is not type(None)]
        return f"*{_go_name(inner)}"
    if origin is list:
        return f"[]{_go_name(typing.get_args(hint)[0])}"
    if origin is dict:
        return f"map[string]{_go_name(typing.get_args(hint)[1])}"
    names = {str: "string", int: "int", bool: "bool", float: "float64"}
    return names.get(hint) or f"types.{hint.__name__}"


@dataclass
class _Context:
    """Where the decoder is, for Go's error text: innermost struct and the JSON field path."""

    release: Release
    errors: list[str]
    struct: str = ""
    stack: tuple[str, ...] = ()

    def refuse(self, value: Any, go_type: str) -> None:
        self.errors.append(
            f"json: cannot unmarshal {_kind(value)} into Go struct field "
            f"{self.struct}.{'.'.join(self.stack)} of type {go_type}"
        )


def _decode_struct(
    cls: type[T], data: Any, release: Release, stack: tuple[str, ...], target: T, errors: list[str]
) -> T:
    struct = "" if getattr(cls, "GO_ANONYMOUS", False) else cls.__name__
    slots = [s for s in _slots(cls) if s.tag.exists_in(release)]
    exact = {s.tag.json: s for s in slots}
    folded = {s.tag.json.lower(): s for s in reversed(slots)}
    for key, value in (data or {}).items():
        slot = exact.get(key) or folded.get(str(key).lower())
        if slot is None:
            continue
        ctx = _Context(release, errors, struct, (*stack, slot.tag.json))
        current = getattr(target, slot.name)
        setattr(target, slot.name, _decode_value(slot, slot.hint, value, ctx, current))
    return target


def _decode_value(slot: _Slot, hint: Any, value: Any, ctx: _Context, current: Any) -> Any:
    origin = typing.get_origin(hint)
    nullable = origin in (typing.Union, types.UnionType)
    if nullable:
        (hint,) = [a for a in typing.get_args(hint) if a is not type(None)]
        origin = typing.get_origin(hint)
    if value is None:
        return None if nullable or origin in (list, dict) else current
    go_type = slot.tag.go_type if hint is slot.hint or nullable else None
    if origin is list:
        if not isinstance(value, list):
            ctx.refuse(value, go_type or _go_name(hint))
            return current
        (item,) = typing.get_args(hint)
        return [_decode_value(slot, item, v, ctx, _zero(item)) for v in value]
    if origin is dict:
        if not isinstance(value, dict):
            ctx.refuse(value, go_type or _go_name(hint))
            return current
        item = typing.get_args(hint)[1]
        return {str(k): _decode_value(slot, item, v, ctx, _zero(item)) for k, v in value.items()}
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        if not isinstance(value, dict):
            ctx.refuse(value, _go_name(hint))
            return current
        into = hint() if nullable or current is None else current
        return _decode_struct(hint, value, ctx.release, ctx.stack, into, ctx.errors)
    accepted = {
        bool: isinstance(value, bool),
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, int | float) and not isinstance(value, bool),
        str: isinstance(value, str),
    }[hint]
    if not accepted:
        ctx.refuse(value, go_type or _go_name(hint))
        return current
    return float(value) if hint is float else value


def _zero(hint: Any) -> Any:
    if typing.get_origin(hint) in (typing.Union, types.UnionType, list, dict):
        return None
    if dataclasses.is_dataclass(hint):
        return hint()  # type: ignore[operator]
    return {str: "", int: 0, bool: False, float: 0.0}[hint]


def encode(value: Any, release: Release) -> Any:
    """The JSON value ``json.Marshal`` writes for ``value`` at ``release``."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for slot in _slots(type(value)):
            if not slot.tag.exists_in(release):
                continue
            item = getattr(value, slot.name)
            if slot.tag.omitempty and _empty(item):
                continue
            out[slot.tag.json] = encode(item, release)
        return out
    if isinstance(value, dict):
        return {k: encode(value[k], release) for k in sorted(value)}
    if isinstance(value, list):
        return [encode(v, release) for v in value]
    return value


def _empty(value: Any) -> bool:
    if dataclasses.is_dataclass(value):
        return False  # omitempty never leaves out a struct value
    return value is None or value in ("", 0, False) or value == [] or value == {}


def go_map(mapping: dict[str, Any]) -> dict[str, Any]:
    """A Go map as ``json.Marshal`` writes it: keys sorted."""
    return {k: mapping[k] for k in sorted(mapping)}


def go_json_text(value: Any) -> str:
    """Compact JSON with the characters Go escapes escaped."""
    text = json.dumps(value, separators=(",", ":"), ensure_ascii=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    return text.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


def binding_errors(value: Any, release: Release) -> list[str]:
    """The ``binding:"..."`` failures Gin's validator reports, in field order."""
    name = type(value).__name__
    failures = []
    for slot in _slots(type(value)):
        if not slot.tag.exists_in(release):
            continue
        item = getattr(value, slot.name)
        field = slot.name[:1].upper() + slot.name[1:]
        failed = None
        if slot.tag.required and _empty(item):
            failed = "required"
        elif slot.tag.max_len is not None and len(item) > slot.tag.max_len:
            failed = "max"
        elif slot.tag.min_len is not None and len(item) < slot.tag.min_len:
            failed = "min"
        if failed:
            failures.append(
                f"Key: '{name}.{field}' Error:Field validation for '{field}' failed on the "
                f"'{failed}' tag"
            )
    return failures
