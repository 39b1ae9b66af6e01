-- luatos-sim boot environment: what the firmware sets up before it runs `main`.
--
-- Called once per boot with (H, RT): H is the host bridge (Python callables), RT the event
-- core from rt.lua. Installs the coroutine guards, print/log, require, the sandboxed io/os,
-- the string extensions and the Lua half of rtos. Python adds the other firmware modules.
local H, RT = ...

local raw_create, raw_wrap, raw_yield = coroutine.create, coroutine.wrap, coroutine.yield
local raw_running, raw_isyieldable = coroutine.running, coroutine.isyieldable
local sethook, hook, every = debug.sethook, RT.hook, RT.hook_every
local tostring, select, type, concat = tostring, select, type, table.concat

-- Coroutines -------------------------------------------------------------------------------------
-- The device runs `main` on its main Lua thread; we run it in a coroutine (so the host can
-- pause it) and hide that: from the script's point of view it is still the main thread.

-- The boot coroutine (RT.boot_co), kept in an upvalue too: these wrappers run on every yield.
local boot_co = nil

coroutine.create = function(f)
  local co = raw_create(f)
  sethook(co, hook, "", every)
  return co
end

coroutine.wrap = function(f)
  local co = coroutine.create(f)
  return function(...)
    local r = table.pack(coroutine.resume(co, ...))
    if not r[1] then error(r[2], 2) end
    return table.unpack(r, 2, r.n)
  end
end

-- A task that dies of a memory error keeps its stack (and all it allocated) for the traceback,
-- so the heap is at its cap while sys reports the error; the host lends headroom for that report
-- and takes it back at a later resume once usage is under the cap (vm.Boot._heap_lend).
local raw_resume, heap_lend, heap_recall = coroutine.resume, H.heap_lend, H.heap_recall
local MEMERR = "not enough memory"
local heap_lent = false
local function after_resume(ok, ...)
  if not ok and ... == MEMERR then heap_lent = heap_lend() end
  return ok, ...
end
coroutine.resume = function(co, ...)
  if heap_lent then heap_lent = heap_recall() end
  return after_resume(raw_resume(co, ...))
end

coroutine.running = function()
  local co, ismain = raw_running()
  if co == boot_co then return co, true end
  return co, ismain
end

coroutine.isyieldable = function()
  if raw_running() == boot_co then return false end
  return raw_isyieldable()
end

coroutine.yield = function(...)
  if raw_running() == boot_co then
    error("attempt to yield from outside a coroutine", 0)
  end
  return raw_yield(...)
end

-- print and log ----------------------------------------------------------------------------------

local emit = H.emit

local function join(first, ...)
  local n = select("#", ...)
  if n == 0 then return tostring(first) end
  local parts = { tostring(first) }
  for i = 1, n do parts[i + 1] = tostring((select(i, ...))) end
  return concat(parts, " ")
end

function print(...)
  if select("#", ...) == 0 then emit(""); return end
  emit(join(...))
end

log = {
  LOG_SILENT = 7, LOG_DEBUG = 1, LOG_INFO = 2, LOG_WARN = 3, LOG_ERROR = 4,
}
local level, style = 1, 0
local names = { SILENT = 7, DEBUG = 1, INFO = 2, WARN = 3, ERROR = 4 }

local function tag_text(tag)
  local t = type(tag)
  if t == "string" then return tag end
  if t == "number" then return tostring(tag) end
  return "(null)"
end

local function location()
  local info = debug.getinfo(3, "Sl")
  if not info then return "?" end
  return info.source:sub(2) .. ":" .. tostring(info.currentline)
end

local function make(letter, lv)
  return function(...)
    local n = select("#", ...)
    if n == 0 or level > lv then return end
    local tag = tag_text((...))
    local rest = n > 1 and join(select(2, ...)) or nil
    if style == 0 then
      emit(rest and (letter .. "/user." .. tag .. " " .. rest) or (letter .. "/user." .. tag))
    elseif style == 1 then
      local line = letter .. "/" .. location() .. " " .. tag
      emit(rest and (line .. " " .. rest) or line)
    else
      local line = letter .. "/user." .. tag .. " " .. location()
      emit(rest and (line .. " " .. rest) or line)
    end
  end
end

log.debug = make("D", 1)
log.info = make("I", 2)
log.warn = make("W", 3)
log.error = make("E", 4)
log.fatal = log.error

function log.setLevel(l)
  if type(l) == "number" and math.tointeger(l) and l >= 1 and l <= 7 then
    level = math.tointeger(l)
  elseif type(l) == "string" and names[l] then
    level = names[l]
  else
    level = 7
  end
end

function log.getLevel() return level end

function log.style(n)
  if n ~= nil then style = math.tointeger(n) or 0 end
  return style
end

-- require over the device's flat namespace --------------------------------------------------------

local find = H.find_module
local loaded = package.loaded

function require(name)
  local v = loaded[name]
  if v ~= nil then return v end
  if type(name) ~= "string" then
    error("bad argument #1 to 'require' (string expected, got " .. type(name) .. ")", 2)
  end
  local pre = package.preload[name]
  if pre then
    local r = pre(name)
    if r == nil then r = true end
    if loaded[name] == nil then loaded[name] = r end
    return loaded[name]
  end
  if #name < 1 or #name > 48 then
    error("module name '" .. name .. "' len " .. #name .. " is invalid", 2)
  end
  local src, chunkname, path = find(name)
  if src == nil then
    -- chunkname carries an explanation when the host refused the file (e.g. device bytecode)
    if chunkname then error("error loading module '" .. name .. "' from file '" .. path .. "':\n\t" .. chunkname, 2) end
    error("module '" .. name .. "' not found", 2)
  end
  local f, err = load(src, chunkname, "bt", _G)
  if not f then
    error("error loading module '" .. name .. "' from file '" .. path .. "':\n\t" .. err, 2)
  end
  local r = f(name, path)
  if r ~= nil then loaded[name] = r end
  if loaded[name] == nil then loaded[name] = true end
  return loaded[name]
end

-- rtos: the Lua half (the event core); Python adds version(), reboot(), meminfo(), ...
rtos = {
  INF_TIMEOUT = -1,
  MSG_TIMER = 1,
  receive = RT.receive,
  timer_start = RT.timer_start,
  timer_stop = RT.timer_stop,
}

-- The sandboxed filesystem ------------------------------------------------------------------------
-- Every path a script opens is a device path ("/update.bin", "/luadb/main.lua"); the host maps it
-- into the device's own folder and refuses anything else.

local raw_open, raw_lines, raw_remove, raw_rename = io.open, io.lines, os.remove, os.rename
local map = H.map_path

io.open = function(path, mode)
  mode = mode or "r"
  local host, err = map(path, mode)
  if not host then return nil, err, 2 end
  return raw_open(host, mode)
end

io.lines = function(path, ...)
  if path == nil then return raw_lines() end
  local host, err = map(path, "r")
  if not host then error(err, 2) end
  return raw_lines(host, ...)
end

os.remove = function(path)
  local host, err = map(path, "w")
  if not host then return nil, err, 2 end
  return raw_remove(host)
end

os.rename = function(a, b)
  local ha, ea = map(a, "w")
  if not ha then return nil, ea, 2 end
  local hb, eb = map(b, "w")
  if not hb then return nil, eb, 2 end
  return raw_rename(ha, hb)
end

io.popen, io.tmpfile = nil, nil
io.input, io.output = nil, nil
os.execute, os.exit, os.getenv, os.tmpname = nil, nil, nil, nil
io.stdin, io.stdout, io.stderr = nil, nil, nil
dofile, loadfile = nil, nil
-- No host files or native libraries through package either: require resolves device paths only.
package.loadlib, package.searchpath = nil, nil
package.path, package.cpath = "", ""

-- os time on the virtual clock
local raw_date, raw_time = os.date, os.time
local epoch = H.epoch_at_power_on
local get_now = RT.get_now
os.time = function(t)
  if t ~= nil then return raw_time(t) end
  return epoch + get_now() // 1000
end
os.date = function(fmt, t)
  return raw_date(fmt or "%c", t or (epoch + get_now() // 1000))
end
os.clock = function() return get_now() / 1000 end
-- rtc.set moves the clock: the epoch second that virtual time 0 corresponds to.
function RT.set_epoch(e) epoch = e end

-- Lua 5.1/5.2 compatibility ------------------------------------------------------------------------
-- The firmware's Lua 5.3 is built with the 5.1 and 5.2 compatibility options (docs/defaults.md):
-- unpack, loadstring, table.maxn, package.loaders, math.pow/log10 (and the 5.2 math extras) and
-- the bit32 library exist, and the vendor's own libraries use them.

unpack = table.unpack
loadstring = load
package.loaders = package.searchers

do
  local floor, huge, tointeger, log, exp = math.floor, math.huge, math.tointeger, math.log, math.exp
  local function checknum(v, n, fname)
    local x = tonumber(v)
    if x == nil then
      error("bad argument #" .. n .. " to '" .. fname .. "' (number expected, got " ..
        (v == nil and "no value" or type(v)) .. ")", 3)
    end
    return x
  end
  function math.pow(x, y) return checknum(x, 1, "pow") ^ checknum(y, 2, "pow") end
  function math.log10(x) return log(checknum(x, 1, "log10"), 10) end
  function math.ldexp(m, e) return checknum(m, 1, "ldexp") * 2.0 ^ checknum(e, 2, "ldexp") end
  function math.frexp(x)
    x = checknum(x, 1, "frexp") + 0.0
    if x == 0 or x ~= x or x == huge or x == -huge then return x, 0 end
    local e = floor(log(x < 0 and -x or x, 2)) + 1
    local m = x / 2.0 ^ e
    if m >= 1 or m <= -1 then m, e = m / 2, e + 1 end  -- rounding at a power of two
    if m < 0.5 and m > -0.5 then m, e = m * 2, e - 1 end
    return m, e
  end
  function math.cosh(x) x = checknum(x, 1, "cosh"); return (exp(x) + exp(-x)) / 2 end
  function math.sinh(x) x = checknum(x, 1, "sinh"); return (exp(x) - exp(-x)) / 2 end
  function math.tanh(x)
    x = checknum(x, 1, "tanh")
    if x > 20 then return 1.0 elseif x < -20 then return -1.0 end
    local a, b = exp(x), exp(-x)
    return (a - b) / (a + b)
  end

  function table.maxn(t)
    if type(t) ~= "table" then
      error("bad argument #1 to 'maxn' (table expected, got " ..
        (t == nil and "no value" or type(t)) .. ")", 2)
    end
    local max = 0
    for k in pairs(t) do
      if type(k) == "number" and k > max then max = k end
    end
    return max
  end

  -- bit32: unsigned 32-bit results, arguments taken modulo 2^32 (Lua 5.2's library).
  local MASK = 0xFFFFFFFF
  local function u(v, n, fname)
    local x = checknum(v, n, fname)
    local i = tointeger(x)
    if i == nil then
      if x ~= x or x == huge or x == -huge then i = 0 else i = tointeger(floor(x)) or 0 end
    end
    return i & MASK
  end
  local bit32 = {}
  function bit32.band(...)
    local r = MASK
    for i = 1, select("#", ...) do r = r & u((select(i, ...)), i, "band") end
    return r
  end
  function bit32.bor(...)
    local r = 0
    for i = 1, select("#", ...) do r = r | u((select(i, ...)), i, "bor") end
    return r
  end
  function bit32.bxor(...)
    local r = 0
    for i = 1, select("#", ...) do r = r ~ u((select(i, ...)), i, "bxor") end
    return r
  end
  function bit32.btest(...) return bit32.band(...) ~= 0 end
  function bit32.bnot(x) return (~u(x, 1, "bnot")) & MASK end
  local function shift(x, disp)
    if disp <= -32 or disp >= 32 then return 0 end
    if disp >= 0 then return (x << disp) & MASK end
    return x >> -disp
  end
  function bit32.lshift(x, d) return shift(u(x, 1, "lshift"), checknum(d, 2, "lshift") // 1) end
  function bit32.rshift(x, d) return shift(u(x, 1, "rshift"), -(checknum(d, 2, "rshift") // 1)) end
  function bit32.arshift(x, d)
    x, d = u(x, 1, "arshift"), checknum(d, 2, "arshift") // 1
    if d < 0 or (x & 0x80000000) == 0 then return shift(x, -d) end
    if d >= 32 then return MASK end
    return ((x >> d) | (MASK << (32 - d))) & MASK
  end
  function bit32.lrotate(x, d)
    x, d = u(x, 1, "lrotate"), (checknum(d, 2, "lrotate") // 1) % 32
    return ((x << d) | (x >> (32 - d))) & MASK
  end
  function bit32.rrotate(x, d)
    x, d = u(x, 1, "rrotate"), (checknum(d, 2, "rrotate") // 1) % 32
    return ((x >> d) | (x << (32 - d))) & MASK
  end
  local function field(f, w, fname)
    f = checknum(f, 2, fname) // 1
    w = w == nil and 1 or checknum(w, 3, fname) // 1
    if f < 0 then error("bad argument #2 to '" .. fname .. "' (field cannot be negative)", 3) end
    if w <= 0 then error("bad argument #3 to '" .. fname .. "' (width must be positive)", 3) end
    if f + w > 32 then error("trying to access non-existent bits", 3) end
    return f, w
  end
  function bit32.extract(n, f, w)
    n = u(n, 1, "extract")
    f, w = field(f, w, "extract")
    return (n >> f) & ((1 << w) - 1)
  end
  function bit32.replace(n, v, f, w)
    n, v = u(n, 1, "replace"), u(v, 2, "replace")
    f, w = field(f, w, "replace")
    local m = ((1 << w) - 1) << f
    return ((n & ~m) | ((v << f) & m)) & MASK
  end
  _G.bit32 = bit32
  package.loaded.bit32 = bit32
end

-- String extensions --------------------------------------------------------------------------------

local byte, char, format, gsub = string.byte, string.char, string.format, string.gsub

-- These are C functions on the device: a wrong argument names them, not gsub (level 3: the
-- caller of the extension).
local function check_string(v, n, fname)
  local t = type(v)
  if t == "string" then return v end
  if t == "number" then return tostring(v) end  -- luaL_checklstring converts numbers
  error("bad argument #" .. n .. " to '" .. fname .. "' (string expected, got " .. t .. ")", 3)
end

function string.toHex(s, sep)
  s = check_string(s, 1, "toHex")
  sep = sep or ""
  local h = gsub(s, ".", function(c) return format("%02X", byte(c)) .. sep end)
  return h, #h
end

function string.fromHex(s)
  s = check_string(s, 1, "fromHex")
  s = gsub(s, "[^%x]", "")
  return (gsub(s, "%x%x", function(x) return char(tonumber(x, 16)) end))
end

function string.split(s, delim, keep_empty)
  local out = {}
  if s == nil or #s == 0 then return out end
  delim = delim or ","
  local start = 1
  while true do
    local i, j = string.find(s, delim, start, true)
    if not i then
      local last = s:sub(start)
      if keep_empty or #last > 0 then out[#out + 1] = last end
      break
    end
    local piece = s:sub(start, i - 1)
    if keep_empty or #piece > 0 then out[#out + 1] = piece end
    start = j + 1
  end
  return out
end

-- urlEncode as the firmware's lstrlib does it: letters, digits and . - * _ stay, a space
-- becomes "+", every other byte %XX (uppercase).
function string.urlEncode(s)
  s = check_string(s, 1, "urlEncode")
  return (gsub(s, "[^%w%.%-%*_ ]", function(c) return format("%%%02X", byte(c)) end)
    :gsub(" ", "+"))
end

-- toValue("123") -> "\1\2\3", 3: every decimal digit becomes the byte of its value.
function string.toValue(s)
  s = check_string(s, 1, "toValue")
  local out = gsub(s, "%d", function(d) return char(byte(d) - 48) end)
  return out, #out
end

function string.startsWith(s, p)
  s, p = check_string(s, 1, "startsWith"), check_string(p, 2, "startsWith")
  return s:sub(1, #p) == p
end
function string.endsWith(s, p)
  s, p = check_string(s, 1, "endsWith"), check_string(p, 2, "endsWith")
  return #p == 0 or s:sub(-#p) == p
end
function string.trim(s)
  s = check_string(s, 1, "trim")
  return (s:gsub("^%s+", ""):gsub("%s+$", ""))
end

-- Firmware module tables: a missing function fails like a nil call on the device, and the host
-- remembers which module.function it was so the error can say "not emulated".
local note_miss = H.note_miss
function RT.firmware_table(name, t)
  return setmetatable(t or {}, {
    __index = function(_, k)
      note_miss(name, k)
      return nil
    end,
  })
end
RT.firmware_table("rtos", rtos)
RT.firmware_table("log", log)

-- Firmware modules built on first use (modules/__init__.py, LAZY): the global is the module's
-- table from the start (type, pairs(_G), identity as usual), and the host builds the binding
-- into that same table the first time the script indexes it, assigns to it, iterates it or
-- takes its length. A boot that never uses camera never pays for camera's binding.
-- Until its binding is built: lazy[t] = the binding that fills table t, waiting[binding] =
-- {global name = t}, pending[global name] = t.
local lazy, waiting, pending = {}, {}, {}
local build_binding = H.build_binding

-- Runs on the thread that touched the module (often a task): only the few instructions
-- that hand over to the host, which builds on the main state (RT.build_on_main).
local function build(t)
  local binding = lazy[t]
  if binding ~= nil then build_binding(binding) end
end

local lazy_mt = {
  __index = function(t, k) build(t); return t[k] end,
  __newindex = function(t, k, v) build(t); t[k] = v end,
  __pairs = function(t) build(t); return next, t, nil end,
  __len = function(t) build(t); return #t end,
}

-- Give the global `name` its (empty) table now; `binding` fills it on first use.
function RT.lazy_module(name, binding)
  local t = setmetatable({}, lazy_mt)
  lazy[t] = binding
  local globals = waiting[binding]
  if globals == nil then globals = {}; waiting[binding] = globals end
  globals[name] = t
  pending[name] = t
  _G[name] = t
end

-- The table a binding installs into: the lazy global's own table while it waits (even if the
-- script has since assigned something else to the global, as it would after an eager install).
function RT.module_table(name)
  local t = pending[name]
  if t ~= nil then return t, true end
  return rawget(_G, name), false
end

-- Build the binding behind global `name` now (mark_absent looks at a module's fields).
function RT.build_now(name)
  local t = pending[name]
  if t ~= nil then build(t) end
end

-- The host's half of a build, on the main state: `install(binding)` fills the waiting tables,
-- which then become ordinary firmware tables. The count hook charges nothing meanwhile
-- (RT.host_setup): building is the firmware's own setup, as an install before main is.
local function finish_build(install, binding)
  local globals = waiting[binding]
  if globals == nil then return end
  install(binding)
  waiting[binding] = nil
  for name, t in pairs(globals) do
    lazy[t], pending[name] = nil, nil
    RT.firmware_table(name, t)
  end
end
function RT.build_on_main(install, binding)
  -- Raised first and lowered last: the bookkeeping around install is setup too, and on a
  -- script at one instruction per ms even a few dozen instructions a module add up.
  RT.host_setup = RT.host_setup + 1
  local ok, err = pcall(finish_build, install, binding)
  RT.host_setup = RT.host_setup - 1
  if not ok then error(err, 0) end
end

-- What the model's firmware has but the emulator does not install (a whole module such as
-- i2c, or a function such as io.dexist): the first access names it once ("[luatos-sim] i2c is
-- not emulated"), then the value is nil and the script meets the Lua error it meets.
-- globals: set of global names; fields: module name -> set of function names.
function RT.mark_absent(globals, fields, note)
  local noted = {}
  local function once(label)
    if not noted[label] then
      noted[label] = true
      note(label)
    end
  end
  local function guard(t, names, prefix)
    local mt = getmetatable(t)
    if mt == nil then mt = {}; setmetatable(t, mt) end
    local old = mt.__index
    mt.__index = function(tbl, k)
      if names[k] then once(prefix .. k) end
      if old == nil then return nil end
      if type(old) == "function" then return old(tbl, k) end
      return old[k]
    end
  end
  if next(globals) ~= nil then guard(_G, globals, "") end
  for name, names in pairs(fields) do
    local t = rawget(_G, name)
    if type(t) == "table" then guard(t, names, name .. ".") end
  end
end

-- The boot coroutine that runs `main`
function RT.start_main(main_fn)
  local co = raw_create(main_fn)
  sethook(co, hook, "", every)
  RT.boot_co = co
  boot_co = co
  return co
end

-- Firmware callbacks (a socket's callback, http's progress callback) run on the main state, as
-- the firmware calls them from its message loop (Python re-binds them there: cfunc.main_state).
-- The count hook covers them too, but only while the boot coroutine is active underneath them
-- ("normal"): between steps, the host's own calls into Lua are not device code.
local co_status = coroutine.status
RT.host_setup = 0  -- >0 while the host builds a binding on the main state (RT.build_on_main)
sethook(function()
  if boot_co ~= nil and RT.host_setup == 0 and co_status(boot_co) == "normal" then hook() end
end, "", every)

local PAUSE = RT.PAUSE
function RT.step()
  local co = RT.boot_co
  local ok, a, b = coroutine.resume(co)
  if not ok then return "error", a end
  if coroutine.status(co) == "dead" then return "exit" end
  if a == PAUSE then return "pause", b end
  return "yield"
end

return RT
