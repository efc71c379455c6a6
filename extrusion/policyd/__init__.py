"""The Twisted policy daemon: Postfix policy delegation, log feed and operator API."""
