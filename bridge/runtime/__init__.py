"""What one server shares across requests and calls, built once from the settings, and
the uvicorn server that drains calls before it closes sockets.

Owns: ``Services`` and its building, loading the settings with their files checked,
the start-up summary, the server. May import: call, gemini, twilio, tools, audio, state,
config, observability.
"""
