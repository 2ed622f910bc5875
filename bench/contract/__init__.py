"""The benchmark's data contract: scenarios, targets, the payload codec, the raw-result schema.

Contract layer: pure data. It imports nothing of the benchmark that runs (no agent, link, runner or
report), and of the server only its configuration's list of runtimes.
"""

from .names import (
    FLAGS,
    INVALIDATING_FLAGS,
    LAYOUTS,
    RESULT_FILE_RE,
    RUNTIMES,
    SCHEMA_VERSION,
    TRANSPORTS,
    result_file_name,
    run_dir_name,
)
from .payload import BenchPayload, decode_payload, encode_payload
from .scenarios import DEFAULT_FILE, Link, Profile, Scenario, ScenarioError, load_file, load_profile

__all__ = [
    "DEFAULT_FILE",
    "FLAGS",
    "INVALIDATING_FLAGS",
    "LAYOUTS",
    "RESULT_FILE_RE",
    "RUNTIMES",
    "SCHEMA_VERSION",
    "TRANSPORTS",
    "BenchPayload",
    "Link",
    "Profile",
    "Scenario",
    "ScenarioError",
    "decode_payload",
    "encode_payload",
    "load_file",
    "load_profile",
    "result_file_name",
    "run_dir_name",
]
