def app(environ, start_response):
    while True:
        pass
