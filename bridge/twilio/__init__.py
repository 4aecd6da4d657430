"""Twilio: the Media Streams wire protocol without I/O (both roles), webhook signatures and
per-stream tokens, TwiML, and the REST API (calls and the account). May import: config,
observability, threads."""
