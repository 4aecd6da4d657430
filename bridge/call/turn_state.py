"""Whose turn it is, as the bridge sees it: the caller's questions and the model's answers.

The bridge needs this to pick the moment for a planned reconnect (not while
the model is generating), to know which caller speech is still unanswered
(so it can be sent again on a new connection), and to notice when Gemini
stalls after the caller finished. A plain energy detector on the caller's
audio is enough for that: it never decides turns for Gemini, whose own VAD
does.

A question is *answered* only when the model's turn that answers it is
complete (``turnComplete``), or when the caller cut that turn short
(``interrupted``): the first answer audio is not enough, because a
connection lost mid-answer takes the rest of the answer with it. Until then
the question's audio is kept, from a little before its first voiced frame,
and replayed on the next connection.

Speech that begins after the model's turn opened (a remark during the
answer, a barge-in) belongs to the next question: when the turn closes, it
is what stays unanswered.
"""

from __future__ import annotations

import time
import warnings
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from ..audio import CallerAudioStream

with warnings.catch_warnings():
    warnings.simplefilter("ignore", DeprecationWarning)
    import audioop

VOICED_RMS = 400  # int16 RMS of 20 ms of caller audio; phone speech is well above, line noise below
END_OF_TURN_S = 0.7  # quiet after speech that ends the caller's utterance
PRE_ROLL_FRAMES = 15  # 300 ms kept before speech starts, so a replay has the onset
MAX_QUESTION_FRAMES = 30 * 50  # a replayed question keeps its last 30 s (240 kB of μ-law)


@dataclass(frozen=True, slots=True)
class _Utterance:
    kept_from: int  # frame number where its replay starts (its pre-roll)
    voiced_at: int  # frame number of its first voiced frame


class TurnState:
    def __init__(
        self,
        clock: Callable[[], float] = time.monotonic,
        on_caller_finished: Callable[[], None] = lambda: None,
    ) -> None:
        """``on_caller_finished``: the caller's utterance has just ended (what is unanswered
        changed: the call saves it for a stream that may pick the call up elsewhere)."""
        self._clock = clock
        self._on_caller_finished = on_caller_finished
        self.caller_speaking = False
        self.model_generating = False  # the model's turn is open: audio or a tool call came
        self.answer_started = False  # audio of the open model turn has arrived
        self._waiting_since: float | None = None  # caller finished, no answer audio since
        self._last_voiced = 0.0
        self._pre_roll: deque[bytes] = deque(maxlen=PRE_ROLL_FRAMES)
        # The unanswered caller speech as μ-law (a quarter of the 16 kHz PCM's size),
        # converted again only if it has to be replayed.
        self._question: deque[bytes] = deque(maxlen=MAX_QUESTION_FRAMES)
        self._frames = 0  # frames ever put in _question: the number of the next one
        self._utterances: deque[_Utterance] = deque()
        self._turn_opened_at: int | None = None  # _frames when the open model turn began

    # --- the caller ---------------------------------------------------------------------------

    def on_caller_frame(self, ulaw: bytes, pcm16k: bytes) -> None:
        """One caller frame, as Twilio sent it and as Gemini gets it."""
        now = self._clock()
        voiced = audioop.rms(pcm16k, 2) > VOICED_RMS
        if voiced:
            self._last_voiced = now
            if not self.caller_speaking:
                self.caller_speaking = True
                self._waiting_since = None
                self._utterance_begins()
        if self._utterances:
            self._question.append(ulaw)
            self._frames += 1
        else:
            self._pre_roll.append(ulaw)
        if self.caller_speaking and not voiced and now - self._last_voiced >= END_OF_TURN_S:
            self.caller_speaking = False
            if not self.model_generating:
                self._waiting_since = self._last_voiced
            self._on_caller_finished()

    def _utterance_begins(self) -> None:
        if not self._utterances:  # a new question: it starts with the pre-roll
            self._question.clear()
            kept_from = self._frames
            self._question.extend(self._pre_roll)
            self._frames += len(self._pre_roll)
            self._pre_roll.clear()
        else:  # more speech before the last question was answered: its pre-roll is kept already
            kept_from = max(self._frames - PRE_ROLL_FRAMES, self._frames - len(self._question))
        self._utterances.append(_Utterance(kept_from, self._frames))

    # --- the model ----------------------------------------------------------------------------

    def on_model_audio(self) -> None:
        """Answer audio arrived: the wait is over, but the question stays until turnComplete."""
        self._open_model_turn()
        self.answer_started = True
        self._waiting_since = None

    def on_model_tool_call(self) -> None:
        """The model's turn opened with a tool call: it answers once the tool has."""
        self._open_model_turn()
        self._waiting_since = None

    def on_model_turn_complete(self) -> None:
        """``turnComplete``: what the caller asked before this turn opened is answered."""
        self._close_model_turn()

    def on_model_interrupted(self) -> None:
        """``interrupted``: the caller cut the answer short; their new speech is the question."""
        self._close_model_turn()

    def on_model_turn_cut(self) -> None:
        """The connection carrying the model's turn is gone: the turn never completed,
        so its question stays unanswered and goes to the next connection."""
        self.model_generating = False
        self.answer_started = False
        self._turn_opened_at = None

    def _open_model_turn(self) -> None:
        self.model_generating = True
        if self._turn_opened_at is None:
            self._turn_opened_at = self._frames

    def _close_model_turn(self) -> None:
        opened = self._turn_opened_at
        self.on_model_turn_cut()
        if opened is None:
            return  # no turn was open (an answer's playback was interrupted): nothing answered
        later = [u for u in self._utterances if u.voiced_at >= opened]
        if not later:
            self._utterances.clear()
            self._question.clear()
            self._waiting_since = None
            return
        first_kept = self._frames - len(self._question)
        for _ in range(max(0, later[0].kept_from - first_kept)):
            self._question.popleft()
        self._utterances = deque(later)
        if not self.caller_speaking:
            self._waiting_since = self._clock()

    # --- what the link and the call ask -------------------------------------------------------

    @property
    def has_unanswered(self) -> bool:
        """Caller speech no completed model turn has answered yet (it would be replayed)."""
        return bool(self._utterances)

    @property
    def awaiting_answer(self) -> bool:
        """The caller asked something and no answer audio has come for it yet."""
        return bool(self._utterances) and not self.answer_started

    def unanswered_audio(self) -> list[bytes]:
        """16 kHz audio of the unanswered caller speech (empty when there is none)."""
        if not self._utterances:
            return []
        converter = CallerAudioStream()
        return [converter.to_gemini_pcm(frame) for frame in self._question]

    def unanswered_ulaw(self) -> bytes:
        """The unanswered caller speech as Twilio sent it (empty when there is none)."""
        return b"".join(self._question) if self._utterances else b""

    def restore_unanswered(self, ulaw: bytes, frame_bytes: int = 160) -> None:
        """A call picked up from another stream: its unanswered speech (``unanswered_ulaw``
        there) is this one's, to be replayed on the first connection."""
        if not ulaw:
            return
        frames = [ulaw[i : i + frame_bytes] for i in range(0, len(ulaw), frame_bytes)]
        self._question.clear()
        self._question.extend(frames)
        self._frames = len(self._question)
        self._utterances = deque([_Utterance(0, 0)])

    @property
    def last_voiced_at(self) -> float:
        """When the caller's most recent voiced frame arrived."""
        return self._last_voiced

    def restart_wait(self) -> None:
        """The unanswered question was just sent again: the wait for its answer starts now."""
        if self._utterances and not self.caller_speaking and not self.model_generating:
            self._waiting_since = self._clock()

    def waiting_since(self) -> float | None:
        """When the caller finished a question that has no answer audio yet."""
        return self._waiting_since
