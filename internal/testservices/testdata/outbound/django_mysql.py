"""Django 3.2 on MySQL/MariaDB through PyMySQL (pymysql.install_as_MySQLdb:
PyMySQL 1.0.2 reports mysqlclient 1.4.0, the least Django 3.2 takes):
migrates contenttypes and auth, creates a user (PBKDF2) and logs them in.

Environment: MYSQL_HOST, MYSQL_PORT, MYSQL_USER, MYSQL_PASSWORD,
MYSQL_DATABASE. Prints, on its last line:
{"migrated": bool, "user": ..., "authenticated": bool, "wrong_password_refused": bool, "vendor": ..., "driver": ...}
"""
import io
import json
import os
import secrets

import pymysql

pymysql.install_as_MySQLdb()

import django  # noqa: E402
from django.conf import settings  # noqa: E402

env = os.environ
settings.configure(
    DATABASES={"default": {
        "ENGINE": "django.db.backends.mysql", "HOST": env["MYSQL_HOST"], "PORT": env["MYSQL_PORT"],
        "USER": env["MYSQL_USER"], "PASSWORD": env["MYSQL_PASSWORD"], "NAME": env["MYSQL_DATABASE"],
        "OPTIONS": {"charset": "utf8mb4"},
    }},
    INSTALLED_APPS=["django.contrib.contenttypes", "django.contrib.auth"],
    USE_TZ=True,
    DEFAULT_AUTO_FIELD="django.db.models.AutoField",
)
django.setup()

from django.contrib.auth import authenticate  # noqa: E402
from django.contrib.auth.models import User  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

call_command("migrate", verbosity=0, stdout=io.StringIO())
name, password = "user_" + secrets.token_hex(4), secrets.token_urlsafe(12)
User.objects.create_user(name, password=password)
ok = authenticate(username=name, password=password)
bad = authenticate(username=name, password=password + "x")
print(json.dumps({"migrated": "auth_user" in connection.introspection.table_names(), "user": name,
                  "authenticated": ok is not None and ok.username == name, "wrong_password_refused": bad is None,
                  "vendor": connection.vendor, "driver": "Django " + django.get_version()}))
