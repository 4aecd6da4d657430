"""Twilio: the Media Streams wire protocol, webhook signatures and per-stream tokens."""
