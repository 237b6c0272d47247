def hog(environ, start_response):
    chunks = []
    while True:
        chunks.append(bytearray(1 << 20))
