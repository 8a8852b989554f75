"""The request/response types of the HTTP routes: re-exported from the core module :mod:`emulator.api`.

They live in the core so the processing engine (request triggers) needs no transport; route modules may
import them from here or from :mod:`emulator.api`.
"""

from emulator.api import Handler, Request, Response, Routes, parse_json

__all__ = ["Handler", "Request", "Response", "Routes", "parse_json"]
