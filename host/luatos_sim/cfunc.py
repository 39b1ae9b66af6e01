"""Python callables made to behave like the firmware's C functions at the Lua boundary.

A script meets three C-function habits the emulator has to copy: extra arguments are ignored, a
number where a string goes is converted (``luaL_checklstring``: ``crypto.md5(5)`` hashes "5"), and
a wrong argument raises ``bad argument #n to 'name' (string expected, got nil)``. Python would instead
raise ``TypeError: object supporting the buffer API required``, which a firmware author cannot
map back to their call. The argument types come from each implementation's own annotations, and
they are consulted only after the call failed, so an annotation never refuses a call that works.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import lupa.lua53 as lua53


class BadArgument(TypeError):
    """Raised into Lua with the exact text a C function's luaL_argerror would give."""


@dataclass(frozen=True, slots=True)
class _Param:
    kind: str | None  # "string", "integer", "number" or None (not checked)
    nullable: bool    # annotated "| None": nil is a meaning, not a mistake
    has_default: bool  # "no value" is fine (Python used the default)


def _kind(annotation: Any) -> tuple[str | None, bool]:
    if annotation is inspect.Parameter.empty or not isinstance(annotation, str):
        return None, False
    parts = {p.strip() for p in annotation.split("|")}
    nullable = "None" in parts
    parts.discard("None")
    if parts <= {"bytes", "str", "bytes | str"} and parts:
        return "string", nullable
    if parts == {"int"}:
        return "integer", nullable
    if parts <= {"int", "float"} and parts:
        return "number", nullable
    return None, nullable


def lua_type_name(v: Any) -> str:
    if v is None:
        return "nil"
    if isinstance(v, bool):
        return "boolean"
    if isinstance(v, (int, float)):
        return "number"
    if isinstance(v, (bytes, str)):
        return "string"
    return lua53.lua_type(v) or "userdata"


_LUA_SPACE = " \t\n\v\f\r"
_LUA_INT = re.compile(r"([-+]?)(?:0[xX]([0-9a-fA-F]+)|([0-9]+))")
_LUA_DEC_FLOAT = re.compile(r"[-+]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?")
_LUA_HEX_FLOAT = re.compile(r"[-+]?0[xX](?:[0-9a-fA-F]+\.?[0-9a-fA-F]*|\.[0-9a-fA-F]+)(?:[pP][-+]?[0-9]+)?")
_INT64 = 1 << 64


def lua_str2number(text: bytes | str) -> int | float | None:
    """The number Lua 5.3 reads in a string (``lua_stringtonumber``), else None: decimal or hex
    integers (hex wraps around 64 bits, a decimal too large becomes a float), decimal and hex
    floats, surrounding spaces; never ``inf``/``nan``, underscores or ``0b``/``0o`` (which
    Python's own ``int``/``float`` accept)."""
    t = (text.decode("latin-1") if isinstance(text, bytes) else text).strip(_LUA_SPACE)
    m = _LUA_INT.fullmatch(t)
    if m is not None:
        sign, hexa, dec = m.groups()
        if hexa is not None:
            n = int(hexa, 16) % _INT64
            n = -n % _INT64 if sign == "-" else n
            return n - _INT64 if n >= 1 << 63 else n
        n = int(dec) * (-1 if sign == "-" else 1)
        if -(1 << 63) <= n < 1 << 63:
            return n
    if "n" in t or "N" in t:  # Lua refuses 'inf' and 'nan' before strtod sees them
        return None
    if _LUA_DEC_FLOAT.fullmatch(t):
        return float(t)
    if _LUA_HEX_FLOAT.fullmatch(t):
        return float.fromhex(t)
    return None


def _as_number(v: Any) -> float | int | None:
    if isinstance(v, bool):
        return None
    if isinstance(v, (int, float)):
        return v
    if isinstance(v, (bytes, str)):  # Lua converts numeric strings where a number is expected
        return lua_str2number(v)
    return None


def _problem(p: _Param, args: tuple[Any, ...], i: int) -> str | None:
    """What luaL_check* would say about argument i, or None when it is acceptable."""
    if p.kind is None:
        return None
    expected = "string" if p.kind == "string" else "number"
    if i >= len(args):
        return None if p.has_default else f"{expected} expected, got no value"
    if args[i] is None:
        # Asked only after the call failed: a nil where a typed value goes is the likely cause,
        # even when the Python side has a default (the C side may well require the argument).
        return None if p.nullable else f"{expected} expected, got nil"
    v = args[i]
    if p.kind == "string":
        if isinstance(v, (bytes, str)) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
            return None
        return f"string expected, got {lua_type_name(v)}"
    n = _as_number(v)
    if n is None:
        return f"number expected, got {lua_type_name(v)}"
    if p.kind == "integer" and lua_integer(n) is None:
        return "number has no integer representation"
    return None


def lua_number_text(v: int | float) -> bytes:
    """A number as Lua 5.3's tostring writes it (integers plain, floats "%.14g" with ".0")."""
    if isinstance(v, int):
        return str(v).encode()
    if v != v:
        return b"nan" if str(v) == "nan" else b"-nan"
    if v in (float("inf"), float("-inf")):
        return b"inf" if v > 0 else b"-inf"
    text = f"{v:.14g}"
    if all(c in "-0123456789" for c in text):
        text += ".0"
    return text.encode()


@dataclass(frozen=True, slots=True)
class _Spec:
    n: int                  # positional parameters (extra arguments are dropped)
    variadic: bool
    string_args: tuple[int, ...]  # takes bytes: a Lua number is converted, as in C
    int_args: tuple[int, ...]     # takes an int: an integral float (5.0) is that integer
    params: tuple[_Param, ...]


_SPECS: dict[tuple[Any, int], _Spec] = {}


def _spec(fn: Callable[..., Any]) -> _Spec | None:
    # Modules define their functions inside install(boot), so each boot brings new function
    # objects with the same code: cache by code object, or every boot pays inspect.signature
    # for ~160 functions (3 ms).
    code = getattr(fn, "__code__", None)
    key = (code, len(getattr(fn, "__defaults__", None) or ())) if code is not None else None
    if key is not None and key in _SPECS:
        return _SPECS[key]
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return None
    positional = [p for p in sig.parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    params = []
    for p in positional:
        kind, nullable = _kind(p.annotation)
        params.append(_Param(kind, nullable or p.default is None, p.default is not inspect.Parameter.empty))
    spec = _Spec(
        n=len(positional),
        variadic=any(p.kind is p.VAR_POSITIONAL for p in sig.parameters.values()),
        string_args=tuple(i for i, p in enumerate(params) if p.kind == "string"),
        int_args=tuple(i for i, p in enumerate(params) if p.kind == "integer"),
        params=tuple(params),
    )
    if key is not None:
        _SPECS[key] = spec
    return spec


def lua_integer(v: Any) -> int | None:
    """``lua_tointegerx``: the integer a Lua value stands for (an integer, or a float with an
    exact integer value), else None. Booleans are not numbers in Lua."""
    if isinstance(v, bool):
        return None
    if isinstance(v, int):
        return v
    if isinstance(v, float) and v.is_integer() and -(2.0 ** 63) <= v < 2.0 ** 63:
        return int(v)
    return None


def opt_integer(v: Any, default: int, argn: int, fname: str) -> int:
    """``luaL_optinteger`` for argument ``argn`` of ``fname``: nil (or no value) is ``default``;
    an integer, an integral float in range or a numeric string is its integer; anything else is
    the firmware's own bad-argument error."""
    if v is None:
        return default
    n = _as_number(v)
    if n is None:
        raise BadArgument(f"bad argument #{argn} to '{fname}' (number expected, got {lua_type_name(v)})")
    i = lua_integer(n)
    if i is None:
        raise BadArgument(f"bad argument #{argn} to '{fname}' (number has no integer representation)")
    return i


def check_integer(value: Any) -> int:
    """``luaL_checkinteger``: an integer, a float with an integer value, or a string Lua reads
    as one. Anything else fails the call, and :func:`c_function` words it as the firmware
    would (the parameter must be annotated ``int``)."""
    if isinstance(value, (bytes, str)):
        number = _as_number(value)
        value = number if number is not None else value
    integer = lua_integer(value)
    if integer is None:
        raise TypeError("integer expected")
    return integer


def require_ints(*values: Any) -> None:
    """For bindings whose firmware calls luaL_checkinteger: a value that is not an integer
    fails the call, and :func:`c_function` words it as the firmware would."""
    for v in values:
        if not isinstance(v, int) or isinstance(v, bool):
            raise TypeError("integer expected")


# lupa's base class of every Lua table/function/userdata wrapper (not exported by name).
_LuaObject: type = type(lua53.LuaRuntime().eval("{}")).__mro__[1]


def c_function(fn: Callable[..., Any], name: str | None = None,
               main_state: Callable[[Any], Any] | None = None) -> Callable[..., Any]:
    """``fn`` as the firmware would expose it (see the module docstring).

    ``main_state`` re-binds each Lua table/function argument to the VM's main state. lupa ties
    a Lua value handed to Python to the coroutine that handed it over; a callback kept and
    called later through that tie runs on the coroutine's stack while it is suspended, and the
    first count hook there kills the call with a bogus yield (issue 9 item 1). The firmware
    keeps a registry reference instead and calls back from its message loop, i.e. on the main
    state: so do we."""
    spec = _spec(fn)
    if spec is None:
        if main_state is None:
            return fn
        raw = fn

        def rebound(*args: Any) -> Any:
            return raw(*[main_state(a) if isinstance(a, _LuaObject) else a for a in args])
        return rebound
    # Every boot wraps each firmware function it builds, so the closure keeps few cells (a
    # boot's wrappers are garbage the cyclic collector has to walk when the boot is gone).
    shape = (spec.n, spec.variadic, spec.string_args, spec.int_args)

    def call(*args: Any) -> Any:
        n, variadic, string_args, int_args = shape
        if not variadic and len(args) > n:
            args = args[:n]
        if main_state is not None:
            for i, v in enumerate(args):
                if isinstance(v, _LuaObject):
                    args = (*args[:i], main_state(v), *args[i + 1:])
        for i in string_args:
            if i < len(args):
                v = args[i]
                if isinstance(v, (int, float)) and not isinstance(v, bool):
                    args = (*args[:i], lua_number_text(v), *args[i + 1:])
        for i in int_args:
            if i < len(args):
                v = args[i]
                if isinstance(v, float) and v.is_integer():
                    args = (*args[:i], int(v), *args[i + 1:])
        try:
            return fn(*args)
        except (TypeError, ValueError, AttributeError, OverflowError) as e:
            if isinstance(e, BadArgument):
                raise
            text = _explain(name, spec, args)
            if text is None:
                raise
            raise BadArgument(text) from e

    return call


def _explain(name: str | None, spec: _Spec, args: tuple[Any, ...]) -> str | None:
    """The luaL_argerror text for the first bad argument of a failed call, if any."""
    if name is None:
        return None
    for i, p in enumerate(spec.params):
        problem = _problem(p, args, i)
        if problem is not None:
            return f"bad argument #{i + 1} to '{name}' ({problem})"
    return None


def error_message(err: Any) -> tuple[str, bool] | None:
    """The text a Python error raised into Lua should carry, and whether Lua should prefix the
    caller's position (as luaL_error does). A Lua error that crossed a Python callback already
    has its position; lupa appended its own traceback, which the device would not print.
    None: not a device error at all (Ctrl-C, SystemExit): it must go on to the host as it is."""
    if isinstance(err, BaseException) and not isinstance(err, Exception):
        return None
    if isinstance(err, lua53.LuaError):
        raw = err.args[0] if err.args else ""
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)
        cut = text.rfind("\nstack traceback:")
        return (text[:cut] if cut >= 0 else text), False
    if isinstance(err, (BadArgument, TypeError, ValueError)):
        return str(err), True
    if isinstance(err, BaseException):
        return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__, True
    return str(err), True
