"""CIFAR-10: the python batch format, where ``cifar10`` is looked for, and the real JPEG tree."""

from __future__ import annotations

import pickle
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torchvision.transforms import CenterCrop, Resize
from torchvision.transforms import InterpolationMode as IM

from selfsup.data import cifar
from selfsup.data.cifar import CIFAR10_CLASSES, read_cifar_batches, resolve_cifar10
from selfsup.data.datasets import load_dataset

SHARED_CIFAR = Path(__file__).resolve().parents[1] / ".." / "shared" / "datasets" / "cifar10"


def fake_images(n: int, seed: int) -> np.ndarray:
    """(n, 32, 32, 3) uint8 HWC with distinct planes: R random, G = 255 - R, B a gradient."""
    r = np.random.default_rng(seed).integers(0, 256, (n, 32, 32), dtype=np.uint8)
    b = np.broadcast_to(np.arange(32, dtype=np.uint8) * 8, (n, 32, 32))
    return np.stack([r, 255 - r, b], axis=-1)


def write_batches(folder: Path, per_batch: int = 2) -> dict[str, tuple[np.ndarray, list[int]]]:
    """A cifar-10-batches-py folder in the real format (Python 3 pickles, bytes keys)."""
    folder.mkdir(parents=True)
    out = {}
    names = [*(f"data_batch_{i}" for i in range(1, 6)), "test_batch"]
    for k, name in enumerate(names):
        hwc = fake_images(per_batch, seed=k)
        # The documented layout: each row holds the 1024 R values, then G, then B, row-major.
        rows = np.concatenate([hwc[..., c].reshape(per_batch, 1024) for c in range(3)], axis=1)
        labels = [(k + i) % 10 for i in range(per_batch)]
        batch = {
            b"batch_label": name.encode(),
            b"labels": labels,
            b"data": rows,
            b"filenames": [f"{name}_{i}.png".encode() for i in range(per_batch)],
        }
        with open(folder / name, "wb") as f:
            pickle.dump(batch, f, protocol=2)
        out[name] = (hwc, labels)
    meta = {b"label_names": [c.encode() for c in CIFAR10_CLASSES], b"num_vis": 3072}
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump(meta, f, protocol=2)
    return out


def test_batches_round_trip_with_planes_in_place(tmp_path: Path) -> None:
    written = write_batches(tmp_path / "cifar-10-batches-py")
    for root in (tmp_path, tmp_path / "cifar-10-batches-py"):  # torchvision's root, or the folder
        test = load_dataset(root, "test", cache_dir=False)
        hwc, labels = written["test_batch"]
        assert torch.equal(test.images, torch.from_numpy(hwc).permute(0, 3, 1, 2))
        assert test.labels is not None and test.labels.tolist() == labels
        assert test.classes == CIFAR10_CLASSES and test.images.is_contiguous()
        assert test.files == tuple(f"test#{i}" for i in range(len(test)))  # rows of the split
    train = load_dataset(tmp_path, "train", labelled=False, cache_dir=False)
    expected = np.concatenate([written[f"data_batch_{i}"][0] for i in range(1, 6)])
    assert torch.equal(train.images, torch.from_numpy(expected).permute(0, 3, 1, 2))
    assert train.labels is None and train.classes == ()
    red = train.images[0, 0]
    assert torch.equal(train.images[0, 1], 255 - red)  # G plane is G, not a shifted R
    assert train.images[0, 2, 5, 3].item() == 24  # B is the column gradient
    with pytest.raises(ValueError, match="'train' and 'test'"):
        load_dataset(tmp_path, "val", cache_dir=False)


def test_batches_resized_like_torchvision_and_cached(tmp_path: Path) -> None:
    written = write_batches(tmp_path / "b")
    data = load_dataset(tmp_path / "b", "test", image_size=20, cache_dir=tmp_path / "c")
    for got, hwc in zip(data.images, written["test_batch"][0], strict=True):
        ref = CenterCrop(20)(Resize(20, IM.BICUBIC)(Image.fromarray(hwc)))
        assert torch.equal(got, torch.from_numpy(np.array(ref)).permute(2, 0, 1))
    assert len(list((tmp_path / "c" / "decoded").glob("*.npz"))) == 1
    load_dataset(tmp_path / "b", "test", cache_dir=tmp_path / "c")  # 32 px: nothing to cache
    assert len(list((tmp_path / "c" / "decoded").glob("*.npz"))) == 1


def test_batch_errors_and_unpickling_safety(tmp_path: Path) -> None:
    write_batches(tmp_path / "b")
    (tmp_path / "b" / "data_batch_3").unlink()
    with pytest.raises(FileNotFoundError, match="data_batch_3"):
        read_cifar_batches(tmp_path / "b", "train")

    class Evil:
        def __reduce__(self) -> tuple[object, tuple[str]]:
            return (print, ("pickle ran code",))

    with open(tmp_path / "b" / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil()}, f)
    with pytest.raises(pickle.UnpicklingError, match="builtins.print"):
        read_cifar_batches(tmp_path / "b", "test")


@dataclass
class Isolated:
    """Where each resolution step looks, and the download attempts made."""

    repo: Path
    cwd: Path
    env: Path
    cache: Path
    downloads: list[Path]


@pytest.fixture
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Isolated:
    """No CIFAR-10 anywhere: fake repository, working directory, cache and download."""
    places = Isolated(
        tmp_path / "r" / "repo", tmp_path / "w" / "cwd", tmp_path / "env", tmp_path / "xdg", []
    )
    for p in (places.repo, places.cwd, places.env, places.cache):
        p.mkdir(parents=True)
    monkeypatch.setattr(cifar, "_REPO_ROOT", places.repo)
    monkeypatch.chdir(places.cwd)
    monkeypatch.setenv("SELFSUP_DATA", str(places.env))
    monkeypatch.setenv("XDG_CACHE_HOME", str(places.cache))

    def no_internet(root: Path) -> Path:
        places.downloads.append(root)
        raise OSError("no network here")

    monkeypatch.setattr(cifar, "_download_cifar10", no_internet)
    return places


def _jpeg_tree(root: Path) -> Path:
    (root / "train" / "cat").mkdir(parents=True)
    (root / "test" / "cat").mkdir(parents=True)
    return root


def test_resolution_error_lists_every_place(isolated: Isolated) -> None:
    with pytest.raises(FileNotFoundError) as err:
        resolve_cifar10()
    text = str(err.value)
    download_root = isolated.cache / "selfsup" / "cifar10"
    places = [
        str(isolated.env / "cifar10"),
        str(isolated.repo / ".." / "shared" / "datasets" / "cifar10"),
        str(isolated.cwd / ".." / "shared" / "datasets" / "cifar10"),
        f"cache: {download_root}",
        f"download into {download_root} (failed: OSError: no network here)",
    ]
    at = [text.index(p) for p in places]  # each place is named, in resolution order
    assert at == sorted(at)
    assert isolated.downloads == [download_root]


def test_resolution_order(isolated: Isolated, tmp_path: Path) -> None:
    cwd_copy = _jpeg_tree(tmp_path / "w" / "shared" / "datasets" / "cifar10")
    assert resolve_cifar10() == cwd_copy.resolve()
    repo_copy = _jpeg_tree(tmp_path / "r" / "shared" / "datasets" / "cifar10")
    assert resolve_cifar10() == repo_copy.resolve()  # beside the repository wins over cwd
    env_copy = tmp_path / "env" / "cifar10" / "cifar-10-batches-py"
    write_batches(env_copy)
    assert resolve_cifar10() == env_copy.resolve()  # $SELFSUP_DATA wins over both
    given = _jpeg_tree(tmp_path / "mine")
    assert resolve_cifar10(given) == given.resolve()  # a given path wins over everything
    with pytest.raises(FileNotFoundError, match="does not hold CIFAR-10"):
        resolve_cifar10(tmp_path / "w")  # and is never silently replaced
    data = load_dataset("cifar10", "test", cache_dir=False)
    assert "cifar-10-batches-py" in data.source and len(data) == 2
    assert isolated.downloads == []


def test_download_is_the_last_resort(isolated: Isolated, monkeypatch: pytest.MonkeyPatch) -> None:
    def fake_download(root: Path) -> Path:
        write_batches(root / "cifar-10-batches-py")
        return root / "cifar-10-batches-py"

    monkeypatch.setattr(cifar, "_download_cifar10", fake_download)
    got = resolve_cifar10()
    assert got == (isolated.cache / "selfsup" / "cifar10" / "cifar-10-batches-py").resolve()
    monkeypatch.setattr(cifar, "_download_cifar10", None)  # found in the cache from now on
    assert resolve_cifar10() == got


@pytest.mark.skipif(not SHARED_CIFAR.is_dir(), reason="no ../shared/datasets/cifar10 here")
def test_real_cifar10_jpeg_test_split(tmp_path: Path) -> None:
    start = time.perf_counter()
    data = load_dataset(SHARED_CIFAR, "test", cache_dir=tmp_path)
    assert time.perf_counter() - start < 30  # a few seconds on one core; generous when shared
    assert data.images.shape == (10000, 3, 32, 32) and data.classes == CIFAR10_CLASSES
    assert data.labels is not None
    assert data.labels.bincount().tolist() == [1000] * 10
    cat = sorted((SHARED_CIFAR / "test" / "cat").glob("*.jpg"))[7]
    ref = np.array(Image.open(cat).convert("RGB")).transpose(2, 0, 1)
    assert torch.equal(data.images[3 * 1000 + 7], torch.from_numpy(ref))
