--[[
@module netdrv_4g
@summary 4G through an Air780EHM/EHV/EGH/EPM module on SPI (airlink), via exnetif.

The Air8101 is SPI master: SPI0, chip select GPIO15, ready line GPIO48 on the
core board. The 4G module runs the vendor's airlink slave script. exnetif
brings the link up as its "airlink_4G" entry.

Note the file name is all lower case: require "netdrv_4g" (not "netdrv_4G").
]]

local exnetif = require "exnetif"

local netdrv_4g = {}

---exnetif entry for this link; nil when the firmware has no airlink.
---@param cfg FotaConfig
---@return table|nil
function netdrv_4g.entry(cfg)
    if not airlink then
        log.error("netdrv_4g", "this firmware has no airlink module, 4G over SPI is unavailable")
        return nil
    end
    return {
        airlink_4G = {
            airlink_type = airlink.MODE_SPI_MASTER,
            airlink_spi_id = cfg.lte_spi_id,
            airlink_cs_pin = cfg.lte_cs_pin,
            airlink_rdy_pin = cfg.lte_rdy_pin,
        },
    }
end

---@param cfg FotaConfig
---@return boolean
function netdrv_4g.start(cfg)
    local entry = netdrv_4g.entry(cfg)
    if not entry then
        return false
    end
    sys.taskInit(function()
        local ok = exnetif.set_priority_order({ entry })
        if not ok then
            log.error("netdrv_4g", "airlink 4G setup failed, check lte_spi_id/lte_cs_pin/lte_rdy_pin")
        end
    end)
    return true
end

---The 4G module has its own supply; switch it off in hardware if it must sleep too.
function netdrv_4g.power_down()
    log.info("netdrv_4g", "4G module keeps its own power; cut it in hardware for lowest sleep current")
end

return netdrv_4g
