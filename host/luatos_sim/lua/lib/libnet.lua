-- libnet: blocking-style helpers over the socket module, for tasks started with
-- sys.taskInitEx. Written for luatos-sim from the behaviour contract (docs/behaviour.md §5.4).
--
-- Every helper first tries the operation; when the socket module says "not done yet", it
-- waits for the matching event in the task's message queue with sysplus.waitMsg. Messages
-- other than the awaited one go to the task's callback (sys.waitMsg does that).

local libnet = {}

-- Wait for {event, param} in taskName's queue; returns the item, or nil on timeout.
local function await(taskName, event, timeout)
    return sysplus.waitMsg(taskName, event, timeout)
end

-- Shared shape of waitLink / connect / listen: true when done now or the event says 0.
local function done_or_wait(taskName, event, timeout, succ, now)
    if not succ then return false end
    if now then return true end
    local msg = await(taskName, event, timeout)
    return type(msg) == "table" and msg[2] == 0
end

function libnet.waitLink(taskName, timeout, ...)
    local succ, now = socket.linkup(...)
    return done_or_wait(taskName, socket.LINK, timeout, succ, now)
end

function libnet.connect(taskName, timeout, ...)
    local succ, now = socket.connect(...)
    return done_or_wait(taskName, socket.ON_LINE, timeout, succ, now)
end

function libnet.listen(taskName, timeout, ...)
    local succ, now = socket.listen(...)
    return done_or_wait(taskName, socket.ON_LINE, timeout, succ, now)
end

-- Returns ok, buffer_full.
function libnet.tx(taskName, timeout, ...)
    local succ, full, acked = socket.tx(...)
    if not succ then return false, full end
    if full then return true, true end
    if acked then return true, false end
    local msg = await(taskName, socket.TX_OK, timeout)
    if type(msg) == "table" and msg[2] == 0 then return true, false end
    return false, full
end

-- Returns ok, has_data. A timeout is (true, false): the connection is still fine.
function libnet.wait(taskName, timeout, netc)
    local succ, has = socket.wait(netc)
    if not succ then return false, false end
    if has then return true, true end
    local msg = await(taskName, socket.EVENT, timeout)
    if type(msg) == "table" then
        if msg[2] == 0 then return true, true end
        return false, false
    end
    return true, false
end

function libnet.close(taskName, timeout, netc)
    local succ, closed = socket.discon(netc)
    if succ and not closed then
        await(taskName, socket.CLOSED, timeout)
    end
    socket.close(netc)
end

return libnet
