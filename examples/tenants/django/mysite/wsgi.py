"""WSGI entry point. The first instance creates the tables (migrate is
idempotent), so the example needs no separate set-up step."""
import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "mysite.settings")

import django  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.core.wsgi import get_wsgi_application  # noqa: E402

django.setup()
call_command("migrate", verbosity=0, interactive=False)
application = get_wsgi_application()
