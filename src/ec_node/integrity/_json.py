"""Strict JSON reading and canonical JSON writing shared by frames and manifests.

Strict because every byte here may come from a hostile peer: duplicate keys, NaN/Infinity, bools
posing as integers, over-deep nesting and invalid UTF-8 are all refused with
:class:`IntegrityFormatError` (never another exception).
"""

from __future__ import annotations

import json
from typing import Any

from ec_node.integrity.errors import IntegrityFormatError

U64_MAX = (1 << 64) - 1
I64_MIN = -(1 << 63)
#: Containers (objects, arrays) may nest this deep in any meta or manifest, counting the outermost one.
MAX_JSON_DEPTH = 32
_HEX = frozenset("0123456789abcdef")
_MAX_INT_CHARS = 21  # "-9223372036854775808" and "18446744073709551615" fit; longer literals are out of range


def canonical_json(value: Any) -> bytes:
    """Sorted keys, no insignificant whitespace, UTF-8 (non-ASCII unescaped); see PROTOCOL.md §7."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def _no_dupes(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in pairs:
        if k in out:
            raise IntegrityFormatError(f"duplicate JSON key {k!r}")
        out[k] = v
    return out


def _no_constant(name: str) -> Any:
    raise IntegrityFormatError(f"JSON constant {name} is not allowed")


def _no_float(text: str) -> Any:
    raise IntegrityFormatError("JSON fractional numbers are not allowed")


def _int64(text: str) -> int:
    """Integers anywhere (unknown fields included) lie in -2^63 .. 2^64-1: exact in every decoder we care about
    (no IEEE doubles), and independent of how many digits the host's int parser allows."""
    if len(text) > _MAX_INT_CHARS:
        raise IntegrityFormatError("JSON integer out of the 64-bit range")
    v = int(text)
    if not I64_MIN <= v <= U64_MAX:
        raise IntegrityFormatError("JSON integer out of the 64-bit range")
    return v


def _check_depth(value: Any, what: str) -> None:
    """Refuse containers nested deeper than MAX_JSON_DEPTH (iteratively: no recursion to run out of)."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, depth = stack.pop()
        children = v.values() if isinstance(v, dict) else v
        for c in children:
            if isinstance(c, dict | list):
                if depth + 1 > MAX_JSON_DEPTH:
                    raise IntegrityFormatError(f"{what}: JSON nested deeper than {MAX_JSON_DEPTH}")
                stack.append((c, depth + 1))


def loads_strict(data: bytes | bytearray | memoryview, what: str) -> dict[str, Any]:
    """Parse ``data`` as a UTF-8 JSON object in canonical form, refusing anything ambiguous.

    Requiring the canonical encoding (re-encoding must give back the same bytes) leaves exactly one
    accepted spelling of every meta and manifest, so any byte changed in transit is a rejection.
    """
    raw = bytes(data)
    try:
        text = raw.decode("utf-8")
        value = json.loads(
            text,
            object_pairs_hook=_no_dupes,
            parse_constant=_no_constant,
            parse_float=_no_float,
            parse_int=_int64,
        )
    except IntegrityFormatError:
        raise
    except (ValueError, RecursionError, TypeError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise IntegrityFormatError(f"{what}: not valid JSON ({type(e).__name__})") from None
    if not isinstance(value, dict):
        raise IntegrityFormatError(f"{what}: expected a JSON object")
    _check_depth(value, what)
    try:
        canonical = canonical_json(value) == raw
    except (ValueError, RecursionError):
        canonical = False
    if not canonical:
        raise IntegrityFormatError(f"{what}: not in canonical JSON form (sorted keys, no whitespace, UTF-8)")
    return value


def get_str(obj: dict[str, Any], key: str, what: str, *, max_len: int = 4096) -> str:
    if key not in obj:
        raise IntegrityFormatError(f"{what}: missing field {key!r}")
    v = obj[key]
    if not isinstance(v, str):
        raise IntegrityFormatError(f"{what}: field {key!r} must be a string")
    if len(v) > max_len:
        raise IntegrityFormatError(f"{what}: field {key!r} longer than {max_len}")
    return v


def get_uint(obj: dict[str, Any], key: str, what: str, *, maximum: int = U64_MAX) -> int:
    if key not in obj:
        raise IntegrityFormatError(f"{what}: missing field {key!r}")
    v = obj[key]
    if type(v) is not int:  # bool is an int subclass; refuse it
        raise IntegrityFormatError(f"{what}: field {key!r} must be an integer")
    if v < 0 or v > maximum:
        raise IntegrityFormatError(f"{what}: field {key!r} out of range 0..{maximum}")
    return v


def check_hex(value: str, nbytes: int, what: str) -> bytes:
    """Lowercase hex of exactly ``nbytes`` bytes (one spelling per value keeps encodings canonical)."""
    if len(value) != 2 * nbytes or not _HEX.issuperset(value):
        raise IntegrityFormatError(f"{what}: expected {2 * nbytes} lowercase hex digits")
    return bytes.fromhex(value)


def is_hex(value: str, nbytes: int) -> bool:
    return len(value) == 2 * nbytes and _HEX.issuperset(value)
