"""Redis through redis-py (Debian 12: 4.3.4): SET and GET of a random value,
INCR, a key with a time to live, and a pipeline.

Environment: REDIS_HOST, REDIS_PORT, REDIS_PASSWORD, REDIS_PREFIX (the keys'
prefix). Prints, on its last line:
{"set": ..., "got": ..., "incr": 2, "ttl_set": bool, "pipeline": [...], "server_version": ..., "driver": ...}
"""
import json
import os
import secrets

import redis

env = os.environ
prefix = env.get("REDIS_PREFIX", "roundtrip:")
r = redis.Redis(host=env["REDIS_HOST"], port=int(env["REDIS_PORT"]), password=env["REDIS_PASSWORD"],
                socket_timeout=30, socket_connect_timeout=30, decode_responses=True)
value = secrets.token_hex(8)
r.set(prefix + "value", value)
got = r.get(prefix + "value")
r.incr(prefix + "counter")
incr = r.incr(prefix + "counter")
r.set(prefix + "ephemeral", "x", ex=60)
ttl = r.ttl(prefix + "ephemeral")
pipe = r.pipeline()
pipe.rpush(prefix + "list", "a", "b", "c")
pipe.lrange(prefix + "list", 0, -1)
pipeline = pipe.execute()[1]
version = r.info("server")["redis_version"]
r.delete(prefix + "value", prefix + "counter", prefix + "ephemeral", prefix + "list")
r.close()
print(json.dumps({"set": value, "got": got, "incr": incr, "ttl_set": 0 < ttl <= 60,
                  "pipeline": pipeline, "server_version": version, "driver": "redis-py " + redis.__version__}))
