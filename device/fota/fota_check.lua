--[[
@module fota_check
@summary One upgrade check at a time, with fresh libfota2 options every time.

Why fresh options: libfota2 marks the table it is given as "url_done" and, on
the next call with the same table, sends the URL verbatim without the
mac/project_key/firmware_name/version query. So every request gets a new table.

Every result is logged as "fota_result <code> <what it means / what to do>"
and published as the message FOTA_END (code, trigger). On 0 the module
reboots after config.reboot_delay_ms, and the new script applies at boot.

Others may publish FOTA_CHECK_REQ (trigger) to ask for a check now.
]]

local config = require "config"
local netready = require "netready"
local libfota2 = require "libfota2"
local devinfo = require "devinfo"
local devauth = require "devauth"

local fota_check = {}

---What each libfota2 result means for the user, and what to do next.
fota_check.MEANING = {
    [0] = "package downloaded and verified, rebooting to apply it",
    [1] = "connect or DNS failed: check the network and the host/port of server_url in config.lua",
    [2] = "unexpected code 2 (never sent by libfota2): update the libfota2 library",
    [3] = "server closed the connection before answering: check the server is running and reachable",
    [4] = "no upgrade: already up to date or refused by the server, or the download failed/timed out "
        .. "(see the libfota2 line above and the server log); next check as scheduled",
    [5] = "no project key: set product_key in config.lua",
}

local busy = false
local busy_trigger = nil
local stale_timer = nil

---@return boolean busy true while a check or download runs
function fota_check.is_busy()
    return busy
end

---Make a base URL fit libfota2's URL builder: a path, and a trailing "?" or "&".
---URLs starting with "###" are direct links and left alone.
---@param url string
---@return string
function fota_check.normalize_url(url)
    if url:sub(1, 3) == "###" then
        return url
    end
    local fixed = url
    local scheme, rest = fixed:match("^(https?://)(.*)$")
    if scheme and not rest:find("/", 1, true) then
        -- "http://host:8000" would glue the query onto the port.
        local host, query = rest:match("^([^?]*)(.*)$")
        fixed = scheme .. host .. "/" .. query
    end
    local last = fixed:sub(-1)
    if not fixed:find("?", 1, true) then
        fixed = fixed .. "?"
    elseif last ~= "?" and last ~= "&" then
        fixed = fixed .. "&"
    end
    if fixed ~= url then
        log.warn("fota_check", "url fixed for libfota2", url, "->", fixed)
    end
    return fixed
end

---True when url is an http(s) URL, with or without the "###" prefix.
---@param url any
---@return boolean
function fota_check.valid_url(url)
    if type(url) ~= "string" then
        return false
    end
    local bare = url
    if bare:sub(1, 3) == "###" then
        bare = bare:sub(4)
    end
    return bare:match("^https?://[^%s]+$") ~= nil and #bare >= 12
end

local function clear_busy()
    busy = false
    busy_trigger = nil
    if stale_timer then
        sys.timerStop(stale_timer)
        stale_timer = nil
    end
end

---Build a new libfota2 options table (never reuse one).
---@param url string|nil nil = config.server_url
---@return table
local function new_opts(url)
    local opts = {
        url = fota_check.normalize_url(url or config.server_url),
        timeout = config.http_timeout_ms,
    }
    if type(config.product_key) == "string" and config.product_key ~= "" then
        opts.project_key = config.product_key
    end
    -- The device credential (config.auth_mode), sent with the check-in and the download.
    opts.headers = devauth.headers()
    -- One id on every model: where libfota2 knows none, send the one the push login uses.
    if not devinfo.libfota2_knows() then
        opts.imei = devinfo.id()
    end
    return opts
end

---@class FotaStartParams
---@field url string|nil package or check URL; nil = config.server_url
---@field reboot boolean|nil reboot on success (default true)

---Start one check. Returns at once; the result arrives as FOTA_END.
---@param trigger string why (boot, periodic, button, tcp, psm...), shown in logs
---@param params FotaStartParams|nil
---@return boolean started
---@return string|nil reason "busy", "no network", "bad url" or "error" when not started
function fota_check.start(trigger, params)
    params = params or {}
    if busy then
        log.warn("fota_check", "busy", trigger, "an upgrade is already running for", busy_trigger)
        return false, "busy"
    end
    if not netready.is_up() then
        log.warn("fota_check", "no network", trigger)
        return false, "no network"
    end
    local url = params.url
    if url ~= nil and not fota_check.valid_url(url) then
        log.warn("fota_check", "bad url", trigger, tostring(url))
        return false, "bad url"
    end
    local reboot = params.reboot ~= false
    local opts = new_opts(url)

    busy = true
    busy_trigger = trigger
    -- If libfota2's task died without calling back, do not stay busy forever.
    stale_timer = sys.timerStart(function()
        stale_timer = nil
        log.warn("fota_check", "no result in time, clearing busy flag", trigger)
        busy = false
        busy_trigger = nil
    end, config.http_timeout_ms + 60000)

    local function on_result(ret)
        local meaning = fota_check.MEANING[ret] or "unknown result code"
        if ret == 0 then
            log.info("fota_result", ret, meaning)
        elseif ret == 5 then
            log.error("fota_result", ret, meaning)
        else
            log.warn("fota_result", ret, meaning)
        end
        sys.publish("FOTA_END", ret, trigger)
        if ret == 0 and reboot then
            -- Stay busy: nothing else may start before the reboot.
            log.info("fota_check", "reboot in", config.reboot_delay_ms, "ms")
            sys.timerStart(rtos.reboot, config.reboot_delay_ms)
        else
            clear_busy()
        end
    end

    log.info("fota_check", "start", trigger, opts.url)
    local ok, err = pcall(libfota2.request, on_result, opts)
    if not ok then
        -- e.g. VERSION not in "xxx.yyy.zzz" form: libfota2 raises while building the URL.
        log.error("fota_check", "libfota2.request failed", trigger, tostring(err))
        clear_busy()
        return false, "error"
    end
    return true
end

-- Anyone (button, your own code) may ask for a check now.
sys.subscribe("FOTA_CHECK_REQ", function(trigger)
    fota_check.start(trigger or "request")
end)

return fota_check
