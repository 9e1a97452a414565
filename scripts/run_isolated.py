"""Run pytest against a torch_sla package in another folder (e.g. an Eigen-only build), ignoring the
editable install of the working tree.

    python scripts/run_isolated.py PACKAGE_PARENT_DIR [pytest args...]

The isolation (dropping the editable finder, putting the package folder first on ``sys.path``) runs at
module level, so processes started with the ``spawn`` method, which re-import this script as
``__mp_main__``, import the same package; pytest itself runs only in the main process.
"""

import os
import sys

if __name__ == "__main__":
    os.environ["TORCH_SLA_ISOLATED_PKG"] = os.path.abspath(sys.argv[1])
pkg_parent = os.environ["TORCH_SLA_ISOLATED_PKG"]
# The editable install puts a redirecting finder first on sys.meta_path; drop it so that the
# package is found on sys.path instead.
sys.meta_path[:] = [f for f in sys.meta_path if "_editable" not in type(f).__module__]
if pkg_parent not in sys.path:
    sys.path.insert(0, pkg_parent)


def main() -> int:
    import pytest

    import torch_sla

    assert torch_sla.__file__.startswith(pkg_parent), torch_sla.__file__
    print(f"testing {torch_sla.__file__}")
    torch_sla.show_backends()
    return pytest.main(sys.argv[2:])


if __name__ == "__main__":
    sys.exit(main())
