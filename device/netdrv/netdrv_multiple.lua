--[[
@module netdrv_multiple
@summary Several links with priority and fail-over, through exnetif.

config.multiple_order lists the links, highest priority first, e.g.
{"eth_spi", "wifi", "4g"}. exnetif probes each link that has an IP (httpdns to
baidu.com, or ping_ip), uses the first usable one in list order as default
adapter, and closes the sockets of the old one on a switch, so the TCP channel
reconnects over the new link by itself.
]]

local exnetif = require "exnetif"

local netdrv_multiple = {}

-- Names are written out in full so they match the file names exactly.
local LINKS = {
    wifi = "netdrv_wifi",
    eth_spi = "netdrv_eth_spi",
    eth_rmii = "netdrv_eth_rmii",
    ["4g"] = "netdrv_4g",
}

---@type string[] driver modules in use, for power_down
local used = {}

local function on_switch(net_type, adapter)
    if type(net_type) == "string" then
        log.info("netdrv_multiple", "using", net_type, "adapter", adapter)
    else
        log.warn("netdrv_multiple", "no usable network", adapter)
    end
end

local function on_sta_event(evt, data)
    log.info("netdrv_multiple", "WLAN_STA_INC", evt, data)
end

---Build the exnetif list from config.multiple_order.
---@param cfg FotaConfig
---@return table[]
local function build_list(cfg)
    local list = {}
    for _, link in ipairs(cfg.multiple_order) do
        local modname = LINKS[link]
        if not modname then
            log.error("netdrv_multiple", "unknown link", tostring(link), "use wifi, eth_spi, eth_rmii or 4g")
        else
            local entry = require(modname).entry(cfg)
            if entry then
                -- One key per entry (WIFI, ETHUSER1, ETHERNET or airlink_4G).
                for _, params in pairs(entry) do
                    params.need_ping = cfg.multiple_need_ping
                    if cfg.multiple_ping_ip ~= "" then
                        params.ping_ip = cfg.multiple_ping_ip
                    end
                end
                list[#list + 1] = entry
                used[#used + 1] = modname
            end
        end
    end
    return list
end

---@param cfg FotaConfig
---@return boolean
function netdrv_multiple.start(cfg)
    local list = build_list(cfg)
    if #list == 0 then
        log.error("netdrv_multiple", "no usable link in multiple_order")
        return false
    end
    sys.subscribe("WLAN_STA_INC", on_sta_event)
    exnetif.notify_status(on_switch)
    sys.taskInit(function()
        local ok = exnetif.set_priority_order(list)
        if not ok then
            log.error("netdrv_multiple", "network setup failed")
        end
    end)
    return true
end

---Power down every link in use.
---@param cfg FotaConfig
function netdrv_multiple.power_down(cfg)
    for _, modname in ipairs(used) do
        local m = require(modname)
        if m.power_down then
            m.power_down(cfg)
        end
    end
end

return netdrv_multiple
