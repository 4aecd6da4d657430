"""Gemini Live: the BidiGenerateContent wire protocol and a session over websockets."""
