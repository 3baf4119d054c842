"""Entry point inside the sandbox: ``python -I -S -B boot.py CONTROL_FD``."""

import sys

sys.path.insert(0, "/opt/donjon")
from donjon_runtime.supervisor import main  # type: ignore[import-not-found]

del sys.path[0]
main(int(sys.argv[1]))
