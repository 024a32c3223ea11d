"""Decoding user images: every awkward format works, every bad file raises InvalidImageError naming
the problem, and huge images are refused from the header alone."""

from __future__ import annotations

import io
import struct
import tracemalloc
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from photo_samples import (
    encode,
    jpeg_cut_short,
    jpeg_with_orientation,
    pil_bytes,
    png_claiming_size,
    textured_background,
)

from fer_core import images
from fer_core.errors import InvalidImageError
from fer_core.images import (
    ACCEPTED_FORMATS,
    MAX_PIXELS,
    decode_checked_image,
    decode_gray,
    decode_image,
    encode_png,
    image_damage,
    image_format,
    read_checked_image,
    read_image,
    rescale,
)

# Files of formats the app does not accept, each as small as its decoder's signature allows.
EPS_BYTES = b"%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 48 48\n%%EndComments\n0 setgray showpage\n%%EOF\n"
PSD_BYTES = (
    b"8BPS"
    + struct.pack(">H6xHIIHH", 1, 1, 48, 48, 8, 1)  # version 1, 1 channel, 48x48, 8 bits, grayscale
    + struct.pack(">III", 0, 0, 0)  # no colour mode data, image resources or layers
    + struct.pack(">H", 0)
    + bytes(48 * 48)  # raw pixels
)
EXOTIC_FILES = {
    "EPS": EPS_BYTES,
    "EPS (binary header)": b"\xc5\xd0\xd3\xc6" + struct.pack("<6I", 30, len(EPS_BYTES), 0, 0, 0, 0) + EPS_BYTES,
    "PSD": PSD_BYTES,
    "ICNS": b"icns" + struct.pack(">I", 8),
    "FITS": b"SIMPLE  =                    T" + b" " * 50,
    "Sun raster": cv2.imencode(".ras", np.zeros((48, 48), np.uint8))[1].tobytes(),
    "PFM": b"Pf\n48 48\n-1.0\n" + np.zeros((48, 48), "<f4").tobytes(),
    "Radiance HDR": cv2.imencode(".hdr", np.zeros((48, 48, 3), np.float32))[1].tobytes(),
}


def float_tiff(gray_values: np.ndarray) -> bytes:
    """A single-channel 32-bit float TIFF (Pillow mode "F"), as scientific tools write them."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(gray_values.astype(np.float32), mode="F").save(buffer, format="TIFF")
    return buffer.getvalue()


def gradient_image(height: int = 60, width: int = 80) -> np.ndarray:
    x = np.linspace(0, 255, width, dtype=np.uint8)[None, :].repeat(height, axis=0)
    y = np.linspace(0, 255, height, dtype=np.uint8)[:, None].repeat(width, axis=1)
    return np.dstack([x, y, 255 - x])


def test_png_round_trips_exactly() -> None:
    bgr_image = gradient_image()
    decoded = decode_image(encode_png(bgr_image))
    assert decoded.dtype == np.uint8 and decoded.shape == (60, 80, 3)
    np.testing.assert_array_equal(decoded, bgr_image)


def test_channel_order_is_bgr() -> None:
    red = np.zeros((10, 10, 3), np.uint8)
    red[:, :, 2] = 255  # BGR red
    np.testing.assert_array_equal(decode_image(encode(red, ".png"))[0, 0], [0, 0, 255])


def test_empty_file_is_refused() -> None:
    with pytest.raises(InvalidImageError, match="empty"):
        decode_image(b"")


def test_text_file_is_not_an_image() -> None:
    with pytest.raises(InvalidImageError, match="not an image"):
        decode_image(b"name,emotion\nalice,happy\n")


def test_truncated_jpeg_is_reported_as_damaged() -> None:
    data = encode(gradient_image(200, 200), ".jpg")
    with pytest.raises(InvalidImageError, match="damaged or truncated"):
        decode_image(data[: len(data) // 2])


def test_huge_image_is_refused_from_its_header_without_decoding() -> None:
    data = png_claiming_size(20_000, 20_000)  # 400 megapixels claimed in a few hundred bytes
    assert len(data) < 2_000
    tracemalloc.start()
    try:
        with pytest.raises(InvalidImageError, match=r"too large.*limit is 40 megapixels"):
            decode_image(data)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 20 * 2**20  # nothing near 400 MB was allocated


def test_image_just_over_the_limit_names_its_size() -> None:
    side = int(MAX_PIXELS**0.5) + 100
    with pytest.raises(InvalidImageError, match=rf"{side}x{side}.*limit is 40 megapixels"):
        decode_image(png_claiming_size(side, side))


def test_sixteen_bit_gray_png_is_scaled_to_eight_bits() -> None:
    gray16 = np.linspace(0, 65535, 64 * 48).reshape(48, 64).astype(np.uint16)
    decoded = decode_image(encode(gray16, ".png"))
    assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8
    assert decoded.min() == 0 and decoded.max() >= 254  # the full 16-bit range maps onto 0-255


def test_sixteen_bit_colour_png_decodes() -> None:
    bgr16 = (gradient_image().astype(np.uint16) * 257)[:, :, ::-1].copy()
    decoded = decode_image(encode(bgr16, ".png"))
    assert decoded.shape == (60, 80, 3) and decoded.dtype == np.uint8
    assert np.abs(decoded.astype(int) - gradient_image()[:, :, ::-1].astype(int)).max() <= 1


def test_alpha_png_is_composited_on_white() -> None:
    decoded = decode_image(pil_bytes("RGBA", (20, 10), (255, 0, 0, 0), "PNG"))  # fully transparent red
    assert decoded.shape == (10, 20, 3)
    np.testing.assert_array_equal(decoded[0, 0], [255, 255, 255])


def test_cmyk_jpeg_decodes_to_bgr() -> None:
    decoded = decode_image(pil_bytes("CMYK", (32, 24), (0, 255, 255, 0), "JPEG"))  # CMYK red
    assert decoded.shape == (24, 32, 3)
    blue, green, red = decoded[12, 16].astype(int)
    assert red > 200 and green < 60 and blue < 60


def test_grayscale_image_becomes_three_channels() -> None:
    decoded = decode_image(pil_bytes("L", (30, 20), 90, "PNG"))
    assert decoded.shape == (20, 30, 3)
    assert (decoded == 90).all()


@pytest.mark.parametrize("image_format", ["WEBP", "BMP", "GIF", "TIFF"])
def test_other_formats_decode(image_format: str) -> None:
    assert decode_image(pil_bytes("RGB", (30, 20), (10, 120, 200), image_format)).shape == (20, 30, 3)


def test_exif_rotation_is_applied() -> None:
    stored = gradient_image(60, 80)  # landscape as stored by the camera
    decoded = decode_image(jpeg_with_orientation(stored, 6))  # 6: rotate 90 degrees clockwise to view
    assert decoded.shape == (80, 60, 3)
    expected = cv2.rotate(stored, cv2.ROTATE_90_CLOCKWISE)
    assert np.abs(decoded.astype(int) - expected.astype(int)).mean() < 4  # JPEG noise only


def test_file_extension_does_not_matter(tmp_path) -> None:
    path = tmp_path / "really-a-png.jpg"
    path.write_bytes(encode_png(gradient_image()))
    np.testing.assert_array_equal(read_image(path), gradient_image())


def test_missing_file_is_an_invalid_image(tmp_path) -> None:
    with pytest.raises(InvalidImageError, match="does not exist"):
        read_image(tmp_path / "nowhere.png")


def test_rescale_keeps_every_side_at_least_one_pixel() -> None:
    assert rescale(np.zeros((1, 3000, 3), np.uint8), 0.1).shape == (1, 300, 3)
    assert rescale(np.zeros((3000, 2), np.uint8), 0.01).shape == (30, 1)
    assert rescale(gradient_image(60, 80), 0.5).shape == (30, 40, 3)


# Float images


def test_a_float_tiff_with_values_from_0_to_1_is_scaled_not_black() -> None:
    values = np.linspace(0, 1, 48 * 64).reshape(48, 64)
    decoded = decode_image(float_tiff(values))
    assert decoded.shape == (48, 64, 3) and decoded.dtype == np.uint8
    np.testing.assert_array_equal(decoded[:, :, 0], np.round(values * 255).astype(np.uint8))


def test_a_float_tiff_with_values_from_0_to_255_keeps_them() -> None:
    values = np.linspace(0, 255, 48 * 64).reshape(48, 64)
    np.testing.assert_array_equal(decode_image(float_tiff(values))[:, :, 1], np.round(values).astype(np.uint8))


@pytest.mark.parametrize(
    ("values", "reason"),
    [
        (np.full((8, 8), np.nan), "not numbers"),
        (np.full((8, 8), np.inf), "not numbers"),
        (np.linspace(-1, 1, 64).reshape(8, 8), "from -1 to 1"),
        (np.linspace(0, 4000, 64).reshape(8, 8), "from 0 to 4000"),
    ],
)
def test_a_float_tiff_with_no_safe_scale_is_refused_with_its_range(values: np.ndarray, reason: str) -> None:
    with pytest.raises(InvalidImageError, match=reason):
        decode_image(float_tiff(values))


def test_a_float_tiff_in_a_data_folder_decodes_like_an_upload() -> None:
    values = np.linspace(0, 1, 48 * 48).reshape(48, 48)
    np.testing.assert_array_equal(decode_gray(float_tiff(values)), np.round(values * 255).astype(np.uint8))


# Only the accepted formats' decoders


@pytest.fixture
def exotic_decoders_called(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every Pillow decoder of a format the app does not accept, replaced by one that records that it
    was called (and then declines the file, as a decoder does with bytes not of its format)."""
    from PIL import Image

    Image.init()
    called: list[str] = []
    for name, (_factory, accept) in list(Image.OPEN.items()):
        if name in ACCEPTED_FORMATS:
            continue

        def record(*args: Any, format_name: str = name, **kwargs: Any) -> Any:
            called.append(format_name)
            raise SyntaxError(f"the {format_name} decoder was called")

        monkeypatch.setitem(Image.OPEN, name, (record, accept))
    return called


@pytest.mark.parametrize("kind", EXOTIC_FILES)
def test_a_file_of_another_format_never_reaches_its_decoder(kind: str, exotic_decoders_called: list[str]) -> None:
    with pytest.raises(InvalidImageError, match="not an image file"):
        decode_image(EXOTIC_FILES[kind])  # an upload named face.jpg: the name is not looked at
    with pytest.raises(InvalidImageError, match="not an image file"):
        decode_gray(EXOTIC_FILES[kind])  # a file in a data folder
    assert exotic_decoders_called == []


def test_an_eps_file_named_jpg_is_refused_on_disk_too(tmp_path: Path, exotic_decoders_called: list[str]) -> None:
    path = tmp_path / "face.jpg"
    path.write_bytes(EPS_BYTES)
    with pytest.raises(InvalidImageError, match="not an image file"):
        read_image(path)
    assert exotic_decoders_called == []


@pytest.mark.parametrize("image_format_name", ["JPEG", "PNG", "WEBP", "BMP", "TIFF", "GIF", "PPM"])
def test_every_accepted_format_is_recognised_and_decodes(
    image_format_name: str, exotic_decoders_called: list[str]
) -> None:
    data = pil_bytes("L", (30, 20), 90, image_format_name)
    assert image_format(data) == image_format_name
    assert decode_image(data).shape == (20, 30, 3)
    assert decode_gray(data).shape == (20, 30)
    assert exotic_decoders_called == []


def test_a_damaged_file_of_an_accepted_format_is_damaged_in_a_data_folder_too() -> None:
    with pytest.raises(InvalidImageError, match="damaged"):
        decode_gray(b"\x89PNG\r\n\x1a\n garbage")


# --- damaged data that still decodes


def test_a_jpeg_cut_short_decodes_grey_below_and_is_called_damaged(tmp_path: Path) -> None:
    bgr_image = decode_image(jpeg_cut_short(textured_background(240, 320)))
    assert bgr_image.shape == (240, 320, 3) and bgr_image[200:].std() < 1  # the lower part: flat grey
    warning = image_damage(jpeg_cut_short(textured_background(240, 320)))
    assert warning is not None and "damaged" in warning and "premature end of data segment" in warning
    path = tmp_path / "cut.jpg"
    path.write_bytes(jpeg_cut_short(textured_background(240, 320)))
    checked = read_checked_image(path)
    assert checked.warning == warning and checked.bgr_image.shape == (240, 320, 3)


@pytest.mark.parametrize(
    "data",
    [
        pytest.param(lambda: encode(textured_background(120, 160), ".jpg"), id="opencv"),
        pytest.param(lambda: pil_bytes("RGB", (160, 120), (20, 90, 160), "JPEG"), id="pillow"),
        pytest.param(lambda: pil_bytes("CMYK", (160, 120), (0, 120, 200, 10), "JPEG"), id="cmyk"),
        pytest.param(lambda: pil_bytes("L", (160, 120), 90, "JPEG"), id="gray"),
        pytest.param(lambda: jpeg_with_orientation(textured_background(60, 80), 6), id="exif"),
        pytest.param(lambda: encode(textured_background(120, 160), ".png"), id="png"),
    ],
)
def test_sound_images_are_not_called_damaged(data: Any) -> None:
    assert image_damage(data()) is None


SOUND_AND_DAMAGED = [
    pytest.param(lambda: encode(textured_background(120, 160), ".jpg"), True, id="opencv"),
    pytest.param(lambda: pil_bytes("RGB", (160, 120), (20, 90, 160), "JPEG"), True, id="pillow"),
    pytest.param(lambda: pil_bytes("L", (160, 120), 90, "JPEG"), True, id="gray"),
    pytest.param(lambda: pil_bytes("CMYK", (160, 120), (0, 120, 200, 10), "JPEG"), False, id="cmyk"),
    pytest.param(lambda: jpeg_with_orientation(textured_background(60, 80), 6), False, id="exif-turned"),
    pytest.param(lambda: jpeg_with_orientation(textured_background(60, 80), 1), True, id="exif-upright"),
    pytest.param(lambda: jpeg_cut_short(textured_background(240, 320)), False, id="cut-short"),
    pytest.param(lambda: encode(textured_background(120, 160), ".png"), False, id="png"),
]


@pytest.mark.parametrize(("data", "one_decode"), SOUND_AND_DAMAGED)
def test_decoding_and_the_damage_check_in_one_give_what_the_two_give(
    data: Any, one_decode: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    data = data()
    expected = (decode_image(data), image_damage(data))
    careful: list[bytes] = []
    monkeypatch.setattr(images, "decode_image", lambda data: careful.append(data) or expected[0])
    bgr_image, warning = decode_checked_image(data)
    assert warning == expected[1]
    np.testing.assert_array_equal(bgr_image, expected[0])  # the same pixels, to the last bit
    assert (careful == []) == one_decode  # plain, sound JPEGs are decoded once; the rest take the careful path


def test_a_plain_jpeg_over_the_pixel_cap_is_refused_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "MAX_PIXELS", 100 * 100)
    with pytest.raises(InvalidImageError, match="megapixels"):
        decode_checked_image(encode(textured_background(120, 160), ".jpg"))


def test_every_corrupted_photo_that_still_decodes_is_called_damaged() -> None:
    """Runs of random bytes overwritten in a photo's data, as a bad card or a broken copy does: none that
    still decodes is classified silently."""
    clean = encode(textured_background(240, 320, seed=3), ".jpg")
    rng = np.random.default_rng(7)
    decoded = flagged = 0
    for _ in range(60):
        data = bytearray(clean)
        position, length = int(rng.integers(700, len(data) - 64)), int(rng.integers(16, 64))
        data[position : position + length] = rng.integers(0, 256, length, dtype=np.uint8).tobytes()
        try:
            decode_image(bytes(data))
        except InvalidImageError:
            continue
        decoded += 1
        flagged += image_damage(bytes(data)) is not None
    assert decoded > 30 and flagged == decoded
