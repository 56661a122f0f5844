"""Entry points, one per runtime: translate the runtime's event into a call on `api/` and back."""
