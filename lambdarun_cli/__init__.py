"""The `lambdarun` developer command. Never shipped in a function package or image."""
