"""The cloud-agnostic FastAPI application. It knows the ports in `adapters.ports`, no SDK."""
