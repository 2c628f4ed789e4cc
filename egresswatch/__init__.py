"""egresswatch: passive network-egress monitor for Linux."""

__version__ = "0.1.0"
