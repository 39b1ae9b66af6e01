--[[
@module fota_cmd
@summary The upgrade command every channel accepts (a TCP line, an MQTT payload).

One JSON object: {"fota":"true"} checks config.server_url, {"fota":"true","url":U}
checks U ("###" prefix: a direct package link). A JSON boolean true is accepted as
well as the string "true". Objects carrying "ack" or "login" are a server's own
replies: logged, never answered (so two peers can't ping-pong errors).

handle() never raises on bad input: every message is decoded and type-checked
before use. It returns the reply the channel sends back (nil: send nothing). The
caller passes its own log tag, so each channel's lines keep their prefix.
]]

local config = require "config"
local fota_check = require "fota_check"

local fota_cmd = {}

local LOG_MAX = 200

---A received or sent message as a channel logs it: at most LOG_MAX bytes, then "...".
---@param s string
---@return string
function fota_cmd.shorten(s)
    if #s > LOG_MAX then
        return s:sub(1, LOG_MAX) .. "..."
    end
    return s
end

---Start a check for a decoded "fota" command.
---@param obj table
---@param trigger string "tcp", "mqtt", ...
---@param tag string log tag of the calling channel
---@return table reply
function fota_cmd.fota(obj, trigger, tag)
    local flag = obj.fota
    if flag ~= "true" and flag ~= true then
        log.warn(tag, "fota rejected", "fota must be \"true\"")
        return { ack = "fota", status = "error", reason = "fota must be \"true\"" }
    end
    local url = obj.url
    if url == json.null or url == "" then
        url = nil
    end
    if url ~= nil and not fota_check.valid_url(url) then
        log.warn(tag, "fota rejected", "bad url", tostring(url))
        return {
            ack = "fota",
            status = "error",
            reason = "url must be a string starting with http:// or https:// (optionally ###)",
        }
    end
    local started, why = fota_check.start(trigger, { url = url })
    if started then
        log.info(tag, "fota started", url or config.server_url)
        return { ack = "fota", status = "started", url = url or config.server_url }
    elseif why == "busy" then
        log.warn(tag, "fota busy")
        return { ack = "fota", status = "busy", reason = "an upgrade is already running" }
    end
    log.warn(tag, "fota rejected", why)
    return { ack = "fota", status = "error", reason = why or "not started" }
end

---Decode one message and act on it.
---@param text string
---@param trigger string
---@param tag string
---@return table|nil reply nil when nothing is to be answered
function fota_cmd.handle(text, trigger, tag)
    local obj, _, err = json.decode(text)
    if obj == nil then
        log.warn(tag, "invalid JSON", tostring(err))
        return { ack = "error", reason = "invalid JSON" }
    end
    if obj == json.null or type(obj) ~= "table" or obj[1] ~= nil then
        log.warn(tag, "not a JSON object")
        return { ack = "error", reason = "expected a JSON object" }
    end
    if obj.ack ~= nil or obj.login ~= nil then
        log.info(tag, "server reply, not answered")
        return nil
    end
    if obj.fota ~= nil then
        return fota_cmd.fota(obj, trigger, tag)
    end
    log.warn(tag, "unknown command")
    return { ack = "error", reason = "unknown command" }
end

return fota_cmd
