"""Small named exceptions. Each one renders as one line a user can act on; none carries a secret."""

from __future__ import annotations


class ProvisioningError(Exception):
    """Base class: anything that stops provisioning, shown as one line."""


class ConfigError(ProvisioningError):
    """A setting is missing or unusable (token file, URL, triggers file)."""


class TriggerConfigError(ConfigError):
    """A declared trigger cannot work; the message names the trigger and the fix."""

    def __init__(self, trigger: str, problem: str, fix: str):
        self.trigger = trigger
        self.problem = problem
        self.fix = fix
        super().__init__(f"trigger {trigger}: {problem}; {fix}")


class ServerUnavailable(ProvisioningError):
    """The server did not answer healthy before the deadline."""


class ApiError(ProvisioningError):
    """The server answered a request with an unexpected status."""

    def __init__(self, method: str, path: str, status: int, body: str):
        self.method = method
        self.path = path
        self.status = status
        self.body = body.strip()
        short = self.body if len(self.body) <= 300 else self.body[:300] + "…"
        super().__init__(f"{method} {path} answered {status}: {short}")


class AuthError(ApiError):
    """401/400 from the auth layer: the token is missing, malformed or not known to the server."""

    def __str__(self) -> str:
        return (
            f"the server refused the token ({self.status}): check INFLUXDB3_AUTH_TOKEN_FILE points at the "
            "admin token the server was started with"
        )
