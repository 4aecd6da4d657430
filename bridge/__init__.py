"""A phone bridge between Twilio Media Streams and Google's Gemini Live."""

__version__ = "0.1.0"
