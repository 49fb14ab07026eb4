"""Canonical msgpack: one byte string per value, and decoders that accept nothing else.

Values are built from ``None``, ``bool``, ``int`` (-2**63 .. 2**64-1), ``bytes``, ``str``,
``list`` and ``dict`` with ``str`` keys. The canonical form is msgpack with the smallest
encoding of every integer and length, ``bin`` for bytes, ``str`` for text and map keys sorted
by their UTF-8 bytes. No floats, no extension types, no duplicate keys.

``decode`` re-encodes what it parsed and compares: any input that is not the canonical form of
its own value (a padded integer, unsorted keys, a duplicate key, trailing bytes) is rejected, so
one value has exactly one encoding and hashes cannot be malleated.

Typed objects sit on top through :class:`Schema`: a declaration of fields with bounds, so a peer
or client can never make a node allocate without limit, and every error names the field. A
schema generates its checker and wire builder once, at import: straight-line code over its
field names, which hands anything its inline tests refuse to the field-by-field reading, so
both give the same answers and the same first error (a test compares them on edited values of
every ledger schema).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Mapping
from dataclasses import fields as dc_fields
from itertools import pairwise
from typing import Any, Generic, TypeVar

import msgpack

from ledger.errors import DecodeError

#: hard limits applied before any schema: no single value may exceed these
MAX_ENCODED = 16 * 1024 * 1024
_MAX_STR = 1024 * 1024
_MAX_ARRAY = 200_000
_MAX_MAP = 64

_INT_MIN = -(2**63)
_INT_MAX = 2**64 - 1
#: deepest nesting of lists and maps; the deepest object (a block's evidence) needs four
MAX_DEPTH = 32

#: idle packers. ``msgpack.packb`` makes a packer (with a 1 MiB buffer) for every call, which a
#: node under load pays several times per transaction; a packer is reused instead, by one
#: thread at a time (list pop and append are atomic), and one whose packing failed is dropped.
_packers: list[msgpack.Packer] = []


def pack(value: Any) -> bytes:
    """``msgpack.packb(value, use_bin_type=True)``, without a new packer per call. Callers pass
    values already in canonical order (``encode`` is the checked entry point)."""
    try:
        packer = _packers.pop()
    except IndexError:
        packer = msgpack.Packer(use_bin_type=True)
    out = packer.pack(value)
    _packers.append(packer)
    return out


def _canon(value: Any, depth: int = 0) -> Any:
    """Return ``value`` with every dict rebuilt in canonical key order, checking types."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"nesting deeper than {MAX_DEPTH} levels")
    if value is None or value is True or value is False:
        return value
    t = type(value)
    if t is int:
        if not _INT_MIN <= value <= _INT_MAX:
            raise DecodeError(f"integer {value} outside the 64-bit range")
        return value
    if t is bytes or t is str:
        return value
    if t is list or t is tuple:
        return [_canon(v, depth + 1) for v in value]
    if t is dict:
        for k in value:
            if type(k) is not str:
                raise DecodeError(f"map key {k!r} is not a string")
        return {k: _canon(value[k], depth + 1) for k in sorted(value, key=_key_order)}
    if t is bytearray or t is memoryview:
        return bytes(value)
    raise DecodeError(f"type {t.__name__} has no canonical encoding")


def _key_order(key: str) -> bytes:
    return key.encode("utf-8")


def encode(value: Any) -> bytes:
    """The canonical encoding of ``value``."""
    try:
        return pack(_canon(value))
    except UnicodeEncodeError as exc:  # a lone surrogate: text with no UTF-8 form
        raise DecodeError(f"text is not valid Unicode ({exc.reason})") from None


def _reject_ext(code: int, data: bytes) -> Any:
    raise DecodeError(f"extension type {code} is not allowed")


def decode(data: bytes, *, max_size: int = MAX_ENCODED, canonical: bool = True, key_order: bool = True) -> Any:
    """Parse canonical bytes into a plain value; raise :class:`DecodeError` otherwise.

    ``canonical=False`` parses within the same limits but does not check the canonical form:
    for bytes whose content is checked another way before anything is kept (a snapshot chunk's
    records against the hashes its manifest names). Floats and non-text map keys can then
    appear; the caller's own type checks must refuse them.

    ``key_order=False`` leaves out the walk that checks every map's keys are text in ascending
    order and that no float appears; the rest of the canonical check stays. For a caller that
    checks each map through :meth:`Schema.check_canonical` (which makes the same checks) and
    every other value itself, as :func:`ledger.tx.envelope.decode_tx` does."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise DecodeError(f"expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) > max_size:
        raise DecodeError(f"{len(data)} bytes exceed the limit of {max_size}")
    if not data:
        raise DecodeError("empty input")
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=True,
            ext_hook=_reject_ext,
            max_bin_len=MAX_ENCODED,
            max_str_len=_MAX_STR,
            max_array_len=_MAX_ARRAY,
            max_map_len=_MAX_MAP,
            max_ext_len=0,
        )
    except DecodeError:
        raise
    except Exception as exc:  # msgpack raises a zoo of types for bad input
        raise DecodeError(f"not valid msgpack ({type(exc).__name__}: {exc})") from None
    if not canonical:
        return value
    if key_order:
        _check_plain(value)
    # Key order and types are checked; re-encoding catches the rest (padded integers and
    # lengths, str8 where fixstr fits, duplicate keys collapsed by the parser, trailing bytes).
    if pack(value) != data:
        raise DecodeError("not in canonical form (re-encoding differs)")
    return value


def _check_plain(value: Any, depth: int = 0) -> None:
    """Walk a parsed value: only canonical types, text map keys in ascending order."""
    if depth > MAX_DEPTH:
        raise DecodeError(f"nesting deeper than {MAX_DEPTH} levels")
    t = type(value)
    if t is dict:
        keys = list(value)
        for k in keys:
            if type(k) is not str:  # the parser also admits bytes keys
                raise DecodeError(f"map key of type {type(k).__name__} is not a string")
        if keys != sorted(keys):
            raise DecodeError("not in canonical form (map keys not in ascending order)")
        for v in value.values():
            if type(v) in _CONTAINERS or type(v) is float:
                _check_plain(v, depth + 1)
    elif t is list:
        for v in value:
            if type(v) in _CONTAINERS or type(v) is float:
                _check_plain(v, depth + 1)
    elif t is float:
        raise DecodeError("floating-point numbers have no canonical encoding")


_CONTAINERS = (dict, list)


# --------------------------------------------------------------------------- schemas


class Spec(ABC):
    """A field's type and bounds: checks a decoded value and converts it to its Python form."""

    name = "value"

    @abstractmethod
    def check(self, value: Any, path: str) -> Any:
        """The Python form of ``value``; :class:`DecodeError` naming ``path`` if it is not one."""

    def wire(self, value: Any) -> Any:
        """Python form -> plain encodable value."""
        return value

    def inline(self, x: str, ns: dict[str, Any]) -> tuple[str, str] | None:
        """For :class:`Schema`'s generated checker: a Python expression true when the variable
        ``x`` passes :meth:`check`, and one for the value ``check`` returns; ``None`` when this
        spec is checked by calling it. Constants the expressions need go into ``ns``."""
        return None

    def inline_wire(self, x: str, ns: dict[str, Any]) -> str | None:
        """An expression for ``wire(x)``, or ``None`` when it is computed by calling it."""
        return None


def _const(ns: dict[str, Any], value: Any) -> str:
    name = f"_k{len(ns)}"
    ns[name] = value
    return name


class Bytes(Spec):
    def __init__(self, size: int | None = None, *, max: int | None = None, min: int = 0) -> None:
        self.size, self.max, self.min = size, max, min

    def check(self, value: Any, path: str) -> bytes:
        if type(value) is not bytes:
            raise DecodeError(f"expected bytes, got {_tname(value)}", path)
        n = len(value)
        if self.size is not None and n != self.size:
            raise DecodeError(f"expected {self.size} bytes, got {n}", path)
        if self.max is not None and n > self.max:
            raise DecodeError(f"{n} bytes exceed the limit of {self.max}", path)
        if n < self.min:
            raise DecodeError(f"{n} bytes are fewer than {self.min}", path)
        return value

    def inline(self, x: str, ns: dict[str, Any]) -> tuple[str, str]:
        test = f"type({x}) is bytes"
        if self.size is not None:
            test += f" and len({x}) == {self.size}"
        if self.max is not None:
            test += f" and len({x}) <= {self.max}"
        if self.min:
            test += f" and len({x}) >= {self.min}"
        return test, x

    def inline_wire(self, x: str, ns: dict[str, Any]) -> str:
        return x


class Str(Spec):
    def __init__(self, *, max: int, min: int = 0, choices: Iterable[str] | None = None) -> None:
        self.max, self.min = max, min
        self.choices = frozenset(choices) if choices is not None else None

    def check(self, value: Any, path: str) -> str:
        if type(value) is not str:
            raise DecodeError(f"expected text, got {_tname(value)}", path)
        if not self.min <= len(value) <= self.max:
            raise DecodeError(f"length {len(value)} outside {self.min}..{self.max}", path)
        if self.choices is not None and value not in self.choices:
            raise DecodeError(f"{value!r} is not one of {sorted(self.choices)}", path)
        return value

    def inline(self, x: str, ns: dict[str, Any]) -> tuple[str, str]:
        test = f"type({x}) is str and {self.min} <= len({x}) <= {self.max}"
        if self.choices is not None:
            test += f" and {x} in {_const(ns, self.choices)}"
        return test, x

    def inline_wire(self, x: str, ns: dict[str, Any]) -> str:
        return x


class Int(Spec):
    def __init__(self, *, min: int = 0, max: int = 2**63 - 1) -> None:
        self.min, self.max = min, max

    def check(self, value: Any, path: str) -> int:
        if type(value) is not int:
            raise DecodeError(f"expected an integer, got {_tname(value)}", path)
        if not self.min <= value <= self.max:
            raise DecodeError(f"{value} outside {self.min}..{self.max}", path)
        return value

    def inline(self, x: str, ns: dict[str, Any]) -> tuple[str, str]:
        return f"type({x}) is int and {self.min} <= {x} <= {self.max}", x

    def inline_wire(self, x: str, ns: dict[str, Any]) -> str:
        return x


class Bool(Spec):
    def check(self, value: Any, path: str) -> bool:
        if type(value) is not bool:
            raise DecodeError(f"expected true/false, got {_tname(value)}", path)
        return value

    def inline(self, x: str, ns: dict[str, Any]) -> tuple[str, str]:
        return f"type({x}) is bool", x

    def inline_wire(self, x: str, ns: dict[str, Any]) -> str:
        return x


class Optional(Spec):
    def __init__(self, inner: Spec) -> None:
        self.inner = inner

    def check(self, value: Any, path: str) -> Any:
        return None if value is None else self.inner.check(value, path)

    def wire(self, value: Any) -> Any:
        return None if value is None else self.inner.wire(value)

    def inline(self, x: str, ns: dict[str, Any]) -> tuple[str, str] | None:
        inner = self.inner.inline(x, ns)
        if inner is None:
            return None
        test, value = inner
        return f"({x} is None or ({test}))", x if value == x else f"(None if {x} is None else {value})"

    def inline_wire(self, x: str, ns: dict[str, Any]) -> str | None:
        inner = self.inner.inline_wire(x, ns)
        if inner is None:
            return None
        return x if inner == x else f"(None if {x} is None else {inner})"


class List(Spec):
    """A list of bounded length; ``unique_sorted`` demands strictly increasing items."""

    def __init__(self, item: Spec, *, max: int, min: int = 0, unique_sorted: bool = False) -> None:
        self.item, self.max, self.min, self.unique_sorted = item, max, min, unique_sorted

    def check(self, value: Any, path: str) -> tuple:
        if type(value) is not list:
            raise DecodeError(f"expected a list, got {_tname(value)}", path)
        if not self.min <= len(value) <= self.max:
            raise DecodeError(f"{len(value)} items outside {self.min}..{self.max}", path)
        out = tuple(self.item.check(v, f"{path}[{i}]") for i, v in enumerate(value))
        if self.unique_sorted:
            for i in range(1, len(out)):
                if not out[i - 1] < out[i]:
                    raise DecodeError("items must be unique and in ascending order", path)
        return out

    def wire(self, value: Any) -> list:
        return [self.item.wire(v) for v in value]

    def inline(self, x: str, ns: dict[str, Any]) -> tuple[str, str] | None:
        item = self.item.inline("_v", ns)
        if item is None or item[1] != "_v":
            return None
        items_ok = _const(ns, eval(f"lambda _l: all({item[0]} for _v in _l)", ns))
        test = f"type({x}) is list and {self.min} <= len({x}) <= {self.max} and {items_ok}({x})"
        if self.unique_sorted:
            test += f" and {_const(ns, _strictly_increasing)}({x})"
        return test, f"tuple({x})"

    def inline_wire(self, x: str, ns: dict[str, Any]) -> str | None:
        return f"list({x})" if self.item.inline_wire("_v", ns) == "_v" else None


def _strictly_increasing(items: list) -> bool:
    return all(a < b for a, b in pairwise(items))


T = TypeVar("T")


class Schema(Spec, Generic[T]):
    """A map with exactly the declared fields, bound to a (frozen) dataclass.

    Every field must be present; absent values are written as nil through :class:`Optional`.
    Unknown fields are an error, so a newer peer cannot smuggle data past an older one.
    """

    def __init__(self, cls: Callable[..., T], spec: Mapping[str, Spec]) -> None:
        self.cls = cls
        self.spec = dict(spec)
        self.name = getattr(cls, "__name__", "object")
        declared = {f.name for f in dc_fields(cls)}  # type: ignore[arg-type]
        if declared != set(self.spec):
            raise TypeError(f"schema of {self.name} does not match its fields")
        self._order = sorted(self.spec, key=_key_order)
        self._keys = frozenset(self.spec)
        self._top = tuple((name, spec, name) for name, spec in self.spec.items())
        self._check, self._wire, self._flat = self._compile()

    def _compile(self) -> tuple[Callable[[Any, str], T], Callable[[T], dict], bool]:
        """Generate this schema's checker and wire builder as straight-line Python; also say
        whether every field is checked inline (plain values, lists of them: no map or float
        can pass, so the key order of the map itself is all :meth:`check_canonical` adds).

        The checker tests every field of a plain type inline and calls the specs of the others
        (nested schemas, lists of them) in field order. When an inline test fails it hands the
        value to :meth:`check_fields`, the field-by-field check, so errors, and which error
        comes first, are exactly those of the plain reading. The generated text uses only the
        field names of a dataclass (identifiers), never data.
        """
        ns: dict[str, Any] = {"_cls": self.cls, "_keys": self._keys, "_slow": self.check_fields}
        tests: list[str] = []
        args: list[str] = []
        fetch: list[str] = []
        called = 0
        for i, (name, spec) in enumerate(self.spec.items()):
            var = f"_a{i}"
            fetch.append(f"        {var} = value[{name!r}]")
            inline = spec.inline(var, ns)
            if inline is None:
                where = f"({name!r} if not path else path + {'.' + name!r})"
                args.append(f"{name}={_const(ns, spec)}.check({var}, {where})")
                called += 1
            else:
                tests.append(inline[0])
                args.append(f"{name}={inline[1]}")
        check_src = "\n".join([
            "def _check(value, path=''):",
            "    if type(value) is dict and value.keys() == _keys:",
            *fetch,
            f"        if {' and '.join(f'({t})' for t in tests) or 'True'}:",
            f"            return _cls({', '.join(args)})",
            "    return _slow(value, path)",
        ])
        items = []
        for name in self._order:
            expr = self.spec[name].inline_wire(f"obj.{name}", ns)
            items.append(f"{name!r}: {expr or f'{_const(ns, self.spec[name])}.wire(obj.{name})'}")
        wire_src = f"def _wire(obj):\n    return {{{', '.join(items)}}}"
        exec(check_src, ns)
        exec(wire_src, ns)
        return ns["_check"], ns["_wire"], called == 0

    def check(self, value: Any, path: str = "") -> T:
        return self._check(value, path)

    def check_canonical(self, value: Any, path: str = "") -> T:
        """:meth:`check` for a value parsed by ``decode(..., key_order=False)``: also refuses
        maps whose keys are not in canonical order, and floats, anywhere in it."""
        if not (self._flat and type(value) is dict and list(value) == self._order):
            _check_plain(value)
        return self._check(value, path)

    def check_fields(self, value: Any, path: str = "") -> T:
        """:meth:`check` field by field, with no generated code: the reference reading."""
        if type(value) is not dict:
            raise DecodeError(f"expected a map for {self.name}, got {_tname(value)}", path)
        if value.keys() != self._keys:
            unknown = sorted(k for k in value if k not in self.spec)
            missing = sorted(k for k in self.spec if k not in value)
            detail = []
            if unknown:
                detail.append(f"unknown field(s) {unknown}")
            if missing:
                detail.append(f"missing field(s) {missing}")
            raise DecodeError(f"{self.name}: " + "; ".join(detail), path)
        # field paths only matter in error messages: precomputed at the top level
        fields = self._top if not path else ((n, sp, f"{path}.{n}") for n, sp in self.spec.items())
        return self.cls(**{name: spec.check(value[name], where) for name, spec, where in fields})

    def wire(self, obj: T) -> dict:
        return self._wire(obj)

    def wire_fields(self, obj: T) -> dict:
        """:meth:`wire` field by field, with no generated code: the reference reading."""
        return {name: self.spec[name].wire(getattr(obj, name)) for name in self._order}

    def encode(self, obj: T) -> bytes:
        # wire() builds every map in canonical key order from checked fields: pack directly
        return pack(self._wire(obj))

    def decode(self, data: bytes, *, max_size: int = MAX_ENCODED) -> T:
        return self._check(decode(data, max_size=max_size), "")


def _tname(value: Any) -> str:
    return "nil" if value is None else type(value).__name__
