-- luatos-sim runtime core: the emulated firmware's event loop, in Lua for speed.
--
-- This is the C side of the device's seam (rtos.receive, rtos.timer_start, rtos.timer_stop),
-- written in Lua so that a timer event costs no Python call. Python schedules firmware
-- ("C") events into the same queue through RT.post, and is called back only for those events,
-- for real I/O and at pause points (the host's run_for/run_until deadline, or idle).
--
-- Loaded once per boot with the host bridge table H:
--   H.idle(), H.io_poll(), H.io_wait(ms)   host callbacks
--   H.fire(key)                            run the host's firmware event `key`
--   H.halted_error                         the value raised to unwind a halted boot
local H = ...

local RT = {
  halted = false,     -- set by rtos.reboot and friends: no further Lua may run
  budget = 0,         -- instructions (in hook ticks) left before the busy-loop guard trips
  budget_max = 0,
}

-- Hot state lives in upvalues (a field lookup per event adds up); the host reads and writes
-- it through the accessors below.
local now = 0         -- virtual ms since emulated power-on
local deadline = 0    -- the host's pause point (virtual ms)
local io = 0          -- real I/O operations in flight (completions will arrive by themselves)
local watch = 0       -- open host sockets that may receive data at any time

function RT.get_now() return now end
function RT.set_now(v) now = v end
function RT.get_deadline() return deadline end
function RT.set_deadline(v) deadline = v end
function RT.add_io(d) io = io + d; if io < 0 then io = 0 end; return io end
function RT.add_watch(d) watch = watch + d; if watch < 0 then watch = 0 end; return watch end

local PAUSE = setmetatable({}, { __tostring = function() return "luatos-sim pause" end })
RT.PAUSE = PAUSE

-- Binary heap of queue entries {due, seq, kind, a, b}, ordered by (due, seq). kind 1: timer
-- (a=id, b=generation); kind 2: firmware event (a=the host's integer key). Entries are
-- recycled, so a running timer allocates nothing.
local heap, hn, seq = {}, 0, 0
local pool, pn = {}, 0
-- Timers: id -> generation / period / repeats left (parallel tables: no allocation per start)
local tgen, tper, trep = {}, {}, {}
local gen = 0
local stale = 0       -- heap entries of stopped or replaced timers, dropped lazily

local function push(e)
  hn = hn + 1
  local i = hn
  local d, q = e[1], e[2]
  while i > 1 do
    local p = i // 2
    local pe = heap[p]
    local pd = pe[1]
    if d < pd or (d == pd and q < pe[2]) then
      heap[i] = pe
      i = p
    else
      break
    end
  end
  heap[i] = e
end

local function pop_top()
  local last = heap[hn]
  heap[hn] = nil
  hn = hn - 1
  if hn > 0 then
    local d, q = last[1], last[2]
    local i = 1
    while true do
      local l = i * 2
      if l > hn then break end
      local c = l
      local ce = heap[l]
      local r = l + 1
      if r <= hn then
        local re = heap[r]
        if re[1] < ce[1] or (re[1] == ce[1] and re[2] < ce[2]) then c = r; ce = re end
      end
      if ce[1] < d or (ce[1] == d and ce[2] < q) then
        heap[i] = ce
        i = c
      else
        break
      end
    end
    heap[i] = last
  end
end

local function recycle(e)
  e[4], e[5] = nil, nil
  pn = pn + 1
  pool[pn] = e
end

-- Rebuild the heap without stale entries, so restarting one timer in a loop cannot grow it.
local function compact()
  local live, n = {}, 0
  for i = 1, hn do
    local e = heap[i]
    if e[3] ~= 1 or tgen[e[4]] == e[5] then n = n + 1; live[n] = e end
  end
  heap, hn, stale = {}, 0, 0
  for i = 1, n do push(live[i]) end
end

local function schedule(due, kind, a, b)
  if stale > 256 and stale * 2 > hn then compact() end
  seq = seq + 1
  local e
  if pn > 0 then
    e = pool[pn]
    pool[pn] = nil
    pn = pn - 1
    e[1], e[2], e[3], e[4], e[5] = due, seq, kind, a, b
  else
    e = { due, seq, kind, a, b }
  end
  push(e)
end

-- Drop stale timer entries from the top; return the top entry (or nil).
local function top()
  local e = heap[1]
  while e ~= nil and e[3] == 1 and tgen[e[4]] ~= e[5] do
    pop_top()
    recycle(e)
    stale = stale - 1
    e = heap[1]
  end
  return e
end

-- Timers ------------------------------------------------------------------------------------

local tointeger = math.tointeger

local function bad_int(n)
  error("bad argument #" .. n .. " to 'timer_start' (number has no integer representation)", 3)
end

function RT.timer_start(id, ms, rep)
  local iid, ims = tointeger(id), tointeger(ms)
  if iid == nil then bad_int(1) elseif ims == nil then bad_int(2) end
  local irep = 0
  if rep ~= nil then
    irep = tointeger(rep)
    if irep == nil then bad_int(3) end
  end
  if ims < 1 then return 0 end
  local g = gen + 1
  gen = g
  -- Restarting a running id replaces it (UNCONFIRMED on the device; default of behaviour.md §4.1).
  if tgen[iid] ~= nil then stale = stale + 1 end
  tgen[iid], tper[iid], trep[iid] = g, ims, irep
  schedule(now + ims, 1, iid, g)
  return 1
end

function RT.timer_stop(id)
  local iid = tointeger(id)
  if iid ~= nil and tgen[iid] ~= nil then
    stale = stale + 1
    tgen[iid], tper[iid], trep[iid] = nil, nil, nil
  end
end

function RT.timer_active(id)
  return tgen[id] ~= nil
end

-- Firmware events -----------------------------------------------------------------------------

-- A firmware event is an integer key: the host keeps what to run under it and runs it when
-- H.fire(key) is called from here. No per-event Python object ever enters the VM: lupa's cache
-- of Python objects in Lua is not safe for an object pushed again while its previous userdata
-- awaits finalization (the object is freed under the new userdata), which the stream of short-
-- lived event handlers and arguments of a busy exchange used to hit (issue 9 item 2).
local fire = H.fire

-- Run the host's event `key` from the event loop `delay` ms from now (0 = at the next receive).
function RT.post(delay, key)
  schedule(now + (delay or 0), 2, key)
end

function RT.post_at(due, key)
  if due < now then due = now end
  schedule(due, 2, key)
end

function RT.next_due()
  local e = top()
  return e and e[1]
end

function RT.pending()
  return hn
end

-- The boot coroutine (the device's main Lua thread). Only it may pause.
RT.boot_co = nil
local running = coroutine.running
local raw_yield = coroutine.yield

local function pause(reason)
  if running() ~= RT.boot_co then
    -- receive called from inside a task: the device would simply block here. We cannot hand
    -- control back to the host from a nested coroutine, so keep going without pausing.
    return false
  end
  raw_yield(PAUSE, reason)
  if RT.halted then error(H.halted_error, 0) end
  return true
end


-- rtos.receive(timeout): the heart of the device. See docs/behaviour.md §3 (virtual time).
function RT.receive(timeout)
  if RT.halted then error(H.halted_error, 0) end
  RT.budget = RT.budget_max
  RT.extended = 0
  local stop_at = nil
  if timeout ~= nil and timeout ~= -1 and timeout >= 0 then stop_at = now + timeout end
  while true do
    if io > 0 then H.io_poll() end
    local e = heap[1]
    if e ~= nil and e[3] == 1 and tgen[e[4]] ~= e[5] then e = top() end
    local due = e and e[1]
    if due ~= nil and due <= now then
      if hn == 1 then heap[1] = nil; hn = 0 else pop_top() end
      if e[3] == 1 then
        local id = e[4]
        local rep = trep[id]
        if rep == 0 then
          tgen[id], tper[id], trep[id] = nil, nil, nil
          e[4], e[5] = nil, nil  -- recycle the entry (inlined: this is the hottest path)
          pn = pn + 1
          pool[pn] = e
        else
          if rep > 0 then trep[id] = rep - 1 end
          -- a repeating timer re-enters the heap in the same entry
          seq = seq + 1
          e[1], e[2] = due + tper[id], seq
          push(e)
        end
        return 1, id, rep
      else
        local key = e[4]
        recycle(e)
        fire(key)
        if RT.halted then error(H.halted_error, 0) end
        return 0
      end
    end
    -- Nothing due now. Real I/O in flight gets a bounded wall-clock wait before time jumps.
    if io > 0 then
      local limit = due or deadline
      if limit > deadline then limit = deadline end
      if H.io_wait(limit - now) then goto continue end
    end
    -- Open sockets: pick up data already received before virtual time moves on.
    if watch > 0 and H.io_sync() then goto continue end
    if stop_at ~= nil and (due == nil or due > stop_at) and stop_at <= deadline then
      now = stop_at
      return -1
    end
    if due == nil then
      -- Idle: nothing will ever happen unless the host injects something.
      if now < deadline then
        local what = H.idle()
        if what == "continue" then goto continue end
      end
      if not pause("idle") then return nil end
    elseif due > deadline then
      now = deadline
      if not pause("deadline") then now = due end
    else
      now = due
    end
    ::continue::
  end
end

-- Halting and the busy-loop guard --------------------------------------------------------------

-- A count hook on every coroutine (and on the main state while a callback runs there):
--  * unwinds a halted boot through any pcall;
--  * gives Lua execution a virtual cost: each tick of hook_every instructions moves the clock
--    by hook_every / (the model's nominal instructions per ms), so a long computation takes
--    virtual time and a busy loop reaches the watchdog's deadline when the device would;
--  * trips the watchdog (wdt.init) at that virtual moment;
--  * catches Lua that never yields (a guard that stands for the device's own hardware
--    watchdog; while wdt is armed, wdt decides, up to 50 times the guard).
local hook_every = 1000
local floor = math.floor
local tick_ms = 0      -- virtual ms per tick (0: Lua costs no virtual time)
local frac = 0         -- ms accumulated below 1
local wdt_at = nil     -- virtual ms at which the armed watchdog fires
function RT.set_rate(per_ms)
  tick_ms = (per_ms and per_ms > 0) and hook_every / per_ms or 0
end
function RT.set_wdt(at) wdt_at = at end
RT.extended = 0
local function hook()
  if RT.halted then error(H.halted_error, 0) end
  if tick_ms > 0 then
    local f = frac + tick_ms
    if f >= 1 then
      local whole = floor(f)  -- an integer: the clock stays integral
      now = now + whole
      f = f - whole
    end
    frac = f
    if wdt_at ~= nil and now >= wdt_at then
      H.wdt_expired()
      if RT.halted then error(H.halted_error, 0) end
    end
  end
  if RT.budget_max > 0 then
    local b = RT.budget - 1
    RT.budget = b
    if b == 0 then
      if wdt_at ~= nil and RT.extended < 50 then
        RT.extended = RT.extended + 1
        RT.budget = RT.budget_max
      else
        H.busy_loop()
        error(H.halted_error, 0)
      end
    end
  end
end
RT.hook = hook
RT.hook_every = hook_every

return RT
