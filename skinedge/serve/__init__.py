"""``skinedge serve``: a local web page and JSON API over one shared Classifier (standard library HTTP).

    from skinedge import Classifier
    from skinedge.serve import make_server

    with Classifier() as clf:
        server = make_server(clf, "127.0.0.1", 8080)
        server.serve_forever()

A capability module: it imports the core library; the core never imports it.
"""

from skinedge.serve.runner import configure_logging, run_server
from skinedge.serve.server import ServeOptions, SkinedgeServer, make_server, running

__all__ = ["ServeOptions", "SkinedgeServer", "configure_logging", "make_server", "run_server", "running"]
