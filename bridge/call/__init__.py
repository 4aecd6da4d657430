"""One phone call: a Twilio Media Stream on one side, a Gemini Live session on the other.

Owns: the call's I/O loop (``bridge.py``), the pure, clock-injected state it drives
(what the caller asked and the model answered, what Twilio has played, the call's
guards), ending a call from the bridge's side, who may start one, and the books kept on
calls (admission, the registry behind the stats). May import: gemini, twilio, tools,
audio, state, config, observability.
"""
