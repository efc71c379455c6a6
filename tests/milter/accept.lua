-- A normal customer: every step continues, nothing is held, the optional
-- X-Extrusion header is added (the test config turns it on).
dofile(dir .. "/lib.lua")

run(function()
  local conn = open("192.0.2.10", "pc1.example.net")
  helo(conn, "pc1.example.net")
  mail(conn, "<alice@example.net>", qid, login)
  rcpt(conn, "<bob@example.org>")
  rcpt(conn, "<carol@example.org>")
  rcpt(conn, "<dave@example.com>")
  content(conn, {{"Received", "from pc1 by mta"}, {"Subject", "figures"},
                 {"Message-ID", "<m1@example.net>"}})
  eom(conn)
  if mt.eom_check(conn, MT_QUARANTINE) then
    error("a normal customer's mail was held")
  end
  local mark = mt.getheader(conn, "X-Extrusion", 0)
  if mark == nil or not string.find(mark, "state=ok", 1, true) then
    error("no X-Extrusion header with state=ok: " .. tostring(mark))
  end
  mt.disconnect(conn)
end)
