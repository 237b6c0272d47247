# A tenant whose finaliser loops when the snapshot's gc runs.
class Spinner:
    def __del__(self):
        while True:
            pass


def make():
    a = Spinner()
    a.self = a  # a cycle: freed by gc.collect() in wsgi_before_snapshot


make()


def application(environ, start_response):
    start_response("200 OK", [])
    return [b"ok"]
