-- udpsrv: a UDP "server" object (create, send, close) over the socket module.
-- luatos-sim stand-in: sending works through a UDP socket; the emulator has no listening
-- sockets, so nothing is received.

local udpsrv = {}

function udpsrv.create(port, topic, adapter)
    local srv = { port = port, topic = topic, adapter = adapter }
    local sc = socket.create(adapter, function(_, event, param)
        if event == socket.EVENT and param == 0 then
            local buff = zbuff.create(1500)
            local ok, len, ip, rport = socket.rx(srv.sc, buff)
            if ok and len > 0 then
                -- socket.rx gives the sender as 0x00 + 4 raw bytes; publish it dotted
                if type(ip) == "string" and #ip == 5 then
                    ip = string.format("%d.%d.%d.%d", ip:byte(2, 5))
                else
                    ip = nil
                end
                sys.publish(topic, buff:query(), ip, rport)
            end
        end
    end)
    if not sc then return nil end
    socket.config(sc, port, true)
    srv.sc = sc
    function srv:send(data, ip, rport)
        if not self.connected then
            self.connected = socket.connect(self.sc, ip, rport)
        end
        return socket.tx(self.sc, data, ip, rport)
    end
    function srv:close()
        socket.close(self.sc)
        socket.release(self.sc)
    end
    return srv
end

return udpsrv
