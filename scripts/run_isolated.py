"""Run pytest against a torch_sla package in another folder (e.g. an Eigen-only build), ignoring the
editable install of the working tree.

    python scripts/run_isolated.py PACKAGE_PARENT_DIR [pytest args...]
"""

import sys

import pytest

pkg_parent, args = sys.argv[1], sys.argv[2:]
# The editable install puts a redirecting finder first on sys.meta_path; drop it so that the
# package is found on sys.path instead.
sys.meta_path[:] = [f for f in sys.meta_path if "_editable" not in type(f).__module__]
sys.path.insert(0, pkg_parent)
import torch_sla  # noqa: E402

assert torch_sla.__file__.startswith(pkg_parent), torch_sla.__file__
print(f"testing {torch_sla.__file__}")
torch_sla.show_backends()
sys.exit(pytest.main(args))
