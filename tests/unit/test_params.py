import pytest

from serve_app import inputs as P
from serve_app.inputs import InvalidInput
from serve_app.settings import Settings

S = Settings().resolve(gpus=0)


def resolve(**kw):
    kw.setdefault("prompt", "a cat")
    kw.setdefault("seed", 1)
    return P.resolve(S.generation, S.limits, **kw)


def test_parse_size():
    assert P.parse_size("1280x704") == (1280, 704)
    assert P.parse_size(" 96 X 64 ") == (96, 64)
    assert P.parse_size("720x1280") == (720, 1280)
    with pytest.raises(InvalidInput) as err:
        P.parse_size("big")
    assert err.value.param == "size" and "WIDTHxHEIGHT" in err.value.message


def test_seconds_become_4k_plus_1_frames():
    assert P.frames_for_seconds("5", 24, S.limits) == 121
    assert P.frames_for_seconds(4, 24, S.limits) == 97
    assert P.frames_for_seconds("0.5", 16, S.limits) == 9
    for bad in ("x", "-1", "0", "nan", "inf"):
        with pytest.raises(InvalidInput):
            P.frames_for_seconds(bad, 24, S.limits)
    with pytest.raises(InvalidInput, match="at most"):
        P.frames_for_seconds(60, 24, S.limits)


def test_defaults_fill_in_and_missing_seed_is_random(monkeypatch):
    monkeypatch.setattr(P, "random_seed", lambda: 12345)
    p = resolve(seed=None)
    assert (p.width, p.height, p.num_frames, p.fps) == (256, 256, 17, 24)
    assert p.seed == 12345 and p.guidance_scale == 1.0 and p.num_inference_steps == 3


@pytest.mark.parametrize("kw, param, words", [
    (dict(prompt="   "), "prompt", "empty"),
    (dict(prompt="x" * 5000), "prompt", "limit"),
    (dict(width=99), "size", "even"),
    (dict(height=16), "size", "between 32"),
    (dict(width=4096), "size", "between"),
    (dict(num_frames=2), "num_frames", "at least 5"),
    (dict(num_frames=1001), "num_frames", "at most"),
    (dict(fps=0), "fps", "between 1 and 60"),
    (dict(steps=0), "num_inference_steps", "between"),
    (dict(guidance_scale=-1), "guidance_scale", "between"),
])
def test_bad_values_get_a_400_naming_the_field(kw, param, words):
    with pytest.raises(InvalidInput) as err:
        resolve(**kw)
    assert err.value.param == param and words in err.value.message


def test_prompt_is_stripped_and_values_kept():
    p = resolve(prompt="  a dog  ", width=96, height=64, num_frames=9, fps=12, steps=2, guidance_scale=3.0)
    assert (p.prompt, p.width, p.height, p.num_frames, p.fps, p.num_inference_steps, p.guidance_scale) == \
        ("a dog", 96, 64, 9, 12, 2, 3.0)


@pytest.mark.parametrize("asked, made", [((720, 1280), (704, 1280)), ((1280, 720), (1280, 704)), ((100, 66), (96, 64)),
                                         ((480, 832), (480, 832)), ((34, 50), (32, 64))])
def test_any_even_size_is_made_at_the_nearest_multiple_of_32_and_delivered_as_asked(asked, made):
    p = resolve(width=asked[0], height=asked[1])
    assert (p.width, p.height) == made and p.output_size == asked


@pytest.mark.parametrize("asked, made", [(121, 121), (120, 121), (122, 121), (10, 9), (13, 13), (6, 5)])
def test_frame_counts_are_rounded_to_what_the_model_makes(asked, made):
    p = resolve(num_frames=asked)
    assert p.num_frames == made and p.requested_num_frames == asked
