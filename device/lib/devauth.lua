--[[
@module devauth
@summary The credential this device shows the FOTA server (config.auth_mode).

"none": nothing. "token": config.auth_token as is. "hmac": the hex
HMAC-SHA256 of the device id under config.auth_secret, computed with the
firmware's crypto.hmac_sha256, over the id as the server normalises it
(a 12-hex-digit MAC in upper case without separators).
]]

local config = require "config"
local devinfo = require "devinfo"

local devauth = {}

local cached = nil

---@param id string
---@return string
local function normalized(id)
    local compact = id:gsub("[:%-]", "")
    if #compact == 12 and compact:match("^%x+$") then
        return compact:upper()
    end
    return id
end

---@return string|nil token nil when the product has no authentication (or it is misconfigured)
function devauth.token()
    local mode = config.auth_mode
    if mode == "token" then
        if config.auth_token == "" then
            log.error("devauth", "auth_mode token needs auth_token in config.lua")
            return nil
        end
        return config.auth_token
    elseif mode == "hmac" then
        if cached then
            return cached
        end
        if config.auth_secret == "" or not (crypto and crypto.hmac_sha256) then
            log.error("devauth", "auth_mode hmac needs auth_secret in config.lua and crypto.hmac_sha256")
            return nil
        end
        cached = crypto.hmac_sha256(normalized(devinfo.id()), config.auth_secret)
        return cached
    elseif mode ~= "none" then
        log.error("devauth", "unknown auth_mode", tostring(mode), "use none, token or hmac")
    end
    return nil
end

---HTTP headers for libfota2's opts.headers, or nil.
---@return table|nil
function devauth.headers()
    local tok = devauth.token()
    if tok then
        return { Authorization = "Bearer " .. tok }
    end
    return nil
end

return devauth
