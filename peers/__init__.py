"""Peers: other servers measured on the lab's bench beside its own (one folder each, started by command line)."""
