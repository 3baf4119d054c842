"""Entry point inside the sandbox: ``python -I -S -B boot.py CONTROL_FD``."""

import os
import sys

# Say hello before any import: the gateway then sends the configuration.
# os.write on a SOCK_SEQPACKET descriptor sends one message.
os.write(int(sys.argv[1]), b'{"op": "hello"}')
sys.path.insert(0, "/opt/donjon")
from donjon_runtime.supervisor import main  # type: ignore[import-not-found]  # noqa: E402

del sys.path[0]
main(int(sys.argv[1]))
