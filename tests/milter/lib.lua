-- Shared steps of the miltertest scripts. Every script gets, with -D:
--   socket  the milter's socket (inet:PORT@127.0.0.1)
--   dir     this directory (for dofile)
-- Each script puts its steps in a function and calls run() with it: an
-- unexpected reply raises an error, which run() prints (miltertest itself
-- does not) before miltertest exits non-zero.

function run(steps)
  local ok, err = pcall(steps)
  if not ok then
    mt.echo("FAIL: " .. tostring(err))
    error(err)
  end
end

function check(err, what)
  if err ~= nil then
    error(what .. " failed: " .. tostring(err))
  end
end

-- Replies are compared by name so a failure says what came back.
local names = {
  [SMFIR_CONTINUE] = "continue", [SMFIR_ACCEPT] = "accept", [SMFIR_REJECT] = "reject",
  [SMFIR_TEMPFAIL] = "tempfail", [SMFIR_REPLYCODE] = "replycode", [SMFIR_DISCARD] = "discard",
}

function expect(conn, want, what)
  local got = mt.getreply(conn)
  if got ~= want then
    error(what .. ": expected " .. names[want] .. ", got " .. tostring(names[got] or got))
  end
end

function open(ip, host)
  local conn = mt.connect(socket, 40, 0.25)
  if conn == nil then
    error("cannot connect to " .. socket)
  end
  check(mt.conninfo(conn, host or "client.example.net", ip or "192.0.2.10"), "conninfo")
  expect(conn, SMFIR_CONTINUE, "connect")
  return conn
end

function helo(conn, name)
  check(mt.helo(conn, name), "helo")
  expect(conn, SMFIR_CONTINUE, "helo")
end

-- MAIL FROM with the macros an MTA sends at that stage: queue id and SASL login.
function mail(conn, from, qid, login, want)
  if login ~= nil and login ~= "" then
    check(mt.macro(conn, SMFIC_MAIL, "i", qid, "{auth_authen}", login), "macro")
  else
    check(mt.macro(conn, SMFIC_MAIL, "i", qid), "macro")
  end
  check(mt.mailfrom(conn, from), "mail")
  expect(conn, want or SMFIR_CONTINUE, "mail from " .. from)
end

function rcpt(conn, to, want)
  check(mt.rcptto(conn, to), "rcpt")
  expect(conn, want or SMFIR_CONTINUE, "rcpt to " .. to)
end

-- Headers and body are sent without waiting: the milter negotiates "no reply" for them.
function content(conn, headers)
  if not mt.test_option(conn, SMFIP_NR_HDR) then
    error("the milter should not make the MTA wait for a reply to each header")
  end
  for _, h in ipairs(headers) do
    check(mt.header(conn, h[1], h[2]), "header " .. h[1])
  end
  if not mt.test_option(conn, SMFIP_NOEOH) then  -- the milter has no use for it
    check(mt.eoh(conn), "eoh")
  end
  check(mt.bodystring(conn, "Hello,\r\nthe figures are attached.\r\n"), "body")
end

function eom(conn, want)
  check(mt.eom(conn), "eom")
  expect(conn, want or SMFIR_CONTINUE, "end of message")
end
