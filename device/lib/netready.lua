--[[
@module netready
@summary Is the default network adapter up, and waiting (bounded) until it is.

Must be called from a task (it uses sys.waitUntil). Works for every netdrv:
exnetif makes the usable link the default adapter (socket.dft()).
]]

local netready = {}

---@return boolean up
---@return integer adapter the default adapter id
function netready.is_up()
    local adapter = socket.dft()
    return socket.adapter(adapter) == true, adapter
end

---Wait until the default adapter has an IP.
---@param timeout_ms integer|nil nil = wait forever
---@param who string shown in the log lines
---@return boolean up false when timeout_ms passed first
function netready.wait(timeout_ms, who)
    local waited = 0
    local next_log = 0
    while true do
        local up, adapter = netready.is_up()
        if up then
            log.info("net", "ready", who, "adapter", adapter, (socket.localIP(adapter)))
            return true
        end
        if timeout_ms and waited >= timeout_ms then
            log.warn("net", "timeout", who, "no network after", waited, "ms")
            return false
        end
        if waited >= next_log then
            log.info("net", "waiting", who, waited, "ms")
            next_log = waited + 10000
        end
        -- Wake on IP_READY or after 1 s; count a full second either way (bounded, never longer).
        sys.waitUntil("IP_READY", 1000)
        waited = waited + 1000
    end
end

return netready
