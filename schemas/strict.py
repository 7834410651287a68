"""Unknown fields: the names a v1 event carries that the contract does not define.

The decoder ignores them (a producer may add fields before the worker knows them), which also lets a typo pass
unseen: ``dms_nummer`` is dropped, and the event fails only if the field it misspells was required. ``normalize
--strict`` and ``publish --strict`` report them from here. Pure: the paths name fields, never values.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any, Final

import msgspec
import msgspec.inspect as mi

from schemas.contract import Event
from schemas.decoder import json_text, repairs_in

_EVENT: Final = mi.type_info(Event)
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def unknown_fields(value: bytes) -> list[str]:
    """JSON paths (``$.appointment.dms_nummer``) of the fields in ``value`` that the v1 contract does not define.

    Only the parts that can be matched to the contract are compared: an object whose event type is unknown, or a
    value that is not JSON, has no known fields to compare with (the decoder rejects those anyway).
    """
    try:
        return list(_unknown(msgspec.json.decode(json_text(value)), _EVENT, "$"))
    except (msgspec.DecodeError, RecursionError):  # nested too deeply for msgspec or for this walk
        return []


def _unknown(doc: Any, kind: mi.Type, path: str) -> Iterator[str]:
    if isinstance(kind, mi.Metadata):
        yield from _unknown(doc, kind.type, path)
    elif isinstance(kind, mi.StructType):
        yield from _unknown_in_struct(doc, kind, path)
    elif isinstance(kind, mi.UnionType):
        struct = _struct_for(doc, kind)
        if struct is not None:
            yield from _unknown_in_struct(doc, struct, path)
    elif isinstance(kind, mi.VarTupleType | mi.ListType) and isinstance(doc, list):
        for i, item in enumerate(doc):
            yield from _unknown(item, kind.item_type, f"{path}[{i}]")


def _struct_for(doc: Any, union: mi.UnionType) -> mi.StructType | None:
    """The Struct of a union that an object is meant as: by its tag for the events, the only one for an optional."""
    if not isinstance(doc, dict):
        return None
    structs = [t for t in union.types if isinstance(t, mi.StructType)]
    tagged = [t for t in structs if t.tag_field is not None]
    if tagged:
        return next((t for t in tagged if t.tag_field is not None and doc.get(t.tag_field) == t.tag), None)
    return structs[0] if len(structs) == 1 else None


def _unknown_in_struct(doc: Any, struct: mi.StructType, path: str) -> Iterator[str]:
    if not isinstance(doc, dict):
        return
    fields = {f.encode_name: f for f in struct.fields}
    for name, child in doc.items():
        known = fields.get(name)
        if known is not None:
            yield from _unknown(child, known.type, _join(path, name))
        elif name != struct.tag_field:
            yield _join(path, name)


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if _NAME.fullmatch(name) else f"{path}[{json.dumps(name, ensure_ascii=False)}]"


def findings(value: bytes) -> list[str]:
    """One line per thing ``--strict`` refuses in ``value``: each unknown field, then each kind of repaired form."""
    return [
        *(
            f"unknown field {path}: not in the v1 contract, the worker ignores it (a typo?)"
            for path in unknown_fields(value)
        ),
        *(f"not the contract's form, read after a repair: {reason}" for reason in repairs_in(value)),
    ]
