--[[
@module fota_tcp
@summary Scenario 2: upgrade commands over a TCP channel.

Protocol (one JSON object per line, "\n"-terminated; a single object without
a newline is accepted too):

  device -> server, after connecting:
    {"login":{"device":"<mac>","project":"<PROJECT>","version":"<VERSION>",
              "core":"<rtos.version()>","project_key":"<key>","model":"<model>"}}
  server -> device:
    {"fota":"true","url":"http://host/api/site/firmware_upgrade?"}  check that server
    {"fota":"true","url":"###http://host/pkg.bin"}                   direct package link
    {"fota":"true"}                                                  check config.server_url
    (a JSON boolean true is accepted as well as the string "true")
  device -> server, answer to every command:
    {"ack":"fota","status":"started"|"busy"|"error","reason":"...","url":"..."}
    {"ack":"error","reason":"..."}   invalid JSON, not an object, unknown command
  device -> server, when a check ends (any trigger):
    {"fota_result":N,"trigger":"tcp","meaning":"...","version":"<VERSION>"}

Messages carrying "ack" or "login" are the server's own replies: logged, never
answered (so two peers can't ping-pong errors). Nothing the server sends can
stop the task: every line is decoded and type-checked before use.

Reconnects with a delay of tcp_backoff_min_ms doubling up to tcp_backoff_max_ms;
the delay resets after a session that logged in.
]]

local config = require "config"
local netready = require "netready"
local devinfo = require "devinfo"
local devauth = require "devauth"
local json_lines = require "json_lines"
local fota_check = require "fota_check"
local fota_cmd = require "fota_cmd"
local libnet = require "libnet"

local fota_tcp = {}

local TASK_NAME = "fota_tcp"
local OUTBOX_MAX = 8        -- lines kept while offline (results first, see session())
local RX_CHUNKS_MAX = 64   -- reads per wake-up, so a flood cannot starve other tasks

---@class OutLine
---@field line string JSON text with its "\n"
---@field keep boolean still worth sending after a reconnect (results, not acks)

---@type OutLine[] waiting to be sent, newest OUTBOX_MAX
local outbox = {}
local online = false
local heartbeat_n = 0

---Queue one JSON line; the task sends it on its next pass.
---@param obj table
---@param keep boolean|nil true: send it even if the connection drops first
local function send(obj, keep)
    local line = json.encode(obj)
    if not line then
        log.error("tcp", "json.encode failed")
        return
    end
    outbox[#outbox + 1] = { line = line .. "\n", keep = keep == true }
    while #outbox > OUTBOX_MAX do
        table.remove(outbox, 1)
    end
end

---Handle one received message (fota_cmd decodes and checks it). Never raises on bad input.
---@param line string
local function handle_message(line)
    log.info("tcp", "rx", fota_cmd.shorten(line))
    local reply = fota_cmd.handle(line, "tcp", "tcp_cmd")
    if reply then
        send(reply)
    end
end

-- Report every finished check on the channel (also button-triggered ones).
-- Runs outside the task, so it wakes the task: libnet.wait then returns at once.
local function on_fota_end(ret, trigger)
    send({
        fota_result = ret,
        trigger = trigger,
        meaning = fota_check.MEANING[ret] or "unknown result code",
        version = VERSION,
    }, true)
    if online then
        sys.sendMsg(TASK_NAME, socket.EVENT, 0)
    end
end

local send_all

---Read everything the socket holds into the framer, answering each message.
---@return boolean ok false when the connection failed
local function read_all(ctrl, rxbuf, frames)
    for _ = 1, RX_CHUNKS_MAX do
        local ok = socket.rx(ctrl, rxbuf)
        if not ok then
            log.warn("tcp", "rx failed")
            return false
        end
        if rxbuf:used() == 0 then
            break
        end
        frames:push(rxbuf:query())
        rxbuf:del()
    end
    while true do
        local msg, err = frames:next()
        if msg then
            -- A bug must not take the channel (and, through sys, the VM) down with it.
            local ok, crash = pcall(handle_message, msg)
            if not ok then
                log.error("tcp_cmd", "handler error", tostring(crash))
                send({ ack = "error", reason = "internal error" })
            end
        elseif err then
            log.warn("tcp_cmd", "line dropped", err)
            send({ ack = "error", reason = "line longer than " .. config.tcp_max_line .. " bytes" })
        else
            break
        end
        -- A burst of commands: send the answers before the outbox cap would drop any.
        if #outbox >= OUTBOX_MAX - 1 and not send_all(ctrl) then
            return false
        end
    end
    return true
end

---Send queued lines.
---@return boolean ok false when the connection failed
send_all = function(ctrl)
    while #outbox > 0 do
        local line = outbox[1].line
        local ok, full = libnet.tx(TASK_NAME, 15000, ctrl, line)
        if not ok then
            log.warn("tcp", "tx failed")
            return false
        end
        if full then
            -- Kernel buffer full: keep the line, retry after the next wake-up.
            return true
        end
        table.remove(outbox, 1)
        log.info("tcp", "tx", fota_cmd.shorten(line:sub(1, -2)))
    end
    return true
end

---Send the login line, straight out (not queued: a failed session must not leave it behind).
---@return boolean ok
local function login(ctrl)
    local line = json.encode({
        login = {
            device = devinfo.id(),
            project = PROJECT,
            version = VERSION,
            core = rtos.version(),
            project_key = config.product_key,
            model = hmeta and hmeta.model and hmeta.model() or nil,
            token = devauth.token(),
        },
    })
    if not libnet.tx(TASK_NAME, 15000, ctrl, line .. "\n") then
        return false
    end
    local shown = line
    local tok = devauth.token()
    if tok then
        -- Never log the credential; escape it, a token may hold pattern characters.
        shown = line:gsub((tok:gsub("%p", "%%%0")), "***")
    end
    log.info("tcp", "tx", shown)
    log.info("tcp", "login sent", devinfo.id())
    return true
end

---Serve a logged-in connection until it breaks: read, answer, send, wait.
local function serve(ctrl)
    local rxbuf = zbuff.create(1024)
    local frames = json_lines.new(config.tcp_max_line)
    while true do
        if not read_all(ctrl, rxbuf, frames) or not send_all(ctrl) then
            return
        end
        local wait_ms = 60000
        if #outbox > 0 then
            wait_ms = 1000
        elseif config.tcp_heartbeat_ms > 0 then
            wait_ms = config.tcp_heartbeat_ms
        end
        local ok, has_data = libnet.wait(TASK_NAME, wait_ms, ctrl)
        if not ok then
            log.warn("tcp", "connection lost")
            return
        end
        if not has_data and #outbox == 0 and config.tcp_heartbeat_ms > 0 then
            heartbeat_n = heartbeat_n + 1
            send({ heartbeat = heartbeat_n })
        end
    end
end

---One connection: connect, log in, serve until it breaks, clean up.
---@return boolean logged_in
local function session()
    local host, port = config.tcp_host, config.tcp_port
    sys.cleanMsg(TASK_NAME)
    -- Answers to the previous connection's commands are stale; results are not.
    local kept = {}
    for _, item in ipairs(outbox) do
        if item.keep then
            kept[#kept + 1] = item
        end
    end
    outbox = kept
    local ctrl = socket.create(nil, TASK_NAME)
    if not ctrl then
        log.error("tcp", "socket.create failed")
        return false
    end
    -- TCP keepalive: idle 300 s, probe every 10 s, 3 probes.
    socket.config(ctrl, nil, nil, nil, 300, 10, 3)
    log.info("tcp", "connecting", host, port)
    local logged_in = false
    if not libnet.connect(TASK_NAME, config.tcp_connect_timeout_ms, ctrl, host, port) then
        log.warn("tcp", "connect failed", host, port)
    else
        log.info("tcp", "connected", host, port)
        if not login(ctrl) then
            log.warn("tcp", "login failed")
        else
            logged_in = true
            online = true
            serve(ctrl)
        end
    end
    online = false
    libnet.close(TASK_NAME, 5000, ctrl)
    socket.release(ctrl)
    log.warn("tcp", "disconnected")
    return logged_in
end

local function client_task()
    local delay = config.tcp_backoff_min_ms
    while true do
        netready.wait(nil, "fota_tcp")
        if session() then
            delay = config.tcp_backoff_min_ms
        end
        log.warn("tcp", "reconnect in", delay, "ms")
        sys.wait(delay)
        delay = math.min(delay * 2, config.tcp_backoff_max_ms)
    end
end

-- Messages the task did not wait for (e.g. an EVENT during a send) land here;
-- socket.wait re-checks for data, so nothing is lost.
local function unexpected_msg(msg)
    log.debug("tcp", "unhandled message", msg[1], msg[2])
end

---Start the TCP command channel (call once).
function fota_tcp.start()
    log.info("fota_tcp", "start", config.tcp_host, config.tcp_port)
    sys.subscribe("FOTA_END", on_fota_end)
    sys.taskInitEx(client_task, TASK_NAME, unexpected_msg)
end

return fota_tcp
