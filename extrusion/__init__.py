"""extrusion: keeps an ISP's smarthost off blacklists."""

__version__ = "0.1.0"
