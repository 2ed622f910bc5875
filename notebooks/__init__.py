"""The lab's notebook: its source (build.py) and its executor (execute.py)."""
