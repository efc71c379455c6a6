"""`extrusion replay LOG...`: historical MTA logs through the real engine.

`command` runs a replay and prints it, `input` opens and reads the logs,
`worker` is the child process that parses them, `output` is what is shown,
and `logfiles` anchors the year of classic syslog stamps.
"""
