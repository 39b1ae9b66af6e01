-- exnetif: pick the network a device uses from a priority list (WiFi, Ethernet, 4G, ...).
-- Written for luatos-sim from the behaviour contract (behaviour.md §5.6); not the vendor code.
--
-- set_priority_order{ {WIFI={ssid=,password=,bssid=,ping_ip=,need_ping=}},
--                     {ETHUSER1={tp=netdrv.CH390, opts={spi=,cs=}, static_ip=..., ping_ip=}},
--                     {ETHERNET={pwrpin=}}, {airlink_4G={...}}, {LWIP_GP=true} }
-- One entry: the adapter is brought up and made the default; nothing is ever probed, so
-- EXLIB_NETDRV_NETWORK_STATUS is never published and notify_status' callback never runs.
-- Several entries: each adapter is brought up, probed every ping_time once it has an address,
-- and the first reachable one in list order becomes socket.dft().

dnsproxy = require "dnsproxy"
dhcpsrv = require "dhcpsrv"
httpdns = require "httpdns"

local exnetif = {}

local LWIP_USER1 = socket.LWIP_USER1
local LWIP_GP_GW = socket.LWIP_GP_GW
assert(LWIP_USER1 and LWIP_GP_GW, "exnetif needs socket.LWIP_USER1 and socket.LWIP_GP_GW")

-- adapter states
local DISCONNECTED, CONNECTING, CONNECTED, OPENED, SINGLE_NETWORK, STOPED = 0, 1, 2, 3, 4, 5
exnetif.DISCONNECTED, exnetif.CONNECTING, exnetif.CONNECTED = DISCONNECTED, CONNECTING, CONNECTED
exnetif.OPENED, exnetif.SINGLE_NETWORK, exnetif.STOPED = OPENED, SINGLE_NETWORK, STOPED

local states = {}        -- adapter -> state
local order = {}         -- adapters in priority order
local configs = {}       -- adapter -> entry config
local types = {}         -- adapter -> type name
local current = nil      -- adapter in use (multi mode)
local status_cb = nil
local auto_socket_switch = true
local ping_time = 10000
local started = false

function exnetif.notify_status(cb)
    status_cb = cb
end

local function type_name(a)
    return types[a] or "Unknown"
end

-- The priority pass: the first CONNECTED adapter in list order wins.
local function choose()
    local best = nil
    for _, a in ipairs(order) do
        if states[a] == CONNECTED then best = a; break end
    end
    if best == current then return end
    local old = current
    current = best
    if best then
        log.info("exnetif", "网络切换至", type_name(best), best)
        if status_cb then status_cb(type_name(best), best) end
        sys.publish("EXLIB_NETDRV_NETWORK_STATUS", type_name(best), best)
        socket.dft(best)
        if old and auto_socket_switch then socket.close_all(old) end
    else
        log.info("exnetif", "没有可用网络")
        if status_cb then status_cb(nil, -1) end
        sys.publish("EXLIB_NETDRV_NETWORK_STATUS", nil, -1)
        if old and auto_socket_switch then socket.close_all(old) end
    end
end

local function hexbssid(b)
    if type(b) == "string" and #b >= 12 then
        return (b:sub(1, 12):gsub("..", function(h) return string.char(tonumber(h, 16)) end))
    end
    return b
end

-- Bring an adapter up; returns false on an immediate failure.
local function open_wifi(cfg)
    log.info("WiFi名称:", cfg.ssid)
    log.info("ping_ip  :", cfg.ping_ip)
    wlan.init()
    if #order == 1 then states[socket.LWIP_STA] = SINGLE_NETWORK end
    if not wlan.connect(cfg.ssid, cfg.password, 1, hexbssid(cfg.bssid)) then
        log.error("WiFi连接失败")
        log.error("wifi连接失败")
        return false
    end
    log.info("WiFi STA初始化完成")
    return true
end

local function open_netdrv(a, kind, cfg)
    if cfg.pwrpin and gpio then gpio.setup(cfg.pwrpin, 1, gpio.PULLUP) end
    if not netdrv.setup(a, kind, cfg.opts) then
        log.error("exnetif", "netdrv.setup失败", a)
        return false
    end
    if cfg.static_ip then
        netdrv.dhcp(a, false)
        netdrv.ipv4(a, cfg.static_ip.ipv4, cfg.static_ip.mark or cfg.static_ip.mask,
            cfg.static_ip.gw)
    else
        netdrv.dhcp(a, true)
    end
    return true
end

-- Entry -> adapter, type, opener, config. The keys: WIFI (station), ETHERNET (the RMII MAC,
-- or a SPI chip given by tp), ETHUSER1 (CH390H over SPI on the Air8101, adapter LWIP_USER1),
-- airlink_4G (a 4G module on SPI/UART whose network comes in as LWIP_GP_GW), LWIP_GP (the
-- module's own 4G).
local function classify(entry)
    if entry.WIFI then
        return socket.LWIP_STA, "WiFi", function() return open_wifi(entry.WIFI) end, entry.WIFI
    elseif entry.ETHUSER1 then
        local cfg = entry.ETHUSER1
        return LWIP_USER1, "8101SPIETH", function()
            log.info("exnetif", "SPI以太网初始化", "8101SPIETH")
            return open_netdrv(LWIP_USER1, cfg.tp or (netdrv and netdrv.CH390) or 0, cfg)
        end, cfg
    elseif entry.ETHERNET then
        local cfg = entry.ETHERNET
        return socket.LWIP_ETH, "Ethernet", function()
            log.info("exnetif", "以太网初始化", "Ethernet")
            return open_netdrv(socket.LWIP_ETH, cfg.tp or 0, cfg)
        end, cfg
    elseif entry.airlink_4G or entry.AIRLINK_4G then
        local cfg = entry.airlink_4G or entry.AIRLINK_4G
        if type(cfg) ~= "table" then cfg = {} end
        return LWIP_GP_GW, "airlink_4G", function()
            if not airlink then
                log.error("exnetif", "固件不支持airlink")
                return false
            end
            airlink.init()
            if not open_netdrv(LWIP_GP_GW, netdrv and netdrv.WHALE or 0, cfg) then return false end
            airlink.start(cfg.airlink_type or airlink.MODE_SPI_MASTER)
            return true
        end, cfg
    elseif entry.LWIP_GP then
        local cfg = type(entry.LWIP_GP) == "table" and entry.LWIP_GP or {}
        return socket.LWIP_GP, "4G", function() return true end, cfg
    end
    return nil, "Unknown", nil, {}
end

local function probe(a)
    local cfg = configs[a] or {}
    if cfg.need_ping == false then
        states[a] = CONNECTED
        choose()
        return
    end
    if cfg.ping_ip and icmp then
        icmp.setup(a)
        icmp.ping(a, cfg.ping_ip)
        return -- PING_RESULT makes it CONNECTED
    end
    local ip = httpdns.ali("baidu.com", { adapter = a, timeout = 3000 })
    if ip and states[a] == CONNECTING then
        states[a] = CONNECTED
        choose()
    end
end

local function ping_loop()
    while true do
        for _, a in ipairs(order) do
            if states[a] == CONNECTING then probe(a) end
        end
        sys.wait(ping_time)
    end
end

local function check_loop()
    while true do
        sys.waitUntil("EXNETIF_CHECK")
        choose()
    end
end

local function multi_start()
    if started then return end
    started = true
    sys.subscribe("IP_READY", function(ip, a)
        if states[a] == OPENED then
            log.info("exnetif", "IP_READY", type_name(a), ip)
            states[a] = CONNECTING
        end
    end)
    sys.subscribe("IP_LOSE", function(a)
        if states[a] and states[a] ~= STOPED then
            log.info("exnetif", "IP_LOSE", type_name(a))
            states[a] = OPENED
            sys.publish("EXNETIF_CHECK")
        end
    end)
    sys.subscribe("PING_RESULT", function(id, time, dst)
        if states[id] == CONNECTING then
            states[id] = CONNECTED
            sys.publish("EXNETIF_CHECK")
        end
    end)
    sys.taskInit(ping_loop)
    sys.taskInit(check_loop)
end

function exnetif.set_priority_order(list)
    if type(list) ~= "table" or #list == 0 then
        log.error("网络配置为空")
        return false
    end
    if list.auto_socket_switch ~= nil then auto_socket_switch = list.auto_socket_switch end
    order, configs, types = {}, {}, {}
    if #list == 1 then
        local a, t, opener, cfg = classify(list[1])
        if not opener then
            log.error("exnetif", "不支持的网络类型")
            return false
        end
        order[1], configs[a], types[a] = a, cfg, t
        if not opener() then return false end
        states[a] = SINGLE_NETWORK
        socket.dft(a)
        choose() -- nothing is CONNECTED in single mode: no notification
        return true
    end
    local openers = {}
    for _, entry in ipairs(list) do
        local a, t, opener, cfg = classify(entry)
        if opener then
            order[#order + 1], configs[a], types[a], openers[a] = a, cfg, t, opener
            if cfg.ping_time then ping_time = cfg.ping_time end
        end
    end
    multi_start()
    for _, a in ipairs(order) do
        states[a] = OPENED
        if not openers[a]() then states[a] = DISCONNECTED end
        local ready = socket.adapter(a)
        if ready and states[a] == OPENED then states[a] = CONNECTING end
    end
    return true
end

-- Stop using an adapter (it is never chosen again until set_priority_order runs again).
function exnetif.close(_, a)
    if a and states[a] then
        states[a] = STOPED
        sys.publish("EXNETIF_CHECK")
    end
end

function exnetif.close_all()
    for _, a in ipairs(order) do socket.close_all(a) end
end

function exnetif.state(a)
    return states[a]
end

return exnetif
