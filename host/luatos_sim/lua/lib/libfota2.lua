-- luatos-sim stand-in for the LuatOS script library libfota2 (behaviour of version
-- 202607021200, see docs/behaviour.md §7.2). Written from that description; a user's
-- own copy of the upstream file (--lib-dir) replaces this one.
--
-- libfota2.request(cb, opts) checks the server for an upgrade and streams it into the fota
-- area (fota mode) or /update.bin (dst mode), then calls cb(ret):
--   0 image downloaded and finished   1 connect/DNS/setup failure   3 closed before headers
--   4 anything else                    5 no PRODUCT_KEY (synchronous)

local libfota2 = {}

local VERSION_STAMP = "202607021200"
local DEFAULT_URL = "http://iot.openluat.com/api/site/firmware_upgrade?"
local VENDOR_HOST = "iot.openluat.com"

-- Emulator lint hooks (absent on a device, or when the host did not install them).
local reg = debug and debug.getregistry and debug.getregistry() or {}
local host = reg.luatos_sim
local last_url = setmetatable({}, { __mode = "k" }) -- opts table -> URL it last sent

local function hook(name, ...)
  if host and host[name] then host[name](...) end
end

log.debug("libfota2", "version ->", VERSION_STAMP)

function libfota2.version()
  return VERSION_STAMP
end

-- What the vendor platform's JSON error codes mean (diagnosis lines for iot.openluat.com only).
local VENDOR_CODES = {
  [43] = { "请等待", "too many requests in a short time; try again later" },
  [3] = { "无效的设备", "the platform does not know this device (check imei/mac)" },
  [17] = { "无权限", "this device or project has no permission for upgrades" },
  [21] = { "不允许升级", "upgrades are switched off for this device" },
  [25] = { "无效的项目", "PRODUCT_KEY does not name a project on the platform" },
  [26] = { "无效的固件", "firmware_name does not match an uploaded firmware" },
  [27] = { "已是最新版本", "the device already runs the newest version" },
  [40] = { "循环升级", "the same upgrade was requested again and again; blocked for a while" },
  [1111111111111] = { "云平台下发的不是json", "the platform's answer is not a JSON object" },
}

local function vendor_diagnosis(body)
  log.info("使用合宙服务器,接下来解析body里的code")
  local code = 1111111111111
  if type(body) == "string" and body:match("^%s*{.*}%s*$") then
    local obj = json.decode(body)
    if type(obj) == "table" and obj.code ~= nil then code = obj.code end
  end
  local entry = VENDOR_CODES[code]
  if entry then
    log.info(entry[1], entry[2], code)
  else
    log.info("不是上面的那些错误code", "unlisted platform code", code)
  end
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

local function fota_task(cb, opts)
  local code, headers, body = http.request(opts.method, opts.url, opts.headers, opts.body, opts,
    opts.server_cert, opts.client_cert, opts.client_key, opts.client_password).wait()
  local ret = classify(code, body)
  if ret == 4 then
    log.info("libfota2", code, body)
    if type(opts.url) == "string" and opts.url:find(VENDOR_HOST, 1, true) then
      vendor_diagnosis(body)
    end
  end
  hook("result", ret)
  cb(ret)
end

local function device_query()
  local model = hmeta.model()
  local function starts(p) return model:sub(1, #p) == p end
  if starts("Air780E") or starts("Air8000") or starts("Air700") then
    return "imei=" .. mobile.imei()
  elseif starts("Air8101") then
    return "mac=" .. wlan.getMac()
  elseif starts("Air1601") or starts("Air1602") or starts("Air1780") then
    return "mac=" .. (mcu.unique_id():toHex())
  end
  return nil
end

function libfota2.request(cb, opts)
  opts = opts or {}
  if fota then
    opts.fota = true
  else
    os.remove("/update.bin")
    opts.dst = "/update.bin"
  end
  cb = cb or function() end
  if opts.url == nil then opts.url = DEFAULT_URL end

  local url = opts.url
  local query = ""
  local key, name, ver = opts.project_key, opts.firmware_name, opts.version
  local builds = url:sub(1, 3) ~= "###" and not opts.url_done
  hook("request", url, opts.url_done, last_url[opts], _G.VERSION, builds)
  if builds then
    key = opts.project_key or _G.PRODUCT_KEY
    if not key then
      log.error("libfota2", "iot.openluat.com need PRODUCT_KEY!!!")
      hook("callback", 5)
      cb(5)
      return
    end
    if not ver then
      local x, _, z = string.match(_G.VERSION, "(%d+).(%d+).(%d+)")
      ver = rtos.version():sub(2) .. "." .. x .. "." .. z
    end
    if not name then
      local bsp = rtos.bsp()
      local cut = bsp:find("-", 1, true)
      if cut then bsp = bsp:sub(1, cut - 1) end
      name = _G.PROJECT .. "_LuatOS-SoC_" .. bsp
    end
    if opts.imei then
      query = "imei=" .. opts.imei
    else
      query = device_query()
    end
    url = url .. tostring(query) .. "&project_key=" .. key .. "&firmware_name=" .. name ..
      "&version=" .. ver
  elseif url:sub(1, 3) == "###" then
    url = url:sub(4)
  end
  opts.url = url
  opts.url_done = true
  last_url[opts] = url
  if opts.method == nil then opts.method = "GET" end

  log.info("libfota2.url", opts.method, url)
  log.info("libfota2.imei/mac", query)
  log.info("libfota2.project_key", key)
  log.info("libfota2.firmware_name", name)
  log.info("libfota2.version", ver)
  hook("started", url)
  sys.taskInit(fota_task, cb, opts)
end

return libfota2
