"""The Starlette app: Twilio's webhooks and media stream, the operator's pages and APIs.

Owns: routes and what each answers (signatures, body caps, operator auth). A request's
work is done by the layers below; a stream becomes a ``call.CallBridge``. May import:
runtime, call, gemini, twilio, tools, audio, state, config, observability.
"""
