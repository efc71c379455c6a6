-- Hostile input never breaks a session: every step continues and the milter
-- keeps serving. The test then finds the message recorded, escaped.
dofile(dir .. "/lib.lua")

run(function()
  -- Several HELOs in one session, one of them with control characters, one 1 kB,
  -- one that is not UTF-8 (pymilter's C layer cannot decode it; Sendmail's
  -- macro s carries a copy, sent here with MAIL).
  local conn = open("2001:db8::25", "bot.example.net")
  helo(conn, "evil\027[2J\r\nMAIL FROM:<x>")
  helo(conn, string.rep("a", 1000))  -- 4x a legal name; miltertest cannot send more
  helo(conn, "\255\254bot")
  check(mt.macro(conn, SMFIC_MAIL, "i", qid, "{auth_authen}", "j\246rg", "s", "\255\254bot"),
        "macro")
  check(mt.mailfrom(conn, "no-brackets@example.net", "SIZE=\255"), "mail")
  expect(conn, SMFIR_CONTINUE, "mail from without brackets")
  rcpt(conn, "<\255\254@example.org>")
  rcpt(conn, "plain@example.org")
  rcpt(conn, "<" .. string.rep("x", 900) .. "@example.org>")  -- miltertest's most
  content(conn, {{"Precedence", "bulk\001\255"}, {"X-Spam-Status", string.rep("Yes ", 200)},
                 {"Bad\255Name", "x"}, {"Subject", "\000\001\002"}})
  eom(conn)
  mt.disconnect(conn)

  -- The milter still answers normally afterwards.
  conn = open("192.0.2.10")
  helo(conn, "pc1.example.net")
  mail(conn, "<after@example.net>", qid .. "B", "")
  rcpt(conn, "<x@example.org>")
  content(conn, {{"Subject", "after"}})
  eom(conn)
  mt.disconnect(conn)
end)
