-- A blocked sender is refused at MAIL FROM with a 5xx reply (SMFIR_REPLYCODE:
-- the milter set the text), and the MTA ends the transaction.
dofile(dir .. "/lib.lua")

run(function()
  local conn = open("192.0.2.20")
  helo(conn, "pc20.example.net")
  mail(conn, "<spammer@example.net>", qid, login, SMFIR_REPLYCODE)
  check(mt.abort(conn), "abort")
  mt.disconnect(conn)
end)
