"""Prompt texts, chat wrapping, task registry and answer rendering (crab-reference 1.1, 4)."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from crab_core.errors import TaskError
from crab_core.tasks import (
    AUDIO_BLOCK,
    IMAGE_BLOCK,
    PROMPT_CHOICES,
    TASKS,
    VIDEO_BLOCK,
    build_instruction,
    build_prompt,
    get_task,
    ordinal,
    render_target,
    validate_question,
    wrap_chat,
)

V = "This is a video:\n<video_start><video><video_end>\n"
A = "This is an audio:\n<audio_start><audio><audio_end>\n"
I = "This is an image:\n<image_start><image><image_end>\n"  # noqa: E741
SEG = (
    "Please recognize the category of object making sound in the video, and then segment out the object "
    "that makes the sound at the {} second of the video."
)
MASK = "<mask_start><mask_0><mask_1><mask_2><mask_3><mask_4><mask_5><mask_end>"


def test_blocks_exact():
    assert (VIDEO_BLOCK, AUDIO_BLOCK, IMAGE_BLOCK) == (V, A, I)


def test_wrap_chat_exact():
    expected = "<s>[INST] <<SYS>>\nYou are a helpful assistant.\n<</SYS>>\n\nhello world [/INST]"
    assert wrap_chat("  hello world \n") == expected
    assert wrap_chat("x", system="Be brief.") == "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nx [/INST]"


def test_registry_has_all_tasks_and_defaults_match_choices():
    assert set(TASKS) == {"ave", "avvp", "avqa", "arig", "s4", "ms3", "avss", "ref-avs", "caption"}
    assert set(PROMPT_CHOICES) == set(TASKS)
    for name, spec in TASKS.items():
        assert spec.default_variant == PROMPT_CHOICES[name][0]
        assert PROMPT_CHOICES[name][1]  # a reason is recorded
        assert spec.max_new_tokens == (100 if spec.needs_mask else 500)


def test_get_task_unknown_lists_known():
    with pytest.raises(TaskError) as exc:
        get_task("avx")
    assert "ave" in str(exc.value) and "ref-avs" in str(exc.value)
    assert get_task(" AVE ") is TASKS["ave"]
    assert get_task(TASKS["s4"]) is TASKS["s4"]


def test_spec_is_frozen_and_picklable():
    spec = TASKS["ave"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.name = "x"  # type: ignore[misc]
    assert pickle.loads(pickle.dumps(spec)) == spec
    assert len({spec, TASKS["ave"], TASKS["s4"]}) == 2


@pytest.mark.parametrize(
    ("task", "kwargs", "expected"),
    [
        ("ave", {}, V + A + "Please describe the events and time range that occurred in the video."),
        (
            "avvp",
            {},
            V + A + "Please determine the events that occur based on the visual and audio information in "
            "the video, as well as the start and end times of these events.",
        ),
        (
            "avvp",
            {"variant": "quick_start"},
            V + A + "Please determine the events that occur based on the visual "
            "and audio information, as well as the start and end time of these events.",
        ),
        (
            "avqa",
            {"question": "Is the violin playing?"},
            V + A + "Please answer this question: Is the violin playing?",
        ),
        (
            "arig",
            {},
            I + A + "Please recognize the category of object that makes the sound and then output the "
            "location coordinates.",
        ),
        (
            "arig",
            {"variant": "train"},
            I + A + "Please recognize the category of object that makes the sound and "
            "then output its location coordinates.",
        ),
        (
            "arig",
            {"variant": "quick_start"},
            I + A + "Please output the location coordinates of sounding object.",
        ),
        ("s4", {"frame_index": 2}, V + A + SEG.format("third")),
        (
            "s4",
            {"variant": "quick_start"},
            I + A + "Please segment out the object that makes the sound in the image.",
        ),
        ("ms3", {"frame_index": 4}, V + A + SEG.format("fifth")),
        ("ms3", {"variant": "test", "frame_index": 0}, V + A + SEG.format("third")),
        (
            "avss",
            {},
            I
            + A
            + "Please recognize the category of the object making the sound in the image and segment it out.",
        ),
        ("avss", {"variant": "train", "frame_index": 9}, V + A + SEG.format("tenth")),
        (
            "ref-avs",
            {"question": "The Dog"},
            V + A + I + "Please segment out the corresponding object in the image "
            "based on the referential expression: The Dog",
        ),
        (
            "ref-avs",
            {"question": "The Dog", "variant": "train", "frame_index": 1},
            V + A + "Please segment out the dog at the second second in the video.",
        ),
        (
            "ref-avs",
            {"question": "The Dog", "variant": "quick_start"},
            I + A + "Please segment out the dog in the image.",
        ),
        ("caption", {}, V + A + "Please describe this video and audio."),
        ("caption", {"variant": "test"}, V + A + "Please describe this video."),
    ],
)
def test_instruction_texts_exact(task, kwargs, expected):
    assert build_instruction(get_task(task), **kwargs) == expected


def test_build_prompt_is_wrapped_instruction():
    spec = get_task("avqa")
    assert build_prompt(spec, question="How many?") == wrap_chat(
        build_instruction(spec, question="How many?")
    )
    assert build_prompt(spec, question="How many?").startswith(
        "<s>[INST] <<SYS>>\nYou are a helpful assistant."
    )


def test_inputs_and_audio_modes():
    assert TASKS["ave"].inputs == ("video", "audio")
    assert TASKS["avqa"].audio_mode == "avqa" and TASKS["avqa"].inputs == ("video", "audio", "question")
    assert TASKS["s4"].num_frames == 5 and TASKS["s4"].num_seconds == 5
    assert TASKS["s4"].inputs == ("video", "audio", "image")  # target frame feeds the mask decoder
    assert TASKS["avss"].audio_mode == "single"
    assert TASKS["avss"].required_inputs("train") == ("video", "audio", "image")
    assert TASKS["arig"].required_inputs("quick_start") == ("image", "audio")
    assert TASKS["arig"].variant("quick_start").audio_mode == "single"
    assert TASKS["ref-avs"].inputs == ("video", "audio", "image", "question")
    assert TASKS["s4"].needs_mask and not TASKS["arig"].needs_mask
    assert TASKS["ave"].instructions["train"] == TASKS["ave"].instructions["test"]


def test_unknown_variant_raises():
    with pytest.raises(TaskError, match="quick_start"):
        build_instruction(get_task("caption"), variant="quick_start")


@pytest.mark.parametrize("bad", ["", "   ", "\x00\x01", "x" * 1001, None, 5])
def test_bad_question_raises(bad):
    with pytest.raises(TaskError):
        build_instruction(get_task("avqa"), question=bad)


def test_question_cleaning():
    assert validate_question("  Is\tthe\x00 dog\nbarking?\u200b ") == "Is the dog barking?"
    assert validate_question("x" * 1000) == "x" * 1000
    braces = build_instruction(get_task("avqa"), question="what is {nth}?")
    assert braces.endswith("Please answer this question: what is {nth}?")


def test_question_on_task_without_question_raises():
    with pytest.raises(TaskError, match="takes no question"):
        build_instruction(get_task("ave"), question="why?")
    assert build_instruction(get_task("ave"), question="  ") == build_instruction(get_task("ave"))


def test_frame_index_checks():
    with pytest.raises(TaskError, match="frame_index"):
        build_instruction(get_task("s4"))
    with pytest.raises(TaskError):
        build_instruction(get_task("s4"), frame_index=5)  # S4 has 5 seconds
    with pytest.raises(TaskError):
        build_instruction(get_task("avss"), variant="train", frame_index=-1)
    assert [ordinal(i) for i in range(10)] == [
        "first",
        "second",
        "third",
        "fourth",
        "fifth",
        "sixth",
        "seventh",
        "eighth",
        "ninth",
        "tenth",
    ]
    with pytest.raises(TaskError):
        ordinal(10)


def test_render_targets_exact():
    ave = render_target("ave", {"event": "drum", "range": [2, 6]}, reasoning="A drum is seen and heard.")
    assert ave == (
        "A drum is seen and heard. Therefore, the audible and visible event in the video is "
        "<event> drum </event>, and the time range is <range> 2,6 </range>."
    )
    assert render_target("avqa", {"answer": "saxophone"}) == "So the answer is <answer> saxophone </answer>."
    box = {"object": "drum", "box": [10, 20, 110, 120]}
    assert (
        render_target("arig", box)
        == "The sounding object is drum. Its coordinates are <obj>(10,20)(110,120)</obj>."
    )
    assert render_target("arig", box, variant="train") == (
        "The sounding object is drum. Its coordinate of top left corner is (10,20) and coordinate of bottom "
        "right corner is (110,120)"
    )
    assert render_target("s4", {"object": "dog"}, frame_index=0) == (
        "The object making the sound in the video is dog. The mask of the object that makes the sound at the "
        f"first second is {MASK}"
    )
    assert (
        render_target("avss", {}) == f"The category of the sound-making object and its mask image are {MASK}"
    )
    assert render_target("ref-avs", {"object": None}, question="the loud dog") == f"the loud dog is {MASK}"
    assert render_target(
        "ref-avs", {"object": "dog"}, variant="train", frame_index=2, question="the loud dog"
    ) == (f"At the third second in the video, the loud dog is dog. Its mask is {MASK}")
    avvp = render_target("avvp", {"audio": [{"event": "Speech", "ranges": [[0, 3], [5, 10]]}], "visual": []})
    assert (
        avvp
        == "The audio events are <audio_event>Speech,(0 3),(5 10)</audio_event>. There is no visual event."
    )
    legacy = render_target("avvp", {"visual": [{"event": "Chainsaw", "ranges": [[0, 10]]}]}, legacy_tags=True)
    assert "<visual>Chainsaw,(0 10)</visual>" in legacy
    assert render_target("caption", {"caption": " A dog barks. "}) == "A dog barks."
    with pytest.raises(TaskError):
        render_target("s4", {"object": "dog"})  # needs frame_index
    with pytest.raises(TaskError):
        render_target("nope", {})
