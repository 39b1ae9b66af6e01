--[[
@module fota_psm
@summary Scenario 3: wake, network, check, sleep in PSM+, wake again later.

A wake from PSM+ is a full boot, so this runs once per wake:
  1. log why we woke (pm.lastReson, pm.dtimerWkId);
  2. wait for the network, at most psm_net_timeout_ms;
  3. start a check and wait for its FOTA_END. The bound is the HTTP timeout
     plus psm_fota_margin_ms: a download in flight is never cut (the vendor
     demo gives up after 15 s and sleeps in the middle of a download);
  4. on result 0 reboot at once (the new script applies at boot);
  5. otherwise power down the network, arm the wake timer, enter PSM+;
  6. if the module is still awake 15 s later, PSM+ failed: reboot.
]]

local config = require "config"
local netready = require "netready"
local fota_check = require "fota_check"
local netdrv_device = require "netdrv_device"

local fota_psm = {}

local function log_wake_reason()
    local source, state, detail, pad
    if pm.lastReson then
        source, state, detail, pad = pm.lastReson()
    end
    local timer_id = pm.dtimerWkId and pm.dtimerWkId() or -1
    log.info("psm", "wake", "source", source, "state", state, "detail", detail, "pad", pad,
        "dtimer", timer_id)
    if timer_id == config.psm_dtimer_id then
        log.info("psm", "woken by dtimer", timer_id)
    else
        log.info("psm", "power-on or reset boot")
    end
end

---@return boolean done true when a check ran to its end
local function check_once()
    if not netready.wait(config.psm_net_timeout_ms, "psm") then
        log.warn("psm", "no network, skipping the check")
        return false
    end
    local started = fota_check.start("psm", { reboot = false })
    if not started then
        return false
    end
    local bound = config.http_timeout_ms + config.psm_fota_margin_ms
    log.info("psm", "waiting for FOTA_END, at most", bound, "ms")
    local got, ret = sys.waitUntil("FOTA_END", bound)
    if not got then
        log.warn("psm", "no FOTA_END within", bound, "ms")
        return false
    end
    if ret == 0 then
        log.info("psm", "upgrade downloaded, rebooting to apply it")
        rtos.reboot()
        return true
    end
    log.info("psm", "check done", ret)
    return true
end

local function sleep()
    log.info("psm", "power down network")
    netdrv_device.power_down()
    local armed = pm.dtimerStart(config.psm_dtimer_id, config.psm_sleep_ms)
    log.info("psm", "dtimer", config.psm_dtimer_id, "armed", armed, config.psm_sleep_ms, "ms")
    log.info("psm", "entering PSM+")
    pm.power(pm.WORK_MODE, 3)
    -- Sleep starts once everything is idle; still running after 15 s means it failed.
    sys.wait(15000)
    log.error("psm", "PSM+ entry failed, rebooting")
    rtos.reboot()
end

local function psm_task()
    log_wake_reason()
    check_once()
    sleep()
end

---Run the wake-check-sleep cycle (call once per boot).
function fota_psm.start()
    log.info("fota_psm", "start, sleep", config.psm_sleep_ms, "ms")
    sys.taskInit(psm_task)
end

return fota_psm
