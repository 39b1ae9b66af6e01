--[[
@module netdrv_eth_rmii
@summary Ethernet PHY (e.g. LAN8720 on AirPHY_1000) on the Air8101 RMII MAC.

An "ETHERNET" entry without "tp" makes exnetif use the built-in MAC
(adapter socket.LWIP_ETH). Only the PHY power pin is needed; DHCP is used.
]]

local exnetif = require "exnetif"

local netdrv_eth_rmii = {}

---exnetif entry for this link; shared with netdrv_multiple.
---@param cfg FotaConfig
---@return table
function netdrv_eth_rmii.entry(cfg)
    return {
        ETHERNET = {
            pwrpin = cfg.rmii_pwr_pin,
        },
    }
end

---@param cfg FotaConfig
---@return boolean
function netdrv_eth_rmii.start(cfg)
    sys.taskInit(function()
        local ok = exnetif.set_priority_order({ netdrv_eth_rmii.entry(cfg) })
        if not ok then
            log.error("netdrv_eth_rmii", "RMII Ethernet setup failed, check rmii_pwr_pin")
        end
    end)
    return true
end

---Cut the PHY supply before deep sleep.
---@param cfg FotaConfig
function netdrv_eth_rmii.power_down(cfg)
    gpio.setup(cfg.rmii_pwr_pin, 0)
    log.info("netdrv_eth_rmii", "PHY power off", cfg.rmii_pwr_pin)
end

return netdrv_eth_rmii
