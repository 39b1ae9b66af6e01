-- luatos-sim stand-in for the older LuatOS script library libfota (v1), after the project's
-- docs/behaviour.md §7.3. A user's own copy (--lib-dir) replaces this one.
--
-- libfota.request(cb, url, storge_location, len, param1, ota_port, timeout, server_cert,
--                 client_cert, client_key, client_password, show_otaurl)
-- cb(ret): 0 ok, 1 connect failure, 3 closed early, 4 anything else, 5 missing PRODUCT_KEY or
-- a VERSION that is not xxx.yyy.zzz (both synchronous).

local libfota = {}

local reg = debug and debug.getregistry and debug.getregistry() or {}
local host = reg.luatos_sim
local function hook(name, ...)
  if host and host[name] then host[name](...) end
end

local function device_query()
  if mobile then return "imei=" .. mobile.imei() end
  if wlan and wlan.getMac then return "mac=" .. wlan.getMac() end
  return "uid=" .. (mcu.unique_id():toHex())
end

local function classify(code, body)
  if code == 200 or code == 206 then
    if body == 0 then return 4 end
    return 0
  end
  if code == -4 then return 1 end
  if code == -5 then return 3 end
  return 4
end

local function task(cb, url, opts, certs)
  local code, _, body = http.request("GET", url, nil, nil, opts,
    certs[1], certs[2], certs[3], certs[4]).wait()
  local ret = classify(code, body)
  if ret == 4 then log.info("fota", code, body) end
  hook("result", ret)
  cb(ret)
end

function libfota.request(cb, url, storge_location, len, param1, ota_port, timeout,
                         server_cert, client_cert, client_key, client_password, show_otaurl)
  cb = cb or function() end
  local opts = { timeout = timeout or 180000 }
  if fota then
    if storge_location then
      opts.fota = { address = storge_location, length = len, param1 = param1 }
    else
      opts.fota = true
    end
  else
    os.remove("/update.bin")
    opts.dst = "/update.bin"
  end
  if ota_port then opts.port = ota_port end
  if url == nil then
    if not _G.PRODUCT_KEY then
      log.error("fota", "iot.openluat.com need PRODUCT_KEY!!!")
      hook("callback", 5)
      cb(5)
      return
    end
    local x, _, z = string.match(tostring(_G.VERSION), "^(%d+)%.(%d+)%.(%d+)$")
    if not x then
      log.error("fota", "_G.VERSION must be xxx.yyy.zzz!!!")
      hook("callback", 5)
      cb(5)
      return
    end
    local bsp = rtos.bsp()
    local cut = bsp:find("-", 1, true)
    if cut then bsp = bsp:sub(1, cut - 1) end
    url = "http://iot.openluat.com/api/site/firmware_upgrade?project_key=" .. _G.PRODUCT_KEY ..
      "&firmware_name=" .. tostring(_G.PROJECT) .. "_LuatOS-SoC_" .. bsp ..
      "&version=" .. rtos.version():sub(2) .. "." .. x .. "." .. z .. "&" .. device_query()
  end
  if show_otaurl then log.info("fota.url", url) end
  hook("started", url)
  sys.taskInit(task, cb, url, opts, { server_cert, client_cert, client_key, client_password })
end

return libfota
