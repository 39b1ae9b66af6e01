--[[
FOTA kit reference project for the Air8101 (LuatOS).

What to edit:
  * PROJECT / VERSION below (VERSION must stay "xxx.yyy.zzz"; libfota2 reports
    <core>.<xxx>.<zzz> to the server, so the middle group is never seen:
    bump the last group for each release).
  * config.lua: scenario, network driver, server URL, TCP host/port, Wi-Fi,
    product key, intervals, button pin.

Scenario is chosen in ONE place: config.scenario ("periodic", "tcp", "psm" or
the optional "ble": a phone writes the package over BLE GATT).
]]

-- libfota2 reads these two globals to build the check URL; keep both global.
PROJECT = "FOTA_KIT_DEMO"
VERSION = "001.000.000"

log.info("main", PROJECT, VERSION, "core", rtos.version())

local config = require "config"

-- libfota2 needs a project key for every URL that does not start with "###",
-- a self-hosted server included. fota_check also puts it into each request's
-- options; the global covers any other libfota2 caller in your own code.
if type(config.product_key) == "string" and config.product_key ~= "" then
    PRODUCT_KEY = config.product_key
end

-- Hardware watchdog: reboots the module if the scheduler ever stalls.
if wdt then
    wdt.init(9000)
    sys.timerLoopStart(wdt.feed, 3000)
end

local netdrv_device = require "netdrv_device"
netdrv_device.start()

local scenario = config.scenario
if scenario == "periodic" then
    require("fota_periodic").start()
elseif scenario == "tcp" then
    require("fota_tcp").start()
elseif scenario == "psm" then
    require("fota_psm").start()
elseif scenario == "ble" then
    require("fota_ble").start()
else
    log.error("main", "unknown scenario", tostring(scenario), "use periodic, tcp, psm or ble")
end

-- Optional: upgrade commands from an MQTT broker. Not in PSM: that device sleeps.
if scenario ~= "psm" and config.mqtt_enabled then
    require("fota_mqtt").start()
end

-- The button asks for a check now. Not in PSM: that device sleeps between checks.
if scenario ~= "psm" and config.button_enabled then
    require("fota_button").setup(config.button_pin, config.button_debounce_ms)
end

-- Never return from main: sys.run() is the scheduler.
sys.run()
