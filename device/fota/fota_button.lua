--[[
@module fota_button
@summary A key that asks for an upgrade check now.

The key pulls the GPIO to ground (internal pull-up, falling edge). The
firmware debounces it; fota_check refuses a press while a check is running.
The interrupt callback only publishes a message: the work runs elsewhere.
]]

local fota_button = {}

---Set up the key.
---@param pin integer GPIO number
---@param debounce_ms integer|nil default 100
---@return boolean ok
function fota_button.setup(pin, debounce_ms)
    if type(pin) ~= "number" then
        log.warn("button", "no button_pin configured")
        return false
    end
    gpio.setup(pin, function()
        log.info("button", "pressed", pin)
        sys.publish("FOTA_CHECK_REQ", "button")
    end, gpio.PULLUP, gpio.FALLING)
    gpio.debounce(pin, debounce_ms or 100)
    log.info("button", "ready", pin)
    return true
end

return fota_button
