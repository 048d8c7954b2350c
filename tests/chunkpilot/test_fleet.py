"""The launcher <-> machine contract: who a job is (slot, attempt), from its envs and SkyPilot's rank."""

from __future__ import annotations

import pytest

from chunkpilot.errors import ConfigError
from chunkpilot.fleet import decode_members, encode_members, gpus_per_engine, job_identity
from chunkpilot.names import engine_of, engine_worker_id, slot_of, validate_worker_id


def test_engine_ids_belong_to_their_slot():
    assert engine_worker_id("w3", 0) == "w3"  # a one-GPU job's worker keeps the id it always had
    assert [engine_worker_id("w3", k) for k in (1, 7)] == ["w3e1", "w3e7"]
    assert [slot_of(w) for w in ("w3", "w3e1", "w12e7")] == ["w3", "w3", "w12"]
    assert [engine_of(w) for w in ("w3", "w3e1", "w12e7")] == [0, 1, 7]
    validate_worker_id("w3e1")
    for bad in ("w3e0", "w3e", "e1", "w3e1e2"):
        with pytest.raises(ConfigError):
            validate_worker_id(bad)


def test_a_plain_job_is_its_worker_env():
    assert job_identity({"CHUNKPILOT_WORKER": "w4", "CHUNKPILOT_ATTEMPT": "3"}) == ("w4", 3)
    with pytest.raises(ConfigError, match="CHUNKPILOT_WORKER"):
        job_identity({})


def test_a_job_of_a_several_job_launch_is_the_member_at_its_rank():
    members = encode_members([("w3", 2), ("w5", 2), ("w0", 4)])
    assert members == "w3:2,w5:2,w0:4"
    assert decode_members(members) == [("w3", 2), ("w5", 2), ("w0", 4)]
    # A relaunch's ranks start at 0 again: the list, not the rank, names the slot.
    env = {"CHUNKPILOT_MEMBERS": members, "CHUNKPILOT_WORKER": "ignored"}
    assert [job_identity({**env, "SKYPILOT_JOB_RANK": str(r)}) for r in range(3)] == [("w3", 2), ("w5", 2), ("w0", 4)]
    with pytest.raises(ConfigError, match="SKYPILOT_JOB_RANK"):
        job_identity({**env, "SKYPILOT_JOB_RANK": "3"})
    with pytest.raises(ConfigError):
        decode_members("w3:x")


def test_gpus_per_engine_is_the_model_parallel_size():
    assert gpus_per_engine({}) == 1
    assert gpus_per_engine({"tensor_parallel_size": 4}) == 4
    assert gpus_per_engine({"tensor_parallel_size": 2, "pipeline_parallel_size": 2}) == 4
    assert gpus_per_engine({"tensor_parallel_size": "x"}) == 1
