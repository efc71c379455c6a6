"""Bots that bypass the smarthost: port-25 flow records from the ISP's sFlow collector.

pmacct's `sfacctd` receives the routers' sampled sFlow and writes aggregated
flow records (JSON lines, `conf/pmacct/sfacctd.conf`); `records` parses them,
`analysis` finds customer addresses sending straight to many MX hosts,
`feed` hands those findings to the engine, `export` lists the held and
blocked ones for the border.
"""
