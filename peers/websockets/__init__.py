"""The ``websockets`` peer: the lab's WebSocket protocol on an asyncio ``websockets`` server (the Python ceiling).

Started as ``python -m peers.websockets --port 0``; see README.md and :mod:`peers.websockets.server`.
"""
