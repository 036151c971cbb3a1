"""Image-folder readers, decoding rules and the decode cache (tiny files in tmp_path)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Resize
from torchvision.transforms import InterpolationMode as IM

from selfsup.data import decode
from selfsup.data.datasets import ImageData, load_dataset
from selfsup.data.decode import (
    UndecodableImageError,
    UndecodableImageWarning,
    decode_files,
    to_rgb,
)


def rand_rgb(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    """(h, w, 3) uint8 whose R, G and B planes differ (catches channel mix-ups)."""
    a = np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)
    a[..., 1] //= 2  # make the planes statistically distinct, not just random
    return a


def write_png(path: Path, arr: np.ndarray) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)
    return arr


def make_tree(root: Path, per_class: dict[str, int], seed: int = 0) -> dict[str, list[np.ndarray]]:
    out: dict[str, list[np.ndarray]] = {}
    for c, n in per_class.items():
        out[c] = [
            write_png(root / c / f"{i:03d}.png", rand_rgb(seed + 100 * i + len(c)))
            for i in range(n)
        ]
    return out


def chw(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


def test_class_tree_png_round_trip_is_exact(tmp_path: Path) -> None:
    arrays = make_tree(tmp_path / "d", {"dog": 2, "cat": 3})
    (tmp_path / "d" / "cat" / "README.txt").write_text("not an image")
    data = load_dataset(tmp_path / "d", cache_dir=False)
    assert data.classes == ("cat", "dog") and data.num_classes == 2 and len(data) == 5
    expected = torch.stack([chw(a) for a in arrays["cat"] + arrays["dog"]])
    assert data.images.dtype == torch.uint8 and data.images.is_contiguous()
    assert torch.equal(data.images, expected)
    assert data.labels is not None and data.labels.tolist() == [0, 0, 0, 1, 1]
    assert data.files == ("cat/000.png", "cat/001.png", "cat/002.png", "dog/000.png", "dog/001.png")
    assert "cat" in repr(data) and "tensor" not in repr(data)  # repr stays short


def test_split_folders_and_a_tree_without_them(tmp_path: Path) -> None:
    train = make_tree(tmp_path / "s" / "train", {"a": 1, "b": 1}, seed=1)
    test = make_tree(tmp_path / "s" / "test", {"a": 2, "b": 1}, seed=2)
    got = load_dataset(tmp_path / "s", "test", cache_dir=False)
    assert torch.equal(got.images, torch.stack([chw(a) for a in test["a"] + test["b"]]))
    got = load_dataset(tmp_path / "s", "train", cache_dir=False)
    assert torch.equal(got.images, torch.stack([chw(a) for a in train["a"] + train["b"]]))
    with pytest.raises(FileNotFoundError, match="train, test.*'val'"):
        load_dataset(tmp_path / "s", "val", cache_dir=False)
    make_tree(tmp_path / "flat", {"a": 1})
    assert len(load_dataset(tmp_path / "flat", "train", cache_dir=False)) == 1
    with pytest.raises(ValueError, match="no split folders.*'train' only"):
        load_dataset(tmp_path / "flat", "test", cache_dir=False)


def test_unlabelled_folder_is_searched_recursively(tmp_path: Path) -> None:
    root = tmp_path / "u"
    a = write_png(root / "x.png", rand_rgb(1))
    b = write_png(root / "deep" / "er" / "y.PNG", rand_rgb(2))  # extension case ignored
    write_png(root / ".hidden" / "z.png", rand_rgb(3))  # hidden folders are skipped
    (root / "notes.md").write_text("# notes")
    data = load_dataset(root, labelled=False, cache_dir=False)
    assert data.labels is None and data.classes == () and data.num_classes == 0
    assert torch.equal(data.images, torch.stack([chw(b), chw(a)]))  # sorted: "deep" < "x.png"
    with pytest.raises(ValueError, match="no class folders.*labelled=False"):
        load_dataset(root / "deep" / "er", cache_dir=False)


def test_many_files_keep_their_order_across_threads(tmp_path: Path) -> None:
    # 600 files span several 256-image chunks handled by different threads.
    paths = []
    for i in range(600):
        paths.append(tmp_path / f"{i:04d}.png")
        Image.new("RGB", (2, 1), (i % 256, i // 256, 7)).save(paths[-1])
    got = decode_files(paths, workers=4)
    assert got.kept.tolist() == list(range(600)) and got.failures == ()
    assert got.images[:, 0, 0, 0].tolist() == [i % 256 for i in range(600)]
    assert got.images[:, 1, 0, 1].tolist() == [i // 256 for i in range(600)]


def _p_with_palette(index: int, transparent: int | None = None) -> Image.Image:
    img = Image.new("P", (1, 1), index)
    img.putpalette([10, 20, 30, 200, 100, 50] + [0] * 762)
    if transparent is not None:
        img.info["transparency"] = transparent
    return img


def _pa_half() -> Image.Image:
    img = _p_with_palette(1).convert("PA")
    img.putalpha(128)
    return img


def _blend(c: int, alpha: int) -> int:  # alpha composite of value c onto white
    return round(c * alpha / 255 + 255 * (1 - alpha / 255))


MODE_CASES = [
    ("L", lambda: Image.new("L", (1, 1), 200), (200, 200, 200)),
    ("1 on", lambda: Image.new("1", (1, 1), 1), (255, 255, 255)),
    ("1 off", lambda: Image.new("1", (1, 1), 0), (0, 0, 0)),
    ("LA opaque", lambda: Image.new("LA", (1, 1), (200, 255)), (200, 200, 200)),
    ("LA half", lambda: Image.new("LA", (1, 1), (100, 128)), (_blend(100, 128),) * 3),
    ("LA clear", lambda: Image.new("LA", (1, 1), (0, 0)), (255, 255, 255)),
    ("La", lambda: Image.new("LA", (1, 1), (100, 255)).convert("La"), (100, 100, 100)),
    ("P", lambda: _p_with_palette(1), (200, 100, 50)),
    ("P transparent", lambda: _p_with_palette(0, transparent=0), (255, 255, 255)),
    ("PA half", lambda: _pa_half(), tuple(_blend(c, 128) for c in (200, 100, 50))),
    ("RGBA opaque", lambda: Image.new("RGBA", (1, 1), (10, 20, 30, 255)), (10, 20, 30)),
    (
        "RGBA half",
        lambda: Image.new("RGBA", (1, 1), (10, 20, 30, 64)),
        tuple(_blend(c, 64) for c in (10, 20, 30)),
    ),
    ("RGBa", lambda: Image.new("RGBA", (1, 1), (10, 20, 30, 255)).convert("RGBa"), (10, 20, 30)),
    ("CMYK white", lambda: Image.new("CMYK", (1, 1), (0, 0, 0, 0)), (255, 255, 255)),
    ("CMYK red", lambda: Image.new("CMYK", (1, 1), (0, 255, 255, 0)), (255, 0, 0)),
    ("YCbCr grey", lambda: Image.new("YCbCr", (1, 1), (128, 128, 128)), (128, 128, 128)),
    ("HSV red", lambda: Image.new("HSV", (1, 1), (0, 255, 255)), (255, 0, 0)),
    ("I;16 max", lambda: Image.new("I;16", (1, 1), 65535), (255, 255, 255)),
    ("I;16 100*257", lambda: Image.new("I;16", (1, 1), 25700), (100, 100, 100)),
    ("I;16B", lambda: Image.new("I;16B", (1, 1), 65535), (255, 255, 255)),
    ("I 16-bit", lambda: Image.new("I", (1, 1), 128 * 257), (128, 128, 128)),
    ("I negative", lambda: Image.new("I", (1, 1), -5), (0, 0, 0)),
    ("F half", lambda: Image.new("F", (1, 1), 0.5), (128, 128, 128)),
    ("F one", lambda: Image.new("F", (1, 1), 1.0), (255, 255, 255)),
]


@pytest.mark.parametrize(("label", "make", "expected"), MODE_CASES, ids=[c[0] for c in MODE_CASES])
def test_every_mode_becomes_rgb(
    label: str, make: Callable[[], Image.Image], expected: tuple[int, ...]
) -> None:
    img = make()
    assert img.mode == label.split()[0]
    rgb = to_rgb(img)
    assert rgb.dtype == np.uint8 and rgb.shape == (1, 1, 3)
    assert tuple(rgb[0, 0].tolist()) == expected


def test_float_image_outside_unit_range_is_stretched() -> None:
    img = Image.fromarray(np.array([[-1.0, 0.0, 3.0]], dtype=np.float32))
    assert img.mode == "F"
    assert to_rgb(img)[0, :, 0].tolist() == [0, round(255 * 1 / 4), 255]  # min..max -> 0..255


def test_modes_from_files_on_disk(tmp_path: Path) -> None:
    cases = {
        "a_L.png": (Image.new("L", (2, 2), 200), (200, 200, 200)),
        "b_I16.png": (Image.new("I;16", (2, 2), 65535), (255, 255, 255)),
        "c_RGBA.png": (Image.new("RGBA", (2, 2), (10, 20, 30, 0)), (255, 255, 255)),
        "d_CMYK.tif": (Image.new("CMYK", (2, 2), (0, 255, 255, 0)), (255, 0, 0)),
        "e_I.tif": (Image.new("I", (2, 2), 257 * 40), (40, 40, 40)),
        "f_F.tif": (Image.new("F", (2, 2), 0.2), (51, 51, 51)),
    }
    for name, (img, _) in cases.items():
        img.save(tmp_path / name)
        assert Image.open(tmp_path / name).mode == img.mode  # the file really keeps the mode
    data = load_dataset(tmp_path, labelled=False, cache_dir=False)
    got = [tuple(p.tolist()) for p in data.images[:, :, 0, 0]]
    assert got == [expected for _, expected in cases.values()]


def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    arr = rand_rgb(5, h=3, w=4)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(arr).save(tmp_path / "r.png", exif=exif)
    data = load_dataset(tmp_path, labelled=False, cache_dir=False)
    assert torch.equal(data.images[0], chw(np.rot90(arr, k=-1)))


def test_sizes_must_agree_or_be_fitted_like_torchvision(tmp_path: Path) -> None:
    # (height, width): down, up, and odd crop margins where round() and floor() differ
    sizes = [(12, 20), (20, 12), (9, 9), (5, 7), (8, 8), (8, 11), (11, 8)]
    arrays = [write_png(tmp_path / f"{i}.png", rand_rgb(i, h, w)) for i, (h, w) in enumerate(sizes)]
    with pytest.raises(ValueError, match="differ in size.*image_size"):
        load_dataset(tmp_path, labelled=False, cache_dir=False)
    data = load_dataset(tmp_path, labelled=False, image_size=8, cache_dir=False)
    reference = [Resize(8, IM.BICUBIC), CenterCrop(8)]
    for got, arr in zip(data.images, arrays, strict=True):
        img = Image.fromarray(arr)
        for t in reference:
            img = t(img)
        assert torch.equal(got, chw(np.asarray(img)))


def _write_bad_files(root: Path, n_garbage: int, size: tuple[int, int] = (16, 16)) -> list[str]:
    good = rand_rgb(9, *size)
    write_png(root / "ok1.png", good)
    png = (root / "ok1.png").read_bytes()
    (root / "cut.png").write_bytes(png[: len(png) // 2])
    Image.fromarray(good).save(root / "full.jpg")
    jpg = (root / "full.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(jpg[: len(jpg) - 100])
    (root / "empty.png").write_bytes(b"")
    names = ["cut.jpg", "cut.png", "empty.png"]
    for i in range(n_garbage):
        (root / f"junk{i:02d}.jpeg").write_bytes(b"this is no jpeg")
        names.append(f"junk{i:02d}.jpeg")
    write_png(root / "zz.png", good)
    return names


def test_undecodable_files_are_skipped_with_one_warning(tmp_path: Path) -> None:
    bad = _write_bad_files(tmp_path / "c" / "k", n_garbage=2)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_dataset(tmp_path / "c", cache_dir=False)
    ours = [w for w in caught if issubclass(w.category, UndecodableImageWarning)]
    assert len(ours) == 1 and len(caught) == 1
    message = str(ours[0].message)
    assert "5 of 8" in message and all(name in message for name in bad)
    assert len(data) == 3 and data.labels is not None and data.labels.tolist() == [0, 0, 0]
    # Kept in order: full.jpg (lossy), ok1.png, zz.png (exact); files name the kept ones.
    assert data.files == ("k/full.jpg", "k/ok1.png", "k/zz.png")
    assert torch.equal(data.images[1], chw(rand_rgb(9, 16, 16)))
    assert torch.equal(data.images[2], chw(rand_rgb(9, 16, 16)))
    with pytest.raises(UndecodableImageError, match="cut.png"):
        load_dataset(tmp_path / "c", strict=True, cache_dir=False)


def test_warning_names_ten_files_then_counts_the_rest(tmp_path: Path) -> None:
    _write_bad_files(tmp_path, n_garbage=9)  # 12 bad files
    with pytest.warns(UndecodableImageWarning, match="12 of 15") as record:
        load_dataset(tmp_path, labelled=False, cache_dir=False)
    message = str(record[0].message)
    assert "junk06.jpeg" in message and "junk07.jpeg" not in message
    assert "and 2 more" in message


def test_empty_and_imageless_folders_are_clear_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    for labelled in (True, False):
        with pytest.raises(FileNotFoundError, match=r"No image files under .*empty.*\.png"):
            load_dataset(tmp_path / "empty", labelled=labelled, cache_dir=False)
    (tmp_path / "txt" / "sub").mkdir(parents=True)
    (tmp_path / "txt" / "sub" / "README").write_text("hi")
    with pytest.raises(FileNotFoundError, match="1 other files.*README"):
        load_dataset(tmp_path / "txt", labelled=False, cache_dir=False)
    with pytest.raises(FileNotFoundError, match="Class folders without images.*sub"):
        load_dataset(tmp_path / "txt", cache_dir=False)
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "x.png").write_bytes(b"junk")
    with (
        pytest.raises(ValueError, match="None of the 1 image files"),
        pytest.warns(UndecodableImageWarning),
    ):
        load_dataset(tmp_path / "bad", labelled=False, cache_dir=False)


def test_bad_arguments_and_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match="Unknown dataset 'cifar1O'.*Did you mean 'cifar10'"):
        load_dataset("cifar1O")
    with pytest.raises(ValueError, match="Unknown dataset 'imagenet'.*cifar10"):
        load_dataset("imagenet")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_dataset("./no/such/folder")
    (tmp_path / "f.png").write_bytes(b"")
    with pytest.raises(NotADirectoryError, match="is a file"):
        load_dataset(tmp_path / "f.png")
    with pytest.raises(ValueError, match="image_size"):
        load_dataset(tmp_path, image_size=0)
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(1, 3, 2, 2), None, (), "x")
    with pytest.raises(ValueError, match="labels must lie"):
        ImageData(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), torch.tensor([2]), ("a", "b"), "x")
    with pytest.raises(ValueError, match="files must name all 1 images"):
        ImageData(torch.zeros(1, 3, 2, 2, dtype=torch.uint8), None, (), "x", ("a", "b"))


def _listing(root: Path) -> list[tuple[str, int]]:
    return sorted((str(p), p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_cache_is_written_reused_and_invalidated(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root, cache = tmp_path / "data", tmp_path / "cache"
    make_tree(root, {"a": 2, "b": 1})
    _write_bad_files(root / "b", n_garbage=0, size=(6, 5))
    before = _listing(root)
    with pytest.warns(UndecodableImageWarning):
        first = load_dataset(root, cache_dir=cache)
    assert _listing(root) == before  # nothing written inside the data folder
    entries = list((cache / "decoded").glob("*.npz"))
    assert len(entries) == 1

    calls: list[Path] = []
    real_decode = decode.decode_image

    def counting(path: Path, size: int | None = None) -> np.ndarray:
        calls.append(Path(path))
        return real_decode(path, size)

    monkeypatch.setattr(decode, "decode_image", counting)
    with pytest.warns(UndecodableImageWarning, match="cut.png"):  # skipped files still reported
        again = load_dataset(root, cache_dir=cache)
    assert calls == []
    assert torch.equal(again.images, first.images) and torch.equal(again.labels, first.labels)

    changed = root / "a" / "001.png"
    write_png(changed, rand_rgb(77))
    st = changed.stat()
    os.utime(changed, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    with pytest.warns(UndecodableImageWarning):
        third = load_dataset(root, cache_dir=cache)
    assert changed in calls
    assert torch.equal(third.images[1], chw(rand_rgb(77)))
    assert list((cache / "decoded").glob("*.npz")) != entries  # replaced, stale one deleted
    assert len(list((cache / "decoded").glob("*.npz"))) == 1

    calls.clear()
    with pytest.warns(UndecodableImageWarning):
        load_dataset(root, image_size=4, cache_dir=cache)  # another size: another entry
    assert calls and len(list((cache / "decoded").glob("*.npz"))) == 2


def test_cache_default_location_and_off_switch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_tree(tmp_path / "d", {"a": 1})
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    load_dataset(tmp_path / "d", cache_dir=False)
    assert not (tmp_path / "xdg").exists()
    load_dataset(tmp_path / "d")
    assert len(list((tmp_path / "xdg" / "selfsup" / "decoded").glob("*.npz"))) == 1
