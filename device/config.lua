--[[
@module config
@summary Every setting of the FOTA kit project in one table.

For a real board, edit at least:
  * server_url   -> your luatos-fota server (keep the trailing "?")
  * product_key  -> the project key of your product on that server
  * wifi_ssid / wifi_password (netdrv = "wifi" or "multiple")
  * tcp_host / tcp_port (scenario = "tcp")
  * eth_* / lte_* pins if your wiring differs from the Air8101 core board
  * button_pin   -> the GPIO your key is on

Field override without rebuilding: store a JSON object under the fskv key
"fota_cfg", e.g. {"server_url":"http://10.0.0.5:8000/api/site/firmware_upgrade?"}.
Only keys that exist below are taken, and only with the same type as the default.
]]

---@class FotaConfig
---@field scenario string "periodic" | "tcp" | "psm" | "ble"
---@field netdrv string "wifi" | "eth_spi" | "eth_rmii" | "4g" | "multiple"
---@field server_url string
---@field product_key string
---@field http_timeout_ms integer
---@field reboot_delay_ms integer
---@field check_interval_ms integer
---@field tcp_host string
---@field tcp_port integer
---@field tcp_connect_timeout_ms integer
---@field tcp_backoff_min_ms integer
---@field tcp_backoff_max_ms integer
---@field tcp_heartbeat_ms integer
---@field auth_mode string
---@field auth_token string
---@field auth_secret string
---@field tcp_max_line integer
---@field mqtt_enabled boolean
---@field mqtt_host string
---@field mqtt_port integer
---@field mqtt_tls boolean
---@field mqtt_client_id string
---@field mqtt_username string
---@field mqtt_password string
---@field mqtt_topic string
---@field mqtt_reply_topic string
---@field mqtt_keepalive_s integer
---@field mqtt_reconnect_ms integer
---@field mqtt_max_payload integer
---@field psm_sleep_ms integer
---@field psm_dtimer_id integer
---@field psm_net_timeout_ms integer
---@field psm_fota_margin_ms integer
---@field ble_name string
---@field ble_idle_timeout_ms integer
---@field button_enabled boolean
---@field button_pin integer
---@field button_debounce_ms integer
---@field wifi_ssid string
---@field wifi_password string
---@field eth_pwr_pin integer
---@field eth_spi_id integer
---@field eth_spi_cs integer
---@field rmii_pwr_pin integer
---@field lte_spi_id integer
---@field lte_cs_pin integer
---@field lte_rdy_pin integer
---@field multiple_order string[]
---@field multiple_need_ping boolean
---@field multiple_ping_ip string
---@field dns_servers string[]
local config = {
    -- Which scenario runs (the one place to choose it).
    --   "periodic": check when the network is up, then every check_interval_ms
    --   "tcp":      wait for upgrade commands on a TCP channel
    --   "psm":      wake, check, sleep in PSM+ for psm_sleep_ms
    --   "ble":      (optional) a phone writes the package over BLE GATT
    scenario = "periodic",

    -- Which network: "wifi", "eth_spi" (CH390H over SPI), "eth_rmii" (PHY on RMII),
    -- "4g" (Air780E* over SPI via airlink), "multiple" (priority + fail-over).
    netdrv = "wifi",

    -- FOTA server. libfota2 appends "mac=..&project_key=..&firmware_name=..&version=.."
    -- directly, so the URL must end with "?" (fota_check adds one if missing).
    -- A URL starting with "###" is used verbatim (a direct package link).
    server_url = "http://192.168.1.10:8000/api/site/firmware_upgrade?",
    -- Sent as project_key; required by libfota2 for any URL without "###".
    product_key = "DEMO_PRODUCT_KEY",
    -- Device authentication, as the product is set up on the server
    -- (luatos-fota product auth ...): "none", "token" (auth_token is this device's
    -- own secret) or "hmac" (the token is HMAC-SHA256(auth_secret, device id),
    -- computed here with crypto.hmac_sha256, so every device of a product shares
    -- one config). Sent as "Authorization: Bearer <token>" and in the push login.
    auth_mode = "none",
    auth_token = "",
    auth_secret = "",
    -- Whole-request HTTP timeout for a check/download (libfota2 fota mode default).
    http_timeout_ms = 600000,
    -- Delay between a successful download and the reboot that applies it,
    -- so the result can still be reported on the TCP channel.
    reboot_delay_ms = 2000,

    -- Scenario "periodic": interval between checks (4 h).
    check_interval_ms = 4 * 3600 * 1000,

    -- Scenario "tcp": command channel of the luatos-fota server.
    tcp_host = "192.168.1.10",
    tcp_port = 9000,
    tcp_connect_timeout_ms = 15000,
    tcp_backoff_min_ms = 5000,    -- first reconnect delay, doubled after each failure
    tcp_backoff_max_ms = 60000,   -- reconnect delay cap
    tcp_heartbeat_ms = 0,         -- >0: send {"heartbeat":n} when idle that long; 0 = off
    tcp_max_line = 4096,          -- longest command line accepted, in bytes

    -- Optional MQTT trigger (any scenario but psm): payload "update" or the TCP
    -- channel's JSON command on mqtt_topic starts a check. "{device}" in a topic
    -- is replaced by the device id.
    mqtt_enabled = false,
    mqtt_host = "192.168.1.10",
    mqtt_port = 1883,
    mqtt_tls = false,
    mqtt_client_id = "",          -- "" = the device id
    mqtt_username = "",
    mqtt_password = "",
    mqtt_topic = "fota/{device}/cmd",
    mqtt_reply_topic = "fota/{device}/reply",  -- acks and results; "" = publish nothing
    mqtt_keepalive_s = 240,
    mqtt_reconnect_ms = 5000,     -- retry interval while the broker is unreachable
    mqtt_max_payload = 4096,      -- longer payloads are ignored

    -- Scenario "psm": PSM+ deep sleep between checks.
    psm_sleep_ms = 4 * 3600 * 1000,
    psm_dtimer_id = 2,            -- deep-sleep wake timer id (0..5)
    psm_net_timeout_ms = 30000,   -- give up on the network after this long
    psm_fota_margin_ms = 30000,   -- waited on top of http_timeout_ms for the result

    -- Scenario "ble": advertised name, and how long a transfer may stall.
    ble_name = "FOTA_KIT",
    ble_idle_timeout_ms = 30000,

    -- Button that asks for a check now (falling edge, internal pull-up).
    button_enabled = true,
    button_pin = 5,
    button_debounce_ms = 100,

    -- Wi-Fi station (netdrv "wifi" and "multiple").
    wifi_ssid = "your-ssid",
    wifi_password = "your-password",

    -- CH390H SPI Ethernet (AirETH_1000 on the Air8101 core board).
    eth_pwr_pin = 13,             -- GPIO that switches the 3V3 LDO feeding the PHY
    eth_spi_id = 0,
    eth_spi_cs = 15,

    -- RMII Ethernet (AirPHY_1000): only the power pin is needed.
    rmii_pwr_pin = 13,

    -- 4G module on SPI via airlink (Air8101 is SPI master).
    lte_spi_id = 0,
    lte_cs_pin = 15,
    lte_rdy_pin = 48,

    -- netdrv "multiple": order = priority, first usable one wins. Any of
    -- "wifi", "eth_spi", "eth_rmii", "4g". eth_spi and 4g both default to
    -- SPI0 / CS GPIO15: move one of them (e.g. lte_spi_id = 1) before listing both.
    multiple_order = { "eth_spi", "wifi" },
    -- Probe each link before using it (httpdns to the internet, or ping_ip).
    -- On an isolated LAN set need_ping=false or give a ping_ip that answers.
    multiple_need_ping = true,
    multiple_ping_ip = "",

    -- Extra DNS servers set on IP_READY, e.g. {"223.5.5.5","114.114.114.114"}.
    -- Leave empty on a LAN whose DHCP DNS resolves your server name.
    dns_servers = {},
}

local OVERRIDE_KEY = "fota_cfg"
local SECRET_KEYS = { wifi_password = true, product_key = true, auth_token = true, auth_secret = true,
    mqtt_password = true }

---Merge a JSON override from fskv into cfg (unknown keys and wrong types are refused).
---@param cfg FotaConfig
local function apply_overrides(cfg)
    if not fskv or not fskv.init then
        return
    end
    if not fskv.init() then
        log.warn("config", "fskv init failed, no overrides")
        return
    end
    local raw = fskv.get(OVERRIDE_KEY)
    if raw == nil then
        return
    end
    local t = raw
    if type(raw) == "string" then
        t = json.decode(raw)
    end
    if type(t) ~= "table" then
        log.warn("config", "override ignored: fskv", OVERRIDE_KEY, "is not a JSON object")
        return
    end
    for k, v in pairs(t) do
        local current = cfg[k]
        if current == nil then
            log.warn("config", "override ignored: unknown key", tostring(k))
        elseif type(v) ~= type(current) then
            log.warn("config", "override ignored:", k, "must be a", type(current), "not", type(v))
        else
            if type(v) == "number" then
                v = math.tointeger(v) or v
            end
            cfg[k] = v
            local shown = v
            if SECRET_KEYS[k] then
                shown = "***"
            elseif type(v) == "table" then
                shown = json.encode(v)
            end
            log.info("config", "override", k, shown)
        end
    end
end

apply_overrides(config)

log.info("config", "scenario", config.scenario, "netdrv", config.netdrv, "server", config.server_url)

return config
