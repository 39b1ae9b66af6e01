-- luatos-sim runtime core: the emulated firmware's event loop, in Lua for speed.
--
-- This is the C side of the device's seam (rtos.receive, rtos.timer_start, rtos.timer_stop),
-- written in Lua so that a timer event costs no Python call. Python schedules firmware
-- ("C") events into the same queue through RT.post, and is called back only for those events,
-- for real I/O and at pause points (the host's run_for/run_until deadline, or idle).
--
-- Loaded once per boot with the host bridge table H:
--   H.idle(), H.io_poll(), H.io_wait(ms)   host callbacks
--   H.halted_error                         the value raised to unwind a halted boot
local H = ...

local RT = {
  now = 0,            -- virtual ms since emulated power-on
  deadline = 0,       -- the host's pause point (virtual ms)
  io = 0,             -- real I/O operations in flight (set by the host)
  watch = 0,          -- open host sockets that may receive data any time (set by the host)
  halted = false,     -- set by rtos.reboot and friends: no further Lua may run
  budget = 0,         -- instructions (in hook ticks) left before the busy-loop guard trips
  budget_max = 0,
}

local PAUSE = setmetatable({}, { __tostring = function() return "luatos-sim pause" end })
RT.PAUSE = PAUSE

-- Binary heap of queue entries {due, seq, kind, a, b}. kind 1: timer (a=id, b=generation);
-- kind 2: firmware event (a=callable, b=arg table or nil).
local heap, hn, seq = {}, 0, 0
local timers = {}     -- id -> {gen, period, rep}
local gen = 0

local function less(x, y)
  local dx, dy = x[1], y[1]
  if dx ~= dy then return dx < dy end
  return x[2] < y[2]
end

local function push(e)
  hn = hn + 1
  local i = hn
  heap[i] = e
  while i > 1 do
    local p = i // 2
    local pe = heap[p]
    if less(e, pe) then heap[i] = pe; heap[p] = e; i = p else break end
  end
end

local function pop()
  local top = heap[1]
  local last = heap[hn]
  heap[hn] = nil
  hn = hn - 1
  if hn > 0 then
    heap[1] = last
    local i = 1
    while true do
      local l = i * 2
      if l > hn then break end
      local r = l + 1
      local c = l
      if r <= hn and less(heap[r], heap[l]) then c = r end
      if less(heap[c], last) then heap[i] = heap[c]; heap[c] = last; i = c else break end
    end
  end
  return top
end

local function schedule(due, kind, a, b)
  seq = seq + 1
  push({ due, seq, kind, a, b })
end

-- Timers ------------------------------------------------------------------------------------

local tointeger = math.tointeger

function RT.timer_start(id, ms, rep)
  local iid = tointeger(id)
  if iid == nil then error("bad argument #1 to 'timer_start' (number has no integer representation)", 2) end
  local ims = tointeger(ms)
  if ims == nil then error("bad argument #2 to 'timer_start' (number has no integer representation)", 2) end
  local irep = 0
  if rep ~= nil then
    irep = tointeger(rep)
    if irep == nil then error("bad argument #3 to 'timer_start' (number has no integer representation)", 2) end
  end
  if ims < 1 then return 0 end
  gen = gen + 1
  -- Restarting a running id replaces it (UNCONFIRMED on the device; the reference's default).
  timers[iid] = { gen, ims, irep }
  schedule(RT.now + ims, 1, iid, gen)
  return 1
end

function RT.timer_stop(id)
  local iid = tointeger(id)
  if iid ~= nil then timers[iid] = nil end
end

function RT.timer_active(id)
  return timers[id] ~= nil
end

-- Firmware events -----------------------------------------------------------------------------

-- Run fn(...) from the event loop `delay` ms from now (0 = at the next receive).
function RT.post(delay, fn, args)
  schedule(RT.now + (delay or 0), 2, fn, args)
end

function RT.post_at(due, fn, args)
  if due < RT.now then due = RT.now end
  schedule(due, 2, fn, args)
end

function RT.next_due()
  -- Skips stale timer entries so the host sees the real next deadline.
  while hn > 0 do
    local e = heap[1]
    if e[3] == 1 then
      local t = timers[e[4]]
      if t and t[1] == e[5] then return e[1] end
      pop()
    else
      return e[1]
    end
  end
  return nil
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

local unpack = table.unpack

-- rtos.receive(timeout): the heart of the device. See the reference's "emulator event loop".
function RT.receive(timeout)
  if RT.halted then error(H.halted_error, 0) end
  RT.budget = RT.budget_max
  local stop_at = nil
  if timeout ~= nil and timeout ~= -1 and timeout >= 0 then stop_at = RT.now + timeout end
  while true do
    if RT.io > 0 then H.io_poll() end
    local due = RT.next_due()
    if due ~= nil and due <= RT.now then
      local e = pop()
      if e[3] == 1 then
        local id = e[4]
        local t = timers[id]
        local rep = t[3]
        if rep == 0 then
          timers[id] = nil
        else
          if rep > 0 then t[3] = rep - 1 end
          schedule(e[1] + t[2], 1, id, t[1])
        end
        return 1, id, rep
      else
        local args = e[5]
        if args then e[4](unpack(args, 1, args.n)) else e[4]() end
        if RT.halted then error(H.halted_error, 0) end
        return 0
      end
    end
    -- Nothing due now. Real I/O in flight gets a bounded wall-clock wait before time jumps.
    if RT.io > 0 then
      local limit = due or RT.deadline
      if limit > RT.deadline then limit = RT.deadline end
      if H.io_wait(limit - RT.now) then goto continue end
    end
    -- Open sockets: pick up data already received before virtual time moves on.
    if RT.watch > 0 and H.io_sync() then goto continue end
    if stop_at ~= nil and (due == nil or due > stop_at) and stop_at <= RT.deadline then
      RT.now = stop_at
      return -1
    end
    if due == nil then
      -- Idle: nothing will ever happen unless the host injects something.
      if RT.now < RT.deadline then
        local what = H.idle()
        if what == "continue" then goto continue end
      end
      if not pause("idle") then return nil end
    elseif due > RT.deadline then
      RT.now = RT.deadline
      if not pause("deadline") then RT.now = due end
    else
      RT.now = due
    end
    ::continue::
  end
end

-- Halting and the busy-loop guard --------------------------------------------------------------

-- A count hook on every coroutine: unwinds a halted boot through any pcall, and catches Lua
-- code that never yields (the device's watchdog would reset it; we report it).
local hook_every = 1000
local function hook()
  if RT.halted then error(H.halted_error, 0) end
  if RT.budget_max > 0 then
    local b = RT.budget - 1
    RT.budget = b
    if b == 0 then
      H.busy_loop()
      error(H.halted_error, 0)
    end
  end
end
RT.hook = hook
RT.hook_every = hook_every

return RT
