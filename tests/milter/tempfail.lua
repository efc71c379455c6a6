-- A sender over its recipient limit: the first recipient passes, the next
-- ones get a 4xx reply; the message goes on with the recipient it has.
dofile(dir .. "/lib.lua")

run(function()
  local conn = open("192.0.2.30")
  helo(conn, "pc30.example.net")
  mail(conn, "<busy@example.net>", qid, login)
  rcpt(conn, "<first@example.org>")
  rcpt(conn, "<second@example.org>", SMFIR_REPLYCODE)
  rcpt(conn, "<third@example.org>", SMFIR_REPLYCODE)
  content(conn, {{"Subject", "hello"}})
  eom(conn)
  mt.disconnect(conn)
end)
