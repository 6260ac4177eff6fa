"""Files a run writes: atomic writes and the run-folder rule.

* `atomic`: text, JSON and figures written to a temporary name, then renamed, so a
  killed run never leaves a half-written report;
* `run_folder`: a run refuses a folder that holds another run unless it is told to
  continue it (`--resume`) or to clear it first (`--overwrite`).
"""

from shared.io.atomic import atomic_path, write_json, write_text, save_figure
from shared.io.run_folder import (RUN_MARKER, RUN_MARKERS, check_run_folder, open_run_folder,
                                  prepare_run_folder, run_folder_started)

__all__ = [
    "RUN_MARKER",
    "RUN_MARKERS",
    "check_run_folder",
    "open_run_folder",
    "run_folder_started",
    "atomic_path",
    "prepare_run_folder",
    "save_figure",
    "write_json",
    "write_text",
]
