"""Gemini Live: the BidiGenerateContent wire protocol without I/O, and over websockets a
session (one connection), a link (a call's connection across reconnects) and probes.

Owns: the wire (shared types, the bridge's client side, the emulator's server side), where
and how to authenticate, sessions, the link and its pure reconnect policy, probing health.
May import: config, observability.
"""
