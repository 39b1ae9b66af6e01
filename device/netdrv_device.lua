--[[
@module netdrv_device
@summary Starts the network driver named by config.netdrv and logs link events.

Drivers (files in netdrv/, all loaded by basename):
  wifi     -> netdrv_wifi      Wi-Fi station
  eth_spi  -> netdrv_eth_spi   CH390H Ethernet on SPI
  eth_rmii -> netdrv_eth_rmii  Ethernet PHY on the RMII MAC
  4g       -> netdrv_4g        Air780E* 4G module on SPI (airlink)
  multiple -> netdrv_multiple  several of the above, priority + fail-over
]]

local config = require "config"

local netdrv_device = {}

-- Module names are written out in full so they match the file names exactly.
local DRIVERS = {
    wifi = "netdrv_wifi",
    eth_spi = "netdrv_eth_spi",
    eth_rmii = "netdrv_eth_rmii",
    ["4g"] = "netdrv_4g",
    multiple = "netdrv_multiple",
}

---@type table|nil the started driver module
local active

local function on_ip_ready(ip, adapter)
    for i, dns in ipairs(config.dns_servers) do
        socket.setDNS(adapter, i, dns)
    end
    log.info("netdrv", "IP_READY", ip, "adapter", adapter)
end

local function on_ip_lose(adapter)
    log.warn("netdrv", "IP_LOSE", "adapter", adapter)
end

---Start the configured driver. Call once at boot.
---@return boolean started
function netdrv_device.start()
    local name = DRIVERS[config.netdrv]
    if not name then
        log.error("netdrv", "unknown netdrv", tostring(config.netdrv),
            "use wifi, eth_spi, eth_rmii, 4g or multiple")
        return false
    end
    sys.subscribe("IP_READY", on_ip_ready)
    sys.subscribe("IP_LOSE", on_ip_lose)
    log.info("netdrv", "start", config.netdrv)
    active = require(name)
    return active.start(config)
end

---Switch off what keeps drawing current in deep sleep (radio, PHY supply).
function netdrv_device.power_down()
    if active and active.power_down then
        active.power_down(config)
    end
end

return netdrv_device
