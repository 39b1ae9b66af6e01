--[[
@module json_lines
@summary Splits a TCP byte stream into messages: newline-delimited JSON, plus
a JSON object sent with no newline at all (as generic TCP test tools send it).

Rules, applied to the start of the buffer after skipping whitespace:
  1. If it starts with "{" and the matching "}" has arrived (quotes and
     escapes respected), that object is a message. So {"a":1}{"b":2} and an
     object without a trailing newline both work.
  2. Otherwise, if a newline has arrived, the text before it is a message
     (a trailing "\r" is dropped). Invalid JSON is returned as-is; the caller
     answers it.
  A message longer than max_bytes is dropped and next() reports "too long".
  3. Otherwise wait for more data. Beyond max_bytes without a message the
     buffer is dropped and next() reports "too long".
Pure Lua, no LuatOS API: it can be checked on any Lua 5.3.
]]

local json_lines = {}

---@class JsonLinesBuffer
---@field buf string
---@field max integer
local Buffer = {}
Buffer.__index = Buffer

local BYTE_OPEN, BYTE_CLOSE = string.byte("{"), string.byte("}")
local BYTE_QUOTE, BYTE_BACKSLASH = string.byte('"'), string.byte("\\")

---Index of the "}" closing the object that starts at s[1], or nil if it has not arrived.
---@param s string
---@return integer|nil
local function object_end(s)
    local depth = 0
    local in_string = false
    local escaped = false
    for i = 1, #s do
        local c = s:byte(i)
        if in_string then
            if escaped then
                escaped = false
            elseif c == BYTE_BACKSLASH then
                escaped = true
            elseif c == BYTE_QUOTE then
                in_string = false
            end
        elseif c == BYTE_QUOTE then
            in_string = true
        elseif c == BYTE_OPEN then
            depth = depth + 1
        elseif c == BYTE_CLOSE then
            depth = depth - 1
            if depth == 0 then
                return i
            end
        end
    end
    return nil
end

---@param max_bytes integer|nil longest message kept (default 4096)
---@return JsonLinesBuffer
function json_lines.new(max_bytes)
    return setmetatable({ buf = "", max = max_bytes or 4096 }, Buffer)
end

---Append received bytes.
---@param data string
function Buffer:push(data)
    if data and #data > 0 then
        self.buf = self.buf .. data
    end
end

---Next complete message.
---@return string|nil message
---@return string|nil err "too long" when the buffer was dropped
function Buffer:next()
    local first = self.buf:find("%S")
    if not first then
        -- Only whitespace (or nothing): keep nothing.
        self.buf = ""
        return nil
    end
    if first > 1 then
        self.buf = self.buf:sub(first)
    end
    if self.buf:byte(1) == BYTE_OPEN then
        local stop = object_end(self.buf)
        if stop then
            local msg = self.buf:sub(1, stop)
            self.buf = self.buf:sub(stop + 1)
            if stop > self.max then
                return nil, "too long"
            end
            return msg
        end
    end
    local nl = self.buf:find("\n", 1, true)
    if nl then
        local line = self.buf:sub(1, nl - 1)
        self.buf = self.buf:sub(nl + 1)
        if line:sub(-1) == "\r" then
            line = line:sub(1, -2)
        end
        if #line > self.max then
            return nil, "too long"
        end
        return line
    end
    if #self.buf > self.max then
        self.buf = ""
        return nil, "too long"
    end
    return nil
end

---Bytes waiting for the rest of a message.
---@return integer
function Buffer:pending()
    return #self.buf
end

return json_lines
