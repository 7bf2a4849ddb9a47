"""The HTTP edge: what the server does with a connection before the app sees a request.

uvicorn's stock httptools protocol bounds neither the request head (size, time) nor open
connections, and counts idle sockets toward `limit_concurrency`; `protocol.EdgeProtocol`
closes those gaps so that the app is reachable without a proxy in front.
"""
