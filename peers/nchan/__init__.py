"""The Nchan peer: nginx with the Nchan module (Debian's packages), on a generated config.

``python -m peers.nchan --port 0`` starts it (:mod:`peers.nchan.__main__`); :mod:`peers.nchan.config` renders
its nginx.conf. It imports nothing of the lab: it is another implementation of the same job.
"""

from .config import NchanConfig, render

__all__ = ["NchanConfig", "render"]
