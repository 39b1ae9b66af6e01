-- dnsproxy: forward DNS queries from a local network (AP, Ethernet) to the main adapter.
-- luatos-sim stand-in: records the setup; no DNS packets are relayed.

local dnsproxy = {}

function dnsproxy.setup(adapter, main_adapter)
    dnsproxy.adapter = adapter
    dnsproxy.main_adapter = main_adapter
    log.info("dnsproxy", "开始监听", adapter, main_adapter)
    return true
end

function dnsproxy.setMainAdapter(main_adapter)
    dnsproxy.main_adapter = main_adapter
end

return dnsproxy
