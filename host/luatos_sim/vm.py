"""One boot of the device: a fresh Lua 5.3 VM over the device's persistent state.

The VM runs ``main`` in a boot coroutine so the host can pause it at a deadline and resume it
later (virtual time stands still meanwhile). Everything the firmware does asynchronously enters
the VM through the event core's queue (``RT.post``), never by calling Lua from another thread.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import lupa.lua53 as lua53

from .cfunc import c_function, error_message
from .lifecycle import (
    BootOutcome,
    BootReason,
    Crashed,
    Halted,
    Paused,
    ResetDetail,
    Returned,
    StepResult,
)
from .lua_text import lua_str, py_str
from .scripts import ScriptError, ScriptImage, check_bytecode

if TYPE_CHECKING:
    from .device import Device, DeviceOptions

_LUA_DIR = Path(__file__).parent / "lua"
_RT_SRC = (_LUA_DIR / "rt.lua").read_bytes()
_BOOT_SRC = (_LUA_DIR / "boot.lua").read_bytes()

_MAIN_SRC = b"""
local H = ...
return function()
  sys = require "sys"
  sysplus = require "sysplus"
  local src, chunk, path = H.find_module("main")
  if src == nil then
    if chunk then error(chunk, 0) end
    error("module 'main' not found", 0)
  end
  local f, err = load(src, chunk, "bt", _G)
  if not f then error(err, 0) end
  return f()
end
"""


_COMPILED: dict[bytes, bytes] = {}
_compile_lock = threading.Lock()
_compiler: list[Any] = []


def compiled(src: bytes) -> bytes:
    """``src`` as a Lua binary chunk, parsed once per process.

    Every boot runs the same emulator Lua (rt.lua, boot.lua, the bindings' Lua halves), and
    parsing it anew was about 0.8 ms of each boot. The chunk keeps lupa's chunk name and the
    line numbers, so an error inside it reads exactly as from source."""
    chunk = _COMPILED.get(src)
    if chunk is None:
        with _compile_lock:
            if not _compiler:
                _compiler.append(lua53.LuaRuntime(encoding=None).eval(
                    "function(s) return string.dump(assert(load(s, '<python>'))) end"))
            chunk = _COMPILED[src] = _compiler[0](src)
    return chunk


class BootHalted(Exception):
    """Raised into Lua when a halted boot calls back into the firmware."""


class Boot:
    """A single boot: VM, firmware modules, and the boot coroutine running ``main``.

    This class is also the seam between a binding (modules/) and the rest of the emulator. A
    binding uses only: ``profile``, ``options``, ``number``, ``reason``, ``last_reset``,
    ``platform`` (the device's parts), ``now``, ``lua``/``G``/``H``/``RT``/``lua_type``,
    ``table``, ``firmware_module``, ``lua_function``, ``post``, ``post_at``,
    ``post_from_thread``, ``begin_io``/``end_io``, ``watch``, ``io_sync_hooks``, ``on_idle``,
    ``closers``, ``sys_pub``, ``sys_send``, ``new_cw``, ``cw_fail``, ``log_c``, ``note``,
    ``trace``, ``halt``, ``objects`` (firmware userdata types). It never touches ``device``
    (that is the lifecycle's side: docs/architecture.md, "The seam").
    """

    def __init__(self, device: Device, number: int, reason: BootReason, start_ms: int) -> None:
        self.device = device
        self.profile = device.profile
        self.options: DeviceOptions = device.options
        self.platform = device.platform
        self.number = number
        self.reason = reason
        self.last_reset = device.last_reset  # what pm.lastReson() reports
        self.halted: tuple[BootOutcome, ResetDetail] | None = None
        self.host_interrupt: BaseException | None = None  # Ctrl-C met inside a firmware call
        self.busy_limit = device.options.busy_loop_instructions
        heap = device.options.lua_heap if device.options.lua_heap is not None \
            else self.profile.lua_heap
        self.lua = lua53.LuaRuntime(encoding=None, unpack_returned_tuples=True,
                                    register_eval=False, register_builtins=False,
                                    max_memory=heap or None)
        self._heap_cap = heap or 0
        self._heap_loaned = False
        self.G = self.lua.globals()
        self.io_lock = threading.Lock()
        self._io_inbox: list[tuple[Callable[..., None], tuple[Any, ...]]] = []
        self._io_event = threading.Event()
        self._last_miss: tuple[str, str] | None = None
        self.cw_counter = 0
        self.on_idle: list[Callable[[], bool]] = []  # return True when something was posted
        self.closers: list[Callable[[], None]] = []  # called when the boot ends
        # Called before virtual time moves while RT.watch > 0 (open sockets): each hook makes
        # sure data already received by a reader thread has gone through post_from_thread.
        self.io_sync_hooks: list[Callable[[], None]] = []

        self.image = ScriptImage(device.image_files(), device.lib_layers(), device.fs_root)
        H = self.lua.table()
        self.H = H
        H.emit = self._emit
        H.find_module = self._find_module
        H.map_path = device.platform.fs.map_path
        H.epoch_at_power_on = device.platform.rtc.epoch_at_power_on
        H.note_miss = self._note_miss
        H.idle = self._idle
        H.io_poll = self._io_poll
        H.io_wait = self._io_wait
        H.io_sync = self._io_sync
        H.busy_loop = self._busy_loop
        H.fire = self._fire
        H.wdt_expired = lambda: None  # wdt's binding puts its check here
        H.build_binding = self._build_binding
        self._events: dict[int, tuple[Callable[..., Any], tuple[Any, ...]]] = {}
        self._event_keys = 0
        H.c_error = self._c_error
        H.heap_lend = self._heap_lend
        H.heap_recall = self._heap_recall
        H.halted_error = self.lua.eval(
            "setmetatable({}, {__tostring = function() return 'device rebooted' end})")
        self.RT = self.execute(_RT_SRC, H)
        self.execute(_BOOT_SRC, H, self.RT)
        # lupa returns garbage when Python *reads* a Lua table wrapper made on the main thread
        # while a coroutine runs, so everything Python needs during a boot is bound here, once,
        # as a Lua function (calls are safe from any context).
        (self._get_now, self._rt_post, self._rt_post_at, self._io_add, self._pub, self._send,
         self._cw, self._watch_add) = self.execute(b"""
          local RT = ...
          return RT.get_now, RT.post, RT.post_at, RT.add_io,
            function(...) return sys_pub(...) end,
            function(...) return sys_send(...) end,
            function(...) return sys_cw(...) end,
            RT.add_watch
        """, self.RT)
        self.lua_type = self.G.type
        # Firmware functions are C functions on the device: type(f) == "function". lupa shows a
        # Python callable as userdata, so each one is wrapped in a Lua closure, which also
        # refuses to run once the boot has halted (no Lua after a reboot, whatever pcalls).
        self._lua_wrap, self._install_table = self.execute(b"""
          local RT, H = ...
          local type, error, pcall = type, error, pcall
          local halted_error, c_error = H.halted_error, H.c_error
          -- A C function's error is a string carrying the caller's position (luaL_error); lupa
          -- would hand Lua the Python exception object instead.
          local function finish(ok, ...)
            if ok then return ... end
            if RT.halted then error(halted_error, 0) end
            local e = ...
            if type(e) ~= "userdata" then error(e, 0) end  -- a Lua value raised by Lua code
            local text, where = c_error(e)
            if text == nil then error(e, 0) end  -- Ctrl-C and the like: on to the host as is
            error(text, where and 2 or 0)  -- finish is tail-called: level 2 is the script
          end
          local function wrap(f)
            return function(...)
              if RT.halted then error(halted_error, 0) end
              return finish(pcall(f, ...))
            end
          end
          local module_table, rawset = RT.module_table, rawset
          local function install(name, funcs, consts)
            local t, waiting = module_table(name)
            if t == nil then t = RT.firmware_table(name) end
            for k, f in pairs(funcs) do rawset(t, k, wrap(f)) end
            if consts then for k, v in pairs(consts) do rawset(t, k, v) end end
            if not waiting then _G[name] = t end
            return t
          end
          return wrap, install
        """, self.RT, H)
        self._tostring = self.G.tostring
        # A Lua value re-read through the main state (see cfunc.c_function's main_state).
        self.main_state = self.lua.eval("function(v) return v end")
        self._set_now = self.RT.set_now
        self.set_deadline = self.RT.set_deadline
        self._set_now(start_ms)
        self.set_deadline(start_ms)
        self.RT.budget_max = max(1, self.busy_limit // 1000) if self.busy_limit else 0
        self.RT.budget = self.RT.budget_max
        rate = device.options.lua_instructions_per_ms
        self.RT.set_rate(self.profile.lua_instructions_per_ms if rate is None else rate)

        from .objects import FirmwareObjects
        self.objects = FirmwareObjects(self)  # firmware userdata types (zbuff, socket, ...)

        self._lazy_module, self._build_on_main, self._build_now = (
            self.RT.lazy_module, self.RT.build_on_main, self.RT.build_now)
        self.platform.begin_boot(self.profile.modules)
        from .modules import install_modules
        install_modules(self)
        self._mark_absent()

        main_fn = self.execute(_MAIN_SRC, H)
        self.RT.start_main(main_fn)

    # -- helpers for firmware modules -----------------------------------------------------------

    def table(self, *items: Any, **fields: Any) -> Any:
        """A Lua table; str keys and values become Lua strings."""
        t = self.lua.table()
        for i, v in enumerate(items, 1):
            t[i] = lua_str(v) if isinstance(v, str) else v
        for k, v in fields.items():
            t[lua_str(k)] = lua_str(v) if isinstance(v, str) else v
        return t

    def firmware_module(self, name: str, functions: dict[str, Any],
                        constants: dict[str, Any] | None = None) -> Any:
        """Install a firmware (C) module table (one Lua call for the whole table).

        Only the functions the model's firmware has (``profile.api[name]``) are installed: a
        binding may implement more than one model's surface, and a function the model lacks
        stays nil, as on the device. Names starting with ``_`` are the binding's own plumbing
        (its Lua half removes them) and always go in."""
        surface = self.profile.api.get(name)
        funcs = self.lua.table_from({
            lua_str(k): c_function(fn, k, self.main_state) for k, fn in functions.items()
            if callable(fn) and (surface is None or k in surface or k.startswith("_"))})
        consts = {lua_str(k): (lua_str(v) if isinstance(v, str) else v) for k, v in functions.items()
                  if not callable(v)}
        consts.update({lua_str(k): (lua_str(v) if isinstance(v, str) else v)
                       for k, v in (constants or {}).items()})
        return self._install_table(lua_str(name), funcs, self.lua.table_from(consts) if consts else None)

    def execute(self, src: bytes, *args: Any) -> Any:
        """Run a chunk of the emulator's own Lua in this VM (``lua.execute``, but parsed once
        per process: :func:`compiled`)."""
        return self.lua.execute(compiled(src), *args)

    def lazy_module(self, name: str, binding: str) -> None:
        """The global ``name`` gets its module table now; the binding registered as
        ``binding`` (modules.MODULES) is built into it when the script first uses it."""
        self._lazy_module(lua_str(name), lua_str(binding))

    def _build_binding(self, binding: bytes) -> None:
        # Called from Lua on whatever thread touched the module (often a task's coroutine):
        # the build itself runs on the main state (RT.build_on_main), where lupa reads Lua
        # tables reliably and the values it hands back are not tied to a task's stack.
        # A halted boot builds nothing (its Lua may still run inside a pcall after a reboot).
        if self.halted is not None:
            raise BootHalted("device rebooted")
        self._build_on_main(self._install_binding, binding)

    def _install_binding(self, binding: bytes) -> None:
        from .modules import install_binding
        install_binding(self, py_str(binding))

    def lua_function(self, fn: Callable[..., Any], name: str | None = None) -> Any:
        """A Lua function calling ``fn`` (for tables installed by hand, e.g. io extras); ``name``
        is what a bad-argument error calls it."""
        return self._lua_wrap(c_function(fn, name, self.main_state))

    _guard = lua_function

    @property
    def now(self) -> int:
        return self._get_now()

    @now.setter
    def now(self, value: int) -> None:
        self._set_now(int(value))

    def post(self, delay_ms: int, fn: Callable[..., Any], *args: Any) -> None:
        """Run ``fn(*args)`` from the device's event loop ``delay_ms`` from now (VM thread only).
        ``fn`` and ``args`` stay in Python; the event queue holds an integer key."""
        self._rt_post(int(delay_ms), self._keep(fn, args))

    def post_at(self, due_ms: int, fn: Callable[..., Any], *args: Any) -> None:
        self._rt_post_at(int(due_ms), self._keep(fn, args))

    def _keep(self, fn: Callable[..., Any], args: tuple[Any, ...]) -> int:
        self._event_keys += 1
        self._events[self._event_keys] = (fn, args)
        return self._event_keys

    def _fire(self, key: int) -> None:
        fn, args = self._events.pop(key)
        fn(*args)

    def post_from_thread(self, fn: Callable[..., Any], *args: Any) -> None:
        """Thread-safe: deliver ``fn(*args)`` into the event loop at the next receive."""
        with self.io_lock:
            self._io_inbox.append((fn, args))
        self._io_event.set()

    def wait_io_arrival(self, timeout_s: float) -> bool:
        """Thread-safe wait (bounded) until something is posted from a thread; True if so."""
        return self._io_event.wait(timeout_s)

    def begin_io(self) -> None:
        """Real I/O started whose completion will arrive through post_from_thread."""
        self._io_add(1)

    def end_io(self) -> None:
        self._io_add(-1)

    def watch(self, delta: int) -> None:
        """Count of open host sockets (+1 on open, -1 on close): while >0 the event loop calls
        ``io_sync_hooks`` before virtual time moves, so received data is never skipped over."""
        self._watch_add(delta)

    def sys_pub(self, *args: Any) -> None:
        self._pub(*args)

    def sys_send(self, *args: Any) -> Any:
        return self._send(*args)

    def new_cw(self) -> tuple[bytes, Any]:
        """What an async C API does: make a topic, call ``sys_cw(topic)``, return both."""
        self.cw_counter += 1
        topic = b"\x01" + self.cw_counter.to_bytes(8, "little")
        return topic, self._cw(topic)

    def cw_fail(self, *results: Any) -> Any:
        """An async call that fails at once: ``sys_cw(nil, results...)``."""
        return self._cw(None, *results)

    def log_c(self, level: str, tag: str, text: str) -> None:
        """A firmware (C) log line, ``luat:<level>(ms):<tag>:<text>``."""
        self.device.emit_c(level, tag, text, self.now)

    def _mark_absent(self) -> None:
        """Name what the model's firmware has but no binding installed (profile.absent_api)."""
        G, lua = self.G, self.lua
        rawget = G.rawget
        globals_, fields = lua.table(), lua.table()
        for module, names in self.profile.absent_api.items():
            t = rawget(G, lua_str(module))
            if t is None:
                globals_[lua_str(module)] = True
            elif names and self.lua_type(t) == b"table":
                self._build_now(lua_str(module))  # its fields are looked at, not used
                missing = [n for n in names if rawget(t, lua_str(n)) is None]
                if missing:
                    fields[lua_str(module)] = lua.table_from({lua_str(n): True for n in missing})
        p = self.profile

        def note(label: bytes) -> None:
            self.note(f"{py_str(label)} is not emulated by luatos-sim (model {p.model}, core "
                      f"{p.core}); it is nil here, so the script fails as it would without it")
        self.RT.mark_absent(globals_, fields, note)

    def note(self, text: str) -> None:
        """An emulator diagnostic (``[luatos-sim] ...``), not a device line."""
        self.device.emit_sim(text, self.now)

    def trace(self, kind: str, **detail: Any) -> None:
        """A trace event (``dev.trace``) for tests and reports."""
        self.device.trace_event(kind, **detail)

    def get_now(self) -> int:
        return int(self._get_now())

    def set_now(self, value: int) -> None:
        self._set_now(int(value))

    def halt(self, outcome: BootOutcome, detail: ResetDetail = ResetDetail.SOFTWARE) -> None:
        """End this boot at once (reboot, watchdog, deep sleep, power off). No further Lua
        runs; the device decides what follows when the step returns."""
        if self.halted is None:
            self.halted = (outcome, detail)
            self.RT.halted = True

    # -- bridge callbacks -------------------------------------------------------------------------

    def _c_error(self, err: Any) -> tuple[bytes | None, bool]:
        found = error_message(err)
        if found is None:
            # Ctrl-C (or SystemExit) arrived inside a firmware call. A script's pcall or sys's
            # coroutine.resume would take it for a device error and carry on, so stop this
            # boot's Lua now and hand the exception to the host when the step returns.
            self.host_interrupt = err
            self.halt(BootOutcome.INTERRUPTED, ResetDetail.POWER_ON)
            return None, False
        return found[0].encode(), found[1]

    def _emit(self, line: bytes) -> None:
        if self.halted is not None:
            raise BootHalted("device rebooted")
        self.device.emit_lua(py_str(line), self.now, self)

    def _find_module(self, name: bytes) -> tuple[Any, ...]:
        n = py_str(name)
        try:
            found = self.image.find(n)
        except ScriptError as e:
            return (None, lua_str(str(e)), b"?")
        if found is None:
            return (None,)
        problem = check_bytecode(found.source, found.path)
        if problem:
            return (None, lua_str(problem), lua_str(found.path))
        return (found.source, lua_str(found.chunkname), lua_str(found.path))

    def _note_miss(self, module: bytes, key: Any) -> None:
        self._last_miss = (py_str(module), py_str(key))

    def last_missing(self) -> tuple[str, str] | None:
        return self._last_miss

    def _idle(self) -> str:
        for cb in list(self.on_idle):
            if cb():
                return "continue"
        return "pause"

    def _io_poll(self) -> None:
        if not self._io_inbox:
            return
        with self.io_lock:
            inbox, self._io_inbox = self._io_inbox, []
            self._io_event.clear()
        for fn, args in inbox:
            self.post(0, fn, *args)

    def _io_wait(self, virtual_gap_ms: int) -> bool:
        """Wait in wall time for real I/O, bounded; True when something arrived."""
        grace = self.device.options.io_grace_ms / 1000.0
        if self._io_event.wait(grace):
            self._io_poll()
            return True
        return False

    def _io_sync(self) -> bool:
        for hook in list(self.io_sync_hooks):
            hook()
        if self._io_inbox:
            self._io_poll()
            return True
        return False

    def _heap_lend(self) -> bool:
        """A task died of a memory error: lend headroom so its error report can run.

        The dead task's stack keeps everything it allocated alive (``debug.traceback(co)``
        needs it), so the heap can sit a few bytes under the cap and the report sys makes
        (concatenation, traceback, log, the roll-back timer) would fail in the main chunk
        instead: an out-of-memory in a task must read like any task error. True while lent.
        """
        reserve = self.options.oom_report_reserve
        if not self._heap_cap or reserve <= 0:
            return False
        used = self.lua.get_memory_used()
        if self._heap_cap - used >= reserve:
            return self._heap_loaned
        self.lua.set_max_memory(used + reserve)
        self._heap_loaned = True
        return True

    def _heap_recall(self) -> bool:
        """Put the cap back once usage is under it again; True while the loan stands."""
        if self._heap_loaned and self.lua.get_memory_used() < self._heap_cap:
            self.lua.set_max_memory(self._heap_cap)
            self._heap_loaned = False
        return self._heap_loaned

    def _busy_loop(self) -> None:
        self.device.emit_sim(
            f"Lua ran more than {self.busy_limit} instructions without yielding (a busy loop?); "
            "the device's watchdog would reset it", self.now)
        self.halt(BootOutcome.WATCHDOG, ResetDetail.WATCHDOG)

    # -- running ----------------------------------------------------------------------------------

    def step(self, deadline_ms: int) -> StepResult:
        """Run until the deadline, an idle pause, or the end of the boot."""
        self.set_deadline(deadline_ms)
        t0 = time.perf_counter()
        try:
            result = self.RT.step()
            status, detail = result if isinstance(result, tuple) else (result, None)
        except lua53.LuaMemoryError:
            status, detail = "error", b"not enough memory"
        self.device.wall_in_vm += time.perf_counter() - t0
        if self.host_interrupt is not None:
            raise self.host_interrupt
        if self.halted is not None:
            return Halted(*self.halted)
        status = py_str(status)
        if status == "pause":
            return Paused(idle=py_str(detail) == "idle")
        if status == "exit":
            return Returned()
        return Crashed(detail)

    def close(self) -> None:
        self.objects.close()
        for c in self.closers:
            try:
                c()
            except Exception:  # noqa: BLE001 - closing must not mask the boot's own outcome
                pass
        self.closers.clear()

    def error_text(self, err: Any) -> str:
        if isinstance(err, bytes):
            return py_str(err)
        if isinstance(err, lua53.LuaError):
            # A Lua error that crossed a Python handler (e.g. a socket callback): lupa wrapped
            # it and appended its own traceback. The device prints only the Lua message
            # (behaviour.md §2.5 B).
            raw = err.args[0] if err.args else ""
            text = py_str(raw) if isinstance(raw, bytes) else str(raw)
            cut = text.rfind("\nstack traceback:")
            return text[:cut] if cut >= 0 else text
        if isinstance(err, BaseException):
            return f"{type(err).__name__}: {err}"
        try:
            return py_str(self._tostring(err))
        except Exception:  # noqa: BLE001
            return repr(err)


