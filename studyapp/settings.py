"""Django settings, read from the environment (see README "Configuration").

A malformed value stops start-up with ``ImproperlyConfigured``.
"""

from __future__ import annotations

import os
from pathlib import Path

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from studyapp.lib.env import env_bool, env_int, env_list, env_str, env_url
from studyapp.lib.perf import switches

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(env_str("STUDY_VAR_DIR", str(BASE_DIR / "var")))

DEBUG = env_bool("DJANGO_DEBUG", False)
SECRET_KEY = env_str("DJANGO_SECRET_KEY")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured(
            "DJANGO_SECRET_KEY is required when DJANGO_DEBUG is off. "
            "Set DJANGO_DEBUG=1 for local development, or set a long random DJANGO_SECRET_KEY."
        )
    SECRET_KEY = "insecure-development-key-do-not-use-in-production"  # noqa: S105 - DEBUG only; production refuses to start without a key
#: The key of the HMAC that hashes external ids in exports (``?ids=hash``); by default the secret
#: key. Rotating it changes every hash: keep it while exports of one study must be joined.
EXPORT_ID_HMAC_KEY = env_str("EXPORT_ID_HMAC_KEY", "")

ALLOWED_HOSTS = env_list("DJANGO_ALLOWED_HOSTS", ["localhost", "127.0.0.1", "[::1]", "testserver"])
CSRF_TRUSTED_ORIGINS = env_list("DJANGO_CSRF_TRUSTED_ORIGINS", [])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "studyapp.pipeline",
    "studyapp.studies",
    "studyapp.analysis",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    # Oversized bodies (413) and JSON nested too deeply (400), before any view or CSRF check reads one.
    "studyapp.lib.bodies.RequestBodyLimitsMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

if switches.TIMING:  # per-request stage times in a Server-Timing header (the load benchmark)
    from studyapp.lib.perf.timing import with_timing

    MIDDLEWARE = with_timing(MIDDLEWARE)

ROOT_URLCONF = "studyapp.urls"
WSGI_APPLICATION = "studyapp.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

# Database: SQLite by default, PostgreSQL (or anything dj-database-url knows) with DATABASE_URL.
_database_url = env_url("DATABASE_URL", schemes={"postgres", "postgresql", "pgsql", "sqlite"})
# SQLite: Django's backend whose writers queue on a lock file rather than in SQLite's busy-sleep loop
# (studyapp/lib/perf/sqlite/base.py: the latency tail under a launch), WAL, and a busy timeout so that
# the web process and Celery workers write side by side. Also for a sqlite:// DATABASE_URL.
_SQLITE_ENGINE = "studyapp.lib.perf.sqlite" if switches.SQLITE_LOCK_FILE else "django.db.backends.sqlite3"
SQLITE_OPTIONS = {
    "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    "timeout": 30,
    "transaction_mode": "IMMEDIATE",
}
if _database_url:
    DATABASES = {"default": dj_database_url.parse(_database_url, conn_max_age=60, conn_health_checks=True)}
    if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
        DATABASES["default"].update(ENGINE=_SQLITE_ENGINE, CONN_MAX_AGE=600, CONN_HEALTH_CHECKS=False)
        DATABASES["default"]["OPTIONS"] = {**SQLITE_OPTIONS, **DATABASES["default"].get("OPTIONS", {})}
    elif env_bool("DATABASE_POOL", True):
        # PostgreSQL: Django's psycopg pool (psycopg-pool), one per process. A connection goes back to
        # the pool at the end of each request (Django requires CONN_MAX_AGE = 0 with a pool), and
        # CONN_HEALTH_CHECKS makes the pool check it before handing it out, so after a database
        # restart a request gets a fresh connection, or waits up to DATABASE_POOL_TIMEOUT seconds
        # for one while the database comes back, instead of failing on a dead one. Size: a gunicorn
        # process needs one connection per thread (by default WEB_THREADS, gunicorn.conf.py's threads
        # per process), a Celery prefork child one; the server's max_connections must cover
        # gunicorn workers x DATABASE_POOL_MAX_SIZE + Celery processes x DATABASE_POOL_MAX_SIZE +
        # a few for migrate and psql (scripts/services.sh, docker-compose.yml).
        _pool_max = env_int("DATABASE_POOL_MAX_SIZE", env_int("WEB_THREADS", 4, minimum=1), minimum=1)
        DATABASES["default"].update(CONN_MAX_AGE=0, CONN_HEALTH_CHECKS=True)
        DATABASES["default"].setdefault("OPTIONS", {})["pool"] = {
            # Opened when the pool opens (the process's first query), so a launch's first requests
            # do not each wait for a new backend process.
            "min_size": min(env_int("DATABASE_POOL_MIN_SIZE", 2, minimum=0), _pool_max),
            "max_size": _pool_max,
            "timeout": env_int("DATABASE_POOL_TIMEOUT", 10, minimum=1),
        }
else:
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    DATABASES = {
        "default": {
            "ENGINE": _SQLITE_ENGINE,
            "NAME": VAR_DIR / "db.sqlite3",
            # Kept open between requests (one per web thread): no connect and PRAGMAs per request.
            "CONN_MAX_AGE": 600,
            "OPTIONS": dict(SQLITE_OPTIONS),
            # A file (not in-memory) so that a real Celery worker process can share the test database.
            "TEST": {"NAME": str(VAR_DIR / f"test-db-{os.getpid()}.sqlite3")},
        }
    }
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
]

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
# The languages a study's participant pages can be in (Study.language); the study decides, not the
# browser (studyapp.studies.i18n). A new one needs locale/<code>/LC_MESSAGES/django.po and
# djangojs.po (README "Languages").
LANGUAGES = [("en", "English"), ("de", "Deutsch")]
LOCALE_PATHS = [BASE_DIR / "locale"]
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(VAR_DIR / "staticfiles")))
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {
        # The manifest needs collectstatic; tests switch to the plain storage (tests/conftest.py).
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if not DEBUG
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}
# Stimulus images and explanation assets. Served through a view (studies.views.media) so that
# the same code path works under runserver and gunicorn without a separate media server; it
# serves only the folders participants are shown (studies.access.PARTICIPANT_MEDIA_FOLDERS), never
# the models/ or datasets/ also kept here.
MEDIA_ROOT = Path(env_str("MEDIA_ROOT", str(VAR_DIR / "media")))
MEDIA_URL = "/media/"

# Request bodies (studyapp.lib.bodies): any body above this is refused with 413 (file uploads
# are not counted); a participant API body above STUDY_API_MAX_BODY_BYTES too (its largest,
# a questionnaire with free text, is a few kB).
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024
STUDY_API_MAX_BODY_BYTES = 64 * 1024

SESSION_COOKIE_AGE = 60 * 60 * 24 * 14
# Sessions are read from the cache (the database only when the cache has lost one) and written
# to both: a participant request reads its session without a query.
# (Django's cached_db; studyapp.lib.perf.sessions only times its load and save for Server-Timing.)
SESSION_ENGINE = "studyapp.lib.perf.sessions"
SESSION_COOKIE_SECURE = env_bool("DJANGO_SECURE_COOKIES", not DEBUG)
CSRF_COOKIE_SECURE = SESSION_COOKIE_SECURE
SESSION_COOKIE_HTTPONLY = True
SECURE_SSL_REDIRECT = env_bool("DJANGO_SSL_REDIRECT", False)
SECURE_HSTS_SECONDS = env_int("DJANGO_HSTS_SECONDS", 0, minimum=0)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_SUBDOMAINS", SECURE_HSTS_SECONDS > 0)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", SECURE_HSTS_SECONDS > 0)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("DJANGO_BEHIND_PROXY", False) else None
X_FRAME_OPTIONS = "DENY"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "UNAUTHENTICATED_USER": None,
    "DEFAULT_PARSER_CLASSES": ["studyapp.lib.bodies.SafeJSONParser"],
    "DEFAULT_THROTTLE_RATES": {
        "entry": env_str("STUDY_ENTRY_RATE", "30/minute"),
        "participant": env_str("STUDY_PARTICIPANT_RATE", "600/minute"),
        # The page's batched interaction events: a scope of their own, so they never use up the
        # participant's budget above (a batch holds up to 50 events).
        "events": env_str("STUDY_EVENT_RATE", "120/minute"),
    },
    "EXCEPTION_HANDLER": "studyapp.studies.api.exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "XAI study participant API",
    "VERSION": "1",
    "SERVE_INCLUDE_SCHEMA": False,
}

CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.redis.RedisCache",
        "LOCATION": env_str("CACHE_URL"),
    }
    if env_str("CACHE_URL")
    else {
        # Django's file cache, but it lists its directory twice a minute, not on every write.
        "BACKEND": "studyapp.lib.perf.filecache.FileBasedCache" if switches.FILE_CACHE_CULL else "django.core.cache.backends.filebased.FileBasedCache",
        "LOCATION": str(VAR_DIR / "cache"),
        # Entries per participant (a session, rate-limit counters): the default 300 would cull a
        # third of the entries on every write once 300 people are in a study.
        "OPTIONS": {"MAX_ENTRIES": 100_000},
    }
}

# Celery: an embedded filesystem broker (no server, real worker processes) unless
# CELERY_BROKER_URL points at Redis. Results are not kept: progress lives in the database.
CELERY_BROKER_URL = env_url("CELERY_BROKER_URL", schemes={"redis", "rediss", "filesystem", "memory"})
CELERY_QUEUE_DIR = Path(env_str("CELERY_QUEUE_DIR", str(VAR_DIR / "celery")))
CELERY_TASK_ALWAYS_EAGER = env_bool("CELERY_TASK_ALWAYS_EAGER", False)
CELERY_EXPLAIN_QUEUE = env_str("CELERY_EXPLAIN_QUEUE", "explain")
# A worker that starts resumes precompute jobs that have not moved for this long (killed workers).
PRECOMPUTE_RESUME_AFTER = env_int("PRECOMPUTE_RESUME_AFTER", 60, minimum=0)

# Study platform.
KANNADA_MNIST_DIR = env_str("KANNADA_MNIST_DIR")
CUB_DIR = env_str("CUB_DIR")
CEL_DIR = env_str("CEL_DIR")
# ImageNet weights of the Study B backbone (a torchvision state dict); else torchvision's cache, else random.
IMAGENET_WEIGHTS = env_str("IMAGENET_WEIGHTS")
STUDY_B_BACKBONE = env_str("STUDY_B_BACKBONE", "vgg11_bn")
STUDY_B_IMAGE_SIZE = env_int("STUDY_B_IMAGE_SIZE", 64, minimum=16)
STUDY_STORE_IP = env_bool("STUDY_STORE_IP", False)
STUDY_DROPOUT_MINUTES_DEFAULT = env_int("STUDY_DROPOUT_MINUTES", 60, minimum=1)
TORCH_THREADS = env_int("TORCH_THREADS", 0, minimum=0)

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
    "loggers": {"django.db.backends": {"level": "WARNING"}},
}
