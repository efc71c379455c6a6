"""`python -m extrusion.replay.reader LOG...`: the replay's log reader process.

The reader's code is `extrusion.replay.worker`; this module only starts it. A module
compiled with mypyc (the worker is, in an installed build) cannot be run with `-m`, so
the command names this one, which stays Python.
"""

import sys

from extrusion.replay.worker import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
