import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "studyapp.settings")
application = get_wsgi_application()

# Import the URLconf (and with it every view module: the analysis views pull in matplotlib) now,
# while the worker boots, rather than inside the first request it serves: under a launch the first
# requests of every fresh worker otherwise wait a second or more.
from django.urls import get_resolver  # noqa: E402

get_resolver().url_patterns  # noqa: B018

# Keep what the boot created (about 270,000 objects: Django, DRF, matplotlib, the URLconf) out of
# the garbage collector's full passes. Under load a worker's full pass otherwise walked all of
# them, 150-370 ms with the GIL held, stalling all its threads; after the freeze they took 2-19 ms
# (benchmarks/load_participants.py, paced phase, gc.callbacks timing).
import gc  # noqa: E402

from studyapp.lib.perf import switches  # noqa: E402

if switches.GC_FREEZE:
    gc.freeze()
