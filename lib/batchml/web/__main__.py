"""``python -m batchml.web``: see :mod:`batchml.web.server`."""
import sys

from batchml.web.server import main

sys.exit(main())
