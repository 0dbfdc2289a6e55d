"""The sidecar gateway: an ASGI reverse proxy that emits metrics, ECS access logs and events."""
