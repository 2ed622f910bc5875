"""Orchestration: a profile's runs, the server under test, the capture, the run's meta and raw files.

Run layer of the benchmark, the top: it may import every layer below (contract, process, agents, link) and
calls the report once a profile is written.
"""
