"""Settings of the Django example tenant. The database lives in the tenant's
writable data folder, which wsgi-wasm mounts at $WSGI_WASM_DATA_DIR."""
import os

DATA_DIR = os.environ.get("WSGI_WASM_DATA_DIR", "/tmp")
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "example-only-not-secret")
DEBUG = False
ALLOWED_HOSTS = ["*"]
INSTALLED_APPS = ["notes"]
MIDDLEWARE = []
ROOT_URLCONF = "mysite.urls"
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": os.path.join(DATA_DIR, "db.sqlite3")}}
USE_TZ = True
TIME_ZONE = "UTC"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
