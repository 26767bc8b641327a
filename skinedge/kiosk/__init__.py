"""The kiosk: what a board needs to run ``skinedge serve`` by itself in a clinic.

* :mod:`skinedge.kiosk.auth` -- the access token, session cookies and the failure limiter;
* :mod:`skinedge.kiosk.caselog` -- the SQLite case log with the clinician's labels, export and report;
* :mod:`skinedge.kiosk.modelstore` -- signed, self-tested, atomically switched model updates;
* :mod:`skinedge.kiosk.service` -- the hardened systemd unit.

These modules import the core (``skinedge.*``); the core never imports them.
"""

from skinedge.errors import SkinedgeError


class KioskError(SkinedgeError):
    """A kiosk part (token file, case log, model store, service) was given something it cannot use."""


__all__ = ["KioskError"]
