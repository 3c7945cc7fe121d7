import base64
import io

import numpy as np
import pytest
from PIL import Image

from serve_app.media.images import ImageError, decode_data_url, prepare_image
from serve_app.media.video import Mp4Writer, encode_mp4, probe_mp4


def moving_square(frames=17, height=64, width=96):
    video = np.zeros((frames, height, width, 3), np.uint8)
    for t in range(frames):
        video[t, 16:48, 4 * t:4 * t + 24] = (255, 128, 0)
    return video


def to_i420(rgb_uint8):
    import torch

    from serve_app.media.yuv import rgb_to_i420

    video = torch.from_numpy(rgb_uint8).permute(0, 3, 1, 2)[None].float() / 255
    return rgb_to_i420(video)[0].numpy()


@pytest.mark.parametrize("pixel_format", ["yuv420p", "rgb24"])
def test_mp4_is_h264_yuv420p_with_requested_fps_and_frames(tmp_path, pixel_format):
    frames = moving_square()
    path = tmp_path / "v.mp4"
    encode_mp4(frames if pixel_format == "rgb24" else to_i420(frames), 12, path, pixel_format=pixel_format)
    data = path.read_bytes()
    assert data.find(b"moov") < data.find(b"mdat")  # faststart: index first
    probe, decoded = probe_mp4(data)
    assert (probe.codec, probe.pix_fmt) == ("h264", "yuv420p")
    assert (probe.num_frames, probe.width, probe.height, probe.fps) == (17, 96, 64, 12.0)
    assert np.abs(decoded.astype(int) - frames).mean() < 4  # visually the same video


def test_encode_rejects_wrong_arrays(tmp_path):
    with pytest.raises(ValueError, match="uint8"):
        encode_mp4(np.zeros((3, 16, 16, 3), np.float32), 8, tmp_path / "x.mp4", pixel_format="rgb24")
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((3, 16, 16), np.uint8), 8, tmp_path / "x.mp4", pixel_format="rgb24")
    with pytest.raises(ValueError):
        encode_mp4(np.zeros((3, 16, 16, 3), np.uint8), 8, tmp_path / "x.mp4")  # yuv420p is 3-d


def test_yuv_conversion_keeps_colours_and_is_tagged_bt709(tmp_path):
    """Saturated colours survive GPU-side BT.709 conversion + decode (an untagged stream would shift them)."""
    frames = np.zeros((5, 64, 64, 3), np.uint8)
    frames[:, :, :32] = (220, 40, 30)
    frames[:, :, 32:] = (20, 60, 200)
    path = tmp_path / "c.mp4"
    encode_mp4(to_i420(frames), 8, path, crf=0)
    probe, decoded = probe_mp4(path.read_bytes())
    assert np.abs(decoded.astype(int) - frames)[:, 4:-4, list(range(4, 28)) + list(range(36, 60))].max() <= 3
    import av

    with av.open(str(path)) as container:
        assert container.streams.video[0].codec_context.colorspace == 1  # BT.709 in the stream


def test_writing_in_chunks_gives_the_same_video(tmp_path):
    """The FastVideo worker writes 1 + 4 + 4 ... frames as the VAE decodes them: same frames as one write."""
    frames = to_i420(moving_square())
    encode_mp4(frames, 8, tmp_path / "whole.mp4", crf=0)
    writer = Mp4Writer(tmp_path / "chunks.mp4", 8, crf=0)
    for start in (0, 1, 5, 9, 13):
        writer.write(frames[start:start + (1 if start == 0 else 4)])
    writer.close()
    _, whole = probe_mp4((tmp_path / "whole.mp4").read_bytes())
    probe, chunks = probe_mp4((tmp_path / "chunks.mp4").read_bytes())
    assert probe.num_frames == 17 and np.array_equal(whole, chunks)


def test_an_aborted_or_empty_writer_leaves_no_file(tmp_path):
    writer = Mp4Writer(tmp_path / "a.mp4", 8)
    writer.write(to_i420(moving_square(frames=3)))
    writer.abort()
    assert not (tmp_path / "a.mp4").exists()
    with pytest.raises(ValueError, match="no frames"):
        Mp4Writer(tmp_path / "b.mp4", 8).close()


def png(width, height, left=(255, 0, 0), right=(0, 0, 255), fmt="PNG"):
    img = Image.new("RGB", (width, height), left)
    img.paste(Image.new("RGB", (width - width // 2, height), right), (width // 2, 0))
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_prepare_image_covers_then_centre_crops():
    # 200x100 (2:1) into 64x64: scaled to 128x64, the centre 64 columns kept: half red, half blue.
    out = Image.open(io.BytesIO(prepare_image(png(200, 100), 64, 64, 10**7)))
    assert out.size == (64, 64) and out.mode == "RGB"
    arr = np.asarray(out).astype(int)
    assert arr[:, :28, 0].mean() > 200 and arr[:, :28, 2].mean() < 50
    assert arr[:, 36:, 2].mean() > 200 and arr[:, 36:, 0].mean() < 50
    # A tall image into a wide frame keeps the full width.
    assert Image.open(io.BytesIO(prepare_image(png(50, 300, fmt="JPEG"), 96, 64, 10**7))).size == (96, 64)


def test_prepare_image_refuses_what_it_cannot_use():
    with pytest.raises(ImageError, match="could not be decoded"):
        prepare_image(b"not an image", 64, 64, 10**7)
    with pytest.raises(ImageError, match="limit"):
        prepare_image(png(400, 400), 64, 64, 100_000)
    buf = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buf, format="TIFF")
    with pytest.raises(ImageError, match="not accepted"):
        prepare_image(buf.getvalue(), 64, 64, 10**7)


def test_data_urls():
    raw = png(8, 8)
    assert decode_data_url("data:image/png;base64," + base64.b64encode(raw).decode(), 10**6) == raw
    with pytest.raises(ImageError):
        decode_data_url("data:image/png,notbase64", 10**6)
    with pytest.raises(ImageError):
        decode_data_url("data:image/png;base64,@@@@", 10**6)
    with pytest.raises(ImageError, match="larger"):
        decode_data_url("data:image/png;base64," + "A" * 4000, 1000)
