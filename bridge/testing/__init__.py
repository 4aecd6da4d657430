"""The simulator: a Gemini Live emulator, a simulated Twilio caller and REST API, and the
harness that runs the real server on loopback. It stands apart: it may import any layer of
the bridge, and none of them imports it. It ships in the package because ``demo`` and the
``emulator`` command run it."""
