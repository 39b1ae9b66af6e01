--[[
@module fota_mqtt
@summary Optional trigger: upgrade commands from an MQTT broker (any scenario).

Enable with config.mqtt_enabled = true. The device subscribes (QoS 1) to
config.mqtt_topic and accepts two payloads:
    update                                  check config.server_url now
    {"fota":"true"[,"url":"..."]}           the same JSON command as the TCP channel
Anything else is logged and ignored (and answered with an error if a reply
topic is set). Replies and every finished check's result are published (QoS 1)
to config.mqtt_reply_topic when it is not empty:
    {"ack":"fota","status":"started"|"busy"|"error",...}
    {"fota_result":N,"trigger":"...","meaning":"...","version":"<VERSION>"}
"{device}" in either topic is replaced by the device id (devinfo.id()).

The firmware client reconnects by itself (autoreconn) every
config.mqtt_reconnect_ms while the broker is down; the rest of the device
keeps working meanwhile.
]]

local config = require "config"
local netready = require "netready"
local devinfo = require "devinfo"
local fota_check = require "fota_check"
local fota_cmd = require "fota_cmd"

local fota_mqtt = {}

local CMD_MSG = "FOTA_MQTT_CMD"
local RX_OVERHEAD = 512    -- header + topic room in the receive buffer

local client = nil
local cmd_topic, reply_topic = "", ""

---Publish a reply or a result (only while connected; nothing is queued).
---@param obj table
local function reply(obj)
    if reply_topic == "" or not client or not client:ready() then
        return
    end
    local text = json.encode(obj)
    if text then
        client:publish(reply_topic, text, 1)
    end
end

---Act on one received payload. Never raises on bad input.
---@param payload string
local function handle_payload(payload)
    log.info("mqtt", "rx", fota_cmd.shorten(payload))
    if #payload > config.mqtt_max_payload then
        log.warn("mqtt_cmd", "payload ignored", #payload, "bytes, limit", config.mqtt_max_payload)
        reply({ ack = "error", reason = "payload longer than " .. config.mqtt_max_payload .. " bytes" })
        return
    end
    local text = payload:match("^%s*(.-)%s*$")
    local answer
    if text == "update" then
        answer = fota_cmd.fota({ fota = "true" }, "mqtt", "mqtt_cmd")
    else
        answer = fota_cmd.handle(text, "mqtt", "mqtt_cmd")
    end
    if answer then
        reply(answer)
    end
end

---The client's callback: runs in the firmware's event dispatch, so it only
---forwards work to the task (no waiting here).
local function on_event(mqtt_client, event, data, payload)
    if event == "conack" then
        log.info("mqtt", "connected, subscribing", cmd_topic)
        mqtt_client:subscribe(cmd_topic, 1)
    elseif event == "suback" then
        log.info("mqtt", "subscribed", tostring(data), tostring(payload))
    elseif event == "recv" then
        if data == cmd_topic then
            sys.publish(CMD_MSG, payload)
        end
    elseif event == "disconnect" then
        log.warn("mqtt", "disconnected", tostring(data), "retry in", config.mqtt_reconnect_ms, "ms")
    elseif event == "error" then
        log.warn("mqtt", "error", tostring(data), tostring(payload))
    end
end

local function task()
    netready.wait(nil, "fota_mqtt")
    local id = devinfo.id()
    cmd_topic = config.mqtt_topic:gsub("{device}", id)
    reply_topic = config.mqtt_reply_topic:gsub("{device}", id)
    local client_id = config.mqtt_client_id
    if client_id == "" then
        client_id = id
    end
    -- The receive buffer must hold a whole packet (topic and header included): a bigger
    -- one makes the firmware drop the connection, so it is sized from the payload limit.
    client = mqtt.create(nil, config.mqtt_host, config.mqtt_port, config.mqtt_tls,
        { rxSize = config.mqtt_max_payload + RX_OVERHEAD })
    if not client then
        log.error("mqtt", "mqtt.create failed", config.mqtt_host, config.mqtt_port)
        return
    end
    client:auth(client_id, config.mqtt_username, config.mqtt_password)
    client:keepalive(config.mqtt_keepalive_s)
    client:autoreconn(true, config.mqtt_reconnect_ms)
    client:on(on_event)
    log.info("mqtt", "connecting", config.mqtt_host, config.mqtt_port, "topic", cmd_topic)
    client:connect()
    while true do
        local _, payload = sys.waitUntil(CMD_MSG)
        if type(payload) == "string" then
            -- A bug must not take the trigger (and, through sys, the VM) down with it.
            local ok, err = pcall(handle_payload, payload)
            if not ok then
                log.error("mqtt_cmd", "handler error", tostring(err))
            end
        end
    end
end

---Start the MQTT trigger (call once).
function fota_mqtt.start()
    if not mqtt then
        log.error("mqtt", "this firmware has no mqtt module")
        return
    end
    sys.subscribe("FOTA_END", function(ret, trigger)
        reply({
            fota_result = ret,
            trigger = trigger,
            meaning = fota_check.MEANING[ret] or "unknown result code",
            version = VERSION,
        })
    end)
    sys.taskInit(task)
end

return fota_mqtt
