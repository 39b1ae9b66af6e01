--[[
@module fota_periodic
@summary Scenario 1: check once the network is up, then every check_interval_ms.

Each check waits for the network first, so a link that is down at check time
delays the check instead of failing it. The button (fota_button) may ask for
an extra check at any time; fota_check refuses it while one runs.
]]

local config = require "config"
local netready = require "netready"
local fota_check = require "fota_check"

local fota_periodic = {}

local function check_loop()
    local trigger = "boot"
    while true do
        netready.wait(nil, "fota_periodic")
        fota_check.start(trigger)
        log.info("fota_periodic", "next check in", config.check_interval_ms, "ms")
        sys.wait(config.check_interval_ms)
        trigger = "periodic"
    end
end

---Start the check loop (call once).
function fota_periodic.start()
    log.info("fota_periodic", "start, interval", config.check_interval_ms, "ms")
    sys.taskInit(check_loop)
end

return fota_periodic
