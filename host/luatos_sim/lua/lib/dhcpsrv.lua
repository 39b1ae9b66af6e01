-- dhcpsrv: a DHCP server for a local network (AP, Ethernet) the device provides.
-- luatos-sim stand-in: hands out no leases; create() returns the server object.

local dhcpsrv = {}

function dhcpsrv.create(opts)
    opts = opts or {}
    local srv = {
        adapter = opts.adapter or socket.LWIP_AP,
        gw = opts.gw or { 192, 168, 4, 1 },
        mark = opts.mark or { 255, 255, 255, 0 },
        clients = {},
    }
    log.info("dhcpsrv", "创建DHCP服务", srv.adapter)
    return srv
end

return dhcpsrv
