"""The controller: loopcall over HTTP (``loopcall serve``).

``create_app(settings)`` builds the FastAPI app; routes live in one module per
resource and get their dependencies through ``Annotated`` aliases (``deps.py``).
"""

from harness.api.app import create_app

__all__ = ["create_app"]
