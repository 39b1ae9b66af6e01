--[[
@module netdrv_wifi
@summary Wi-Fi station through exnetif (single network).

exnetif.set_priority_order must run inside a task, so start() spawns one.
Readiness is signalled by the firmware's IP_READY message; in single-network
mode exnetif never calls its notify callback.
]]

local exnetif = require "exnetif"

local netdrv_wifi = {}

local function on_sta_event(evt, data)
    log.info("netdrv_wifi", "WLAN_STA_INC", evt, data)
end

---exnetif entry for this link; shared with netdrv_multiple.
---@param cfg FotaConfig
---@return table
function netdrv_wifi.entry(cfg)
    return {
        WIFI = {
            ssid = cfg.wifi_ssid,
            password = cfg.wifi_password,
        },
    }
end

---@param cfg FotaConfig
---@return boolean
function netdrv_wifi.start(cfg)
    sys.subscribe("WLAN_STA_INC", on_sta_event)
    sys.taskInit(function()
        local ok = exnetif.set_priority_order({ netdrv_wifi.entry(cfg) })
        if not ok then
            log.error("netdrv_wifi", "Wi-Fi setup failed, check wifi_ssid/wifi_password in config.lua")
        end
    end)
    return true
end

---Drop the association so the radio can power down in PSM+.
function netdrv_wifi.power_down()
    if wlan and wlan.disconnect then
        wlan.disconnect()
        log.info("netdrv_wifi", "wlan disconnected")
    end
end

return netdrv_wifi
