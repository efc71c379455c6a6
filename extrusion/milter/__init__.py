"""The pymilter adapter: SMTP session callbacks to engine events and back to replies."""
