-- A held sender's mail is accepted into the MTA's hold queue (quarantine).
dofile(dir .. "/lib.lua")

run(function()
  local conn = open("192.0.2.40")
  helo(conn, "pc40.example.net")
  mail(conn, "<held@example.net>", qid, login)
  rcpt(conn, "<x@example.org>")
  content(conn, {{"Subject", "hello"}})
  eom(conn)
  if not mt.eom_check(conn, MT_QUARANTINE) then
    error("the held sender's message was not quarantined")
  end
  mt.disconnect(conn)
end)
