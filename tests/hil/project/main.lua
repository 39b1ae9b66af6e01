--[[
HIL example project: a version banner, a heartbeat, and a tiny command line on a UART.

tests/hil/test_hil_example.py drives it through the `dut` fixture, on the emulator or on a
board flashed with this directory. Commands are text lines ending in "\n":
  ping <word>   -> "pong <word>"
  add <a> <b>   -> "sum <a+b>"
  beats         -> "beats <heartbeats so far>"
  reboot        -> rtos.reboot() 100 ms later
]]

PROJECT = "HIL_DEMO"
VERSION = "001.000.003"

-- The UART wired to the host's USB-serial adapter. On the Air8101 board that is the port that
-- also carries the log (which UART id that is, is UNCONFIRMED: check your board; the emulator
-- feeds dut.write() into UART 1 unless --luatos-console-uart says otherwise).
local CMD_UART = 1
local CMD_BAUD = 921600 -- keep it equal to the log baud rate when the port is shared
local HEARTBEAT_MS = 1000
local MAX_LINE = 256

log.info("main", PROJECT, VERSION, rtos.version())

local beats = 0
sys.timerLoopStart(function()
    beats = beats + 1
    log.info("hb", beats)
end, HEARTBEAT_MS)

local function reply(text)
    uart.write(CMD_UART, text .. "\r\n")
end

local commands = {}

function commands.ping(arg)
    reply("pong " .. arg)
end

function commands.add(arg)
    local a, b = arg:match("^(%-?%d+)%s+(%-?%d+)$")
    if not a then
        reply("error add needs two integers")
        return
    end
    reply("sum " .. (math.tointeger(a) + math.tointeger(b)))
end

function commands.beats()
    reply("beats " .. beats)
end

function commands.reboot()
    sys.timerStart(rtos.reboot, 100)
end

local function run_line(line)
    local name, arg = line:match("^(%S+)%s*(.-)%s*$")
    if not name then
        return
    end
    log.info("cmd", name, arg)
    local fn = commands[name]
    if fn then
        fn(arg)
    else
        reply("error unknown command " .. name)
    end
end

local pending = ""
uart.setup(CMD_UART, CMD_BAUD, 8, 1)
uart.on(CMD_UART, "receive", function(id)
    while true do
        local data = uart.read(id, MAX_LINE)
        if data == nil or #data == 0 then
            break
        end
        pending = pending .. data
    end
    while true do
        local line, rest = pending:match("^([^\n]*)\n(.*)$")
        if not line then
            break
        end
        pending = rest
        run_line((line:gsub("\r$", "")))
    end
    if #pending > MAX_LINE then
        log.warn("cmd", "line too long, dropped", #pending)
        pending = ""
    end
end)

log.info("main", "ready", "uart", CMD_UART)

sys.run()
