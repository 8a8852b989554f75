"""One-shot configurator for aichat-stack: database, tables, plugin packages and triggers over HTTP.

It talks to any InfluxDB 3 Core compatible server (the real one in Docker Compose or the embedded engine of
``make run``) and never knows which. Run it with ``python -m provisioning [--dry-run] [--prune]``.
"""

from provisioning.errors import (
    ApiError,
    AuthError,
    ConfigError,
    ProvisioningError,
    ServerUnavailable,
    TriggerConfigError,
)

__all__ = ["ApiError", "AuthError", "ConfigError", "ProvisioningError", "ServerUnavailable", "TriggerConfigError"]
