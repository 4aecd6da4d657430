"""A phone bridge between Twilio Media Streams and Google's Gemini Live.

The layers, each a package, from the top; a package imports only those below it
(``tests/test_layers.py`` holds the code to this):

    cli, commands    the command line: serve, check, demo, dev-phone, emulator
    web              the Starlette routes: webhooks, the media stream, operator pages
    runtime          what the app shares, built once from the settings; the server
    call             one phone call: its I/O loop and the state machines it drives
    gemini  twilio   the two protocols (sans-I/O), their sessions and clients;
    tools   audio    the assistant's tools; the audio conversion (sans-I/O);
    hooks            signed requests to the operator's systems: call setup, reports
    state            what a fleet of servers shares (this process, or Redis)
    config           settings; observability: logs and metrics; threads: bounded pools;
                     http_opener: urllib for operators' URLs (no redirects)

``testing`` (the Gemini emulator, the simulated Twilio caller and the harness that runs
the real server on loopback) stands apart: it may use any layer, and no layer uses it.
"""

__version__ = "0.1.0"
