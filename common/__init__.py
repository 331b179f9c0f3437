"""Shared runtime of every triarb service: config, Redis (client and embedded server), the stream bus,
logging, metrics and the service endpoints. Imports ``schemas`` and nothing else of ours."""
