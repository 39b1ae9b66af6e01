--[[
@module netdrv_eth_spi
@summary CH390H Ethernet on SPI through exnetif (single network).

Air8101 core board + AirETH_1000: the PHY's 3V3 comes from an LDO switched by
GPIO13, SPI0 with chip select GPIO15. On the Air8101 this link is adapter
socket.LWIP_USER1, which exnetif selects for the "ETHUSER1" entry. DHCP is used
unless you add static_ip = {ipv4=..., mark=..., gw=...} to the entry.
]]

local exnetif = require "exnetif"

local netdrv_eth_spi = {}

---exnetif entry for this link; shared with netdrv_multiple.
---@param cfg FotaConfig
---@return table
function netdrv_eth_spi.entry(cfg)
    return {
        ETHUSER1 = {
            pwrpin = cfg.eth_pwr_pin,
            tp = netdrv.CH390,
            opts = { spi = cfg.eth_spi_id, cs = cfg.eth_spi_cs },
        },
    }
end

---@param cfg FotaConfig
---@return boolean
function netdrv_eth_spi.start(cfg)
    sys.taskInit(function()
        local ok = exnetif.set_priority_order({ netdrv_eth_spi.entry(cfg) })
        if not ok then
            log.error("netdrv_eth_spi", "CH390H setup failed, check eth_pwr_pin/eth_spi_id/eth_spi_cs")
        end
    end)
    return true
end

---Cut the PHY supply before deep sleep.
---@param cfg FotaConfig
function netdrv_eth_spi.power_down(cfg)
    gpio.setup(cfg.eth_pwr_pin, 0)
    log.info("netdrv_eth_spi", "PHY power off", cfg.eth_pwr_pin)
end

return netdrv_eth_spi
