"""Entry point inside the sandbox: ``python -I -S -B boot.py CONTROL_FD``."""

import sys

sys.path.insert(0, "/opt/donjon")
from donjon_runtime.zygote import main  # noqa: E402

del sys.path[0]
main(int(sys.argv[1]))
