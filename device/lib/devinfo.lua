--[[
@module devinfo
@summary The device id a server knows this module by.

Same key libfota2 sends: the Wi-Fi MAC on the Air8101, the IMEI on cellular
modules, otherwise the chip's unique id in hex.
]]

local devinfo = {}

---@return string id e.g. "C8C2C68CD602"
function devinfo.id()
    if wlan and wlan.getMac then
        local mac = wlan.getMac()
        if type(mac) == "string" and mac ~= "" then
            return mac
        end
    end
    if mobile and mobile.imei then
        local imei = mobile.imei()
        if type(imei) == "string" and imei ~= "" then
            return imei
        end
    end
    if mcu and mcu.unique_id then
        local uid = mcu.unique_id()
        if type(uid) == "string" and uid ~= "" then
            return (uid:toHex())
        end
    end
    return "unknown"
end

return devinfo
