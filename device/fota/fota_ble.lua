--[[
@module fota_ble
@summary Scenario 4 (optional): a phone writes the upgrade package over BLE GATT.

The device advertises as config.ble_name and serves one GATT service:

  service  ble_service (FB00)
    FB01 control  WRITE          commands from the phone (below)
    FB02 data     WRITE|WRITE_CMD the package, in order, any chunk size the MTU allows
    FB03 status   READ|NOTIFY    what the device answers, as ASCII text

  control commands:
    0x01 + size (4 bytes, big endian)   START: begin a package of that many bytes
    0x02                                END:   the phone has sent everything
    0x03                                ABORT: drop what was received
  status notifications:
    "READY <size>"      after START
    "OK <bytes>"        after END: the package is complete and verified; the
                        device reboots after config.reboot_delay_ms and the
                        new version runs
    "ERR <reason>"      the transfer is refused and the old version keeps
                        running (reasons: size, busy, idle, package, short,
                        state, disconnected)

Every byte goes straight into the fota module (fota.init / fota.run), which
checks the package's own format and block CRCs as it arrives; END is accepted
only when exactly <size> bytes came and fota.isDone() reports the package
complete. A dropped link or config.ble_idle_timeout_ms without data during a
transfer abandons it (fota.finish(false)).
]]

local config = require "config"

local fota_ble = {}

local SERVICE = "FB00"
local CONTROL, DATA, STATUS = "FB01", "FB02", "FB03"
local CMD_START, CMD_END, CMD_ABORT = 0x01, 0x02, 0x03
local MAX_PACKAGE = 4 * 1024 * 1024

local ble_device = nil
local expected = 0       -- announced size; 0 when no transfer runs
local received = 0
local failed = nil       -- reason once fota.run refused the package
local idle_timer = nil
local last_progress = 0

local function status(text)
    log.info("fota_ble", "status", text)
    if ble_device then
        local target = {uuid_service = string.fromHex(SERVICE),
                        uuid_characteristic = string.fromHex(STATUS)}
        ble_device:write_value(target, text)
        ble_device:write_notify(target, text)
    end
end

local function stop_idle_timer()
    if idle_timer then
        sys.timerStop(idle_timer)
        idle_timer = nil
    end
end

---Drop the transfer; the running version stays.
local function abandon(reason)
    stop_idle_timer()
    if expected > 0 then
        fota.finish(false)
        log.warn("fota_ble", "refused", reason, "after", received, "of", expected, "bytes")
        status("ERR " .. reason)
    end
    expected, received, failed = 0, 0, nil
end

local function restart_idle_timer()
    stop_idle_timer()
    idle_timer = sys.timerStart(abandon, config.ble_idle_timeout_ms, "idle")
end

local function on_start(cmd)
    if #cmd < 5 then
        status("ERR size")
        return
    end
    if expected > 0 then
        status("ERR busy")
        return
    end
    local size = (cmd:byte(2) << 24) | (cmd:byte(3) << 16) | (cmd:byte(4) << 8) | cmd:byte(5)
    if size <= 0 or size > MAX_PACKAGE then
        status("ERR size")
        return
    end
    if not fota.init() then
        status("ERR state")
        return
    end
    expected, received, failed, last_progress = size, 0, nil, 0
    restart_idle_timer()
    log.info("fota_ble", "receiving", size, "bytes")
    status("READY " .. size)
end

local function on_data(chunk)
    if expected == 0 then
        log.warn("fota_ble", "data without START ignored", #chunk, "bytes")
        return
    end
    if failed then
        return
    end
    received = received + #chunk
    if received > expected then
        failed = "size"
        return
    end
    local ok = fota.run(chunk)
    if not ok then
        failed = "package"
        log.warn("fota_ble", "fota.run refused the package at", received, "bytes")
        status("ERR package")
        return
    end
    restart_idle_timer()
    local percent = received * 100 // expected
    if percent >= last_progress + 25 then
        last_progress = percent - percent % 25
        log.info("fota_ble", "progress", last_progress, "%")
    end
end

local function on_end()
    if expected == 0 then
        status("ERR state")
        return
    end
    if failed then
        abandon(failed)
        return
    end
    if received ~= expected then
        abandon("short")
        return
    end
    local ok, done = fota.isDone()
    if not (ok and done) then
        abandon("package")
        return
    end
    stop_idle_timer()
    if not fota.finish(true) then
        abandon("package")
        return
    end
    status("OK " .. received)
    expected, received = 0, 0
    log.info("fota_result", 0, "package received over BLE and verified, rebooting to apply it")
    sys.timerStart(rtos.reboot, config.reboot_delay_ms)
end

local function on_control(cmd)
    local op = cmd:byte(1)
    if op == CMD_START then
        on_start(cmd)
    elseif op == CMD_END then
        on_end()
    elseif op == CMD_ABORT then
        abandon("aborted")
    else
        log.warn("fota_ble", "unknown control command", cmd:toHex())
    end
end

local function on_event(dev, event, param)
    if event == ble.EVENT_CONN then
        log.info("fota_ble", "connected", param.addr:toHex())
    elseif event == ble.EVENT_DISCONN then
        log.info("fota_ble", "disconnected", param.reason)
        abandon("disconnected")
        dev:adv_start()
    elseif event == ble.EVENT_WRITE then
        local ch = param.uuid_characteristic:toHex()
        if ch == DATA then
            on_data(param.data)
        elseif ch == CONTROL then
            on_control(param.data)
        end
    end
end

---Advertise and wait for a phone.
function fota_ble.start()
    if not bluetooth then
        log.error("fota_ble", "this firmware has no bluetooth module")
        return false
    end
    local bt = bluetooth.init()
    ble_device = bt and bt:ble(on_event)
    if not ble_device then
        log.error("fota_ble", "BLE init failed")
        return false
    end
    local created = ble_device:gatt_create({
        string.fromHex(SERVICE),
        {string.fromHex(CONTROL), ble.WRITE},
        {string.fromHex(DATA), ble.WRITE | ble.WRITE_CMD},
        {string.fromHex(STATUS), ble.READ | ble.NOTIFY},
    })
    local adv = created and ble_device:adv_create({
        addr_mode = ble.PUBLIC,
        channel_map = ble.CHNLS_ALL,
        intv_min = 160,
        intv_max = 160,
        adv_data = {
            {ble.FLAGS, string.char(0x06)},
            {ble.COMPLETE_LOCAL_NAME, config.ble_name},
        },
    })
    if not adv or not ble_device:adv_start() then
        log.error("fota_ble", "GATT or advertising setup failed")
        return false
    end
    log.info("fota_ble", "advertising as", config.ble_name, "version", VERSION)
    return true
end

return fota_ble
