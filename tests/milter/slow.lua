-- A session still open when the milter is told to stop: it sends MAIL and
-- RCPT, waits `pause` seconds, then says "answered" if the milter served the
-- rest, "closed" if it had closed the connection (miltertest may instead die
-- of SIGPIPE writing to it; either way it does not say "answered").
dofile(dir .. "/lib.lua")

run(function()
  local conn = open("192.0.2.60")
  helo(conn, "pc60.example.net")
  mail(conn, "<slow@example.net>", qid, login)
  rcpt(conn, "<a@example.org>")
  mt.echo("in session")
  mt.sleep(tonumber(pause or "3"))
  local ok, err = pcall(function()
    content(conn, {{"Subject", "slow"}})
    check(mt.eom(conn), "eom")
  end)
  if ok then
    mt.echo("answered")
  else
    mt.echo("closed: " .. tostring(err))
  end
end)
