--[[
@module devinfo
@summary The device id a server knows this module by.

Exactly the key libfota2 puts into its check-in on this model, so the push
channel and the check-ins name one device: the IMEI on Cat.1 modules (Air780E*,
Air8000 - which also has Wi-Fi - and Air700*), the Wi-Fi MAC on the Air8101,
the chip's unique id in hex on the Air1601/1602/1780. On any other model
libfota2 knows no id; fota_check then passes this one as opts.imei.
]]

local devinfo = {}

local function starts(s, prefix)
    return s:sub(1, #prefix) == prefix
end

---A firmware query's answer when it is a non-empty string (nil when the model's
---firmware lacks the function or answers nothing).
---@param mod table|nil module, e.g. mobile
---@param name string function name, e.g. "imei"
---@return string|nil
local function ask(mod, name)
    if mod and mod[name] then
        local v = mod[name]()
        if type(v) == "string" and v ~= "" then
            return v
        end
    end
    return nil
end

local function model()
    return ask(hmeta, "model") or ""
end

local function imei()
    return ask(mobile, "imei")
end

local function mac()
    return ask(wlan, "getMac")
end

local function uid()
    local v = ask(mcu, "unique_id")
    return v and v:toHex() or nil
end

---True when libfota2 itself derives the device id on this model.
---@return boolean
function devinfo.libfota2_knows()
    local m = model()
    return starts(m, "Air780E") or starts(m, "Air8000") or starts(m, "Air700") or starts(m, "Air8101")
        or starts(m, "Air1601") or starts(m, "Air1602") or starts(m, "Air1780")
end

---@return string id e.g. "C8C2C68CD602"
function devinfo.id()
    local m = model()
    local id
    if starts(m, "Air780E") or starts(m, "Air8000") or starts(m, "Air700") then
        id = imei()
    elseif starts(m, "Air8101") then
        id = mac()
    elseif starts(m, "Air1601") or starts(m, "Air1602") or starts(m, "Air1780") then
        id = uid()
    end
    return id or mac() or imei() or uid() or "unknown"
end

return devinfo
