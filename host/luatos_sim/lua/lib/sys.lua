-- luatos-sim stand-in for LuatOS's sys library (script/corelib/sys.lua, SCRIPT_LIB_VER 2.3.2).
--
-- Written from the behaviour contract, not from the upstream source. It talks to the firmware
-- only through rtos.receive / rtos.timer_start / rtos.timer_stop, exactly like the real one,
-- so a user's own sys.lua (given with --lib-dir) can take its place.

local sys = {}

SCRIPT_LIB_VER = "2.3.2"
COROUTINE_ERROR_ROLL_BACK = true
COROUTINE_ERROR_RESTART = true

local TASK_TIMER_ID_MAX = 0x1FFFFF
local MSG_TIMER_ID_MAX = 0x7FFFFF

-- The firmware's timer and receive calls (C functions on the device; fixed once sys is loaded).
local rt_timer_start, rt_timer_stop, rt_receive = rtos.timer_start, rtos.timer_stop, rtos.receive
local INF_TIMEOUT, MSG_TIMER = rtos.INF_TIMEOUT, rtos.MSG_TIMER

local unpack = table.unpack
local pack = table.pack
local co_resume, co_yield, co_running, co_create = coroutine.resume, coroutine.yield,
  coroutine.running, coroutine.create

-- Task timers (sys.wait): id -> coroutine
local taskTimerPool = {}
local taskTimerId = 0
-- Message timers (timerStart & co): id -> callback, id -> args
local timerPool = {}
local para = {}
local msgId = TASK_TIMER_ID_MAX

-- Publish/subscribe
local subscribers = {}
local mq = {}           -- FIFO of packed messages
local mq_head, mq_tail = 1, 0

-- taskInitEx registry: name -> {queue, timed_out, cb}
local taskList = {}

-- sys's one-shot assert(false, text). The device's sys is stripped, so its assert adds no
-- position; raise at level 0 so the exit line repeats the text exactly (docs/behaviour.md §2.5 A).
local function roll_back(_, text) error(text, 0) end

local function after_resume(co, ok, ...)
  if not ok then
    local err = tostring((...))
    local text = err .. "\r\n" .. debug.traceback(co)
    log.error("coroutine.resume", text)
    if COROUTINE_ERROR_ROLL_BACK then
      sys.timerStart(roll_back, 500, false, text)
    elseif COROUTINE_ERROR_RESTART then
      rtos.reboot()
    end
  end
  return ok, ...
end

--- Resume a task; on error, log it and (by default) bring the VM down 500 ms later.
function sys.coresume(co, ...)
  return after_resume(co, co_resume(co, ...))
end

function sys.check_task()
  local co, ismain = co_running()
  if ismain then error(debug.traceback("attempt to yield from outside a coroutine")) end
  return co
end

local function after_wait(id, ...)
  if select("#", ...) > 0 then
    -- Woken by a message, not by the timer.
    rt_timer_stop(id)
    taskTimerPool[id] = nil
    return ...
  end
end

-- The hot path of every task: kept free of table lookups it does not need.
function sys.wait(ms)
  local co, ismain = co_running()
  if ismain then error(debug.traceback("attempt to yield from outside a coroutine")) end
  local id = taskTimerId
  repeat
    id = id + 1
    if id >= TASK_TIMER_ID_MAX then id = 1 end
  until taskTimerPool[id] == nil
  taskTimerId = id
  if ms ~= nil then
    if rt_timer_start(id, ms) ~= 1 then
      log.debug("rtos.timer_start error")
      return
    end
  end
  taskTimerPool[id] = co
  return after_wait(id, co_yield())
end

function sys.waitUntil(id, ms)
  local co = sys.check_task()
  sys.subscribe(id, co)
  local r = ms and pack(sys.wait(ms)) or pack(co_yield())
  sys.unsubscribe(id, co)
  if r.n > 0 and r[1] ~= nil then
    return true, unpack(r, 2, r.n)
  end
  return false
end

function sys.waitUntilExt(id, ms)
  local co = sys.check_task()
  sys.subscribe(id, co)
  local r = ms and pack(sys.wait(ms)) or pack(co_yield())
  sys.unsubscribe(id, co)
  if r.n > 0 and r[1] ~= nil then return unpack(r, 1, r.n) end
  return false
end

function sys.waitUntilMsg(id)
  local co = sys.check_task()
  sys.subscribe(id, co)
  local r = pack(co_yield())
  sys.unsubscribe(id, co)
  return unpack(r, 2, r.n)
end

--- Start a task and run it at once, up to its first wait.
function sys.taskInit(fun, ...)
  local co = co_create(fun)
  sys.coresume(co, ...)
  return co
end

-- Timers ----------------------------------------------------------------------------------------

local function same_args(stored, ...)
  local n = select("#", ...)
  if stored == nil then return n == 0 end
  if stored.n ~= n then return false end
  for i = 1, n do
    if stored[i] ~= select(i, ...) then return false end
  end
  return true
end

function sys.timerStop(val, ...)
  if type(val) == "number" then
    timerPool[val], para[val] = nil, nil
    rtos.timer_stop(val)
  else
    for id, cb in pairs(timerPool) do
      if cb == val and same_args(para[id], ...) then
        rtos.timer_stop(id)
        timerPool[id], para[id] = nil, nil
        return
      end
    end
  end
end

function sys.timerStopAll(fnc)
  for id, cb in pairs(timerPool) do
    if cb == fnc then
      rtos.timer_stop(id)
      timerPool[id], para[id] = nil, nil
    end
  end
end

local function timer_start(fnc, ms, rep, ...)
  sys.timerStop(fnc, ...)
  repeat
    msgId = msgId + 1
    if msgId > MSG_TIMER_ID_MAX then msgId = TASK_TIMER_ID_MAX + 1 end
  until timerPool[msgId] == nil
  local id = msgId
  timerPool[id] = fnc
  if select("#", ...) ~= 0 then para[id] = pack(...) end
  if rtos.timer_start(id, ms, rep) ~= 1 then
    log.error("rtos.timer_start", "create fail!!!")
    return
  end
  return id
end

function sys.timerStart(fnc, ms, ...)
  return timer_start(fnc, ms, 0, ...)
end

function sys.timerLoopStart(fnc, ms, ...)
  return timer_start(fnc, ms, -1, ...)
end

function sys.timerIsActive(val, ...)
  if type(val) == "number" then return timerPool[val] end
  for id, cb in pairs(timerPool) do
    if cb == val and same_args(para[id], ...) then return true end
  end
  -- not found: no value at all (so tostring(sys.timerIsActive(f)) raises, as on the device)
end

-- Messages -------------------------------------------------------------------------------------

function sys.subscribe(id, callback)
  if type(callback) ~= "function" and type(callback) ~= "thread" then
    log.warn("warning: sys.subscribe invalid parameter", id, callback)
    return
  end
  if type(id) == "table" then
    for _, v in pairs(id) do sys.subscribe(v, callback) end
    return
  end
  local s = subscribers[id]
  if not s then s = {}; subscribers[id] = s end
  s[callback] = true
end

function sys.unsubscribe(id, callback)
  if type(id) == "table" then
    for _, v in pairs(id) do sys.unsubscribe(v, callback) end
    return
  end
  local s = subscribers[id]
  if s then
    s[callback] = nil
    if next(s) == nil then subscribers[id] = nil end
  end
end

--- Queue a message; it is delivered at the next dispatch, never synchronously.
function sys.publish(...)
  mq_tail = mq_tail + 1
  mq[mq_tail] = pack(...)
end

local function dispatch()
  while mq_head <= mq_tail do
    local m = mq[mq_head]
    mq[mq_head] = nil
    mq_head = mq_head + 1
    local s = subscribers[m[1]]
    if s then
      local snapshot, k = {}, 0
      for cb in pairs(s) do k = k + 1; snapshot[k] = cb end
      for i = 1, k do
        local cb = snapshot[i]
        if type(cb) == "function" then
          cb(unpack(m, 2, m.n))
        else
          sys.coresume(cb, unpack(m, 1, m.n))
        end
      end
    end
  end
  mq_head, mq_tail = 1, 0
end

function sys.safeRun()
  if mq_head <= mq_tail then dispatch() end
  local msg, param, exparam = rt_receive(INF_TIMEOUT)
  if msg == nil or msg == 0 then return end
  if msg == MSG_TIMER and param then
    if param < TASK_TIMER_ID_MAX then
      local co = taskTimerPool[param]
      taskTimerPool[param] = nil
      if co then
        local ok, err = co_resume(co)
        if not ok then after_resume(co, ok, err) end
      end
    else
      local cb = timerPool[param]
      if cb then
        local args = para[param]
        if exparam == 0 then timerPool[param], para[param] = nil, nil end
        if args then cb(unpack(args, 1, args.n)) else cb() end
      end
    end
  end
end

local sysp = _G.SYSP
function sys.run()
  if sysp then return end
  while true do sys.safeRun() end
end

-- Named tasks (taskInitEx / sendMsg / waitMsg) ------------------------------------------------

function sys.taskInitEx(fun, taskName, cbFun, ...)
  if taskName == nil then
    log.error("sys", "taskName is nil", debug.traceback())
    return  -- no value at all, like the firmware's sys
  end
  taskList[taskName] = { msgQueue = {}, To = false, cb = cbFun }
  return sys.taskInit(fun, ...)
end

function sys.taskDel(taskName)
  taskList[taskName] = nil
end

function sys.sendMsg(taskName, target, arg2, arg3, arg4)
  local t = taskList[taskName]
  if t then
    table.insert(t.msgQueue, { target, arg2, arg3, arg4 })
    sys.publish(taskName)
    return true
  end
  return false
end

function sys.cleanMsg(taskName)
  local t = taskList[taskName]
  if t then t.msgQueue = {}; return true end
  return false
end

function sys.taskCB(taskName, msg)
  local t = taskList[taskName]
  if t and t.cb then return t.cb(msg) end
  log.error(taskName, "no cb fun")
end

local function waitTo(taskName)
  local t = taskList[taskName]
  if t then t.To = true end
  sys.publish(taskName)
end

function sys.waitMsg(taskName, target, ms)
  local t = taskList[taskName]
  if t == nil then
    log.error("sys", "sys.taskInitEx启动的task才能使用waitMsg")
    return false
  end
  t.To = false
  local armed = false
  while true do
    local q = t.msgQueue
    while #q > 0 do
      local m = table.remove(q, 1)
      if target == nil or m[1] == target then
        if armed then sys.timerStop(waitTo, taskName) end
        return m
      elseif t.cb then
        t.cb(m)
      end
    end
    if t.To then
      t.To = false
      return nil
    end
    if not armed and ms and ms ~= 0 then
      sys.timerStart(waitTo, ms, taskName)
      armed = true
    end
    sys.waitUntil(taskName)
  end
end

-- The globals firmware modules use to reach sys ------------------------------------------------

sys_pub = sys.publish
sys_send = sys.sendMsg
sys_wait = sys.waitMsg

--- The object every async C API returns: .wait() inside a task, or .cb(f).
function sys_cw(topic, ...)
  if topic == nil then
    local r = pack(...)
    return { wait = function() return unpack(r, 1, r.n) end, cb = function(f) f(unpack(r, 1, r.n)) end }
  end
  return {
    wait = function() return sys.waitUntilMsg(topic) end,
    cb = function(f) sys.taskInit(function() f(sys.waitUntilMsg(topic)) end) end,
  }
end

return sys
