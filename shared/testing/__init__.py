"""Helpers for the test suite and for users testing their own extensions.

* `postgres`: a throwaway PostgreSQL server started from the local binaries;
* `distribution`: single-device vs MirroredStrategy comparisons of one train step;
* `notebooks`: executes a notebook against the source tree;
* `bad_input`: runs the CLI in-process and checks a one-line error naming the file.

Import from the submodules; nothing here is loaded by the suite itself.
"""
