"""Imported by the fork server alone (its preload): it leaves without tearing down its modules.

The fork server ends when the client does; the modules it imported for its workers
(scikit-learn, pandas, scipy, distributed) took 0.3-0.5 s to tear down, while it still held
the terminal's output, so a ``gridsearch run | tee`` waited for it. It holds no file or
connection of its own, so it skips that teardown. Its workers are forked and leave by
``os._exit``, so this handler never runs in them.
"""

import atexit
import os

atexit.register(os._exit, 0)
