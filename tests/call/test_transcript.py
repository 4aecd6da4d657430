"""Transcripts stitched from fragments, and the summary a fresh session gets."""

from bridge.call.transcript import Speaker, Transcript


def test_fragments_join_into_turns_per_speaker() -> None:
    t = Transcript()
    t.add(Speaker.CALLER, " where is")
    t.add(Speaker.CALLER, " my order")
    t.add(Speaker.ASSISTANT, "Ca")
    t.add(Speaker.ASSISTANT, "n I have the number?")
    t.end_turn()
    t.add(Speaker.ASSISTANT, "Also,")  # a new model turn
    assert [(x.speaker, x.text) for x in t.turns] == [
        ("caller", "where is my order"),
        ("assistant", "Can I have the number?"),
        ("assistant", "Also,"),
    ]
    assert t.tail(1) == [{"speaker": "assistant", "text": "Also,"}]


def test_summary_keeps_the_most_recent_turns_within_a_budget() -> None:
    t = Transcript()
    for i in range(100):
        t.add(Speaker.CALLER, f"question {i}")
        t.add(Speaker.ASSISTANT, f"answer {i}")
        t.end_turn()
    summary = t.summary(max_chars=200)
    assert len(summary) <= 200
    assert summary.endswith("You: answer 99") and "Caller: question 99" in summary
    assert "question 1\n" not in summary


def test_bounded() -> None:
    t = Transcript(max_turns=3)
    for i in range(10):
        t.add(Speaker.CALLER if i % 2 else "assistant", f"t{i}")
    assert len(t.turns) == 3
