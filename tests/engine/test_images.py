"""engine.data.images: every awkward image kind decodes to the right pixels, every broken file to a clear reason."""

import numpy as np
import pytest
import torch
from PIL import Image

from engine.data.images import IMAGE_EXTENSIONS, UnreadableImageError, load_image, load_pil_rgb


def save(tmp_path, name, img, **params):
    path = tmp_path / name
    img.save(path, **params)
    return path


def stored_mode(path):
    with Image.open(path) as img:
        return img.mode


def pixel(tensor, x, y):
    """The channel values at column x, row y of a (C, H, W) tensor."""
    return tuple(tensor[:, y, x].tolist())


def noise_jpeg(tmp_path, name="photo.jpg", size=64):
    rng = np.random.default_rng(0)
    img = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    return save(tmp_path, name, img, quality=90)


# --- decoding and conversion ----------------------------------------------------------------------------------


def test_extensions_are_lowercase_suffixes_including_npy():
    assert {".jpg", ".jpeg", ".png", ".tif", ".webp", ".npy"} <= IMAGE_EXTENSIONS
    assert all(ext.startswith(".") and ext == ext.lower() for ext in IMAGE_EXTENSIONS)


def test_rgb_png_is_returned_as_contiguous_uint8_chw(tmp_path):
    img = Image.new("RGB", (5, 3), (10, 20, 30))
    img.putpixel((4, 2), (200, 100, 50))
    tensor = load_image(save(tmp_path, "rgb.png", img))
    assert tensor.dtype == torch.uint8 and tensor.shape == (3, 3, 5) and tensor.is_contiguous()
    assert pixel(tensor, 0, 0) == (10, 20, 30)
    assert pixel(tensor, 4, 2) == (200, 100, 50)


def test_greyscale_is_replicated_to_three_channels(tmp_path):
    img = Image.new("L", (4, 3), 77)
    img.putpixel((1, 2), 200)
    tensor = load_image(save(tmp_path, "grey.png", img))
    assert tensor.shape == (3, 3, 4)
    assert pixel(tensor, 0, 0) == (77, 77, 77)
    assert pixel(tensor, 1, 2) == (200, 200, 200)


def test_one_bit_image_becomes_black_and_white(tmp_path):
    img = Image.new("1", (4, 4), 0)
    img.putpixel((3, 3), 1)
    tensor = load_image(save(tmp_path, "bits.png", img))
    assert pixel(tensor, 0, 0) == (0, 0, 0)
    assert pixel(tensor, 3, 3) == (255, 255, 255)


@pytest.mark.parametrize("name", ["palette.png", "palette.gif"])
def test_palette_with_transparency_composites_transparent_index_on_white(tmp_path, name):
    img = Image.new("P", (4, 2), 0)
    img.putpalette([255, 0, 0, 0, 0, 255] + [0, 0, 0] * 254)  # index 0 red, index 1 blue
    img.putpixel((3, 1), 1)
    tensor = load_image(save(tmp_path, name, img, transparency=1))
    assert pixel(tensor, 0, 0) == (255, 0, 0)
    assert pixel(tensor, 3, 1) == (255, 255, 255)  # blue was the transparent index


def test_opaque_palette_keeps_its_colours(tmp_path):
    img = Image.new("P", (2, 2), 1)
    img.putpalette([0, 0, 0, 12, 34, 56] + [0, 0, 0] * 254)
    assert pixel(load_image(save(tmp_path, "p.png", img)), 1, 1) == (12, 34, 56)


def test_rgba_alpha_is_composited_on_white(tmp_path):
    img = Image.new("RGBA", (3, 1), (0, 0, 0, 0))  # transparent black: its colour must not show
    img.putpixel((1, 0), (0, 255, 0, 255))
    img.putpixel((2, 0), (255, 0, 0, 128))
    tensor = load_image(save(tmp_path, "rgba.png", img))
    assert pixel(tensor, 0, 0) == (255, 255, 255)
    assert pixel(tensor, 1, 0) == (0, 255, 0)
    red, green, blue = pixel(tensor, 2, 0)
    assert red == 255 and abs(green - 127) <= 1 and abs(blue - 127) <= 1


def test_greyscale_with_alpha_is_composited_on_white(tmp_path):
    img = Image.new("LA", (2, 1), (0, 0))
    img.putpixel((1, 0), (40, 255))
    tensor = load_image(save(tmp_path, "la.png", img))
    assert pixel(tensor, 0, 0) == (255, 255, 255)
    assert pixel(tensor, 1, 0) == (40, 40, 40)


def test_cmyk_is_converted_to_rgb(tmp_path):
    img = Image.new("CMYK", (2, 1), (0, 0, 0, 0))  # no ink: white
    img.putpixel((1, 0), (0, 255, 255, 0))  # magenta + yellow: red
    path = save(tmp_path, "cmyk.tif", img)
    assert stored_mode(path) == "CMYK"
    tensor = load_image(path)
    assert pixel(tensor, 0, 0) == (255, 255, 255)
    assert pixel(tensor, 1, 0) == (255, 0, 0)


def test_sixteen_bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 32896, 65535, 1000]], dtype=np.uint16)
    path = save(tmp_path, "deep.png", Image.fromarray(values))
    assert stored_mode(path) in ("I;16", "I")  # the test really exercises the 16-bit path
    tensor = load_image(path)
    assert tensor.shape == (3, 1, 4)
    assert tensor[0, 0].tolist() == [0, 128, 255, 4]  # 1000 / 257 = 3.9: dark, not saturated
    assert torch.equal(tensor[0], tensor[2])


def test_sixteen_bit_greyscale_to_one_channel(tmp_path):
    values = np.array([[65535, 32896]], dtype=np.uint16)
    tensor = load_image(save(tmp_path, "deep.png", Image.fromarray(values)), channels=1)
    assert tensor.shape == (1, 1, 2)
    assert tensor[0, 0].tolist() == [255, 128]


@pytest.mark.parametrize(
    ("values", "expected"), [([0.0, 0.5, 1.0], [0, 128, 255]), ([0.0, 100.0, 300.0], [0, 100, 255])]
)
def test_float_images_assume_unit_range_only_when_max_is_at_most_one(tmp_path, values, expected):
    img = Image.fromarray(np.array([values], dtype=np.float32), mode="F")
    tensor = load_image(save(tmp_path, "float.tif", img))
    assert tensor[0, 0].tolist() == expected


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high with a red block in the stored top-left corner. Orientation 6 means
    # "rotate 90 degrees clockwise to display", which moves the top-left corner to the top-right.
    img = Image.new("RGB", (40, 20), (0, 0, 0))
    img.paste((255, 0, 0), (0, 0, 10, 10))
    exif = Image.Exif()
    exif[0x0112] = 6
    path = save(tmp_path, "phone.jpg", img, exif=exif.tobytes(), quality=95)
    tensor = load_image(path)
    assert tensor.shape == (3, 40, 20)  # height 40, width 20
    red, green, blue = pixel(tensor, 15, 5)  # top-right block
    assert red > 200 and green < 50 and blue < 50
    assert max(pixel(tensor, 5, 5)) < 50  # the top-left is black
    assert max(pixel(tensor, 15, 35)) < 50  # and so is the bottom-right


def test_load_pil_rgb_applies_the_same_rules(tmp_path):
    img = Image.new("RGBA", (2, 1), (0, 0, 0, 0))
    img.putpixel((1, 0), (9, 8, 7, 255))
    out = load_pil_rgb(save(tmp_path, "rgba.png", img))
    assert out.mode == "RGB" and out.size == (2, 1)
    assert out.getpixel((0, 0)) == (255, 255, 255)
    assert out.getpixel((1, 0)) == (9, 8, 7)


def test_load_pil_rgb_scales_sixteen_bit(tmp_path):
    out = load_pil_rgb(save(tmp_path, "deep.png", Image.fromarray(np.array([[65535]], dtype=np.uint16))))
    assert out.getpixel((0, 0)) == (255, 255, 255)


# --- channel counts -------------------------------------------------------------------------------------------


def test_one_channel_is_luminance(tmp_path):
    tensor = load_image(save(tmp_path, "red.png", Image.new("RGB", (3, 2), (255, 0, 0))), channels=1)
    assert tensor.shape == (1, 2, 3)
    assert tensor[0, 0, 0].item() == 76  # ITU-R 601-2 luma: 0.299 * 255


def test_four_channels_keep_alpha(tmp_path):
    img = Image.new("RGBA", (2, 1), (1, 2, 3, 0))
    img.putpixel((1, 0), (4, 5, 6, 77))
    tensor = load_image(save(tmp_path, "rgba.png", img), channels=4)
    assert tensor.shape == (4, 1, 2)
    assert pixel(tensor, 0, 0) == (1, 2, 3, 0)
    assert pixel(tensor, 1, 0) == (4, 5, 6, 77)


def test_four_channels_of_an_opaque_image_have_full_alpha(tmp_path):
    tensor = load_image(save(tmp_path, "grey.png", Image.new("L", (2, 2), 50)), channels=4)
    assert pixel(tensor, 1, 1) == (50, 50, 50, 255)


def test_image_files_cannot_supply_other_channel_counts(tmp_path):
    path = save(tmp_path, "rgb.png", Image.new("RGB", (2, 2)))
    with pytest.raises(UnreadableImageError, match="needs .npy arrays for 5-channel input"):
        load_image(path, channels=5)


# --- .npy arrays ----------------------------------------------------------------------------------------------


def five_channel_array():
    """(H=6, W=4, C=5) where channel c holds the value 10 * (c + 1) everywhere, and one marked pixel."""
    array = np.broadcast_to(np.arange(1, 6, dtype=np.uint8) * 10, (6, 4, 5)).copy()
    array[2, 3] = [1, 2, 3, 4, 5]
    return array


def test_npy_hwc_five_channels(tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, five_channel_array())
    tensor = load_image(path, channels=5)
    assert tensor.shape == (5, 6, 4) and tensor.dtype == torch.uint8 and tensor.is_contiguous()
    assert pixel(tensor, 0, 0) == (10, 20, 30, 40, 50)
    assert pixel(tensor, 3, 2) == (1, 2, 3, 4, 5)


def test_npy_chw_five_channels(tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, np.moveaxis(five_channel_array(), -1, 0))  # (5, 6, 4)
    tensor = load_image(path, channels=5)
    assert tensor.shape == (5, 6, 4)
    assert pixel(tensor, 0, 0) == (10, 20, 30, 40, 50)
    assert pixel(tensor, 3, 2) == (1, 2, 3, 4, 5)


def test_npy_dtypes_are_scaled_to_uint8(tmp_path):
    np.save(tmp_path / "u16.npy", np.array([[0, 32896, 65535]], dtype=np.uint16))
    np.save(tmp_path / "unit.npy", np.array([[0.0, 0.5, 1.0]], dtype=np.float32))
    np.save(tmp_path / "wide.npy", np.array([[-5.0, 100.0, 999.0]], dtype=np.float64))
    assert load_image(tmp_path / "u16.npy", channels=1)[0, 0].tolist() == [0, 128, 255]
    assert load_image(tmp_path / "unit.npy", channels=1)[0, 0].tolist() == [0, 128, 255]
    assert load_image(tmp_path / "wide.npy", channels=1)[0, 0].tolist() == [0, 100, 255]


def test_npy_channel_mismatch_names_expected_and_found(tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, five_channel_array())
    with pytest.raises(UnreadableImageError) as info:
        load_image(path, channels=3)
    assert "expected 3" in info.value.reason and "found 5" in info.value.reason


def test_npy_ambiguous_shape_prefers_channels_last(tmp_path):
    path = tmp_path / "cube.npy"
    array = np.zeros((3, 3, 3), dtype=np.uint8)
    array[0, 1, :] = [7, 8, 9]  # HWC: pixel at row 0, column 1
    np.save(path, array)
    assert pixel(load_image(path), 1, 0) == (7, 8, 9)


def test_npy_two_dimensional_array_needs_one_channel(tmp_path):
    path = tmp_path / "plane.npy"
    np.save(path, np.zeros((4, 4), dtype=np.uint8))
    assert load_image(path, channels=1).shape == (1, 4, 4)
    with pytest.raises(UnreadableImageError, match="expected 3 channels"):
        load_image(path, channels=3)


def test_npy_object_arrays_are_refused(tmp_path):
    path = tmp_path / "objects.npy"
    np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(UnreadableImageError, match="pickle"):
        load_image(path)


def test_load_pil_rgb_previews_the_first_three_npy_channels(tmp_path):
    path = tmp_path / "stack.npy"
    np.save(path, five_channel_array())
    out = load_pil_rgb(path)
    assert out.mode == "RGB" and out.size == (4, 6)
    assert out.getpixel((0, 0)) == (10, 20, 30)


# --- unreadable files -----------------------------------------------------------------------------------------


def test_truncated_jpeg_is_reported_as_truncated(tmp_path):
    path = noise_jpeg(tmp_path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError) as info:
        load_image(path)
    assert "truncated" in info.value.reason
    assert info.value.path == str(path)
    assert str(info.value) == f"{path}: {info.value.reason}"


def test_truncated_png_is_unreadable(tmp_path):
    rng = np.random.default_rng(1)
    path = save(tmp_path, "noise.png", Image.fromarray(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)))
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(UnreadableImageError, match="truncated"):
        load_image(path)


def test_random_bytes_are_not_an_image(tmp_path):
    path = tmp_path / "fake.jpg"
    path.write_bytes(np.random.default_rng(2).integers(0, 256, 500, dtype=np.uint8).tobytes())
    with pytest.raises(UnreadableImageError) as info:
        load_image(path)
    assert info.value.reason == "not an image (cannot identify image file)"


def test_empty_file(tmp_path):
    path = tmp_path / "empty.png"
    path.write_bytes(b"")
    with pytest.raises(UnreadableImageError) as info:
        load_pil_rgb(path)
    assert info.value.reason == "empty file"


def test_missing_file(tmp_path):
    with pytest.raises(UnreadableImageError, match="file not found"):
        load_image(tmp_path / "nowhere.png")


def test_decompression_bomb_is_refused_with_a_clear_reason(tmp_path, monkeypatch):
    path = save(tmp_path, "big.png", Image.new("RGB", (64, 64)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 4096 pixels is now more than twice the limit
    with pytest.raises(UnreadableImageError, match="decompression bomb"):
        load_image(path)
