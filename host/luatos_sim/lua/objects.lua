-- luatos-sim firmware objects: Python objects that behave like the firmware's userdata.
--
-- A firmware object (a zbuff, a socket ctrl, ...) is a C userdata on the device, with its own
-- metatable. lupa already shows every Python object to Lua as a full userdata, so
-- type(x) == "userdata" holds, but all of them share lupa's one metatable. This chunk keeps
-- that metatable (so a Python object passed back to Python is still the Python object) and puts
-- a dispatcher in front of each metamethod: an object whose Python class was registered as a
-- firmware type gets that type's behaviour, every other Python object keeps lupa's.
--
-- Called once per boot with (H, probe): H.object_kind(obj) returns a registered type's
-- descriptor table or nil; probe is any Python object (to reach lupa's metatable).
local H, probe = ...

local type, error, tostring, rawequal = type, error, tostring, rawequal
local getmetatable, setmetatable = debug.getmetatable, debug.setmetatable
local gsub = string.gsub

local pymt = getmetatable(probe)
local py_index, py_newindex, py_tostring, py_gc = pymt.__index, pymt.__newindex,
  pymt.__tostring, pymt.__gc
local kind_of = H.object_kind

-- userdata -> descriptor (false: a plain Python object). Weak keys: a collected userdata goes;
-- its entry is still readable from __gc (Lua clears weak keys of finalized objects late).
local kinds = setmetatable({}, { __mode = "k" })

local function kind(o)
  local k = kinds[o]
  if k == nil then
    k = kind_of(o) or false
    kinds[o] = k
  end
  return k
end

-- "NAME: 0x..." as luaL_tolstring prints a userdata whose metatable has no __tostring: the
-- address is the userdata's own, read with the metatable briefly removed.
local function address_text(o, name)
  setmetatable(o, nil)
  local raw = tostring(o)
  setmetatable(o, pymt)
  if name == nil then return raw end
  return (gsub(raw, "^userdata", name, 1))
end

pymt.__index = function(o, key)
  local k = kind(o)
  if not k then return py_index(o, key) end
  local methods = k.methods
  if methods ~= nil and type(key) == "string" then return methods[key] end
  local index = k.index
  if index ~= nil then return index(o, key) end
  if methods ~= nil then return nil end
  error("attempt to index a " .. (k.name or "userdata") .. " value", 2)
end

pymt.__newindex = function(o, key, value)
  local k = kind(o)
  if not k then return py_newindex(o, key, value) end
  local newindex = k.newindex
  if newindex ~= nil then return newindex(o, key, value) end
  error("attempt to index a " .. (k.name or "userdata") .. " value", 2)
end

pymt.__len = function(o)
  local k = kind(o)
  if k and k.len ~= nil then return k.len(o) end
  error("attempt to get length of a " .. ((k and k.name) or "userdata") .. " value", 2)
end

pymt.__tostring = function(o)
  local k = kind(o)
  if not k then return py_tostring(o) end
  if k.tostring ~= nil then return k.tostring(o) end
  return address_text(o, k.name)
end

local gc_hooks = false  -- set once a registered type has a gc hook

pymt.__gc = function(o)
  if gc_hooks then
    local k = kinds[o]
    if k == nil then
      -- Never met by a metamethod: ask once (a finalizer must not raise).
      local ok, found = pcall(kind_of, o)
      k = ok and found or false
    end
    if k and k.gc ~= nil then pcall(k.gc, o) end
  end
  return py_gc(o)
end

-- enable(true) once a type has a gc hook; enable(false) when the boot closes: lua_close
-- finalizes every object and must not call back into Python then.
return function(on) gc_hooks = on end
