import os
import sys

from training.cli import main

code = main()
if int(os.environ.get("WORLD_SIZE", "1")) > 1:
    # Under torchrun the process group is already destroyed; gloo's background threads can still
    # abort the interpreter's teardown ("terminate called without an active exception", about one
    # run in six here), so a worker leaves without running C++ destructors.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
sys.exit(code)
