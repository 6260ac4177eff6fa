"""Environments for test subprocesses that import the project."""

import os
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def isolated_env(root=ROOT) -> dict:
    """This process's environment for a child Python that imports the project from
    `root`, on the CPU, quiet, with no Keras Tuner chief/worker role inherited."""
    env = dict(os.environ, PYTHONPATH=str(root), TF_CPP_MIN_LOG_LEVEL="3",
               KERAS_BACKEND="tensorflow", CUDA_VISIBLE_DEVICES="")
    for key in ("KERASTUNER_TUNER_ID", "KERASTUNER_ORACLE_IP", "KERASTUNER_ORACLE_PORT"):
        env.pop(key, None)
    return env
