"""The Flask-SocketIO peer: a Flask app with Socket.IO rooms, one per channel, and an HTTP publish route.

Started as ``python -m peers.flask_socketio --port 0 [--async-mode gevent|threading] [--nodelay on|off]``;
see README.md. Nothing is imported here, so that ``__main__`` can monkey-patch for gevent before Flask loads.
"""
