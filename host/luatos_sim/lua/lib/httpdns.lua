-- httpdns: resolve a name over HTTP DNS services (AliDNS, DNSPod), from a task.
-- Written for luatos-sim from the documented behaviour; the emulator answers the public
-- resolvers itself (luatos_sim.network) unless a test maps them elsewhere.

local httpdns = {}

local function first_ip(body)
    if type(body) ~= "string" then return nil end
    return body:match("(%d+%.%d+%.%d+%.%d+)")
end

-- Returns the first IPv4 address for domain, or nil.
function httpdns.ali(domain, opts)
    if type(domain) ~= "string" or #domain == 0 then return nil end
    opts = opts or {}
    local code, _, body = http.request("GET", "http://223.5.5.5/resolve?name=" .. domain ..
        "&short=1", nil, nil, { adapter = opts.adapter, timeout = opts.timeout or 3000 }).wait()
    if code == 200 then return first_ip(body) end
    return nil
end

function httpdns.tx(domain, opts)
    if type(domain) ~= "string" or #domain == 0 then return nil end
    opts = opts or {}
    local code, _, body = http.request("GET", "http://119.29.29.29/d?dn=" .. domain, nil, nil,
        { adapter = opts.adapter, timeout = opts.timeout or 3000 }).wait()
    if code == 200 then return first_ip(body) end
    return nil
end

return httpdns
