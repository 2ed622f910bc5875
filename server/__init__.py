"""The lab's server: long polling and WebSocket over one event bus.

``create_app(config)`` is the app factory; ``python -m server`` runs it under
Werkzeug, gunicorn threads or gunicorn gevent.
"""

from .app import Lab, create_app, lab_of
from .config import Config

__all__ = ["Config", "Lab", "create_app", "lab_of"]
