"""The processes of one run: the client fleet, the open-loop publisher, the loopback floor.

Agent layer of the benchmark. Each is a ``python -m bench.agents.<name>`` process that speaks the JSON-lines
protocol of :mod:`bench.process`; it imports the contract, the process layer and the public API of
:mod:`clients`, never the runner, the link emulator or the report.
"""
