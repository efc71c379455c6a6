"""Helpers of the MTA integration tests: extrusion's daemons as real processes."""
